//! # Step 09: the hypervisor in a jail
//!
//! Both walls at once, as Firecracker runs in production. A guest is isolated from
//! the host by the CPU, but the VMM that serves it is an ordinary process on the
//! host, and its device code is driven by the guest: a bug there (QEMU's floppy
//! controller, CVE-2015-3456, "VENOM") turns a guest escape into a host compromise.
//! So the VMM goes into a box of its own, built by step 05's runtime code:
//!
//! - PID, mount, UTS, IPC, network and cgroup namespaces;
//! - a root that holds nothing but `/dev/kvm`, the host's device bind-mounted into
//!   an empty tmpfs, as `docker run --device /dev/kvm` does;
//! - cgroup limits, which now limit the guest: its memory is the VMM's memory, and
//!   its vCPU runs on the VMM's thread;
//! - the user nobody, no capabilities, no_new_privs, /dev/null for stdin, pipes
//!   the runtime relays for stdout and stderr, a session keyring of its own, and
//!   the caller's environment wiped from the VMM's memory;
//! - then the VMM sets its VM up (step 08's long mode), and only then, before the
//!   guest's first instruction, installs an **allow-list** seccomp filter: the few
//!   calls its run loop makes, KVM_RUN on its own vCPU among them. Any other call
//!   is stopped with SIGSYS, and the VMM ends with one line that names it.
//!
//! `--touch SIZE` runs a guest that writes to every page of SIZE of its memory,
//! `--spin N` one that counts down from N million; `--attack WHAT` has the VMM,
//! once the guest ran, act as one the guest took over; `--break WALL` leaves a wall
//! out. `--show-filter` prints the filter and how it compares with step 05's.
//!
//! Syscalls: on top of steps 05 and 08, keyctl(2) with KEYCTL_JOIN_SESSION_KEYRING
//! (step 06's); mount(2) with MS_BIND of a device node;
//! setgroups(2), setresgid(2), setresuid(2) and prctl(2) with PR_SET_KEEPCAPS;
//! setrlimit(2) for RLIMIT_FSIZE and RLIMIT_CORE;
//! prctl(2) with PR_SET_SECCOMP and a filter whose default is SECCOMP_RET_TRAP;
//! sigaction(2) for SIGSYS with SA_SIGINFO, and for the faults (SIGSEGV, SIGBUS,
//! SIGILL, SIGFPE) on the alternate signal stack.
//!
//! ```text
//! $ sudo target/debug/09-jailed-vm --memory 64m --cpus 0.5
//! user: 65534 (nobody), in no group
//! root: dev
//! /dev: kvm
//! capabilities: none (and the bounding set is empty)
//! seccomp: allow-list of 10 system calls (of 382), 4 of them only with certain ...
//! guest said: Hello from the jail!
//! $ sudo target/debug/09-jailed-vm --attack open-host-file
//! 09-jailed-vm: error: the seccomp filter stopped the VMM at openat (system ...
//! ```

// Your copy of step 09. Replace each todo!() with your code, then run
// `cargo run -- check 9`. (Generated from solutions/09-jailed-vm.rs:
// `cargo run -- reset 9` brings this version back.)

use isolab::cli::{LimitArgs, parse_size};
use isolab::container::cgroup::Usage;
use isolab::container::{caps, seccomp, sigsys, syscalls};
use isolab::prelude::*;
use isolab::run::Lifeline;
use isolab::vm::{Exit, GuestMemory, RunArea, Trace};
use isolab::workshop::report::{Jail, line};
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::SigSet;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

// The finished steps this one builds on: step 05's own file, and through it 00-04's
// (the box), reached through step 06's (a session keyring of the box's own), and
// step 08's, and through it 07's (the VMM).
#[path = "../solutions/06-user-namespace.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod user_namespace;
pub use hardening::{cgroups, chroot, mount_namespace, namespaces, process};
pub use user_namespace::hardening;
#[path = "../solutions/08-kvm-long-mode.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod kvm_long_mode;
use cgroups::BoxCgroups;
use kvm_long_mode::Hypercall;
pub use kvm_long_mode::kvm_real_mode;

// What the VMM sees and tries from inside its jail, in a file of its own.
#[path = "../solutions/09-jailed-vm/inside.rs"]
mod inside;
use inside::Attack;

/// Step 09: run step 08's kind of guest with its VMM jailed in a box, as
/// Firecracker's jailer does.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    hostname: HostnameArg,
    #[command(flatten)]
    limits: LimitArgs,
    /// When the box ends, print what it used: peak memory, OOM kills, CPU time,
    /// throttling (on stderr)
    #[arg(long)]
    stats: bool,
    /// Run a guest that writes one byte to every page of SIZE of its memory (at
    /// most 1022m: its page tables map its first GiB)
    #[arg(long, value_name = "SIZE", value_parser = touch_size, conflicts_with = "spin")]
    touch: Option<u64>,
    /// Run a guest that counts down from N million, a fixed amount of work
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000), conflicts_with = "lines")]
    spin: Option<u64>,
    /// Run a guest that prints a short line N times, one exit each: a chatty guest,
    /// of which the VMM keeps a bounded part
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000), conflicts_with = "touch")]
    lines: Option<u64>,
    /// Once the guest ran, act as a VMM the guest has taken over, and try this
    #[arg(long, value_name = "WHAT", value_enum)]
    attack: Option<Attack>,
    /// Leave one wall out, to see what it was holding back (repeatable)
    #[arg(long = "break", value_name = "WALL", value_enum)]
    breaks: Vec<Wall>,
    /// Print the allow-list, the filter it becomes, and how many system calls it
    /// lets through against step 05's deny-list, and exit
    #[arg(long)]
    show_filter: bool,
    /// The host's KVM device (for machines that put it elsewhere, and for tests)
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm", hide = true)]
    device: PathBuf,
}

/// The walls of this step, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Wall {
    /// no seccomp filter at all, neither the allow-list nor step 05's deny-list
    /// under it: the VMM may make any system call
    Seccomp,
    /// no allow-list: only step 05's deny-list, under it, holds the VMM, as it
    /// would if the allow-list let too much through
    AllowList,
    /// keep the host's root: no empty tmpfs with only /dev/kvm in it
    Root,
    /// keep the caller's environment in the VMM's memory
    Environment,
    /// keep uid 0: root, without capabilities, instead of nobody
    User,
    /// give the VMM the caller's stdout and stderr (a terminal, say), with no relay
    /// between
    Terminal,
    /// keep the caller's session keyring: the VMM may read the keys in it
    Keyring,
}

/// The guest's program, and what the host hands it in rdi and rsi.
#[derive(Clone, Copy, Debug)]
enum Guest {
    Hello,
    Touch { bytes: u64 },
    Spin { millions: u64 },
    Lines { count: u64 },
}

impl Guest {
    /// rdi: which program; rsi: its argument.
    fn registers(self) -> (u64, u64) {
        match self {
            Guest::Hello => (0, 0),
            Guest::Touch { bytes } => (1, bytes),
            Guest::Spin { millions } => (2, millions * 1_000_000),
            Guest::Lines { count } => (3, count),
        }
    }

    /// Step 08's 2 MiB (tables, code, stack), and after it what the guest touches.
    fn memory_size(self) -> usize {
        let touched = match self {
            Guest::Touch { bytes } => bytes as usize,
            _ => 0,
        };
        kvm_long_mode::MEMORY_SIZE + touched
    }
}

/// `--touch`: a size, in whole pages, that fits below 1 GiB with step 08's 2 MiB.
fn touch_size(text: &str) -> std::result::Result<u64, String> {
    let bytes = parse_size(text)?;
    match bytes {
        0 => Err("a guest that touches 0 bytes: give a size such as 64m".into()),
        b if b > (1022 << 20) => Err(format!(
            "{text} is more than the guest can reach: its page tables map its first GiB, \
             and 2 MiB of it hold its tables, code and stack: give at most 1022m"
        )),
        b => Ok(b.div_ceil(4096) * 4096),
    }
}

/// What the runtime builds the jail from.
struct JailSpec<'a> {
    hostname: &'a str,
    device: &'a Path,
    limits: &'a LimitArgs,
    guest: Guest,
    attack: Option<Attack>,
    breaks: &'a [Wall],
}

impl JailSpec<'_> {
    fn keeps(&self, wall: Wall) -> bool {
        !self.breaks.contains(&wall)
    }
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        if args.show_filter {
            print!("{}", show_filter()?);
            return Ok(0);
        }
        isolab::run::need_root(
            "building the VMM's jail (namespaces, mounts, cgroups)",
        )?;
        isolab::container::rootfs::need_root_mount()?;
        // The device must be there, and be KVM, before anything is built around it.
        let kvm = isolab::vm::open(&args.device)?;
        kvm_real_mode::api_version(&kvm, &args.device)?;
        drop(kvm);
        let guest = match (args.touch, args.spin, args.lines) {
            (Some(bytes), _, _) => Guest::Touch { bytes },
            (_, Some(millions), _) => Guest::Spin { millions },
            (_, _, Some(count)) => Guest::Lines { count },
            _ => Guest::Hello,
        };
        if args.limits.pids_limit.is_some_and(|n| n < 2) {
            bail!(
                "--pids-limit 1 leaves no room for the VMM: the box holds two processes, \
                 init and the VMM: give at least 2"
            );
        }
        let spec = JailSpec {
            hostname: &args.hostname.hostname,
            device: &args.device,
            limits: &args.limits,
            guest,
            attack: args.attack,
            breaks: &args.breaks,
        };
        run(&spec, &args.limits, args.stats)
    })
}

/// The runtime: step 04's, around a VMM instead of a command.
fn run(spec: &JailSpec, limits: &LimitArgs, stats: bool) -> Result<i32> {
    let signals = namespaces::waited_signals();
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    let mut cgroups = BoxCgroups::create(limits)?;
    // The VMM's output goes through pipes, step 05's, and a relay here that
    // escapes what a terminal would act on and cuts each stream at OUTPUT_CAP: a
    // VMM the guest took over may write anything, and the caller's terminal (or
    // disk) is not the place for it.
    let stdio = match spec.keeps(Wall::Terminal) {
        true => hardening::box_stdio(false, true)?.map(|r| r.untrusted(OUTPUT_CAP)),
        false => None,
    };
    let lifeline = Lifeline::new()?;
    unshare(CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
    // SAFETY: this program has no other threads, so the child may run any code.
    let code = match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            lifeline.die_with_parent()?;
            if let Some(stdio) = &stdio {
                stdio.attach()?;
            }
            init(spec, &cgroups, &signals)
        }),
        ForkResult::Parent { child } => match stdio {
            Some(stdio) => stdio.relay(child, &signals)?,
            None => namespaces::supervise(child, &signals)?,
        },
    };
    let usage = Usage::read(&cgroups.paths());
    if stats {
        eprint!("{}", usage.render());
    }
    cgroups.remove()?;
    explain_a_kill(code, spec, &usage)
}

/// How much of each of the VMM's streams, stdout and stderr, the relay passes on:
/// its reports are a few KiB.
const OUTPUT_CAP: usize = 1 << 20;

/// A VMM the OOM killer ended: say why, since a guest that outgrows the box's
/// memory is killed with the VMM, without a word of its own (exit code 137). The
/// same for one its file size limit ended (153).
fn explain_a_kill(code: i32, spec: &JailSpec, usage: &Usage) -> Result<i32> {
    if code == 128 + libc::SIGXFSZ {
        eprintln!(
            "{}: the kernel stopped the VMM (SIGXFSZ): it wrote past its file size \
             limit, {} MiB, to a file",
            isolab::run::program_name(),
            OUTPUT_CAP >> 20
        );
    }
    let killed = code == 128 + libc::SIGKILL && usage.oom_kills.unwrap_or(0) > 0;
    if let (Some(limit), true) = (spec.limits.memory, killed) {
        eprintln!(
            "{}: the OOM killer stopped the VMM: the guest's memory is the VMM's, and \
             counts against --memory {}m",
            isolab::run::program_name(),
            limit >> 20
        );
    }
    Ok(code)
}

/// PID 1 of the box: into its cgroups, namespaces, and the jail's root; then the
/// VMM as its child, supervised until it ends.
fn init(
    spec: &JailSpec,
    cgroups: &BoxCgroups,
    signals: &SigSet,
) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    cgroups.join()?;
    mount_namespace::close_inherited_fds()?;
    stdin_from_dev_null()?;
    // Keyrings belong to no namespace, and a keyring's keys are granted to whoever
    // holds it, whatever its uid: nobody would still read the caller's. So the box
    // leaves the caller's session keyring for a new one, as step 06's init does.
    if spec.keeps(Wall::Keyring) {
        user_namespace::new_session_keyring()?;
    }
    let namespaces = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWNET;
    namespaces::enter_namespaces(namespaces, spec.hostname)?;
    mount_namespace::make_mounts_private()?;
    if spec.keeps(Wall::Root) {
        build_jail(spec.device)?;
        mount_namespace::pivot_into(Path::new(JAIL))?;
        mount_namespace::remount_read_only("/")?;
    }
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            // No controlling terminal: the caller's stays outside.
            nix::unistd::setsid().context("setsid()")?;
            vmm(spec)
        }),
        ForkResult::Parent { child } => {
            std::process::exit(namespaces::supervise(child, signals)?)
        }
    }
}

/// The VMM reads nothing, so it gets nothing to read: whatever stdin was is
/// replaced by the host's /dev/null while init can still open it. (Its stdout and
/// stderr are pipes the runtime relays; the jailer's `--daemonize` sends all
/// three to /dev/null.)
fn stdin_from_dev_null() -> Result<()> {
    use std::os::fd::AsFd;
    let null = File::open("/dev/null").context("open(/dev/null)")?;
    let mut stdin = std::mem::ManuallyDrop::new(
        // SAFETY: fd 0 stays open for the whole process; ManuallyDrop keeps this
        // OwnedFd from closing it.
        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(0) },
    );
    nix::unistd::dup2(null.as_fd(), &mut stdin).context("dup2(/dev/null, 0)")?;
    Ok(())
}

/// Where init builds the jail's root, in its own mount namespace: the tmpfs mounted
/// there hides the host's /tmp from the jail alone, and leaves nothing behind.
const JAIL: &str = "/tmp";

/// Where the VMM finds KVM, inside the jail.
const KVM_IN_JAIL: &str = "/dev/kvm";

/// The jail's root: an empty tmpfs, and in it the one file the VMM needs.
fn build_jail(device: &Path) -> Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        JAIL,
        Some("tmpfs"),
        flags,
        Some("mode=755,size=64k"),
    )
    .with_context(|| format!("mount(tmpfs, {JAIL}, tmpfs)"))?;
    bind_device(device, &Path::new(JAIL).join("dev/kvm"))
}

/// Put the host's device `device` at `target`, as `docker run --device` does: a
/// bind mount, so the jail's /dev/kvm is the host's own device node, with its
/// owner and mode, and no new device is made (the tmpfs is nodev, the bind is not).
fn bind_device(device: &Path, target: &Path) -> Result<()> {
    // ANCHOR: bind_device
    // TODO: std::fs::create_dir_all(target's parent), File::create(target), then
    //       mount(Some(device), target, None::<&str>, MsFlags::MS_BIND,
    //       None::<&str>): no file system type and no data, each None::<&str> so
    //       that the compiler knows their type. Give each call a context that names
    //       it, e.g. "mount(/dev/kvm, ..., MS_BIND)".
    todo!(
        "step 09, `bind_device`: not written yet. Read the TODO above this line in \
         chapters/09-jailed-vm.rs, or run `cargo run -- hint 9`"
    );
    // ANCHOR_END: bind_device
}

// ANCHOR: vmm
/// The VMM, PID 2 of the box. Its powers go first; then it sets up the VM from
/// what it was given, trusted code on trusted input. The filters go in last,
/// before the guest's first instruction: from then on the guest drives this
/// process, and the filters are what is left standing if the guest takes it over.
fn vmm(spec: &JailSpec) -> Result<Infallible> {
    prctl::set_name(c"vmm").context("prctl(PR_SET_NAME, vmm)")?;
    let device = if spec.keeps(Wall::Root) {
        Path::new(KVM_IN_JAIL)
    } else {
        spec.device
    };
    let kvm = isolab::vm::open(device)?;
    // Step 05's drop first: the box's eight capabilities. The VMM needs none.
    hardening::drop_capabilities()?;
    if spec.keeps(Wall::User) {
        become_nobody()?;
    }
    drop_every_capability()?;
    prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS, 1)")?;
    limit_what_it_leaves()?;
    if spec.keeps(Wall::Environment) {
        forget_environment();
    }
    let mut vm = Vm::new(&kvm, spec.guest).map_err(|e| too_little(e, spec))?;
    println!("## the jail, as the VMM sees it before its guest runs");
    print!("{}", inside::look_around()?);
    sigsys::name_refused_calls(&isolab::run::program_name())?;
    sigsys::name_faults(&isolab::run::program_name())?;
    let watchdog = isolab::vm::Watchdog::start()?;
    // Step 05's deny-list, and the allow-list over it: counted as the kernel will
    // run them (for the report's line), then installed.
    let stack = filters(spec, vm.vcpu.as_raw_fd());
    let counted = seccomp_line(&stack, vm.vcpu.as_raw_fd())?;
    for program in &stack {
        seccomp::install(program)?;
    }
    println!("{}", line(Jail::Seccomp, counted));
    // From here on nothing is dropped, so nothing is closed: every way out, an
    // error too (in_child), ends the process with _exit(2), and the kernel frees
    // it all.
    let code = vm
        .run_guest(spec.guest)
        .unwrap_or_else(|e| in_child(|| Err(too_little(e, spec))));
    drop(watchdog);
    if let Some(attack) = spec.attack {
        println!("## the guest has taken the VMM over, and tries to break out");
        println!("{}", attack.try_it(&kvm, &mut vm));
    }
    // The end, as in_child ends: _exit(2) (exit_group), not exit(3), whose at-exit
    // work is the runtime's (std's would also take down its signal stack: a call
    // not on the list). So stdout is flushed by hand; if it is gone, so is its
    // reader.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: _exit ends the process at once; it takes no pointers.
    unsafe { libc::_exit(code) }
}
// ANCHOR_END: vmm

/// A VM that KVM could not make or run for want of memory or of tasks: say which
/// limit of the box was too small. KVM charges what it allocates for a VM to the
/// VMM's cgroups, and starts a worker thread for each VM there too (it recovers
/// huge pages split to work around the iTLB multihit erratum).
fn too_little(err: anyhow::Error, spec: &JailSpec) -> anyhow::Error {
    let errno = err.root_cause().downcast_ref::<Errno>().copied();
    match (errno, spec.limits.memory, spec.limits.pids_limit) {
        (Some(Errno::ENOMEM), Some(bytes), _) => err.context(format!(
            "--memory {}m is too little to create the VM: give it more",
            bytes >> 20
        )),
        (Some(Errno::EAGAIN), _, Some(n)) => err.context(format!(
            "--pids-limit {n} is too few for the VM: KVM starts a thread of its own for \
             each VM, in the VMM's cgroups, so the box holds three tasks (init, the VMM \
             and that thread): give at least 3"
        )),
        _ => err,
    }
}

/// Nobody: the user the VMM runs as once it holds /dev/kvm open, as Firecracker's
/// jailer runs it as `--uid` and `--gid`. Root without capabilities is still uid 0
/// to every check that asks only for the uid (the kernel's keyrings are per uid
/// and shared by every namespace: `--attack read-keyring`).
const NOBODY: u32 = 65534;

/// Become nobody, with no groups. Step 05's eight capabilities include setuid and
/// setgid, which the change takes, and setpcap, which emptying the bounding set
/// afterwards takes: the kernel keeps the permitted set across the change (as it
/// clears the effective one) only if asked to, with PR_SET_KEEPCAPS.
fn become_nobody() -> Result<()> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    prctl::set_keepcaps(true).context("prctl(PR_SET_KEEPCAPS, 1)")?;
    let (uid, gid) = (Uid::from_raw(NOBODY), Gid::from_raw(NOBODY));
    setgroups(&[]).context("setgroups([])")?;
    setresgid(gid, gid, gid).context("setresgid(65534)")?;
    setresuid(uid, uid, uid).context("setresuid(65534)")?;
    prctl::set_keepcaps(false).context("prctl(PR_SET_KEEPCAPS, 0)")?;
    let setpcap = caps::set_of(&["setpcap"]);
    caps::set(caps::Sets {
        effective: setpcap,
        permitted: setpcap,
        inheritable: 0,
    })
}

/// What a VMM taken over could still leave behind with the calls it keeps. Written
/// to a file (the caller's, with `--break terminal`), at most OUTPUT_CAP bytes:
/// past that the kernel ends it with SIGXFSZ. And no core dump, of a memory that
/// holds its guest's, whatever the host's `core_pattern` would do with one.
fn limit_what_it_leaves() -> Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    let cap = OUTPUT_CAP as u64;
    setrlimit(Resource::RLIMIT_FSIZE, cap, cap)
        .context("setrlimit(RLIMIT_FSIZE)")?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("setrlimit(RLIMIT_CORE, 0)")?;
    prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE, 0)")
}

/// Empty every capability set, the bounding set included (with setpcap, the last
/// to go): what step 05 keeps for a box's programs, the VMM has no use for.
fn drop_every_capability() -> Result<()> {
    for cap in 0..=caps::last_cap() {
        caps::drop_from_bounding(cap)?;
    }
    caps::clear_ambient()?;
    caps::set(caps::Sets::default())
}

/// The VMM is a fork of the runtime, not a program of its own, so its memory still
/// holds the caller's environment (tokens, keys, passwords): wipe the strings where
/// they lie, and empty the list. (Firecracker's jailer execs the VMM with a clean
/// environment instead.)
fn forget_environment() {
    unsafe extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: this process has one thread, and nothing holds a reference into the
    // environment (std::env hands out copies); `environ` is a NULL-terminated
    // array of NUL-terminated strings, all writable (the initial stack, or the heap
    // for what setenv added).
    unsafe {
        let list = environ;
        if list.is_null() {
            return;
        }
        let mut entry = list;
        while !(*entry).is_null() {
            libc::memset((*entry).cast(), 0, libc::strlen(*entry));
            entry = entry.add(1);
        }
        *list = std::ptr::null_mut();
    }
}

/// The filters the VMM installs, in order, as far as `--break` leaves them: step
/// 05's deny-list first, and the allow-list over it. The kernel runs both on every
/// call and the stricter verdict wins, so a call the allow-list lets through by
/// mistake still meets the deny-list, which refuses new namespaces, keyrings,
/// vsock, ptrace... The run loop's calls pass both.
fn filters(spec: &JailSpec, vcpu: RawFd) -> Vec<Vec<seccomp::Instruction>> {
    let mut stack = Vec::new();
    if spec.keeps(Wall::Seccomp) {
        stack.push(hardening::filter());
        if spec.keeps(Wall::AllowList) {
            stack.push(filter(vcpu));
        }
    }
    stack
}

/// The `seccomp:` line: what `stack` lets through, counted by running it here as
/// the kernel will, before it goes in. (A count of the lists ALLOWED and
/// WITH_RULES would say what the filter was meant to do, not what it does.)
fn seccomp_line(
    stack: &[Vec<seccomp::Instruction>],
    vcpu: RawFd,
) -> Result<String> {
    let programs: Vec<&[seccomp::Instruction]> =
        stack.iter().map(|p| &p[..]).collect();
    Ok(match programs.len() {
        0 => "off".into(),
        1 => "step 05's deny-list only".into(),
        _ => {
            let through = LetThrough::count(&programs, vcpu)?;
            format!(
                "allow-list of {} system calls (of {}), {} of them only with certain \
                 arguments, over step 05's deny-list",
                through.always.len() + through.sometimes.len(),
                syscalls::ALL.len(),
                through.sometimes.len()
            )
        }
    })
}

/// What a stack of filters lets through, found by running it as the kernel would
/// on every system call of x86-64, each with every set of arguments of
/// [`argument_cases`]: how it behaves, whichever way its BPF is written.
struct LetThrough {
    /// The calls it allows whatever their arguments.
    always: Vec<&'static str>,
    /// The calls it allows with some of the sets of arguments, and with how many.
    sometimes: Vec<(&'static str, usize)>,
}

impl LetThrough {
    fn count(stack: &[&[seccomp::Instruction]], vcpu: RawFd) -> Result<LetThrough> {
        let cases = argument_cases(vcpu);
        let mut through = LetThrough {
            always: Vec::new(),
            sometimes: Vec::new(),
        };
        for (number, name) in syscalls::ALL {
            let mut allowed = 0;
            for args in &cases {
                let call = seccomp::Call::x86_64(*number, args);
                if seccomp::evaluate_stack(stack, &call)? == seccomp::ALLOW {
                    allowed += 1;
                }
            }
            match allowed {
                0 => {}
                n if n == cases.len() => through.always.push(name),
                n => through.sometimes.push((name, n)),
            }
        }
        Ok(through)
    }
}

/// The sets of arguments each call is asked with: between them, each side of every
/// rule of the allow-list (the vCPU's fd and another, KVM_RUN and another request,
/// fds 1, 2 and 3, PROT_EXEC or not, MREMAP_FIXED or not), and high halves set
/// where the rules compare only the low ones.
fn argument_cases(vcpu: RawFd) -> Vec<[u64; 6]> {
    let (vcpu, run) = (vcpu as u64, u64::from(KVM_RUN));
    let anonymous = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let (may_move, fixed) =
        (libc::MREMAP_MAYMOVE as u64, libc::MREMAP_FIXED as u64);
    vec![
        [0; 6],
        [vcpu, run, 0, 0, 0, 0],
        [vcpu | 1 << 32, run | 1 << 32, 0, 0, 0, 0],
        [vcpu, 0x4090_ae82, 0, 0, 0, 0], // KVM_SET_REGS
        [3, run, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
        [2, 0, 0, 0, 0, 0],
        [3, 0, 0, 0, 0, 0],
        [0, 4096, 3, anonymous, u64::MAX, 0], // PROT_READ | PROT_WRITE
        [0, 4096, 7, anonymous, u64::MAX, 0], // and PROT_EXEC
        [1 << 20, 4096, 8192, may_move, 0, 0],
        [1 << 20, 4096, 8192, may_move | fixed, 2 << 20, 0],
    ]
}

// ANCHOR: guest
// The guest: 64-bit code at step 08's GUEST_ADDRESS, on step 08's GDT and page
// tables. rdi says which program (0 hello, 1 touch, 2 spin, 3 lines), rsi its
// argument; each ends by printing a line and exiting with code 0, through step
// 08's two hypercall ports.
core::arch::global_asm!(
    r#"
    .pushsection .rodata.guest_jailed, "a"
    .globl GUEST_JAILED_START
GUEST_JAILED_START:
    .code64
    lea rax, [rip + jailed_hello]
    cmp edi, 1
    je jailed_touch
    cmp edi, 2
    je jailed_spin
    cmp edi, 3
    je jailed_lines
    jmp jailed_done
jailed_touch:                       # one byte to every page of [2 MiB, 2 MiB + rsi)
    mov rbx, {base}
    lea rcx, [rbx + rsi]
1:  cmp rbx, rcx
    jae 2f
    mov byte ptr [rbx], 1           # the host backs the page now, and charges it
    add rbx, 4096
    jmp 1b
2:  lea rax, [rip + jailed_touched]
    jmp jailed_done
jailed_spin:                        # count down from rsi: work, and no exit
    mov rcx, rsi
1:  dec rcx
    jnz 1b
    lea rax, [rip + jailed_spun]
    jmp jailed_done
jailed_lines:                       # print a short line rsi times: rsi exits
    lea rax, [rip + jailed_line]
    mov dx, {print}
1:  out dx, eax
    dec rsi
    jnz 1b
    lea rax, [rip + jailed_printed]
jailed_done:
    mov dx, {print}
    out dx, eax                     # hypercall: print(rax)
    xor eax, eax
    mov dx, {exit}
    out dx, eax                     # hypercall: exit(0)
    hlt
jailed_hello:
    .asciz "Hello from the jail!\n"
jailed_touched:
    .asciz "Touched every page.\n"
jailed_spun:
    .asciz "Done spinning.\n"
jailed_line:
    .asciz "line\n"
jailed_printed:
    .asciz "Printed every line.\n"
    .globl GUEST_JAILED_END
GUEST_JAILED_END:
    .popsection
"#,
    base = const kvm_long_mode::MEMORY_SIZE,
    print = const kvm_long_mode::HYPERCALL_PRINT,
    exit = const kvm_long_mode::HYPERCALL_EXIT,
);
// ANCHOR_END: guest

// Global symbols, named for this step (steps 07 and 08's guests link beside it).
unsafe extern "C" {
    static GUEST_JAILED_START: u8;
    static GUEST_JAILED_END: u8;
}

/// The guest's machine code, as the assembler left it in this program's read-only
/// data.
fn guest_code() -> &'static [u8] {
    let (start, end) = (&raw const GUEST_JAILED_START, &raw const GUEST_JAILED_END);
    // SAFETY: both symbols come from the global_asm! above, in one section, END
    // after START; the bytes between them are read-only data that lives as long as
    // the program.
    unsafe { std::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// One VM, set up as step 08 sets its up. Fields drop in order: the run area, the
/// vCPU, the VM, then the memory the VM used.
struct Vm {
    run: RunArea,
    vcpu: OwnedFd,
    _vm: OwnedFd,
    memory: GuestMemory,
}

impl Vm {
    fn new(kvm: &File, guest: Guest) -> Result<Vm> {
        let mut memory = GuestMemory::new(guest.memory_size())?;
        memory.write(kvm_long_mode::GDT_ADDRESS, &isolab::vm::x86::gdt_bytes())?;
        let tables =
            isolab::vm::x86::identity_page_tables(kvm_long_mode::PML4_ADDRESS);
        memory.write(kvm_long_mode::PML4_ADDRESS, &tables)?;
        memory.write(kvm_long_mode::GUEST_ADDRESS, guest_code())?;
        let vm = kvm_real_mode::create_vm(kvm, &memory)?;
        let (vcpu, run) = kvm_real_mode::create_vcpu(kvm, &vm)?;
        let mut sregs = kvm_long_mode::get_sregs(&vcpu)?;
        let mut regs = kvm_bindings::kvm_regs::default();
        kvm_long_mode::set_long_mode(&mut sregs, &mut regs);
        (regs.rdi, regs.rsi) = guest.registers();
        kvm_long_mode::set_sregs(&vcpu, &sregs)?;
        kvm_long_mode::set_regs(&vcpu, &regs)?;
        Ok(Vm {
            run,
            vcpu,
            _vm: vm,
            memory,
        })
    }

    /// The run loop, under the filter: KVM_RUN, decode, the hypercalls. Returns the
    /// guest's exit code.
    fn run_guest(&mut self, guest: Guest) -> Result<i32> {
        let (clock, cpu) = (Instant::now(), cpu_time()?);
        let mut trace = Trace::default();
        let mut said = Said::default();
        let code = loop {
            kvm_real_mode::run_vcpu(&self.vcpu, &mut self.run)?;
            let exit = kvm_real_mode::decode(&self.run)?;
            trace.push(&exit);
            match exit {
                Exit::IoOut { port, value, .. } => {
                    match kvm_long_mode::hypercall(port, value, &self.memory)? {
                        Hypercall::Print(text) => {
                            trace.note(format!("print {text:?}"));
                            said.push(&text);
                        }
                        Hypercall::Exit(code) => {
                            trace.note(format!("exit({code})"));
                            break code;
                        }
                    }
                }
                other => {
                    print!("{trace}");
                    for why in isolab::vm::explain(&other, None) {
                        println!("why: {why}");
                    }
                    bail!("the guest stopped with {other}");
                }
            }
        };
        let (clock, cpu) = (clock.elapsed(), cpu_time()? - cpu);
        println!("## the guest");
        for line in said.text.lines() {
            println!("guest said: {}", isolab::vm::printable(line));
        }
        if said.not_kept > 0 {
            println!(
                "guest said {} bytes more, not kept (the VMM keeps its first {} KiB)",
                said.not_kept,
                Said::KEPT >> 10
            );
        }
        print!("{trace}");
        if let Guest::Touch { bytes } = guest {
            println!("guest memory touched: {} MiB", bytes >> 20);
        }
        println!(
            "guest time: {} ms on the clock, {} ms of it on a CPU",
            clock.as_millis(),
            cpu.as_millis()
        );
        println!("guest exit code: {code}");
        Ok(code)
    }
}

/// What the guest said, as much of it as the VMM keeps: the prints that fit in
/// [`Said::KEPT`] bytes, and a count of the bytes after them. A guest's chatter
/// must not grow the VMM's heap without end: into the box's memory, by calls the
/// filter would have to allow.
#[derive(Default)]
struct Said {
    text: String,
    not_kept: usize,
}

impl Said {
    const KEPT: usize = 4 << 10;

    fn push(&mut self, text: &str) {
        if self.not_kept == 0 && self.text.len() + text.len() <= Said::KEPT {
            self.text += text;
        } else {
            self.not_kept += text.len();
        }
    }
}

/// The CPU time this thread has used: the vCPU runs the guest on it.
fn cpu_time() -> Result<Duration> {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .context("clock_gettime(CLOCK_THREAD_CPUTIME_ID)")?;
    Ok(Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
}

// ANCHOR: allowed
/// What the run loop asks of the kernel once the guest runs, whatever the
/// arguments. The list comes from watching the loop under strace, and from what
/// glibc's allocator calls when the loop's memory (the trace, the guest's text)
/// grows and shrinks: brk for the heap, munmap for a large block given back, and
/// mremap (below, with a rule) for a large block grown.
const ALLOWED: [(i64, &str); 6] = [
    (libc::SYS_brk, "brk"),       // the heap, grown and given back
    (libc::SYS_munmap, "munmap"), // large blocks of the heap, given back
    (libc::SYS_clock_gettime, "clock_gettime"), // how long the guest ran
    (libc::SYS_alarm, "alarm"),   // the watchdog, disarmed
    (libc::SYS_rt_sigreturn, "rt_sigreturn"), // back from the watchdog's handler
    (libc::SYS_exit_group, "exit_group"), // the end, by _exit(2)
];

/// And the calls it makes only with certain arguments, which the filter checks.
const WITH_RULES: [(i64, &str, &str); 4] = [
    (
        libc::SYS_ioctl,
        "ioctl",
        "only KVM_RUN, and only on the vCPU's fd",
    ),
    (
        libc::SYS_write,
        "write",
        "only to fd 1 and 2, the pipes the runtime relays",
    ),
    (
        libc::SYS_mmap,
        "mmap",
        "never executable memory (no PROT_EXEC)",
    ),
    (
        libc::SYS_mremap,
        "mremap",
        "only to resize, never onto a chosen address (no MREMAP_FIXED)",
    ),
];

/// KVM_RUN: _IO(KVMIO, 0x80).
const KVM_RUN: u32 = nix::request_code_none!(kvm_real_mode::KVMIO, 0x80) as u32;
// ANCHOR_END: allowed

// ANCHOR: filter
/// The VMM's filter: an allow-list, as the kernel will run it. `vcpu` is the one fd
/// KVM_RUN may be asked of.
fn filter(vcpu: RawFd) -> Vec<seccomp::Instruction> {
    use seccomp::*;
    // Only x86-64 calls, and no x32 ones, with the call's number loaded: step 05's
    // start of every filter.
    let mut program = hardening::x86_64_only();
    // ANCHOR: allow_list
    // TODO: For each (number, _) in ALLOWED, two instructions: jump_if_equal(number
    //       as u32, 0, 1), then ret(ALLOW). Step 05's deny-list, turned round: the
    //       call goes on to its ALLOW; any other call skips it and goes on down the
    //       list.
    todo!(
        "step 09, `allow_list`: not written yet. Read the TODO above this line in \
         chapters/09-jailed-vm.rs, or run `cargo run -- hint 9`"
    );
    // ANCHOR_END: allow_list
    // The calls allowed only with certain arguments.
    program.extend(allow_if_all(
        libc::SYS_ioctl,
        &[(0, vcpu as u32), (1, KVM_RUN)],
    ));
    program.extend(allow_if_all(libc::SYS_write, &[(0, 1)]));
    program.extend(allow_if_all(libc::SYS_write, &[(0, 2)]));
    program.extend(allow_unless_any_bit(
        libc::SYS_mmap,
        2,
        libc::PROT_EXEC as u32,
    ));
    program.extend(allow_unless_any_bit(
        libc::SYS_mremap,
        3,
        (libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP) as u32,
    ));
    // Everything else: SIGSYS, and the handler names the call.
    program.push(ret(TRAP));
    program
}

/// Call `number` is allowed when each argument (index, value) has that value.
fn allow_if_all(
    number: i64,
    conditions: &[(u32, u32)],
) -> Vec<seccomp::Instruction> {
    use seccomp::*;
    let n = conditions.len() as u8;
    let mut rule = vec![load(NR), jump_if_equal(number as u32, 0, 2 * n + 1)];
    for (i, (arg, value)) in (0u8..).zip(conditions) {
        // Equal: on to the next condition, or to the ALLOW. Not: past the ALLOW.
        rule.push(load(arg_low(*arg)));
        rule.push(jump_if_equal(*value, 0, 2 * (n - 1 - i) + 1));
    }
    rule.push(ret(ALLOW));
    rule
}

/// Call `number` is allowed when its argument `arg` has none of `bits` set.
fn allow_unless_any_bit(
    number: i64,
    arg: u32,
    bits: u32,
) -> Vec<seccomp::Instruction> {
    use seccomp::*;
    vec![
        load(NR),
        jump_if_equal(number as u32, 0, 3), // another call: skip this rule
        load(arg_low(arg)),
        jump_if_any_bit(bits, 1, 0), // a forbidden bit: past the ALLOW
        ret(ALLOW),
    ]
}
// ANCHOR_END: filter

/// The vCPU's fd that `--show-filter` shows: the one the VMM gets in its jail,
/// where 0-2 are stdin, stdout and stderr, 3 is /dev/kvm and 4 the VM.
const VCPU_FD_IN_JAIL: RawFd = 5;

/// What `--show-filter` prints: the list; the filter asked about a few calls, and
/// counted over every call, by running it here as the kernel would; step 05's
/// filter counted the same way; and the program itself.
fn show_filter() -> Result<String> {
    use seccomp::{ALLOW, Call, evaluate, evaluate_stack, verdict_name};
    let total = syscalls::ALL.len();
    let program = filter(VCPU_FD_IN_JAIL);
    let deny_list = hardening::filter();
    // As the VMM installs them: step 05's deny-list first, the allow-list over it.
    let stack = [&deny_list[..], &program[..]];
    let mut out = format!(
        "The VMM's allow-list: {} calls, {} of them only with certain arguments.\n",
        ALLOWED.len() + WITH_RULES.len(),
        WITH_RULES.len()
    );
    for (_, name) in ALLOWED {
        out += &format!("  {name}\n");
    }
    for (_, name, rule) in WITH_RULES {
        out += &format!("  {name:<14}{rule}\n");
    }
    out += "  (KVM_RUN is more than a run: with KVM_CAP_SYNC_REGS it also loads and \
            stores\n   the vCPU's registers, special registers and pending events \
            through kvm_run,\n   so what KVM_SET_REGS and its kin do stays in reach.)\n";
    out += "Any other call: SECCOMP_RET_TRAP (SIGSYS: the VMM names the call and stops).\n";
    out += "Under it, installed first: step 05's deny-list. The kernel runs both on \
            every\ncall, and the stricter verdict wins.\n";
    let vcpu = VCPU_FD_IN_JAIL as u64;
    let nr = |n: i64| n as u32;
    let asked = [
        (
            "ioctl(vCPU, KVM_RUN)",
            Call::x86_64(nr(libc::SYS_ioctl), &[vcpu, KVM_RUN.into()]),
        ),
        (
            "ioctl(vCPU, KVM_SET_REGS)",
            Call::x86_64(nr(libc::SYS_ioctl), &[vcpu, 0x4090_ae82]),
        ),
        (
            "ioctl(/dev/kvm, KVM_CREATE_VM)",
            Call::x86_64(nr(libc::SYS_ioctl), &[3, 0xae01]),
        ),
        ("write(1, ...)", Call::x86_64(nr(libc::SYS_write), &[1])),
        ("write(3, ...)", Call::x86_64(nr(libc::SYS_write), &[3])),
        (
            "mmap(PROT_READ | PROT_WRITE)",
            Call::x86_64(nr(libc::SYS_mmap), &[0, 4096, 3]),
        ),
        (
            "mmap(PROT_READ | PROT_EXEC)",
            Call::x86_64(nr(libc::SYS_mmap), &[0, 4096, 5]),
        ),
        ("openat(...)", Call::x86_64(nr(libc::SYS_openat), &[])),
        ("execve(...)", Call::x86_64(nr(libc::SYS_execve), &[])),
        (
            "write(1, ...) as an i386 call",
            Call {
                arch: 0x4000_0003,
                ..Call::x86_64(4, &[1])
            },
        ),
    ];
    out += "\nAsked, the two filters answer (run here as the kernel runs them):\n";
    for (what, call) in asked {
        out += &format!(
            "  {what:<34}{}\n",
            verdict_name(evaluate_stack(&stack, &call)?)
        );
    }
    // Over every call, with each set of arguments.
    let through = LetThrough::count(&stack, VCPU_FD_IN_JAIL)?;
    let cases = argument_cases(VCPU_FD_IN_JAIL).len();
    let allowed = through.always.len() + through.sometimes.len();
    out += &format!(
        "Over all {total} system calls of x86-64, each with {cases} sets of \
         arguments:\n  {allowed} allowed, {} never.\n  with any arguments: {}\n  \
         with some:          {}\n",
        total - allowed,
        through.always.join(" "),
        through
            .sometimes
            .iter()
            .map(|(name, n)| format!("{name} ({n} of {cases})"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Step 05's filter, over every call with arguments of 0: its argument rules
    // refuse only some values, so what it lets through here, it lets through.
    let mut open = 0;
    for (number, _) in syscalls::ALL {
        if evaluate(&deny_list, &Call::x86_64(*number, &[]))? == ALLOW {
            open += 1;
        }
    }
    out += &format!(
        "Step 05's deny-list alone, each call with arguments of 0: {} refused, {open} \
         let through.\n",
        total - open
    );
    out += &format!(
        "\nThe filter, {} instructions (the vCPU on fd {VCPU_FD_IN_JAIL}, as in the jail):\n",
        program.len()
    );
    out += &seccomp::disassemble(&program, |n| syscalls::name(n).map(String::from));
    Ok(out)
}
