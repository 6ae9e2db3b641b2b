//! # Step 05: hardening, what the box may ask of the kernel
//!
//! Step 04's box, with its powers taken away. The box shares the host's kernel, so
//! every system call it may make is attack surface. Four things close it:
//!
//! - a **network namespace** with only loopback, brought up: no route out;
//! - **capabilities**: the bounding set cut to nine that ordinary programs run as
//!   root need (Docker keeps fourteen), the ambient and inheritable sets emptied;
//! - **no_new_privs**: no exec can ever grant more (setuid bits, file capabilities);
//! - a **seccomp filter**, a small BPF program the kernel runs on every system call:
//!   it checks the architecture, refuses with EPERM the calls a box has no business
//!   making (mount, reboot, module loading, kexec, ptrace, namespaces, the clock, ...)
//!   and allows the rest.
//!
//! The probe tries each forbidden thing in a way that is refused after the
//! permission check whatever happens, so `refused (EPERM)` means the box said no.
//!
//! Syscalls: unshare(2) with CLONE_NEWNET; ioctl(SIOCSIFFLAGS); prctl(2) with
//! PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP; capset(2).
//!
//! ```text
//! $ sudo target/debug/05-hardening --rootfs /tmp/rootfs -- /bin/probe
//! capabilities: 9 of 41: chown dac_override fowner fsetid kill setgid setuid setpcap net_bind_service
//! mount a filesystem: refused (EPERM)
//! network: lo (up)
//! ```

// Your copy of step 05. Replace each todo!() with your code, then run
// `cargo run -- check 5`. (Generated from solutions/05-hardening.rs: `cargo run -- reset 5`
// brings this version back.)

use isolab::box_cgroups::{BoxCgroups, mount_cgroupfs};
use isolab::cgroup::Usage;
use isolab::cli::LimitArgs;
use isolab::prelude::*;
use isolab::run::Lifeline;
use isolab::{caps, container, seccomp};
use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::SigSet;

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
    /// Leave one restriction out, to see what it was holding back (repeatable)
    #[arg(long = "break", value_name = "RESTRICTION", value_enum)]
    breaks: Vec<Restriction>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The four restrictions of this step, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Restriction {
    Capabilities,
    NoNewPrivs,
    Seccomp,
    Network,
}

struct BoxSpec<'a> {
    rootfs: &'a Path,
    hostname: &'a str,
    read_only: bool,
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
        isolab::rootfs::need_root_mount()?;
        let rootfs = args.rootfs.checked()?;
        isolab::rootfs::need_mount_points(&rootfs, &["proc", "dev", "sys"])?;
        let command = args.command.in_rootfs(&rootfs)?;
        let spec = BoxSpec {
            rootfs: &rootfs,
            hostname: &args.hostname.hostname,
            read_only: args.read_only,
            command: &command,
            breaks: &args.breaks,
        };
        run(&spec, &args.limits, args.stats)
    })
}

fn run(spec: &BoxSpec, limits: &LimitArgs, stats: bool) -> Result<i32> {
    let signals = container::waited_signals();
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    let mut cgroups = BoxCgroups::create(limits)?;
    let lifeline = Lifeline::new()?;
    unshare(CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
    // SAFETY: this program has no other threads, so the child may run any code.
    let code = match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            lifeline.die_with_parent()?;
            init(spec, &cgroups, &signals)
        }),
        ForkResult::Parent { child } => container::supervise(child, &signals)?,
    };
    if stats {
        eprint!("{}", Usage::read(&cgroups.paths()).render());
    }
    cgroups.remove()?;
    Ok(code)
}

// ANCHOR: init
/// PID 1 of the box: step 04's box, plus a network namespace. init keeps its powers
/// (it needed them to build the box, and the box cannot signal or trace it); the
/// command is hardened between fork and exec.
fn init(spec: &BoxSpec, cgroups: &BoxCgroups, signals: &SigSet) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    cgroups.join()?;
    container::close_inherited_fds()?;
    let mut namespaces = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWCGROUP;
    if spec.keeps(Restriction::Network) {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    container::enter_namespaces(namespaces, spec.hostname)?;
    if spec.keeps(Restriction::Network) {
        bring_up_loopback()?;
    }
    container::make_mounts_private()?;
    container::pivot_into(spec.rootfs)?;
    container::mount_proc()?;
    container::mount_dev()?;
    mount_cgroupfs(cgroups)?;
    if spec.read_only {
        container::remount_read_only("/")?;
    }
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            harden(spec)?;
            container::exec(spec.command)
        }),
        ForkResult::Parent { child } => std::process::exit(container::supervise(child, signals)?),
    }
}
// ANCHOR_END: init

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
/// What the box keeps of root's powers. Docker keeps fourteen; we keep these nine
/// and leave out mknod (the box has the devices it needs), net_raw (forged packets),
/// sys_chroot (the chroot escape), setfcap and audit_write.
const KEEP: [&str; 9] = [
    "chown",            // change a file's owner
    "dac_override",     // read and write files regardless of their mode
    "fowner",           // chmod and utime files it does not own
    "fsetid",           // keep setuid and setgid bits when changing a file
    "kill",             // signal processes of other users in the box
    "setgid",           // become another group (su, servers that drop root)
    "setuid",           // become another user
    "setpcap",          // drop capabilities from its own bounding set
    "net_bind_service", // listen on ports below 1024
];
// ANCHOR_END: keep

/// Reduce this process's capabilities to KEEP, in every set that matters.
fn drop_capabilities() -> Result<()> {
    // ANCHOR: drop_capabilities
    // TODO: The bounding set limits what any exec can ever grant: for every capability
    //       number from 0 to caps::last_cap() that is not in caps::set_of(&KEEP), call
    //       caps::drop_from_bounding(n). Then caps::clear_ambient(), and caps::set() with
    //       effective = permitted = the kept set and inheritable = 0. Clearing only the
    //       effective set would not last: root gets the bounding set back at its next exec.
    todo!(
        "step 05, `drop_capabilities`: not written yet. Read the TODO above this line in chapters/05-hardening.rs, or run `cargo run -- hint 5`"
    );
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
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    // Opening files by handle walks around the mount tree (the "shocker" escape).
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    // Direct access to I/O ports.
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
];

/// clone(2) flags that make a new namespace.
const NEW_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | 0x80/* CLONE_NEWTIME */) as u32;
// ANCHOR_END: refused

// ANCHOR: filter
/// The filter, as the kernel will run it, one instruction per line.
fn filter() -> Vec<seccomp::Instruction> {
    use seccomp::*;
    let mut program = vec![
        // Only x86-64 calls: the numbers below mean something else for i386.
        load(ARCH),
        jump_if_equal(AUDIT_ARCH_X86_64, 1, 0),
        ret(KILL_PROCESS),
        // The call's number; x32 calls (numbers with bit 30 set) are not allowed.
        load(NR),
        jump_if_at_least(X32_SYSCALL_BIT, 0, 1),
        ret(KILL_PROCESS),
    ];
    // ANCHOR: deny_list
    // TODO: For each (number, _) in REFUSED, add two instructions: jump_if_equal(number
    //       as u32, 0, 1), then ret(errno(Errno::EPERM)). If the number matches, the next
    //       instruction (the refusal) runs; if not, skip one and go on to the next pair.
    todo!(
        "step 05, `deny_list`: not written yet. Read the TODO above this line in chapters/05-hardening.rs, or run `cargo run -- hint 5`"
    );
    // ANCHOR_END: deny_list
    program.extend([
        // clone3 passes its flags in memory, where a filter cannot look: say "no
        // such call", and the C library falls back to clone, whose flags we check.
        jump_if_equal(libc::SYS_clone3 as u32, 0, 1),
        ret(errno(Errno::ENOSYS)),
        // clone with any new-namespace flag is refused; any other clone is allowed.
        jump_if_equal(libc::SYS_clone as u32, 0, 3),
        load(ARG0_LOW),
        jump_if_any_bit(NEW_NAMESPACE_FLAGS, 0, 1),
        ret(errno(Errno::EPERM)),
        ret(ALLOW),
    ]);
    program
}
// ANCHOR_END: filter

/// A new network namespace has a loopback interface, and it starts down.
fn bring_up_loopback() -> Result<()> {
    use std::os::fd::AsRawFd;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0");
    // Binding to 127.0.0.1 fails while lo is down; any socket will do for the ioctls.
    let fd = match &socket {
        Ok(s) => s.as_raw_fd(),
        Err(_) => {
            // SAFETY: socket(2) takes integers; we own the descriptor it returns.
            let raw =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            Errno::result(raw).context("socket(AF_INET, SOCK_DGRAM)")?
        }
    };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `request`.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) };
    Errno::result(rc).context("ioctl(lo, SIOCGIFFLAGS)")?;
    // SAFETY: the kernel just filled in the flags member of the union.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and the flags from `request`.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) };
    Errno::result(rc).context("ioctl(lo, SIOCSIFFLAGS, IFF_UP)")?;
    if socket.is_err() {
        // SAFETY: `fd` is the descriptor socket(2) gave us above, closed once.
        unsafe { libc::close(fd) };
    }
    Ok(())
}
