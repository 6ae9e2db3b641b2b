//! Step 05, hardening: each restriction is proven by the probe really trying the
//! forbidden thing. Every action refused in step 05 is allowed (in the safe sense:
//! it got past the kernel's permission check) in step 04, so a restriction that
//! never took effect would fail these tests.

mod common;
use common::*;
use isolab::workshop::report::Report;

const STEP: &str = "05-hardening";

/// The whole report: reduced capabilities that stay reduced after exec,
/// no_new_privs, a seccomp filter, every forbidden action refused, only `lo`.
#[test]
fn report() {
    needs!(root);
    let lab = Lab::new();
    let (canary, key) = (lab.canary_arg(), lab.key_arg());
    let probe = ["/bin/probe", "--canary", &canary, "--key-serial", &key];
    let cmd = command(
        &step(STEP),
        &box_args(&lab, &[], &probe),
        Some(lab.canary.dir()),
    );
    let run = run_with(cmd);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_no_process_from(&lab.rootfs());
    snapshot("report", &run.stdout, vec![]);
}

/// The attempts that step 05 must refuse and step 04 (same box, no hardening) lets
/// through: the proof that each restriction is what refuses it.
#[test]
fn each_restriction_takes_effect() {
    needs!(root);
    let lab = Lab::new();
    let key = lab.key_arg();
    let probe = ["/bin/probe", "--key-serial", &key];
    let hardened = Report::parse(&run(&step(STEP), &box_args(&lab, &[], &probe)).stdout);
    let without = Report::parse(
        &run(
            &target_dir().join("04-cgroups-solution"),
            &box_args(&lab, &[], &probe),
        )
        .stdout,
    );
    for key in [
        Key::MountAFilesystem,
        Key::Reboot,
        Key::SetTheClock,
        Key::NewUserNamespace,
        Key::PtraceMyParent,
        Key::TurnOffAslr,
        Key::IoUring,
        Key::PlantASetuidFile,
        Key::PlantADeviceNode,
    ] {
        assert_eq!(&hardened[key], "refused (EPERM)", "{key:?} in step 05");
        assert!(
            !without[key].starts_with("refused"),
            "{key:?} in step 04, without the restrictions: {}",
            &without[key]
        );
    }
    // A kernel built without modules has no call to refuse: step 04 says so.
    assert_eq!(&hardened[Key::LoadAModule], "refused (EPERM)");
    assert!(!without[Key::LoadAModule].starts_with("refused"));
    assert_eq!(&hardened[Key::VsockSocket], "refused (EPERM)");
    assert!(
        without[Key::VsockSocket].starts_with("allowed")
            || without[Key::VsockSocket].starts_with("impossible"),
        "{}",
        &without[Key::VsockSocket]
    );
    // AF_ALG takes a key by its serial number without keyctl (Linux 6.2): refused by
    // its family, as vsock is. Step 04 leaves it to the kernel (none here: EAFNOSUPPORT).
    let alg = |binary: &std::path::Path| {
        let probe = ["/bin/probe", "--key-serial", &key, "alg-key"];
        run(binary, &box_args(&lab, &[], &probe)).stdout
    };
    assert_eq!(
        alg(&step(STEP)),
        "AF_ALG key by serial: refused (socket(AF_ALG): EPERM)\n"
    );
    let open = alg(&target_dir().join("04-cgroups-solution"));
    assert!(
        open.starts_with("AF_ALG key by serial: ") && !open.contains("EPERM"),
        "{open}"
    );
    // The planted setuid file is refused before no_new_privs could matter.
    assert_eq!(
        &hardened[Key::SetuidRootBinary],
        "not tried (could not make a setuid copy: EPERM)"
    );
    assert_eq!(&without[Key::SetuidRootBinary], "grants root (euid 0)");
    assert_eq!(
        &hardened[Key::NoNewPrivs],
        "on (exec can never grant more privileges)"
    );
    assert_eq!(&without[Key::NoNewPrivs], "off");
    assert_eq!(&hardened[Key::Seccomp], "filter");
    assert_eq!(&without[Key::Seccomp], "off");
    assert_eq!(
        &hardened[Key::Capabilities],
        "8 of 41: chown dac_override fowner kill setgid setuid setpcap net_bind_service"
    );
    assert!(
        without[Key::Capabilities].starts_with("all "),
        "{}",
        &without[Key::Capabilities]
    );
    // chroot is refused too (no CAP_SYS_CHROOT, and the filter), so the escape cannot start.
    assert_eq!(&hardened[Key::Network], "lo (up)");
    assert_eq!(&hardened[Key::OutsideNetwork], "unreachable (no route)");
    // The host's kernel settings and tables, through /proc.
    assert_eq!(
        &hardened[Key::ChangeAKernelSetting],
        "refused (EROFS: a read-only file system)"
    );
    assert!(
        without[Key::ChangeAKernelSetting].starts_with("WRITABLE: kernel.core_pattern"),
        "{}",
        &without[Key::ChangeAKernelSetting]
    );
    assert_eq!(
        &hardened[Key::ReadTheKernelsTables],
        "masked (empty or refused)"
    );
    assert!(
        without[Key::ReadTheKernelsTables].starts_with("READABLE"),
        "{}",
        &without[Key::ReadTheKernelsTables]
    );
    // A key of root's that lets its user read it, in a keyring no box holds: the
    // box's root is that user, and reads it by its serial number alone, unless the
    // filter refuses keyctl.
    assert_eq!(&hardened[Key::CanaryByKeySerial], "refused (EPERM)");
    assert!(
        without[Key::CanaryByKeySerial].starts_with("READABLE"),
        "{}",
        &without[Key::CanaryByKeySerial]
    );
    // The caller's environment stays outside.
    assert_eq!(
        &hardened[Key::CanaryViaEnvironment],
        "not passed in (my environment: HOME PATH)"
    );
    assert!(
        without[Key::CanaryViaEnvironment].starts_with("READABLE"),
        "{}",
        &without[Key::CanaryViaEnvironment]
    );
}

/// The caller's terminal. Started from a terminal, step 04's box holds it on its fds
/// 0-2, as its controlling terminal: it may type into it (TIOCSTI) and open it again
/// as /dev/tty. Step 05's box gets pipes that the runtime relays, and a session of its
/// own, so it has no terminal at all. With the caller's terminal handed in anyway
/// (`--break terminal`), the filter still refuses TIOCSTI; without both walls, the box
/// types into the caller's shell.
#[test]
fn the_box_cannot_reach_the_callers_terminal() {
    needs!(root);
    let lab = Lab::new();
    let in_terminal = |bin: &std::path::Path, flags: &[&str], probe: &[&str]| {
        let run = run_in_terminal(bin, &box_args(&lab, flags, probe), &[]);
        assert_no_process_from(&lab.rootfs());
        run
    };
    let typing = |bin: &std::path::Path, flags: &[&str]| {
        let run = in_terminal(bin, flags, &["/bin/probe"]);
        assert_eq!(run.code, Some(0), "{}", run.stdout);
        Report::parse(&run.stdout)[Key::TypeIntoMyTerminal].to_string()
    };
    let step04 = target_dir().join("04-cgroups-solution");
    if legacy_tiocsti() {
        assert_eq!(
            typing(&step04, &[]),
            "allowed (fd 0 is my controlling terminal: what I push there is typed into it)"
        );
    } else {
        assert_eq!(
            typing(&step04, &[]),
            "refused (EIO: this kernel's dev.tty.legacy_tiocsti is off)"
        );
    }
    let reopen = |bin: &std::path::Path, flags: &[&str]| {
        in_terminal(bin, flags, &["/bin/probe", "open", "/dev/tty"])
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(reopen(&step04, &[]), "opened /dev/tty");
    // Step 05: pipes, so no terminal to type into, and none to reopen.
    assert_eq!(typing(&step(STEP), &[]), "no terminal on fds 0-2");
    assert_eq!(
        typing(&step(STEP), &["--break", "seccomp"]),
        "no terminal on fds 0-2"
    );
    assert_eq!(reopen(&step(STEP), &[]), "not opened: refused (ENXIO)");
    // The caller's terminal handed in: the filter alone still refuses TIOCSTI.
    assert_eq!(
        typing(&step(STEP), &["--break", "terminal"]),
        "refused (EPERM)"
    );
    if legacy_tiocsti() {
        assert!(
            typing(&step(STEP), &["--break", "terminal", "--break", "seccomp"])
                .starts_with("allowed"),
        );
        // With --tty the terminal it could type into is the box's own.
        assert_eq!(
            typing(&step(STEP), &["--tty", "--break", "seccomp"]),
            "allowed (fd 0 is my controlling terminal: what I push there is typed into it)"
        );
    }
    assert_eq!(typing(&step(STEP), &["--tty"]), "refused (EPERM)");
}

/// Through the relay's pipes a box still reads what is typed and writes what it
/// prints, as `docker run -i` does.
#[test]
fn from_a_terminal_the_box_talks_through_pipes() {
    needs!(root);
    let lab = Lab::new();
    if !has_busybox(&lab) {
        return;
    }
    let script = "test -t 0 || echo not-a-terminal; read line; echo got-$line; echo to-stderr >&2";
    let run = run_in_terminal(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/sh", "-c", script]),
        &[("not-a-terminal", "hello\n")],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(run.stdout.contains("got-hello"), "{}", run.stdout);
    assert!(run.stdout.contains("to-stderr"), "{}", run.stdout);
    assert_no_process_from(&lab.rootfs());
}

/// A box that never reads its stdin holds nothing up. The caller pipes endless input
/// in (as `yes |` does) and the box writes more than a pipe holds, reading none of
/// it: its output still reaches the caller, and the run ends with the box. (A relay
/// that blocks writing to the box's full stdin pipe stops reading the box's output,
/// and the box blocks writing it: both wait for ever.)
#[test]
fn a_box_that_does_not_read_its_stdin_holds_nothing_up() {
    needs!(root);
    let lab = Lab::new();
    if !has_busybox(&lab) {
        return;
    }
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let mut writer = std::fs::File::from(writer);
        let mut fed = 0;
        // Until nobody holds the other end: the runtime and its box have ended.
        while writer.write_all(&[b'y'; 4096]).is_ok() {
            fed += 4096;
        }
        fed
    });
    let script = "head -c 200000 /dev/zero | tr '\\0' x; echo; echo done";
    let mut cmd = command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/sh", "-c", script]),
        None,
    );
    cmd.stdin(reader);
    // Its stdout and stderr a terminal, so the box gets pipes and a relay.
    let run = run_command_on_terminal(cmd, &[], &[1, 2]);
    let end: String = run.stdout.chars().rev().take(100).collect();
    let end: String = end.chars().rev().collect();
    assert_eq!(run.code, Some(0), "{end}");
    assert_eq!(run.stdout.matches('x').count(), 200_000, "{end}");
    assert!(run.stdout.ends_with("x\ndone\n"), "{end}");
    assert!(
        feeder.join().unwrap() >= 64 << 10,
        "the box's stdin was never full"
    );
    assert_no_process_from(&lab.rootfs());
}

/// What the box writes reaches the caller's terminal as text. A terminal acts on the
/// escape sequences in what it shows: OSC 52 sets the clipboard (here to "hi"), OSC 0
/// the title. With pipes, where the caller's stdout or stderr is a terminal, the
/// relay escapes them, and carriage returns and bytes that are no character with
/// them; where it is a file, the file gets every byte as the box wrote it. Given the
/// caller's terminal itself (`--break terminal`), or a terminal of its own (`--tty`),
/// the box drives the terminal.
#[test]
fn escape_sequences_reach_the_callers_terminal_as_text() {
    needs!(root);
    let lab = Lab::new();
    if !has_busybox(&lab) {
        return;
    }
    let script = "printf '\\033]52;c;aGk=\\007\\r\\n\\377\\n'; \
                  printf '\\033]0;a title\\007\\n' >&2";
    let written: &[u8] = b"\x1b]52;c;aGk=\x07\r\n\xff\n";
    let in_terminal = |flags: &[&str]| {
        let run = run_in_terminal(
            &step(STEP),
            &box_args(&lab, flags, &["/bin/sh", "-c", script]),
            &[],
        );
        assert_eq!(run.code, Some(0), "{}", run.stdout);
        run.stdout
    };
    let shown = in_terminal(&[]);
    assert!(
        shown.contains("\\u{1b}]52;c;aGk=\\u{7}\\r\n\\xff\n"),
        "{shown:?}"
    );
    assert!(shown.contains("\\u{1b}]0;a title\\u{7}\n"), "{shown:?}");
    assert!(!shown.contains(['\x1b', '\x07', '\u{fffd}']), "{shown:?}");
    // Its stdout a file, its stderr the terminal: each is treated as what it is.
    let mut file = tempfile::tempfile().expect("a temporary file");
    let mut cmd = command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/sh", "-c", script]),
        None,
    );
    cmd.stdout(file.try_clone().expect("dup"));
    let run = run_command_on_terminal(cmd, &[], &[0, 2]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.stdout, "\\u{1b}]0;a title\\u{7}\n");
    use std::io::{Read, Seek};
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .expect("reading the file");
    assert_eq!(
        bytes, written,
        "the file holds other bytes than the box wrote"
    );
    // No relay, or a terminal the caller asked for: the sequences reach the terminal.
    for flags in [&["--break", "terminal"][..], &["--tty"]] {
        let shown = in_terminal(flags);
        assert!(shown.contains("\x1b]52;c;aGk=\x07"), "{flags:?}: {shown:?}");
        assert!(shown.contains("\x1b]0;a title\x07"), "{flags:?}: {shown:?}");
    }
    assert_no_process_from(&lab.rootfs());
}

/// Does this kernel let TIOCSTI through at all (dev.tty.legacy_tiocsti, Linux 6.2+)?
fn legacy_tiocsti() -> bool {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").map_or(true, |v| v.trim() != "0")
}

/// With `--tty` the box gets a terminal of its own: the probe's controlling terminal
/// is the box's pseudo-terminal (TIOCSTI is still refused by the filter, and with the
/// filter broken it reaches only that terminal), and its output still reaches ours.
#[test]
fn with_tty_the_box_has_a_terminal_of_its_own() {
    needs!(root);
    let lab = Lab::new();
    let shown = run_in_terminal(
        &step(STEP),
        &box_args(&lab, &["--tty"], &["/bin/probe"]),
        &[],
    );
    assert_eq!(shown.code, Some(0), "{}", shown.stdout);
    let report = Report::parse(&shown.stdout);
    assert_eq!(&report[Key::TypeIntoMyTerminal], "refused (EPERM)");
    assert_eq!(&report[Key::Pid], "2", "{}", shown.stdout);
    // Without a terminal around it (stdin /dev/null, stdout a pipe) --tty works too.
    let piped = run(
        &step(STEP),
        &box_args(&lab, &["--tty"], &["/bin/probe", "exit", "7"]),
    );
    assert_eq!(piped.code, Some(7), "{}", piped.stderr);
    assert_no_process_from(&lab.rootfs());
}

/// An interactive shell: without a terminal of its own it has no job control; with
/// `--tty` it has, as in `docker run -it`.
#[test]
fn an_interactive_shell_has_job_control_only_with_tty() {
    needs!(root);
    let lab = Lab::new();
    if !has_busybox(&lab) {
        return;
    }
    // Each line typed at the shell's prompt, as a person would.
    let typed = [
        ("# ", "sleep 30 &\n"),
        ("# ", "jobs\n"),
        ("# ", "kill %1\n"),
        // `tty` names no terminal (the box's /dev has no pts), yet stdin is one.
        ("# ", "tty; [ -t 0 ] && echo terminal-$((3*3))\n"),
        ("# ", "echo done-$((6*7))\n"),
        ("# ", "exit\n"),
    ];
    // Without --tty the shell reads a pipe: it runs commands, but has no job control.
    // (Only simple ones: busybox's shell takes a signal during a read of a pipe, such
    // as a background job's end, for the end of its input.)
    // A plain `/bin/sh` sees a pipe and is not interactive at all: no prompt, yet it
    // runs what is typed (chapter 05's "looks hung only because it says nothing").
    let quiet = run_in_terminal(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/sh"]),
        &[("", "echo quiet-$((6*7)); exit\n")],
    );
    assert!(quiet.stdout.contains("quiet-42"), "{}", quiet.stdout);
    assert!(!quiet.stdout.contains("# "), "no prompt: {}", quiet.stdout);
    let plain = run_in_terminal(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/sh", "-i"]),
        &[("# ", "echo plain-$((6*7))\n"), ("# ", "exit\n")],
    );
    assert!(
        plain.stdout.contains("job control turned off"),
        "{}",
        plain.stdout
    );
    assert!(plain.stdout.contains("plain-42"), "{}", plain.stdout);
    let with_tty = run_in_terminal(
        &step(STEP),
        &box_args(&lab, &["--tty"], &["/bin/sh", "-i"]),
        &typed,
    );
    assert_eq!(with_tty.code, Some(0), "{}", with_tty.stdout);
    assert!(
        !with_tty.stdout.contains("job control turned off"),
        "{}",
        with_tty.stdout
    );
    assert!(with_tty.stdout.contains("Running"), "{}", with_tty.stdout);
    assert!(with_tty.stdout.contains("done-42"), "{}", with_tty.stdout);
    assert!(with_tty.stdout.contains("not a tty"), "{}", with_tty.stdout);
    assert!(
        with_tty.stdout.contains("terminal-9"),
        "{}",
        with_tty.stdout
    );
    assert_no_process_from(&lab.rootfs());
}

/// What box root leaves in the rootfs is on the host. In step 04 it plants a
/// setuid-root copy of the probe, and an ordinary host user who runs it is root. In
/// step 05 the filter refuses the setuid bit, and the same user stays who they are.
#[test]
fn a_setuid_file_planted_in_the_box_gives_a_host_user_nothing() {
    needs!(root);
    let lab = Lab::new();
    let planted = lab.rootfs().join("tmp/planted");
    let plant = |bin: &std::path::Path| {
        let run = run(
            bin,
            &box_args(&lab, &[], &["/bin/probe", "plant-setuid", "/tmp/planted"]),
        );
        assert_no_process_from(&lab.rootfs());
        run
    };
    let open = plant(&target_dir().join("04-cgroups-solution"));
    assert_eq!(open.code, Some(0), "{}{}", open.stdout, open.stderr);
    assert_eq!(
        run_as_nobody(&planted),
        "0",
        "step 04: the planted file runs as root"
    );
    std::fs::remove_file(&planted).expect("rm planted");
    let closed = plant(&step(STEP));
    assert_eq!(
        closed.stdout.trim(),
        "not planted: refused (EPERM)",
        "{}",
        closed.stderr
    );
    // The copy is there, but without its setuid bit: it runs as whoever runs it.
    assert_eq!(run_as_nobody(&planted), "65534");
}

/// The other way to a setuid-root program of the box's own: rewrite one that is
/// already there (a distribution's su, passwd or mount). Writing to a file clears its
/// setuid bit unless the writer holds CAP_FSETID; step 04's box does, step 05's no
/// longer.
#[test]
fn a_setuid_file_rewritten_in_the_box_loses_its_bit() {
    needs!(root);
    let lab = Lab::new();
    let su = lab.rootfs().join("tmp/su");
    let rewrite = |bin: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::copy(probe(), &su).expect("cp");
        std::fs::set_permissions(&su, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        // The probe copies itself over /tmp/su: an open(O_TRUNC) and writes. Making the
        // copy setuid again is refused in step 05, but what matters is the old bit.
        let _ = run(
            bin,
            &box_args(&lab, &[], &["/bin/probe", "plant-setuid", "/tmp/su"]),
        );
        assert_no_process_from(&lab.rootfs());
        run_as_nobody(&su)
    };
    assert_eq!(rewrite(&target_dir().join("04-cgroups-solution")), "0");
    assert_eq!(rewrite(&step(STEP)), "65534");
}

/// A device node the host (or an image) left in the rootfs opens in step 04's box;
/// step 05 mounts the whole rootfs nodev. (The host's /dev/null numbers, 1:3: a
/// harmless node that opens anywhere devices are allowed.)
#[test]
fn a_device_node_left_in_the_rootfs_opens_nothing() {
    needs!(root);
    let lab = Lab::new();
    let node = lab.rootfs().join("tmp/node");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    let open = |bin: &std::path::Path, flags: &[&str]| {
        let run = run(
            bin,
            &box_args(&lab, flags, &["/bin/probe", "open", "/tmp/node"]),
        );
        run.stdout.trim().to_string()
    };
    assert_eq!(
        open(&target_dir().join("04-cgroups-solution"), &[]),
        "opened /tmp/node"
    );
    assert_eq!(open(&step(STEP), &[]), "not opened: refused (EACCES)");
    assert_eq!(
        open(&step(STEP), &["--break", "root-devices"]),
        "opened /tmp/node"
    );
    // The box's own /dev still works.
    assert_eq!(
        run(
            &step(STEP),
            &box_args(&lab, &[], &["/bin/probe", "open", "/dev/null"])
        )
        .stdout
        .trim(),
        "opened /dev/null"
    );
}

/// `--read-only` covers every mount under the root, not only "/": a filesystem the
/// host has mounted inside the rootfs is read-only in the box too. The host mount is
/// made in a mount namespace of its own (util-linux's unshare), so the host's table
/// never changes.
#[test]
fn read_only_covers_the_mounts_inside_the_rootfs() {
    needs!(root);
    let lab = Lab::new();
    let data = lab.rootfs().join("data");
    std::fs::create_dir(&data).expect("mkdir data");
    let script = format!(
        "mount -t tmpfs -o size=64k isolab-test {data} && touch {data}/file && exec \"$@\"",
        data = data.display()
    );
    let open = |flags: &[&str]| {
        let mut args = vec![
            "--mount".to_string(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            script.clone(),
            "sh".into(),
            step(STEP).display().to_string(),
        ];
        args.extend(box_args(&lab, flags, &["/bin/probe", "open", "/data/file"]));
        let run = run(std::path::Path::new("/usr/bin/unshare"), &args);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        run.stdout.trim().to_string()
    };
    assert_eq!(
        open(&["--read-only"]),
        "not opened: refused (EROFS: a read-only file system)"
    );
    // Step 03's remount of "/" alone, which `--break root-devices` falls back to,
    // leaves the mount inside writable.
    assert_eq!(
        open(&["--read-only", "--break", "root-devices"]),
        "opened /data/file"
    );
}

/// Run `file euid` as user 65534 and return what it printed. The file is opened here,
/// as root, and run through /proc/self/fd, so the test's own private directories do
/// not stand in the way: only the file's own mode counts, as for a host user who can
/// reach it.
fn run_as_nobody(file: &std::path::Path) -> String {
    use std::os::unix::process::CommandExt;
    let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: open(2) with a valid C string; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH) };
    assert!(
        fd >= 0,
        "open({}): {}",
        file.display(),
        std::io::Error::last_os_error()
    );
    let out = std::process::Command::new(format!("/proc/self/fd/{fd}"))
        .arg("euid")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("running the planted file as user 65534");
    // SAFETY: `fd` is the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Step 04's box could mount its cgroups again and lift its limits
/// (tests/cgroups.rs); this one may not mount, and its cgroup files are read-only.
#[test]
fn the_box_cannot_raise_its_own_limits() {
    needs!(root);
    let lab = Lab::new();
    let run = run(
        &step(STEP),
        &box_args(
            &lab,
            &["--memory", "64m", "--pids-limit", "16"],
            &["/bin/probe", "raise-limits"],
        ),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let said = Report::parse(&run.stdout);
    assert_eq!(&said[Raise::MountCgroups], "refused (EPERM)");
    assert_eq!(
        &said[Key::MemoryLimit],
        "64 MiB (unchanged: EROFS)",
        "{}",
        run.stdout
    );
    assert_eq!(
        &said[Key::PidsLimit],
        "16 (unchanged: EROFS)",
        "{}",
        run.stdout
    );
}

/// The environment is built from nothing, plus `--env`; a bad `--env` is one line.
#[test]
fn the_environment_is_the_boxs_own() {
    needs!(root);
    let lab = Lab::new();
    let given = run_box_report(&lab, &["--env", "LANG=C.UTF-8", "-e", "EMPTY="]);
    assert_eq!(
        &given[Key::CanaryViaEnvironment],
        "not passed in (my environment: EMPTY HOME LANG PATH)"
    );
    // The caller's TERM is passed on whenever it is set, terminal or not.
    let mut with_term = command(&step(STEP), &box_args(&lab, &[], &["/bin/probe"]), None);
    with_term.env("TERM", "dumb");
    let with_term = run_with(with_term);
    assert_eq!(
        &Report::parse(&with_term.stdout)[Key::CanaryViaEnvironment],
        "not passed in (my environment: HOME PATH TERM)"
    );
    let broken = run_box_report(&lab, &["--break", "environment"]);
    assert!(broken[Key::CanaryViaEnvironment].starts_with("READABLE"));
    let bad = run(
        &step(STEP),
        &box_args(&lab, &["--env", "=x"], &["/bin/probe"]),
    );
    assert_one_line_error(&bad, 2, "=x is not NAME=VALUE");
}

/// The probe's report from the box, told the serial of the caller's key.
fn run_box_report(lab: &Lab, flags: &[&str]) -> Report {
    let key = lab.key_arg();
    let run = run(
        &step(STEP),
        &box_args(lab, flags, &["/bin/probe", "--key-serial", &key]),
    );
    assert_eq!(run.code, Some(0), "{flags:?}: {}", run.stderr);
    Report::parse(&run.stdout)
}

/// The filter refuses syscalls the probe does not try by itself: checked with
/// busybox's own tools inside the box (CI installs busybox-static).
#[test]
fn a_shell_in_the_box_is_refused_too() {
    needs!(root);
    let lab = Lab::new();
    if !has_busybox(&lab) {
        return;
    }
    let script = "mount -t tmpfs none /tmp 2>&1; unshare -r id 2>&1; hostname box2 2>&1; echo done";
    let run = run(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/sh", "-c", script]),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "want one line per command of `{script}`; the box printed:\n{}",
        run.stdout
    );
    assert!(
        lines[0].contains("Operation not permitted") || lines[0].contains("permission denied"),
        "mount: {}",
        lines[0]
    );
    assert!(
        lines[1].contains("Operation not permitted"),
        "unshare: {}",
        lines[1]
    );
    // sethostname needs CAP_SYS_ADMIN, which the box no longer has.
    assert!(
        lines[2].contains("Operation not permitted") || lines[2].contains("permission"),
        "hostname: {}",
        lines[2]
    );
    assert_eq!(lines[3], "done");
}

#[test]
fn a_killed_runtime_leaves_nothing() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(
            &lab,
            &["--pids-limit", "16"],
            &["/bin/probe", "wait-signal"],
        ),
        None,
    ));
    box_.wait_for_line("ready");
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137);
    assert_no_process_from(&lab.rootfs());
}

#[test]
fn the_hardened_box_still_runs_ordinary_work() {
    needs!(root);
    let lab = Lab::new();
    for (command, code) in [
        (&["/bin/probe", "exit", "3"][..], 3),
        (&["/bin/probe", "orphan"], 0),
        (&["/bin/probe", "kill-self", "TERM"], 143),
    ] {
        let run = run(&step(STEP), &box_args(&lab, &["--memory", "64m"], command));
        assert_eq!(run.code, Some(code), "{command:?}: {}", run.stderr);
    }
    let orphan = run(&step(STEP), &box_args(&lab, &[], &["/bin/probe", "orphan"]));
    assert!(
        orphan.stdout.contains("orphan reaped: yes"),
        "{}",
        orphan.stdout
    );
}

/// `--break R` leaves one restriction out: the lines only R was holding flip to
/// allowed, and what the other restrictions hold stays refused. This is what the
/// chapter's "break it" section runs, and it shows each restriction has an effect
/// of its own.
#[test]
fn breaking_one_restriction_opens_only_its_doors() {
    needs!(root);
    let lab = Lab::new();
    let report = |restriction: &str| run_box_report(&lab, &["--break", restriction]);
    // Capabilities: raising the priority needs CAP_SYS_NICE, and no filter refuses it;
    // nor does it refuse mknod, which only the capability held back.
    let r = report("capabilities");
    assert!(
        r[Key::Capabilities].starts_with("all "),
        "{}",
        &r[Key::Capabilities]
    );
    assert_eq!(&r[Key::RaiseMyPriority], "allowed");
    assert!(r[Key::PlantADeviceNode].starts_with("PLANTED"));
    assert_eq!(&r[Key::NewUserNamespace], "refused (EPERM)");
    assert_eq!(&r[Key::PlantASetuidFile], "refused (EPERM)");
    // no_new_privs: off, but the filter still refuses to make a setuid file, so there
    // is none to run. Both walls stand on this route: see the next case.
    let r = report("no-new-privs");
    assert_eq!(&r[Key::NoNewPrivs], "off");
    // The bounding set holds on its own: the probe, exec'd after the drop, did not
    // get root's capabilities back.
    assert_eq!(
        &r[Key::Capabilities],
        "8 of 41: chown dac_override fowner kill setgid setuid setpcap net_bind_service"
    );
    assert_eq!(
        &r[Key::SetuidRootBinary],
        "not tried (could not make a setuid copy: EPERM)"
    );
    assert_eq!(
        &r[Key::Seccomp],
        "filter",
        "the filter goes in before the capabilities go"
    );
    assert_eq!(&r[Key::RaiseMyPriority], "refused (EACCES)");
    let r = run_box_report(&lab, &["--break", "no-new-privs", "--break", "seccomp"]);
    assert_eq!(&r[Key::SetuidRootBinary], "grants root (euid 0)");
    // seccomp: namespaces, ptrace, io_uring, vsock, personalities and setuid bits need
    // no capability: only the filter refuses them.
    let r = report("seccomp");
    assert_eq!(&r[Key::Seccomp], "off");
    for key in [
        Key::NewUserNamespace,
        Key::PtraceMyParent,
        Key::TurnOffAslr,
        Key::IoUring,
    ] {
        assert_eq!(&r[key], "allowed", "{key:?}");
    }
    assert!(r[Key::VsockSocket].starts_with("allowed"));
    assert!(r[Key::PlantASetuidFile].starts_with("PLANTED"));
    // Keys: root's key, by its serial number; and the runtime's session keyring,
    // which the box still holds (step 05 joins no keyring of its own).
    assert!(
        r[Key::CanaryByKeySerial].starts_with("READABLE"),
        "{}",
        &r[Key::CanaryByKeySerial]
    );
    assert!(
        r[Key::CanaryViaSessionKeyring].starts_with("READABLE"),
        "{}",
        &r[Key::CanaryViaSessionKeyring]
    );
    assert_eq!(&r[Key::SetuidRootBinary], "refused (euid stays 65534)");
    assert_eq!(
        &r[Key::MountAFilesystem],
        "refused (EPERM)",
        "still no CAP_SYS_ADMIN"
    );
    // The network namespace: the host's interfaces are back.
    let r = report("network");
    assert_ne!(&r[Key::Network], "lo (up)");
    assert_eq!(&r[Key::MountAFilesystem], "refused (EPERM)");
    // /proc: the host's settings are writable and its tables readable again, although
    // the box holds only eight capabilities: a sysctl file checks its mode, and the
    // box's root is the host's uid 0.
    let r = report("proc");
    assert!(r[Key::ChangeAKernelSetting].starts_with("WRITABLE: kernel.core_pattern"));
    assert!(r[Key::ReadTheKernelsTables].starts_with("READABLE"));
    // The environment: the caller's comes in, canary and all.
    let r = report("environment");
    assert!(r[Key::CanaryViaEnvironment].starts_with("READABLE"));
    assert_eq!(
        &r[Key::ChangeAKernelSetting],
        "refused (EROFS: a read-only file system)"
    );
}

#[test]
fn an_unknown_restriction_is_one_line() {
    let lab = Lab::new();
    let run = run(
        &step(STEP),
        &box_args(&lab, &["--break", "everything"], &["/bin/probe"]),
    );
    assert_one_line_error(
        &run,
        2,
        "invalid value 'everything' for '--break <RESTRICTION>'",
    );
}
