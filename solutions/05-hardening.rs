//! # Step 05: hardening, what the box may ask of the kernel
//!
//! Step 04's box, with its powers taken away and its ways to the host closed. The
//! box shares the host's kernel, so every system call it may make is attack
//! surface, and root in the box is root on the host. This step closes what a box
//! can still reach:
//!
//! - a **network namespace** with only loopback, brought up: no route out;
//! - **capabilities**: the bounding set cut to eight that ordinary programs run as
//!   root need (Docker keeps fourteen), the ambient and inheritable sets emptied;
//! - **no_new_privs**: no exec can ever grant more (setuid bits, file
//!   capabilities);
//! - a **seccomp filter**, a small BPF program the kernel runs on every system
//!   call: it checks the architecture, refuses with EPERM the calls a box has no
//!   business making (mount, reboot, module loading, kexec, ptrace, namespaces, the
//!   clock, io_uring, ...), and, looking at the arguments, vsock and AF_ALG
//!   sockets, typing into a terminal (TIOCSTI), personalities that switch off ASLR,
//!   and setuid bits;
//! - **a masked /proc**: the machine-wide settings under /proc/sys (core_pattern
//!   among them) read-only, the kernel's own tables (/proc/keys, ...) hidden;
//! - **a root without devices**: the rootfs, and every mount under it, `nodev`, so
//!   a device node left there opens nothing (and `--read-only` covers them all);
//! - **the caller's terminal kept out**: the box gets pipes (or, with `--tty`, a
//!   pseudo-terminal of its own) that the runtime relays, and a session of its own;
//! - **a clean environment**: PATH, HOME and TERM, plus `--env NAME=VALUE`, and
//!   nothing else of the caller's.
//!
//! The probe tries each forbidden thing in a way that is refused after the
//! permission check whatever happens, so `refused (EPERM)` means the box said no.
//! `--break RESTRICTION` leaves one out, to see what it was holding back.
//!
//! Syscalls: unshare(2) with CLONE_NEWNET; ioctl(SIOCSIFFLAGS); prctl(2) with
//! PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP; capset(2);
//! mount(2) with MS_BIND and MS_RDONLY; mount_setattr(2); setsid(2);
//! ioctl(TIOCSCTTY); execve(2).
//!
//! ```text
//! $ sudo target/debug/05-hardening --rootfs /tmp/rootfs -- /bin/probe
//! capabilities: 8 of 41: chown dac_override fowner kill setgid setuid setpcap
//!   net_bind_service
//! mount a filesystem: refused (EPERM)
//! change a kernel setting: refused (EROFS: a read-only file system)
//! plant a setuid file: refused (EPERM)
//! ```

use isolab::cli::LimitArgs;
use isolab::container::cgroup::Usage;
use isolab::container::relay::{self, Relay};
use isolab::container::{caps, seccomp};
use isolab::prelude::*;
use isolab::run::Lifeline;
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal};
use std::ffi::CString;

// The finished steps this one builds on: step 04's own file, and through it
// 00-03's.
#[path = "../solutions/04-cgroups.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod cgroups;
use cgroups::{BoxCgroups, mount_cgroupfs};
pub use cgroups::{chroot, mount_namespace, namespaces, process};

/// Step 05: run a command in step 04's box, with capabilities, no_new_privs,
/// seccomp and a network namespace.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    rootfs: RootfsArg,
    #[command(flatten)]
    hostname: HostnameArg,
    /// Mount the box's root read-only
    #[arg(long)]
    read_only: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// When the box ends, print what it used (on stderr)
    #[arg(long)]
    stats: bool,
    /// Give the box a terminal of its own (a pseudo-terminal), as `docker run -t`
    /// does: needed for job control in an interactive shell. Without it, a terminal
    /// of yours reaches the box only through pipes
    #[arg(short = 't', long)]
    tty: bool,
    /// Set a variable in the box's environment, as `docker run -e` does
    /// (repeatable)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE", value_parser = variable)]
    env: Vec<String>,
    /// Leave one restriction out, to see what it was holding back (repeatable)
    #[arg(long = "break", value_name = "RESTRICTION", value_enum)]
    breaks: Vec<Restriction>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The restrictions of this step, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Restriction {
    /// keep all of root's capabilities
    Capabilities,
    /// let exec grant privileges again (setuid bits, file capabilities)
    NoNewPrivs,
    /// no seccomp filter
    Seccomp,
    /// share the host's network
    Network,
    /// an unmasked /proc: host-wide settings writable, the kernel's tables readable
    Proc,
    /// the rootfs as the host mounted it: device nodes there open in the box
    RootDevices,
    /// hand the box the caller's terminal itself, in the caller's session
    Terminal,
    /// pass the caller's whole environment in
    Environment,
}

struct BoxSpec<'a> {
    rootfs: &'a Path,
    hostname: &'a str,
    read_only: bool,
    tty: bool,
    env: &'a [String],
    command: &'a Command,
    breaks: &'a [Restriction],
}

impl BoxSpec<'_> {
    fn keeps(&self, restriction: Restriction) -> bool {
        !self.breaks.contains(&restriction)
    }
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        isolab::run::need_root("unshare(2) of new namespaces")?;
        isolab::container::rootfs::need_root_mount()?;
        let rootfs = args.rootfs.checked()?;
        isolab::container::rootfs::need_mount_points(
            &rootfs,
            &["proc", "dev", "sys"],
        )?;
        let command = args.command.in_rootfs(&rootfs)?;
        let spec = BoxSpec {
            rootfs: &rootfs,
            hostname: &args.hostname.hostname,
            read_only: args.read_only,
            tty: args.tty,
            env: &args.env,
            command: &command,
            breaks: &args.breaks,
        };
        run(&spec, &args.limits, args.stats)
    })
}

/// `--env NAME=VALUE`: a name, an `=`, and a value (which may be empty).
fn variable(text: &str) -> std::result::Result<String, String> {
    match text.split_once('=') {
        Some((name, _)) if !name.is_empty() && !text.contains('\0') => {
            Ok(text.to_string())
        }
        _ => Err(format!(
            "{text} is not NAME=VALUE: give a name, `=`, and the value, e.g. --env LANG=C.UTF-8"
        )),
    }
}

fn run(spec: &BoxSpec, limits: &LimitArgs, stats: bool) -> Result<i32> {
    let mut signals = namespaces::waited_signals();
    if spec.tty {
        // The relay passes window-size changes on to the box's terminal.
        signals.add(Signal::SIGWINCH);
    }
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    let mut cgroups = BoxCgroups::create(limits)?;
    let pipes = spec.keeps(Restriction::Terminal) && relay::caller_has_a_terminal();
    let stdio = box_stdio(spec.tty, pipes)?;
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
    if stats {
        eprint!("{}", Usage::read(&cgroups.paths()).render());
    }
    cgroups.remove()?;
    Ok(code)
}

// ANCHOR: init
/// PID 1 of the box: step 04's box, plus a network namespace and a masked /proc.
/// init keeps its powers (it needed them to build the box, and the box cannot
/// signal or trace it); the command is hardened between fork and exec.
fn init(
    spec: &BoxSpec,
    cgroups: &BoxCgroups,
    signals: &SigSet,
) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    cgroups.join()?;
    mount_namespace::close_inherited_fds()?;
    let mut namespaces = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWCGROUP;
    if spec.keeps(Restriction::Network) {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    namespaces::enter_namespaces(namespaces, spec.hostname)?;
    if spec.keeps(Restriction::Network) {
        bring_up_loopback()?;
    }
    mount_namespace::make_mounts_private()?;
    mount_namespace::pivot_into(spec.rootfs)?;
    if spec.keeps(Restriction::RootDevices) {
        lock_down_root(Path::new("/"), spec.read_only)?;
    } else if spec.read_only {
        mount_namespace::remount_read_only("/")?;
    }
    mount_namespace::mount_proc()?;
    mount_namespace::mount_dev()?;
    if spec.keeps(Restriction::Proc) {
        mask_proc()?;
    }
    mount_cgroupfs(cgroups)?;
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            if spec.tty || spec.keeps(Restriction::Terminal) {
                new_session(spec.tty)?;
            }
            harden(spec)?;
            exec_with(spec.command, &environment(spec))
        }),
        ForkResult::Parent { child } => {
            std::process::exit(namespaces::supervise(child, signals)?)
        }
    }
}
// ANCHOR_END: init

// ANCHOR: proc_paths
/// Files of /proc that are the whole machine's, not the box's: written, they change
/// the host. /proc/sys/kernel/core_pattern alone is a way out: set it to
/// `|/some/program` and the host's kernel runs that program, as root, at the next
/// crash of any process. Docker and runc make these read-only.
const PROC_READ_ONLY: [&str; 5] = [
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
];

/// Files of /proc that tell about the host's kernel and its hardware, and nothing
/// about the box: its memory, its keyrings and how many keys each user holds, every
/// timer and interrupt on the machine, which physical pages are in use (the raw
/// material of Rowhammer exploits). Docker and runc hide the first ones; the
/// kpage* files, box root could read too, and /proc/key-users, anyone.
const PROC_MASKED: [&str; 14] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/interrupts",
    "/proc/kpageflags",
    "/proc/kpagecount",
    "/proc/kpagecgroup",
    "/proc/acpi",
    "/proc/asound",
    "/proc/scsi",
];
// ANCHOR_END: proc_paths

/// Make the host-wide parts of the box's fresh /proc read-only, and hide the
/// kernel's own tables: a bind mount of a path onto itself can be made read-only on
/// its own, and a file is hidden by mounting /dev/null over it (a directory, by an
/// empty read-only tmpfs). The box cannot undo this: it may not mount or unmount.
pub fn mask_proc() -> Result<()> {
    //>1 Leave the box's /proc working for its own processes, but make the host's
    //>1 kernel settings in it read-only and hide the kernel's own tables. The
    //>1 report's `change a kernel setting:` and `read the kernel's tables:` say
    //>1 refused and masked.
    //>2 mount(2) with MS_BIND onto itself, then a read-only remount, for each path
    //>2 of PROC_READ_ONLY; for each of PROC_MASKED, an empty read-only tmpfs over a
    //>2 directory, or /dev/null bound over a file.
    //> For each path of PROC_READ_ONLY that exists: mount(2) it onto itself with
    //> MsFlags::MS_BIND | MS_REC, then make that mount read-only with
    //> mount_namespace::remount_read_only(path). For each path of PROC_MASKED that
    //> exists: a directory gets an empty tmpfs, mounted with MS_RDONLY; a file gets
    //> /dev/null bind-mounted over it (MS_BIND). Skip paths this kernel lacks.
    // ANCHOR: mask_proc
    let none = None::<&str>;
    for path in PROC_READ_ONLY {
        if !Path::new(path).exists() {
            continue;
        }
        mount(
            Some(path),
            path,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .with_context(|| format!("mount({path}, {path}, MS_BIND | MS_REC)"))?;
        mount_namespace::remount_read_only(path)?;
    }
    for path in PROC_MASKED {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if meta.is_dir() {
            mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, none)
                .with_context(|| {
                    format!("mount(tmpfs, {path}, tmpfs, MS_RDONLY)")
                })?;
        } else {
            mount(Some("/dev/null"), path, none, MsFlags::MS_BIND, none)
                .with_context(|| format!("mount(/dev/null, {path}, MS_BIND)"))?;
        }
    }
    Ok(())
    // ANCHOR_END: mask_proc
}

// ANCHOR: lock_down_root
/// The rootfs is a directory of the host's, and so is every mount the host has
/// under it: make all of them `nodev` (and read-only with `--read-only`),
/// recursively, with mount_setattr(2). A device node the host or an image left in
/// the rootfs (the host's console, /dev/kvm, a disk) then opens nothing in the box.
/// The box's own /dev, a tmpfs mounted after this, keeps its few nodes working.
/// `root` is "/" here, after the pivot; step 06 locks its rootfs before it.
pub fn lock_down_root(root: &Path, read_only: bool) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut set = libc::MOUNT_ATTR_NODEV;
    if read_only {
        set |= libc::MOUNT_ATTR_RDONLY;
    }
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = CString::new(root.as_os_str().as_bytes())
        .context("a rootfs path with a NUL byte")?;
    // SAFETY: mount_setattr reads one struct mount_attr, of the size we pass, and
    // the path, a C string that lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr,
            size_of::<libc::mount_attr>(),
        )
    };
    match Errno::result(rc) {
        Ok(_) => Ok(()),
        // Linux before 5.12 has no mount_setattr: `root` alone, then.
        Err(Errno::ENOSYS) => {
            let mut flags =
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NODEV;
            if read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            let none = None::<&str>;
            mount(none, root, none, flags, none).with_context(|| {
                format!(
                    "mount({}, MS_REMOUNT | MS_BIND | MS_NODEV)",
                    root.display()
                )
            })
        }
        Err(e) => Err(e).with_context(|| {
            format!("mount_setattr({}, AT_RECURSIVE, nodev)", root.display())
        }),
    }
}
// ANCHOR_END: lock_down_root

// ANCHOR: box_stdio
/// What the box gets as stdin, stdout and stderr. With `tty`, a pseudo-terminal of
/// its own; with `pipes`, pipes; otherwise our descriptors as they are. The
/// runtime relays between the box's ends and ours (isolab::container::relay). This
/// step asks for pipes when any of our fds 0-2 is a terminal, so the box never
/// holds the caller's; step 06, whose box's root is the caller, asks always.
pub fn box_stdio(tty: bool, pipes: bool) -> Result<Option<Relay>> {
    if tty {
        return Ok(Some(Relay::pty()?));
    }
    if pipes {
        return Ok(Some(Relay::pipes()?));
    }
    Ok(None)
}
// ANCHOR_END: box_stdio

// ANCHOR: new_session
/// A session of its own for the command, so it has no controlling terminal: not
/// even /dev/tty, which names the controlling terminal, leads back to the caller's,
/// and signals from the keyboard reach the box only through init. With `--tty`, the
/// box's own pseudo-terminal (already on fds 0-2) becomes its controlling terminal,
/// so a shell there has job control.
pub fn new_session(tty: bool) -> Result<()> {
    nix::unistd::setsid().context("setsid()")?;
    if tty {
        // SAFETY: TIOCSCTTY takes an integer (0: do not steal it from another
        // session).
        let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        Errno::result(rc).context("ioctl(0, TIOCSCTTY, 0): the box's terminal")?;
    }
    Ok(())
}
// ANCHOR_END: new_session

// ANCHOR: environment
/// The PATH a box gets: docker's default.
const BOX_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command's environment, made from nothing, as `docker run` makes it: whatever
/// the caller's shell holds (tokens, keys, passwords) stays outside. TERM describes
/// the terminal the box's output goes to; the rest is `--env`.
fn environment(spec: &BoxSpec) -> Option<Vec<String>> {
    if !spec.keeps(Restriction::Environment) {
        return None; // the caller's, all of it, as steps 00-04 pass it
    }
    Some(clean_environment(spec.env))
}

/// PATH, HOME and the caller's TERM, then `extra` (NAME=VALUE each), nothing else.
pub fn clean_environment(extra: &[String]) -> Vec<String> {
    let mut env = vec![format!("PATH={BOX_PATH}"), "HOME=/".to_string()];
    if let Ok(term) = std::env::var("TERM") {
        env.push(format!("TERM={term}"));
    }
    env.extend(extra.iter().cloned());
    env
}
// ANCHOR_END: environment

/// Become the command, with `env` as its whole environment (None: ours).
pub fn exec_with(
    command: &Command,
    env: &Option<Vec<String>>,
) -> Result<Infallible> {
    let Some(env) = env else {
        return process::exec(command);
    };
    let env: Vec<CString> = env
        .iter()
        .map(|v| CString::new(v.as_str()).context("a variable with a NUL byte"))
        .collect::<Result<_>>()?;
    nix::unistd::execve(&command.path, &command.argv, &env)
        .with_context(|| format!("execve({})", command.path.to_string_lossy()))
}

// ANCHOR: harden
/// The last thing before exec: take the powers away, in an order that works. The
/// kernel installs a seccomp filter only for a process that has no_new_privs set,
/// or CAP_SYS_ADMIN. So with no_new_privs (the normal case) the filter comes last,
/// and it need not allow the calls that drop capabilities. Without it, the filter
/// must go in while CAP_SYS_ADMIN is still there. runc follows the same rule.
fn harden(spec: &BoxSpec) -> Result<()> {
    let seccomp = spec.keeps(Restriction::Seccomp);
    if seccomp && !spec.keeps(Restriction::NoNewPrivs) {
        seccomp::install(&filter())?;
    }
    if spec.keeps(Restriction::Capabilities) {
        drop_capabilities()?;
    }
    if spec.keeps(Restriction::NoNewPrivs) {
        prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS, 1)")?;
        if seccomp {
            seccomp::install(&filter())?;
        }
    }
    Ok(())
}
// ANCHOR_END: harden

// ANCHOR: keep
/// What the box keeps of root's powers. Docker keeps fourteen; we keep these eight
/// and leave out mknod (the box has the devices it needs), net_raw (forged
/// packets), sys_chroot (the chroot escape), setfcap (file capabilities),
/// audit_write, and fsetid: with it, a setuid file keeps its bit when the box
/// rewrites it, and a setuid-root program in the rootfs becomes the box's own.
const KEEP: [&str; 8] = [
    "chown",            // change a file's owner
    "dac_override",     // read and write files regardless of their mode
    "fowner",           // chmod and utime files it does not own
    "kill",             // signal processes of other users in the box
    "setgid",           // become another group (su, servers that drop root)
    "setuid",           // become another user
    "setpcap",          // drop capabilities from its own bounding set
    "net_bind_service", // listen on ports below 1024
];
// ANCHOR_END: keep

/// Reduce this process's capabilities to KEEP, in every set that matters.
pub fn drop_capabilities() -> Result<()> {
    //>1 Keep only the capabilities in KEEP, now and after every exec to come. The
    //>1 report's `capabilities:` lists exactly those 8, and `mount a filesystem:`,
    //>1 `reboot:` and `set the clock:` say refused.
    //>2 prctl(2) PR_CAPBSET_DROP for each capability not kept (the bounding set),
    //>2 then PR_CAP_AMBIENT_CLEAR_ALL, then capset(2) for the effective, permitted
    //>2 and inheritable sets. The toolkit's `caps` module wraps each.
    //> caps::set_of(&KEEP) is a caps::CapSet, a u64 with bit N set for capability N.
    //> The bounding set limits what any exec can ever grant: for every number n from
    //> 0 to caps::last_cap() whose bit is not in the kept set, call
    //> caps::drop_from_bounding(n). Then caps::clear_ambient(), and caps::set() with
    //> a caps::Sets { effective, permitted, inheritable }: the kept set, the kept
    //> set, and 0. Clearing only the effective set would not last: root gets the
    //> bounding set back at its next exec.
    // ANCHOR: drop_capabilities
    let keep = caps::set_of(&KEEP);
    for cap in 0..=caps::last_cap() {
        if keep & (1 << cap) == 0 {
            caps::drop_from_bounding(cap)?;
        }
    }
    caps::clear_ambient()?;
    caps::set(caps::Sets {
        effective: keep,
        permitted: keep,
        inheritable: 0,
    })
    // ANCHOR_END: drop_capabilities
}

// ANCHOR: refused
/// The system calls a box must not make, each refused with EPERM.
const REFUSED: &[(i64, &str)] = &[
    // Its own mounts and roots: the walls of steps 03 and 04.
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    // New namespaces undo the walls (clone's flags are checked below).
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    // The machine as a whole: rebooting, kernels, modules, swap, the clock.
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_syslog, "syslog"),
    // Other processes' memory and the kernel's keyring.
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    // Big kernel surfaces a box rarely needs, each with a history of exploits.
    // io_uring is also a second way to read, write and open that no filter sees.
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    // Other processes' descriptors and memory, compared or taken.
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_pidfd_getfd, "pidfd_getfd"),
    (libc::SYS_process_madvise, "process_madvise"),
    // The mount tree, listed or cloned, and quotas (the new mount API's calls).
    (libc::SYS_quotactl_fd, "quotactl_fd"),
    (SYS_STATMOUNT, "statmount"),
    (SYS_LISTMOUNT, "listmount"),
    (SYS_OPEN_TREE_ATTR, "open_tree_attr"),
    // Opening files by handle walks around the mount tree (the "shocker" escape).
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    // Direct access to I/O ports.
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
];

/// x86-64 numbers of calls newer than the libc crate knows (Linux 6.8 and 6.15).
const SYS_STATMOUNT: i64 = 457;
const SYS_LISTMOUNT: i64 = 458;
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// clone(2) flags that make a new namespace.
const NEW_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWTIME) as u32;

/// The calls that set a file's mode, and which argument holds it. A mode with the
/// setuid or setgid bit is refused: box root owns what it makes, and a setuid-root
/// file left in the rootfs runs as root for every host user who reaches it.
const MODE_ARGUMENT: [(i64, u32); 9] = [
    (libc::SYS_chmod, 1),
    (libc::SYS_fchmod, 1),
    (libc::SYS_fchmodat, 2),
    (libc::SYS_fchmodat2, 2),
    (libc::SYS_open, 2),
    (libc::SYS_openat, 3),
    (libc::SYS_creat, 1),
    (libc::SYS_mknod, 1),
    (libc::SYS_mknodat, 2),
];
const SETUID_SETGID: u32 = libc::S_ISUID | libc::S_ISGID;

/// ioctls on a terminal that act for its user: TIOCSTI types a byte into it, as if
/// from the keyboard; TIOCLINUX can paste the screen's selection into a console.
const TERMINAL_INPUT: [u32; 2] = [libc::TIOCSTI as u32, libc::TIOCLINUX as u32];

/// Socket families refused by their number, socket's first argument. AF_VSOCK
/// has no network namespace: it reaches the host past the box's loopback. AF_ALG
/// (Linux 6.2+) loads a key by its serial number (ALG_SET_KEY_BY_KEY_SERIAL)
/// without keyctl, and keys belong to no namespace: the box's root would key a
/// hash or a cipher with any key of root's that root may search.
pub const SOCKET_FAMILIES: [u32; 2] = [libc::AF_VSOCK as u32, libc::AF_ALG as u32];

/// The personalities docker allows: Linux, 32-bit Linux, and the 2.6-style uname of
/// each, plus 0xffffffff, which only asks. The others switch things off, such as
/// ADDR_NO_RANDOMIZE, which makes memory layouts predictable for an exploit.
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
// ANCHOR_END: refused

// ANCHOR: filter
/// The filter, as the kernel will run it, one instruction per line.
pub fn filter() -> Vec<seccomp::Instruction> {
    use seccomp::*;
    let mut program = x86_64_only();
    //>1 Make the filter refuse every call in REFUSED with EPERM, and let the others
    //>1 go on to the checks below. The report's `io_uring:`, `new user namespace:`
    //>1 and `ptrace my parent:` say refused.
    //>2 No system call: two BPF instructions per refused call, one that compares
    //>2 the call's number and one that returns EPERM (`seccomp::jump_if_equal`,
    //>2 `ret`).
    //> For each (number, _) in REFUSED, add two instructions: jump_if_equal(number
    //> as u32, 0, 1), then ret(errno(Errno::EPERM)). If the number matches, the next
    //> instruction (the refusal) runs; if not, skip one and go on to the next pair.
    // ANCHOR: deny_list
    for (number, _name) in REFUSED {
        program.push(jump_if_equal(*number as u32, 0, 1));
        program.push(ret(errno(Errno::EPERM)));
    }
    // ANCHOR_END: deny_list
    // clone3 and openat2 pass their flags and modes in memory, where a filter
    // cannot look: say "no such call", and the C library falls back to clone and
    // openat.
    program.extend([
        jump_if_equal(libc::SYS_clone3 as u32, 0, 1),
        ret(errno(Errno::ENOSYS)),
        jump_if_equal(libc::SYS_openat2 as u32, 0, 1),
        ret(errno(Errno::ENOSYS)),
    ]);
    // Calls refused only for some arguments.
    program.extend(refuse_if_any_bit(libc::SYS_clone, 0, NEW_NAMESPACE_FLAGS));
    for (number, mode) in MODE_ARGUMENT {
        program.extend(refuse_if_any_bit(number, mode, SETUID_SETGID));
    }
    program.extend(refuse_if_one_of(libc::SYS_socket, 0, &SOCKET_FAMILIES));
    program.extend(refuse_if_one_of(libc::SYS_ioctl, 1, &TERMINAL_INPUT));
    program.extend(refuse_unless_one_of(
        libc::SYS_personality,
        0,
        &PERSONALITIES,
    ));
    program.push(ret(ALLOW));
    program
}

/// The start of every filter of ours: only x86-64 calls go on, with the call's
/// number in the accumulator. Any other architecture, and x32, kills the process.
pub fn x86_64_only() -> Vec<seccomp::Instruction> {
    use seccomp::*;
    vec![
        // Only x86-64 calls: the numbers below mean something else for i386.
        load(ARCH),
        jump_if_equal(AUDIT_ARCH_X86_64, 1, 0),
        ret(KILL_PROCESS),
        // The call's number; x32 calls (numbers with bit 30 set) are not allowed.
        load(NR),
        jump_if_at_least(X32_SYSCALL_BIT, 0, 1),
        ret(KILL_PROCESS),
    ]
}

/// Call `number` is refused when its argument `arg` has any of `bits` set.
fn refuse_if_any_bit(
    number: i64,
    arg: u32,
    bits: u32,
) -> Vec<seccomp::Instruction> {
    use seccomp::*;
    vec![
        load(NR),
        jump_if_equal(number as u32, 0, 3), // another call: skip this rule
        load(arg_low(arg)),
        jump_if_any_bit(bits, 0, 1),
        ret(errno(Errno::EPERM)),
    ]
}

/// Call `number` is refused when its argument `arg` is one of `values`.
pub fn refuse_if_one_of(
    number: i64,
    arg: u32,
    values: &[u32],
) -> Vec<seccomp::Instruction> {
    use seccomp::*;
    let n = values.len() as u8;
    let mut rule = vec![
        load(NR),
        jump_if_equal(number as u32, 0, n + 2),
        load(arg_low(arg)),
    ];
    for (i, value) in (0u8..).zip(values) {
        // Equal: on to the refusal. Not: the next value, or past the refusal.
        let last = i + 1 == n;
        rule.push(jump_if_equal(*value, n - 1 - i, u8::from(last)));
    }
    rule.push(ret(errno(Errno::EPERM)));
    rule
}

/// Call `number` is refused unless its argument `arg` is one of `values`.
fn refuse_unless_one_of(
    number: i64,
    arg: u32,
    values: &[u32],
) -> Vec<seccomp::Instruction> {
    use seccomp::*;
    let n = values.len() as u8;
    let mut rule = vec![
        load(NR),
        jump_if_equal(number as u32, 0, n + 2),
        load(arg_low(arg)),
    ];
    for (i, value) in (0u8..).zip(values) {
        // Equal: past the refusal. Not: the next value, and after the last, the
        // refusal.
        rule.push(jump_if_equal(*value, n - i, 0));
    }
    rule.push(ret(errno(Errno::EPERM)));
    rule
}
// ANCHOR_END: filter

/// A new network namespace has a loopback interface, and it starts down. Bring it
/// up as `ip link set lo up` does: read its flags, add IFF_UP, write them back.
pub fn bring_up_loopback() -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) takes integers; the descriptor it returns is ours, and
    // OwnedFd closes it however this function returns.
    let raw = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    };
    let raw = Errno::result(raw).context("socket(AF_INET, SOCK_DGRAM)")?;
    // SAFETY: `raw` is the new socket, owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `request`.
    let rc = unsafe {
        libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request)
    };
    Errno::result(rc).context("ioctl(lo, SIOCGIFFLAGS)")?;
    // SAFETY: the kernel just filled in the flags member of the union.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and the flags from `request`.
    let rc =
        unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) };
    Errno::result(rc).context("ioctl(lo, SIOCSIFFLAGS, IFF_UP)")?;
    Ok(())
}
