//! Step 09, the hypervisor in a jail: the box's limits hold the guest (its memory
//! is charged to the box and the OOM killer ends it past the limit; its vCPU is
//! throttled), the jail holds only /dev/kvm, a VMM the guest has taken over is
//! stopped by the filter, or, with the filter broken, by the walls behind it, and
//! nothing is left behind: no cgroup, mount or process, after a normal run, a bad
//! input or a SIGKILL. Every test runs a real VM on this machine's /dev/kvm.

mod common;
use common::*;
use isolab::workshop::report::Jail;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const STEP: &str = "09-jailed-vm";

/// The seccomp line the VMM prints once its filter is in, just before the guest runs.
const FILTER_IN: &str = "seccomp: allow-list of 10 system calls (of 382), 4 of them only with certain arguments, \
     over step 05's deny-list";

/// The box's cgroup directories of the runtime `pid`, in every hierarchy a box
/// joins: what it made, and must have removed.
fn box_cgroups(pid: u32) -> Vec<PathBuf> {
    isolab::container::cgroup::Layout::detect()
        .unwrap()
        .for_box()
        .unwrap()
        .into_iter()
        .map(|h| h.own_dir.join(format!("isolab-{pid}")))
        .filter(|d| d.exists())
        .collect()
}

/// Run the step, and check it left no cgroup behind (the mount table and the
/// processes: `run` and the box's own cgroup, which is gone).
fn run_jail(args: &[&str]) -> Run {
    let run = run(&step(STEP), args);
    let left = box_cgroups(run.pid);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    run
}

/// The `--stats` lines of a run, from its stderr.
fn stats(run: &Run) -> Report {
    Report::parse(&run.stderr)
}

/// `cpu throttled: N times, M ms` as (N, M).
fn throttled(run: &Run) -> (u64, u64) {
    let value = stats(run)[Stat::CpuThrottled].to_string();
    let numbers: Vec<u64> = value
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [times, ms] => (times, ms),
        _ => panic!("cpu throttled: {value}"),
    }
}

/// `guest time: X ms on the clock, Y ms of it on a CPU` as (X, Y).
fn guest_time(run: &Run) -> (u64, u64) {
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("guest time: "))
        .unwrap_or_else(|| panic!("no `guest time:` line in {}", run.stdout));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// How many million turns of the spinning guest take about `ms` of CPU time here.
/// Machines differ by a thousand times: on VT-x a turn is a cycle; on kvm_pvm,
/// which emulates a guest's kernel-mode code, it is half a microsecond.
fn spin_for(ms: u64) -> u64 {
    let mut millions = 1;
    loop {
        let run = run_jail(&["--spin", &millions.to_string()]);
        assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
        let (_, cpu) = guest_time(&run);
        if cpu >= 20 || millions >= 10_000 {
            return (millions * ms / cpu.max(1)).clamp(1, 100_000);
        }
        millions *= 10;
    }
}

/// Write a note to the terminal even when the test passes (libtest hides eprintln!).
fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "note: {text}");
}

/// The whole output of a plain run: the jail as the VMM sees it, the filter, and
/// the guest. Only the guest's times are the machine's.
#[test]
fn report() {
    needs!(root, kvm);
    let run = run_jail(&["--memory", "64m", "--pids-limit", "16", "--cpus", "0.5"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    snapshot(
        "report",
        &run.stdout,
        vec![(
            r"(?m)^guest time: .*$".into(),
            "guest time: [this machine's]".into(),
        )],
    );
}

/// Inside, the VMM finds a root with /dev/kvm and nothing else, only its own PID
/// namespace, no capabilities, no network and no environment. Each wall it can
/// break goes back to what the host has.
#[test]
fn the_jail_holds_only_dev_kvm() {
    needs!(root, kvm);
    let jail = |flags: &[&str]| {
        let run = run_jail(flags);
        assert_eq!(run.code, Some(0), "{flags:?}: {}", run.stderr);
        Report::parse(&run.stdout)
    };
    let r = jail(&[]);
    assert_eq!(&r[Jail::User], "65534 (nobody), in no group");
    assert_eq!(&r[Jail::Root], "dev");
    assert_eq!(&r[Jail::Dev], "kvm");
    assert_eq!(
        &r[Jail::Processes],
        "2 (the PIDs kill(pid, 0) finds from 1 to 1024: 1 2)"
    );
    assert_eq!(
        &r[Jail::Capabilities],
        "none (and the bounding set is empty)"
    );
    assert_eq!(&r[Jail::NoNewPrivs], "on");
    assert_eq!(&r[Jail::Network], "lo (down)");
    assert_eq!(&r[Jail::Environment], "empty (wiped)");
    assert_eq!(&r[Jail::Stdin], "/dev/null");
    assert_eq!(&r[Jail::Stdout], "a pipe, write-only");
    assert_eq!(
        &r[Jail::SessionKeyring],
        "not found (the session keyring I hold is not the caller's)"
    );
    assert_eq!(&r[Jail::Seccomp], FILTER_IN.trim_start_matches("seccomp: "));
    // The VMM is a fork of the runtime: without the wipe it holds the caller's
    // environment, the canary with it (the tests pass it, as a caller's shell would).
    let r = jail(&["--break", "environment"]);
    assert!(
        r[Jail::Environment].contains(isolab::container::canary::ENV),
        "{}",
        &r[Jail::Environment]
    );
    // The tests start the runtime in a session keyring that holds the canary key,
    // as a login's holds a developer's tokens. Left in it, the VMM reads the key,
    // as nobody: a keyring's keys go with holding it, not with a uid.
    let r = jail(&["--break", "keyring"]);
    assert_eq!(&r[Jail::User], "65534 (nobody), in no group");
    assert_eq!(
        &r[Jail::SessionKeyring],
        "READABLE (the key \"isolab-canary\", in the session keyring I was started with)"
    );
    // Without the jail's root, the host's.
    let r = jail(&["--break", "root"]);
    assert!(r[Jail::Root].contains("proc"), "{}", &r[Jail::Root]);
    assert!(r[Jail::Dev].contains("null"), "{}", &r[Jail::Dev]);
    assert_eq!(&jail(&["--break", "seccomp"])[Jail::Seccomp], "off");
    assert_eq!(
        &jail(&["--break", "allow-list"])[Jail::Seccomp],
        "step 05's deny-list only"
    );
    let r = jail(&["--break", "user"]);
    assert_eq!(&r[Jail::User], "0 (root, without capabilities)");
    assert_eq!(
        &r[Jail::Capabilities],
        "none (and the bounding set is empty)"
    );
}

/// The guest writes one byte to every page of 32 MiB of its memory. Under a 64 MiB
/// limit it runs to the end, and the box's cgroup counted its pages: the guest's
/// memory is the VMM's. Under 16 MiB the OOM killer ends the VMM, and with it the
/// guest: 137, and one OOM kill counted.
#[test]
fn guest_memory_is_charged_to_the_box() {
    needs!(root, kvm);
    let fits = run_jail(&["--memory", "64m", "--touch", "32m", "--stats"]);
    assert_eq!(fits.code, Some(0), "stderr: {}", fits.stderr);
    assert!(fits.stdout.contains("guest said: Touched every page."));
    let peak_kib: u64 = stats(&fits)[Stat::MemoryPeak]
        .trim_end_matches(" KiB")
        .parse()
        .unwrap();
    assert!(
        peak_kib >= 32 << 10,
        "the box's peak, {peak_kib} KiB, is less than the 32 MiB the guest touched"
    );
    assert_eq!(&stats(&fits)[Stat::OomKills], "0");

    let killed = run_jail(&["--memory", "16m", "--touch", "32m", "--stats"]);
    assert_eq!(killed.code, Some(137), "stderr: {}", killed.stderr);
    assert!(
        !killed.stdout.contains("Touched every page"),
        "{}",
        killed.stdout
    );
    assert!(killed.stdout.contains(FILTER_IN), "the guest had started");
    assert_eq!(&stats(&killed)[Stat::OomKills], "1", "{}", killed.stderr);
    assert!(
        killed
            .stderr
            .contains("the OOM killer stopped the VMM: the guest's memory is the VMM's"),
        "{}",
        killed.stderr
    );
    note(&format!(
        "a guest touching 32 MiB: peak {peak_kib} KiB under --memory 64m; OOM-killed under --memory 16m"
    ));
}

/// The vCPU runs the guest on the VMM's thread, so the box's CPU limit holds it:
/// under --cpus 0.25 the same work is throttled, and the cgroup counts it. The
/// times are reported, not asserted: they belong to the machine (step 10).
#[test]
fn the_vcpu_is_throttled_by_the_box() {
    needs!(root, kvm);
    let millions = spin_for(300).to_string();
    let free = run_jail(&["--spin", &millions, "--stats"]);
    assert_eq!(free.code, Some(0), "stderr: {}", free.stderr);
    let limited = run_jail(&["--spin", &millions, "--cpus", "0.25", "--stats"]);
    assert_eq!(limited.code, Some(0), "stderr: {}", limited.stderr);
    for run in [&free, &limited] {
        assert!(run.stdout.contains("guest said: Done spinning."));
    }
    let (free_throttled, _) = throttled(&free);
    let (times, throttled_ms) = throttled(&limited);
    assert_eq!(
        free_throttled, 0,
        "no limit, no throttling: {}",
        free.stderr
    );
    assert!(
        times >= 1,
        "no throttled period counted: {}",
        limited.stderr
    );
    assert!(throttled_ms > 0, "{}", limited.stderr);
    let ((free_clock, free_cpu), (clock, cpu)) = (guest_time(&free), guest_time(&limited));
    note(&format!(
        "{millions} million turns of the spinner: without a limit {free_clock} ms on the clock \
         ({free_cpu} ms on a CPU); under --cpus 0.25 {clock} ms ({cpu} ms on a CPU), \
         throttled {times} times for {throttled_ms} ms"
    ));
}

/// A VMM the guest has taken over tries to get out, once the guest ran. The filter
/// stops each try at its first call and names it (exit 159, 128 + SIGSYS). With the
/// filter broken, the walls behind it hold: the root holds nothing, the network
/// namespace has no route. With the root broken too, the host is open.
#[test]
fn a_compromised_vmm_stays_in_the_jail() {
    needs!(root, kvm);
    let attack = |what: &str, breaks: &[&str]| {
        let mut args = vec!["--attack", what];
        for wall in breaks {
            args.extend(["--break", wall]);
        }
        run_jail(&args)
    };
    // Under the filter: stopped, the call named, one line.
    for (what, call) in [
        ("open-host-file", "openat (system call 257"),
        ("list-processes", "openat (system call 257"),
        ("run-a-shell", "execve (system call 59"),
        ("connect-out", "socket (system call 41"),
        ("another-vm", "ioctl (system call 16, arguments 0x3 0xae01"),
        ("read-keyring", "keyctl (system call 250"),
        ("trace-init", "ptrace (system call 101"),
        ("connect-vsock", "socket (system call 41, arguments 0x28"),
        (
            "new-user-namespace",
            "clone (system call 56, arguments 0x10000011",
        ),
    ] {
        let run = attack(what, &[]);
        assert_one_line_error(
            &run,
            159,
            &format!("the seccomp filter stopped the VMM at {call}"),
        );
        assert!(run.stdout.contains("guest said: Hello from the jail!"));
    }
    // What the filter does not hold: KVM_RUN, the one ioctl it allows, also loads
    // and stores the vCPU's registers through the run area (KVM_CAP_SYNC_REGS).
    let run = attack("set-registers", &[]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let set = run.stdout.lines().last().unwrap_or_default();
    assert!(
        set == "set the vCPU's registers: ALLOWED: rip is 0x12345000 now, set through \
                kvm_run's sync_regs by KVM_RUN, the ioctl the filter allows"
            || set.ends_with("impossible (this KVM has no KVM_CAP_SYNC_REGS)"),
        "{set}"
    );
    // Without the filter, the next wall.
    let said = |run: &Run| {
        assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
        run.stdout.lines().last().unwrap_or_default().to_string()
    };
    assert_eq!(
        said(&attack("open-host-file", &["seccomp"])),
        "open a host file: refused (ENOENT: there is no /etc/passwd in my root)"
    );
    assert_eq!(
        said(&attack("list-processes", &["seccomp"])),
        "list the host's processes: refused (ENOENT: there is no /proc in my root)"
    );
    assert_eq!(
        said(&attack("run-a-shell", &["seccomp"])),
        "run a shell: refused (ENOENT: there is no /bin/sh in my root)"
    );
    assert_eq!(
        said(&attack("connect-out", &["seccomp"])),
        "connect out: refused (ENETUNREACH: my network namespace has only lo, and it is down)"
    );
    // Only the filter held this one: the VMM may make VMs (within the box's memory).
    assert!(said(&attack("another-vm", &["seccomp"])).starts_with("make another VM: ALLOWED"));
    // init kept every capability to build the box, and it is root: a VMM that is
    // neither may not trace it, nor may root without capabilities.
    for breaks in [&["seccomp"][..], &["seccomp", "user"]] {
        assert_eq!(
            said(&attack("trace-init", breaks)),
            "trace init: refused (EPERM: init holds what I do not)"
        );
    }
    // The kernel's keyrings are per uid, in no namespace: as nobody the VMM has a
    // keyring of its own; as root, even without capabilities, it has the host root's.
    assert!(said(&attack("read-keyring", &["seccomp"])).ends_with("(_uid.65534), not root's"),);
    let roots = said(&attack("read-keyring", &["seccomp", "user"]));
    assert_eq!(
        roots,
        format!(
            "read my user's keyring: ROOT'S: keyring {} (_uid.0), which every process of uid 0 \
             on the host shares",
            host_roots_keyring()
        )
    );
    // vsock is in no network namespace, and nobody may make a user namespace, in
    // which it holds every capability: without any filter, both are open...
    let vsock = said(&attack("connect-vsock", &["seccomp"]));
    assert!(
        vsock.starts_with("open a vsock socket: ALLOWED")
            || vsock == "open a vsock socket: impossible (this kernel has no vsock)",
        "{vsock}"
    );
    let userns = said(&attack("new-user-namespace", &["seccomp"]));
    if !userns.starts_with("make a user namespace: ALLOWED") {
        note(&format!(
            "this host refuses user namespaces to nobody: {userns}"
        ));
    }
    // ... and step 05's deny-list, under the allow-list, closes them (and keyctl)
    // when the allow-list lets a call through that it should not.
    for (what, refused) in [
        (
            "connect-vsock",
            "open a vsock socket: refused (EPERM: a filter refuses AF_VSOCK)",
        ),
        (
            "new-user-namespace",
            "make a user namespace: refused (EPERM: a filter refuses new namespaces)",
        ),
        (
            "read-keyring",
            "read my user's keyring: refused (EPERM: keyctl)",
        ),
    ] {
        assert_eq!(said(&attack(what, &["allow-list"])), refused);
    }
    // And without the root too: the host's files and processes, and what the other
    // walls (the network namespace, the uid, init's capabilities) still hold.
    let both = ["seccomp", "root"];
    assert_eq!(
        said(&attack("connect-out", &both)),
        "connect out: refused (ENETUNREACH: my network namespace has only lo, and it is down)"
    );
    assert!(said(&attack("another-vm", &both)).starts_with("make another VM: ALLOWED"));
    assert_eq!(
        said(&attack("trace-init", &both)),
        "trace init: refused (EPERM: init holds what I do not)"
    );
    assert!(said(&attack("read-keyring", &both)).ends_with("(_uid.65534), not root's"));
    assert!(said(&attack("open-host-file", &both)).starts_with("open a host file: READABLE"),);
    assert!(
        said(&attack("list-processes", &both)).starts_with("list the host's processes: READABLE")
    );
    assert!(
        said(&attack("run-a-shell", &both)).starts_with("a shell, as uid 65534, in /"),
        "the shell runs, as nobody"
    );
}

/// Run as from a person's shell, the step's stdin, stdout and stderr its terminal:
/// the VMM gets write-only pipes, and what it writes reaches the terminal through
/// the runtime's relay, escaped. A VMM taken over writes escape sequences (a new
/// window title, a request that the terminal type into the caller's shell); they
/// arrive as text. With the relay broken (`--break terminal`) the VMM holds the
/// terminal itself: the sequences arrive as they are, and without the filter too,
/// the VMM may read the terminal's modes (and so change them, and read what is
/// typed).
#[test]
fn the_callers_terminal_stays_out_of_the_jail() {
    needs!(root, kvm);
    let in_terminal = |breaks: &[&str]| {
        let mut args = vec!["--attack", "terminal"];
        for wall in breaks {
            args.extend(["--break", wall]);
        }
        let run = run_in_terminal(&step(STEP), &args, &[]);
        assert!(box_cgroups(run.pid).is_empty());
        run
    };
    let raw = "\x1b]0;a jailed VMM was here\x07\x1b[6n";
    let escaped = "\\u{1b}]0;a jailed VMM was here\\u{7}\\u{1b}[6n";
    let run = in_terminal(&[]);
    assert_eq!(run.code, Some(159), "{}", run.stdout);
    assert!(
        run.stdout.contains("stdout: a pipe, write-only\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(escaped), "{}", run.stdout);
    assert!(
        !run.stdout.contains('\x1b'),
        "an escape reached the terminal: {:?}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("stopped the VMM at ioctl (system call 16, arguments 0x1 0x5401"),
        "{}",
        run.stdout
    );
    // Without the relay: the caller's terminal, in the VMM's hands.
    let run = in_terminal(&["terminal"]);
    assert_eq!(run.code, Some(159), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("stdout: READABLE: a terminal, the caller's"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(raw), "{:?}", run.stdout);
    // And without the filter: the terminal's modes, through the relay and without.
    let run = in_terminal(&["seccomp"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("drive the terminal: refused (ENOTTY: my stdout is no terminal)"),
        "{}",
        run.stdout
    );
    let run = in_terminal(&["seccomp", "terminal"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("drive the terminal: ALLOWED: my stdout is the caller's terminal"),
        "{}",
        run.stdout
    );
}

/// What a VMM taken over writes reaches the caller through the relay only up to a
/// cap: past it, the relay reads and drops, and says so in one line.
#[test]
fn the_relay_passes_on_a_bounded_amount() {
    needs!(root, kvm);
    let run = run_jail(&["--attack", "flood"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.len() <= 1 << 20, "{} bytes", run.stdout.len());
    assert!(
        run.stderr.contains(
            "bytes to its stdout; the relay passed on the first 1048576 and dropped the rest"
        ),
        "{}",
        run.stderr
    );
}

/// Sent to a file, with the relay broken (`--break terminal`), the VMM's writes
/// stop at its file size limit: the kernel ends it with SIGXFSZ (153), and the
/// runtime says why. The file holds 1 MiB, not the 64 the VMM tried.
#[test]
fn a_flood_into_a_file_stops_at_the_file_size_limit() {
    needs!(root, kvm);
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = command(
        &step(STEP),
        &["--attack", "flood", "--break", "terminal"],
        None,
    );
    cmd.stdout(out.reopen().unwrap());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(box_cgroups(pid).is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(153), "{stderr}");
    assert_eq!(std::fs::metadata(out.path()).unwrap().len(), 1 << 20);
    assert!(
        stderr.contains(
            "the kernel stopped the VMM (SIGXFSZ): it wrote past its file size limit, 1 MiB"
        ),
        "{stderr}"
    );
}

/// A VMM that crashes under its filter says it crashed, where, and exits as a
/// process the fault killed (139, 128 + SIGSEGV). (Without the VMM's own fault
/// handler, the standard library's would reset SIGSEGV with rt_sigaction, which the
/// allow-list traps: every crash read "stopped the VMM at rt_sigaction", exit 159,
/// a refused call.)
#[test]
fn a_crash_is_named_as_a_crash() {
    needs!(root, kvm);
    for breaks in [&[][..], &["--break", "seccomp"]] {
        let mut args = vec!["--attack", "crash"];
        args.extend(breaks);
        let run = run_jail(&args);
        assert_one_line_error(
            &run,
            139,
            "the VMM crashed: SIGSEGV at address 0x0, instruction 0x",
        );
        assert!(run.stdout.contains("guest exit code: 0"), "{}", run.stdout);
    }
}

/// The serial of the user keyring of uid 0, as this test (root, on the host) has it.
fn host_roots_keyring() -> i64 {
    // SAFETY: KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_USER_KEYRING (-4) takes integers.
    let serial = unsafe { libc::syscall(libc::SYS_keyctl, 0, -4, 1) };
    assert!(serial > 0, "keyctl: {}", std::io::Error::last_os_error());
    serial
}

/// A guest that never exits is stopped by the watchdog, under the filter: its
/// SIGALRM handler returns through rt_sigreturn, which is why that call is on the
/// list, and KVM_RUN's EINTR ends the run with one line.
#[test]
fn the_watchdog_works_under_the_filter() {
    needs!(root, kvm);
    let run = run_jail(&["--spin", "100000"]);
    assert_one_line_error(&run, 125, "the guest ran for 5 s without an exit");
    assert!(run.stdout.contains(FILTER_IN), "{}", run.stdout);
}

/// A chatty guest: 20,000 prints, 20,001 exits, about 100 KB of text. The VMM keeps
/// the first few exits of each run and the first 4 KiB of text, and counts the
/// rest, so its heap does not grow with its guest; and what glibc's allocator calls
/// to grow a large block, mremap, is on the list. (It was not: the 8,193rd exit grew
/// the trace's vector by mremap, and the filter ended a well-behaved VMM as if it
/// had been taken over.)
#[test]
fn a_chatty_guest_runs_to_its_end() {
    needs!(root, kvm);
    let run = run_jail(&["--lines", "20000"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    for wanted in [
        "        ... 19998 more IO out port 0x500\n",
        "exits: 20001 x IO out port 0x500, 1 x IO out port 0x501\n",
        "guest said 95925 bytes more, not kept (the VMM keeps its first 4 KiB)\n",
        "guest exit code: 0\n",
    ] {
        assert!(
            run.stdout.contains(wanted),
            "no {wanted:?} in {}",
            run.stdout
        );
    }
    assert!(run.stdout.len() < 16 << 10, "{} bytes", run.stdout.len());
}

/// `--show-filter`: the list, the filter asked about calls and counted over every
/// call by running it as the kernel would, step 05's counted the same way, and the
/// program. Needs neither root nor KVM.
///
/// What the filters do is checked, over every call and a dozen sets of arguments,
/// not how the BPF is written: a correct allow-list written another way (a load
/// before each comparison, one shared ALLOW) passes. The reference's program, which
/// the book shows, is held to its own snapshot.
#[test]
fn show_filter() {
    let run = run(&step(STEP), &["--show-filter"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let (behaviour, program) = run
        .stdout
        .split_once("\nThe filter, ")
        .unwrap_or_else(|| panic!("no listing of the program in:\n{}", run.stdout));
    snapshot("show_filter", &format!("{behaviour}\n"), vec![]);
    assert!(
        program.contains(" instructions (the vCPU on fd 5, as in the jail):\n"),
        "{program}"
    );
    if !checking_chapters() {
        snapshot("filter_program", &format!("The filter, {program}"), vec![]);
    }
}

/// A runtime killed with SIGKILL while its guest runs: init dies with it
/// (PR_SET_PDEATHSIG), the VMM with the PID namespace, the box's cgroups are empty,
/// and the next run removes them. Nothing was ever mounted on the host.
#[test]
fn a_killed_runtime_leaves_nothing() {
    needs!(root, kvm);
    // A spinner held to 1% of a CPU: it runs well past the kill on any machine.
    let mut box_ = Running::start(command(
        &step(STEP),
        &["--spin", "100", "--cpus", "0.01"],
        None,
    ));
    box_.wait_for_line(FILTER_IN);
    let runtime = box_.child.id();
    let made = box_cgroups(runtime);
    assert!(!made.is_empty(), "no cgroup isolab-{runtime}");
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137);
    let deadline = Instant::now() + Duration::from_secs(2);
    for dir in &made {
        loop {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes of the box outlived it in {}: {procs}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let next = run_jail(&[]);
    assert_eq!(next.code, Some(0), "stderr: {}", next.stderr);
    let left: Vec<_> = made.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "the next run did not remove {left:?}");
}

/// Every bad input is one line, and leaves nothing behind (run_jail checks).
#[test]
fn bad_inputs_are_one_line() {
    for (args, code, says) in [
        (
            &["--touch", "2g"][..],
            2,
            "2g is more than the guest can reach: its page tables map its first GiB",
        ),
        (&["--touch", "0"], 2, "a guest that touches 0 bytes"),
        (&["--spin", "0"], 2, "0 is not in 1..=100000"),
        (&["--lines", "0"], 2, "0 is not in 1..=1000000"),
        (
            &["--lines", "3", "--spin", "1"],
            2,
            "the argument '--lines <N>' cannot be used with '--spin <N>'",
        ),
        (
            &["--memory", "1m"],
            2,
            "1m is too little memory for a box to start",
        ),
        (&["--attack", "everything"], 2, "invalid value 'everything'"),
    ] {
        let run = run_jail(args);
        assert_one_line_error(&run, code, says);
    }
    if missing("root").is_some() || missing("kvm").is_some() {
        return;
    }
    for (args, says) in [
        (
            &["--device", "/nonexistent/kvm"][..],
            "cannot open /nonexistent/kvm: no such device: enable virtualization",
        ),
        (&["--device", "/dev/null"], "not a KVM device?"),
        (
            &["--pids-limit", "1"],
            "--pids-limit 1 leaves no room for the VMM",
        ),
    ] {
        let run = run_jail(args);
        assert_one_line_error(&run, 125, says);
    }
    // KVM starts a thread for the VM; where it is a thread of the VMM (recent
    // kernels), it counts in the box's pids limit, and with room for init and the
    // VMM only, the VM cannot run. Where it is a kernel thread, the VM runs.
    let run = run_jail(&["--pids-limit", "2"]);
    if run.code == Some(0) {
        note("--pids-limit 2 runs the VM here: KVM's thread is not counted in the box");
    } else {
        assert_one_line_error(
            &run,
            125,
            "--pids-limit 2 is too few for the VM: KVM starts a thread of its own",
        );
    }
}

/// A host without the cpu controller (here: its hierarchy unmounted, or hidden from
/// the v2 tree, in a mount namespace of the test's own): `--cpus` is one line, and
/// nothing is built.
#[test]
fn a_missing_cgroup_controller_is_one_line() {
    needs!(root, kvm);
    use std::os::unix::process::CommandExt;
    let layout = isolab::container::cgroup::Layout::detect().unwrap();
    let hide = hide_controller(&layout, "cpu");
    let mut cmd = command(&step(STEP), &["--cpus", "0.5"], None);
    // SAFETY: between fork and exec the closure makes only system calls (unshare,
    // mount, umount2), on paths made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            use nix::mount::{MntFlags, MsFlags, mount, umount2};
            let none = None::<&str>;
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
            match &hide {
                Hide::Unmount(point) => umount2(point, MntFlags::MNT_DETACH)?,
                Hide::Cover { file, with } => {
                    mount(Some(with.path()), file, none, MsFlags::MS_BIND, none)?
                }
            }
            Ok(())
        });
    }
    let run = run_with(cmd);
    assert_one_line_error(
        &run,
        125,
        "this host has no cpu controller for the box's cgroup",
    );
    assert!(box_cgroups(run.pid).is_empty());
}

/// How to make `controller` disappear for one child: unmount its v1 hierarchy, or
/// cover the v2 `cgroup.controllers` the runtime reads with a list without it.
enum Hide {
    Unmount(PathBuf),
    Cover {
        file: PathBuf,
        with: tempfile::NamedTempFile,
    },
}

fn hide_controller(layout: &isolab::container::cgroup::Layout, controller: &str) -> Hide {
    if let Some(h) = layout
        .v1
        .iter()
        .find(|h| h.controllers.iter().any(|c| c == controller))
    {
        return Hide::Unmount(h.mount_point.clone());
    }
    let v2 = layout
        .for_box()
        .unwrap()
        .into_iter()
        .find(|h| h.has(controller))
        .expect("a controller to hide");
    let file = v2.own_dir.join("cgroup.controllers");
    let listed = std::fs::read_to_string(&file).unwrap();
    let without: Vec<&str> = listed
        .split_whitespace()
        .filter(|c| *c != controller)
        .collect();
    let with = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(with.path(), without.join(" ") + "\n").unwrap();
    Hide::Cover { file, with }
}
