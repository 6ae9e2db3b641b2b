//! # Step 06: a user namespace, a box that a normal user runs
//!
//! Steps 01-05 needed root, and the box's root was the host's root: whatever asks
//! only "is this uid 0?" (a file's mode, a kernel setting, a setuid file left
//! behind) trusted it, and only the walls we built stood in its way. This step runs
//! as a normal user, without sudo, and the box's root is that user on the host.
//!
//! A user namespace maps IDs: uid 0 inside is the caller's uid outside, one line in
//! /proc/self/uid_map (`0 1000 1`), and the same for groups. Whoever makes one
//! holds every capability, in it only: they act on what the namespace owns (the
//! mount, PID, UTS, IPC, network and cgroup namespaces made from inside it, a
//! tmpfs, a hostname) and never on what belongs to the machine (modules, the clock,
//! making device nodes, the host root's files and settings). So the runtime makes a
//! user namespace first, and every other namespace from inside it. Against step
//! 05's box:
//!
//! - **two user namespaces**: the runtime's, where the caller stays the caller
//!   (`1000 1000 1`) and which owns every namespace of the box; and the box's, one
//!   level down, where root is the caller (`0 1000 1`) and which owns only a copy
//!   of init's mount table. The kernel locks the mounts of such a copy: the box's
//!   root may not unmount or remount the masks over /proc, the read-only mounts or
//!   the `nodev` root. With `--map-range` the box has IDs 1-65535 too, from the
//!   caller's range in /etc/subuid and /etc/subgid, written by the setuid helpers
//!   newuidmap and newgidmap, as podman does; setgroups(2) stays denied unless
//!   `--allow-setgroups`;
//! - **/proc before the pivot**: the kernel lets a user namespace mount a procfs
//!   only while one is fully visible in its mount table, and after the pivot the
//!   host's is gone;
//! - **/dev from the host**: mknod is refused in a user namespace, so the device
//!   nodes are the host's own, bind-mounted onto empty files, after the rootfs was
//!   made `nodev`;
//! - **cgroups only where delegated**: a normal user may use only a cgroup handed
//!   to it (a v2 subtree of its own); elsewhere the box has no limits, and says so.
//!   The box's root owns its cgroup's files, so the limits are also written one
//!   level above the box's cgroup, where no namespace of the box's reaches;
//! - **the caller kept out**: the box's root is the caller, who may reopen any
//!   descriptor it holds, so its stdio are pipes the runtime relays (or a terminal
//!   of its own, `--tty`); init, which holds the caller's environment, is not
//!   dumpable; init leaves the caller's session keyring for a new one; and a small
//!   seccomp filter refuses every route to a key by its number (keyctl, add_key,
//!   request_key, AF_ALG sockets, and io_uring, which makes sockets past any
//!   filter): keys belong to no namespace, and the box's root, the caller's uid,
//!   would read any key of the caller's that lets its user read it, by its serial
//!   number alone;
//! - **root keeps its capabilities** in its own namespace, and no other call is
//!   filtered: `--harden` adds step 05's capability drop, no_new_privs and seccomp
//!   on top.
//!
//! Syscalls: unshare(2) with CLONE_NEWUSER; write(2) to /proc/PID/setgroups,
//! uid_map and gid_map; mount(2) with MS_BIND for device nodes; mount_setattr(2);
//! keyctl(2); prctl(2) with PR_SET_SECCOMP; access(2) for the cgroups; and the
//! programs newuidmap(1) and newgidmap(1).
//!
//! ```text
//! $ target/debug/06-user-namespace --rootfs /tmp/rootfs -- /bin/probe
//! uid: 0 (root)
//! uid on the host: 1000 (my uid_map: 0 1000 1)
//! capabilities: all 41 in my own user namespace
//! plant a device node: refused (EPERM)
//! ```

// Your copy of step 06. Replace each todo!() with your code, then run
// `cargo run -- check 6`. (Generated from solutions/06-user-namespace.rs:
// `cargo run -- reset 6` brings this version back.)

use isolab::cli::LimitArgs;
use isolab::container::cgroup::{Hierarchy, Kind, Layout, Usage, Version};
use isolab::container::{seccomp, subid};
use isolab::prelude::*;
use isolab::run::Lifeline;
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{AccessFlags, access};
use std::fs;
use std::os::fd::OwnedFd;

// The finished steps this one builds on: step 05's own file, and through it
// 00-04's.
#[path = "../solutions/05-hardening.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod hardening;
use cgroups::BoxCgroups;
pub use hardening::{cgroups, chroot, mount_namespace, namespaces, process};

/// Step 06: run a command in a rootless box, as a normal user: a user namespace
/// first, then step 05's box inside it, and the command in a user namespace of
/// its own.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    rootfs: RootfsArg,
    #[command(flatten)]
    hostname: HostnameArg,
    #[command(flatten)]
    limits: LimitArgs,
    /// When the box ends, print what it used (on stderr)
    #[arg(long)]
    stats: bool,
    /// Give the box IDs 0-65535, as podman does: root is you, 1-65535 your range in
    /// /etc/subuid and /etc/subgid (written by newuidmap and newgidmap)
    #[arg(long)]
    map_range: bool,
    /// With --map-range, let the box's root call setgroups(2), so that su and
    /// package managers work in it; it may then shed your supplementary groups, and
    /// read a file whose group bits shut one of them out (CVE-2014-8989)
    #[arg(long)]
    allow_setgroups: bool,
    /// Take step 05's powers away too: capabilities, no_new_privs, seccomp filter
    #[arg(long)]
    harden: bool,
    /// Give the box a terminal of its own (a pseudo-terminal), as `docker run -t`
    /// does. Without it, the box's stdin, stdout and stderr are pipes
    #[arg(short = 't', long)]
    tty: bool,
    /// Get one thing wrong, to see what the kernel says or what a wall was for
    /// (repeatable)
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    breaks: Vec<Mistake>,
    #[command(flatten)]
    command: CommandArgs,
}

/// The mistakes of this step, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mistake {
    /// write gid_map without writing "deny" to /proc/self/setgroups first
    Setgroups,
    /// map the runtime to the host's root (uid 0) instead of to yourself
    Map,
    /// keep the caller's session keyring: the box may read the keys in it
    Keyring,
    /// no filter on the key calls, AF_ALG sockets and io_uring: the box may read
    /// a key of the caller's that lets its user read it, by its serial number
    Keyctl,
    /// mask /proc from inside the box's own user namespace, where the masks are
    /// not locked: its root may unmount them
    Lock,
}

struct BoxSpec<'a> {
    rootfs: &'a Path,
    hostname: &'a str,
    map: &'a Map,
    harden: bool,
    tty: bool,
    breaks: &'a [Mistake],
    command: &'a Command,
}

impl BoxSpec<'_> {
    fn wrong(&self, mistake: Mistake) -> bool {
        self.breaks.contains(&mistake)
    }
}

/// Who the box's IDs are on the host.
enum Map {
    /// Root in the box is the caller, and no other ID exists: one line each.
    Caller { uid: u32, gid: u32 },
    /// IDs 0-65535: root is the caller, 1-65535 the caller's subordinate ranges.
    Range {
        uid: u32,
        gid: u32,
        uids: subid::Range,
        gids: subid::Range,
        /// Leave setgroups(2) allowed (`--allow-setgroups`).
        setgroups: bool,
    },
}

/// How many IDs besides root `--map-range` gives the box: 1-65535, as podman.
const RANGE: u32 = 65535;

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        need_a_normal_user()?;
        need_user_namespaces()?;
        let map = the_map(args.map_range, args.allow_setgroups)?;
        let rootfs = readable_rootfs(&args.rootfs)?;
        isolab::container::rootfs::need_root_mount()?;
        isolab::container::rootfs::need_mount_points(
            &rootfs,
            &["proc", "dev", "sys"],
        )?;
        let command = args.command.in_rootfs(&rootfs)?;
        let spec = BoxSpec {
            rootfs: &rootfs,
            hostname: &args.hostname.hostname,
            map: &map,
            harden: args.harden,
            tty: args.tty,
            breaks: &args.breaks,
            command: &command,
        };
        run(&spec, &args.limits, args.stats)
    })
}

// ANCHOR: run
fn run(spec: &BoxSpec, limits: &LimitArgs, stats: bool) -> Result<i32> {
    let mut signals = namespaces::waited_signals();
    if spec.tty {
        signals.add(Signal::SIGWINCH);
    }
    signals.thread_block().context("sigprocmask(SIG_BLOCK)")?;
    // Still the caller on the host: the cgroups this user was handed, if any.
    let mut cgroups = delegated_cgroups(limits, stats)?;
    // The box's root will be the caller, who may reopen any descriptor it holds
    // with the caller's rights: it gets pipes (or a terminal) of its own.
    let stdio = hardening::box_stdio(spec.tty, true)?;
    // A user namespace of the runtime's own. From here on the runtime holds every
    // capability in it, and each namespace it makes next belongs to it.
    enter_user_namespace(spec.map, spec.breaks)?;
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
// ANCHOR_END: run

// ANCHOR: init
/// PID 1 of the box: step 05's box, built in the runtime's user namespace. Its
/// filesystem is made in the one order a user namespace allows (`build_root`), and
/// the command gets a user namespace of its own, one level down (`enter_box`).
fn init(
    spec: &BoxSpec,
    cgroups: &BoxCgroups,
    signals: &SigSet,
) -> Result<Infallible> {
    prctl::set_name(c"init").context("prctl(PR_SET_NAME, init)")?;
    // init still holds the caller's whole environment, and the box's root has
    // the caller's uid, so the kernel would let the box read init's
    // /proc/1/environ (and open its descriptors). Not dumpable, init's /proc files
    // belong to the host's root, and ptrace of it needs a capability on the host.
    prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE, 0)")?;
    cgroups.join()?;
    mount_namespace::close_inherited_fds()?;
    if !spec.wrong(Mistake::Keyring) {
        new_session_keyring()?;
    }
    if !spec.wrong(Mistake::Keyctl) {
        seccomp::install(&keyring_filter())?;
    }
    let namespaces = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWNET;
    namespaces::enter_namespaces(namespaces, spec.hostname)?;
    hardening::bring_up_loopback()?;
    build_root(spec.rootfs)?;
    if !spec.wrong(Mistake::Lock) {
        hardening::mask_proc()?;
    }
    cgroups::mount_cgroupfs(cgroups)?;
    let handshake = Handshake::new()?;
    // SAFETY: init has no other threads either.
    match unsafe { fork() }.context("fork()")? {
        ForkResult::Child => in_child(|| {
            signals
                .thread_unblock()
                .context("sigprocmask(SIG_UNBLOCK)")?;
            hardening::new_session(spec.tty)?;
            enter_box(handshake)?;
            if spec.wrong(Mistake::Lock) {
                hardening::mask_proc()?;
            }
            if spec.harden {
                harden()?;
            }
            let env = hardening::clean_environment(&[]);
            hardening::exec_with(spec.command, &Some(env))
        }),
        ForkResult::Parent { child } => {
            map_the_box(child, handshake, spec.map)?;
            std::process::exit(namespaces::supervise(child, signals)?)
        }
    }
}
// ANCHOR_END: init

/// Make a user namespace for this process and write its maps, as `map` says: the
/// caller's IDs stay what they are (with `--map-range`, the subordinate ranges
/// too), and the runtime holds every capability over what it makes next.
fn enter_user_namespace(map: &Map, breaks: &[Mistake]) -> Result<()> {
    match *map {
        Map::Caller { uid, gid } => {
            new_user_namespace()?;
            // --break map: claim the host's root instead of our own uid.
            let uid = if breaks.contains(&Mistake::Map) {
                0
            } else {
                uid
            };
            map_caller(uid, gid, !breaks.contains(&Mistake::Setgroups))
        }
        Map::Range { setgroups, .. } => {
            // newuidmap writes the maps from outside: start it before the unshare.
            let helper = MapHelper::start(map)?;
            new_user_namespace()?;
            // newgidmap leaves setgroups(2) allowed unless it is denied already.
            if !setgroups {
                write_proc("/proc/self/setgroups", "deny")?;
            }
            helper.map()
        }
    }
}

/// unshare(CLONE_NEWUSER), and when the kernel refuses, why, in one line.
fn new_user_namespace() -> Result<()> {
    let Err(errno) = unshare(CloneFlags::CLONE_NEWUSER) else {
        return Ok(());
    };
    let why = match errno {
        Errno::EINVAL => {
            "this kernel has no user namespaces (built without CONFIG_USER_NS)"
        }
        Errno::ENOSPC => {
            "no user namespace is left to make (user.max_user_namespaces is used up): `sudo sysctl -w user.max_user_namespaces=15000`"
        }
        Errno::EUSERS => {
            "user namespaces nest at most 32 deep, and this one would be the 33rd"
        }
        Errno::EPERM if seccomp_filtered() => {
            "a seccomp filter refuses it (Seccomp: 2 in /proc/self/status): are you inside a container? Docker's default profile refuses user namespaces"
        }
        Errno::EPERM => {
            "user namespaces are refused to this process (a security policy, such as AppArmor's, or a chroot)"
        }
        _ => "",
    };
    bail!("unshare(CLONE_NEWUSER): {errno}: {why}")
}

/// Does a seccomp filter watch this process?
fn seccomp_filtered() -> bool {
    fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l == "Seccomp:\t2"))
}

/// Map `uid` and `gid` outside to the same IDs inside, one line each: the only map
/// the kernel takes from an unprivileged process, and only for its own IDs. Before
/// it is written, this process is "nobody" (65534) in its new namespace; after, it
/// is the caller on both sides, holding every capability in the namespace.
pub fn map_caller(uid: u32, gid: u32, deny_setgroups: bool) -> Result<()> {
    // ANCHOR: map_caller
    // TODO: Three writes, in this order, with write_proc(path, text): "deny" to
    //       /proc/self/setgroups (skip it when deny_setgroups is false: --break
    //       setgroups), then "{uid} {uid} 1" to /proc/self/uid_map and "{gid} {gid}
    //       1" to /proc/self/gid_map: ID `uid` inside is `uid` outside, for a range
    //       of one ID. The kernel takes a gid_map from an unprivileged process only
    //       once setgroups(2) is off for good.
    todo!(
        "step 06, `map_caller`: not written yet. Read the TODO above this line in \
         chapters/06-user-namespace.rs, or run `cargo run -- hint 6`"
    );
    // ANCHOR_END: map_caller
}

/// Write `text` into a file of /proc; when the kernel refuses, say what it wants.
pub fn write_proc(path: &str, text: &str) -> Result<()> {
    let Err(e) = fs::write(path, text) else {
        return Ok(());
    };
    let why = match (e.raw_os_error().map(Errno::from_raw), path) {
        // The box's maps, written by init: their IDs must exist one level up.
        (Some(Errno::EPERM), p) if !p.starts_with("/proc/self/") => {
            ": the box's IDs must exist in the runtime's user namespace, whose map keeps the caller's IDs as they are (\"UID UID 1\", not \"0 UID 1\")"
        }
        (Some(Errno::EPERM), p) if p.ends_with("gid_map") => {
            ": an unprivileged process may write gid_map only after writing \"deny\" to /proc/self/setgroups, and map only its own gid"
        }
        (Some(Errno::EPERM), p) if p.ends_with("uid_map") => {
            ": an unprivileged process may map only its own uid"
        }
        _ => "",
    };
    Err(e).with_context(|| format!("write({text:?}, {path}){why}"))
}

/// The helper for `--map-range`. Only a privileged process may map more IDs than
/// its own, so the setuid-root programs newuidmap and newgidmap do it, after
/// checking /etc/subuid and /etc/subgid. They write another process's maps from
/// outside its namespace: this helper is forked before the unshare and waits until
/// it is done. Each map keeps the IDs as they are: the caller's, and the caller's
/// range.
struct MapHelper {
    pid: Pid,
    go: OwnedFd,
}

impl MapHelper {
    fn start(map: &Map) -> Result<MapHelper> {
        let Map::Range {
            uid,
            gid,
            uids,
            gids,
            ..
        } = *map
        else {
            bail!("a helper maps only ranges");
        };
        let runtime = std::process::id();
        let identity = |id: u32, range: subid::Range| {
            [(id, 1), (range.start, RANGE)].map(|(id, count)| subid::MapLine {
                inside: id,
                outside: id,
                count,
            })
        };
        let (uid_map, gid_map) = (identity(uid, uids), identity(gid, gids));
        let (wait, go) = isolab::run::pipe()?;
        // SAFETY: this program has no other threads, so the child may run any code.
        match unsafe { fork() }.context("fork()")? {
            ForkResult::Child => in_child(|| {
                drop(go);
                let mut byte = [0u8; 1];
                if nix::unistd::read(&wait, &mut byte).context("read(pipe)")? == 0 {
                    // The runtime gave up before it made its namespace.
                    // SAFETY: _exit takes no pointers and ends this child at once.
                    unsafe { libc::_exit(1) }
                }
                subid::map_from_outside(runtime, &uid_map, &gid_map)?;
                // SAFETY: as above; both maps are written.
                unsafe { libc::_exit(0) }
            }),
            ForkResult::Parent { child } => Ok(MapHelper { pid: child, go }),
        }
    }

    /// Tell the helper our namespace exists, and wait until it has written the
    /// maps.
    fn map(self) -> Result<()> {
        nix::unistd::write(&self.go, b"!").context("write(pipe)")?;
        drop(self.go);
        match waitpid(self.pid, None).context("waitpid(map helper)")? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => bail!(
                "newuidmap and newgidmap did not map the box's IDs ({other:?})"
            ),
        }
    }
}

// ANCHOR: enter_box
/// The handshake between init and the command's process around the box's own user
/// namespace: the command makes it, and init, one level up, writes its maps.
struct Handshake {
    made: (OwnedFd, OwnedFd),
    mapped: (OwnedFd, OwnedFd),
}

impl Handshake {
    fn new() -> Result<Handshake> {
        use isolab::run::pipe;
        Ok(Handshake {
            made: pipe()?,
            mapped: pipe()?,
        })
    }
}

/// In the command's process, just before exec: a user namespace of the box's own,
/// nested in the runtime's, and with it a copy of init's mount table. The kernel
/// *locks* the mounts of a copy made into a less privileged user namespace: the
/// box's root may mount over them, but never unmount, move or remount them, so
/// the masks over /proc, the read-only mounts and the `nodev` root hold.
fn enter_box(handshake: Handshake) -> Result<()> {
    let Handshake { made, mapped } = handshake;
    // A fork of init is not dumpable either, and the /proc files of a process that
    // is not belong to the host's root: init could not write our maps.
    prctl::set_dumpable(true).context("prctl(PR_SET_DUMPABLE, 1)")?;
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .context("unshare(CLONE_NEWUSER | CLONE_NEWNS)")?;
    nix::unistd::write(&made.1, b"!").context("write(pipe)")?;
    drop(made);
    let mut byte = [0u8; 1];
    if nix::unistd::read(&mapped.0, &mut byte).context("read(pipe)")? == 0 {
        bail!("init did not map the box's IDs");
    }
    Ok(())
}

/// In init: wait until the command's process has made its user namespace, then
/// write its maps from outside it, where init holds CAP_SETUID and CAP_SETGID.
/// Root in the box is the caller; with `--map-range`, 1-65535 are their range.
fn map_the_box(child: Pid, handshake: Handshake, map: &Map) -> Result<()> {
    let Handshake { made, mapped } = handshake;
    drop(made.1);
    let mut byte = [0u8; 1];
    if nix::unistd::read(&made.0, &mut byte).context("read(pipe)")? == 0 {
        bail!("the box's first process ended before it made its user namespace");
    }
    let (uid_map, gid_map) = match *map {
        Map::Caller { uid, gid } => (format!("0 {uid} 1"), format!("0 {gid} 1")),
        Map::Range {
            uid,
            gid,
            uids,
            gids,
            ..
        } => (
            format!("0 {uid} 1\n1 {} {RANGE}", uids.start),
            format!("0 {gid} 1\n1 {} {RANGE}", gids.start),
        ),
    };
    write_proc(&format!("/proc/{child}/uid_map"), &uid_map)?;
    write_proc(&format!("/proc/{child}/gid_map"), &gid_map)?;
    nix::unistd::write(&mapped.1, b"!").context("write(pipe)")?;
    Ok(())
}
// ANCHOR_END: enter_box

/// A session keyring of the box's own. Keyrings belong to no namespace: a process
/// holds the session keyring of whoever started it, and with it the right to read
/// every key in it (a Kerberos ticket, a token kept with `keyctl`). runc joins a
/// new one for every container, as init does here, before the box's first process.
pub fn new_session_keyring() -> Result<()> {
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a NULL name makes a new, anonymous
    // keyring; the kernel reads no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match Errno::result(rc) {
        // A kernel without keyrings has nothing to leak.
        Ok(_) | Err(Errno::ENOSYS) => Ok(()),
        Err(e) => Err(e).context("keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)"),
    }
}

// ANCHOR: keyring_filter
/// Every route to a key by its serial number. A new session keyring is not enough:
/// keys belong to no namespace, and keyctl(2) finds a key by its serial number in
/// any keyring. The kernel then checks the key's permissions for whoever asks, by
/// uid alone: a key whose user may read it is read by every process of that uid on
/// the host, and the box's root is the caller's uid. Step 05's REFUSED lists the
/// three key calls; io_uring is here because it makes sockets and sets their
/// options (Linux 5.19 and 6.7) past every filter, socket(AF_ALG) among them.
const KEY_CALLS: [(i64, &str); 6] = [
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
];

/// The filter every box of this step gets, with or without `--harden`: the key
/// calls, io_uring and AF_ALG sockets refused with EPERM, as step 05's filter
/// refuses them, and every other call let through. An AF_ALG socket (Linux 6.2+)
/// takes a `user` or `logon` key the caller may search as its algorithm's key
/// (ALG_SET_KEY_BY_KEY_SERIAL), without keyctl. init installs the filter on
/// itself, before the command: init holds CAP_SYS_ADMIN in the runtime's user
/// namespace, so the kernel takes a filter without no_new_privs, and every
/// process of the box inherits it.
pub fn keyring_filter() -> Vec<seccomp::Instruction> {
    use seccomp::*;
    let mut program = hardening::x86_64_only();
    for (number, _name) in KEY_CALLS {
        program.push(jump_if_equal(number as u32, 0, 1));
        program.push(ret(errno(Errno::EPERM)));
    }
    program.extend(hardening::refuse_if_one_of(
        libc::SYS_socket,
        0,
        &[libc::AF_ALG as u32],
    ));
    program.push(ret(ALLOW));
    program
}
// ANCHOR_END: keyring_filter

/// The box's filesystem, in the order a user namespace allows.
fn build_root(rootfs: &Path) -> Result<()> {
    // ANCHOR: build_root
    // TODO: mount_namespace::make_mounts_private() first. Then bind-mount `rootfs`
    //       onto itself (mount(2) with MS_BIND | MS_REC, and None::<&str> for the
    //       filesystem type and the data), so that it is a mount of its own, and
    //       make it `nodev` with hardening::lock_down_root(rootfs, false). Then,
    //       before the pivot: mount_namespace::mount_proc_at(&rootfs.join("proc"))
    //       (the kernel lets a user namespace mount a procfs only while one is
    //       fully visible in its mount table, and after the pivot the host's is
    //       gone) and bind_dev(rootfs). Last, mount_namespace::pivot_into(rootfs),
    //       whose recursive bind carries them all along.
    todo!(
        "step 06, `build_root`: not written yet. Read the TODO above this line in \
         chapters/06-user-namespace.rs, or run `cargo run -- hint 6`"
    );
    // ANCHOR_END: build_root
}

/// A minimal /dev in the rootfs, made before the pivot: a tmpfs, and the host's
/// device nodes bind-mounted onto empty files. mknod(2) is refused in a user
/// namespace (the kernel wants CAP_MKNOD in the host's), and a bind mount is not:
/// the node is the host's own, and opening it is checked as for the caller.
fn bind_dev(rootfs: &Path) -> Result<()> {
    let dev = rootfs.join("dev");
    let none = None::<&str>;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        flags,
        Some("mode=755,size=64k"),
    )
    .with_context(|| format!("mount(tmpfs, {}, tmpfs)", dev.display()))?;
    for (name, _, _) in mount_namespace::DEV_NODES {
        let (host, node) = (Path::new("/dev").join(name), dev.join(name));
        // ANCHOR: bind_dev
        // TODO: Create an empty file at `node` (fs::File::create) to mount on, then
        //       mount(2) `host` onto it with MsFlags::MS_BIND (pass `none`, defined
        //       above, for the filesystem type and the data). Name the call in the
        //       error context, e.g. format!("mount({}, {}, MS_BIND)", ...).
        todo!(
            "step 06, `bind_dev`: not written yet. Read the TODO above this line \
             in chapters/06-user-namespace.rs, or run `cargo run -- hint 6`"
        );
        // ANCHOR_END: bind_dev
    }
    mount_namespace::link_std_fds(&dev)
}

/// `--harden`: step 05's walls on top, in step 05's order: the capabilities (in
/// the box's namespace), then no_new_privs, then the filter, as podman adds them
/// to a rootless box.
fn harden() -> Result<()> {
    hardening::drop_capabilities()?;
    prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS, 1)")?;
    seccomp::install(&hardening::filter())
}

// ANCHOR: delegated_cgroups
/// A normal user may use a cgroup only if it was handed one: on cgroup v2, a
/// subtree whose directory and files are its own (systemd's `Delegate=yes`). So
/// look whether this process's own cgroup is writable by it in every hierarchy the
/// box would join, and only then make the box's cgroups as step 04 does, with the
/// box one level below the limits: its files are the caller's, and so its root's.
/// Anywhere else (v1 and hybrid hosts keep their controllers for root; a v2 cgroup
/// nobody delegated) the box runs without limits, and says so if asked for them.
fn delegated_cgroups(limits: &LimitArgs, stats: bool) -> Result<BoxCgroups> {
    let layout = Layout::detect()?;
    let hierarchies = layout.for_box()?;
    if !hierarchies.is_empty() && hierarchies.iter().all(writable) {
        let cgroups = BoxCgroups::create_nested(limits)?;
        bound_the_boxs_cgroups(&cgroups)?;
        return Ok(cgroups);
    }
    let asked = limits.memory.is_some()
        || limits.pids_limit.is_some()
        || limits.cpus.is_some();
    if asked || stats {
        let me = isolab::run::program_name();
        eprintln!("{me}: no limits: {}", why_no_cgroup(&layout, &hierarchies));
    }
    Ok(BoxCgroups::none())
}

/// Can this process make a cgroup below its own, and move processes into it?
fn writable(h: &Hierarchy) -> bool {
    let files: &[&str] = match h.version {
        Version::V2 => &[".", "cgroup.procs", "cgroup.subtree_control"],
        Version::V1 => &[".", "tasks"],
    };
    files
        .iter()
        .all(|f| access(&h.own_dir.join(f), AccessFlags::W_OK).is_ok())
}
// ANCHOR_END: delegated_cgroups

// ANCHOR: bound_the_boxs_cgroups
/// How deep below its own cgroup the box may make cgroups, and how many in all.
/// Enough for software that makes its own: systemd puts a service two levels down
/// (`system.slice/NAME.service`), a container runtime a container two (its cgroup
/// and a leaf for its processes, as this step's `isolab-PID/box`). 64 hold a
/// service manager's units and a few boxes of the box's own. Each cgroup costs
/// the kernel memory, which the box's limits count only in part.
const CGROUP_DEPTH: u32 = 4;
const CGROUP_DESCENDANTS: u32 = 64;

/// The box's root owns its cgroup, so it may make cgroups in it, as deep and as
/// many as it likes: the kernel's own bounds say `max`. So bound them from one
/// level up, in `isolab-PID`, whose files no namespace of the box's reaches. The
/// box's own cgroup is the first level down and the first descendant there, so
/// each bound is one more. On every mkdir the kernel checks the bounds of each
/// cgroup above, and refuses one past them with EAGAIN. (A v1 hierarchy has no
/// such files, and none is handed to a normal user.)
fn bound_the_boxs_cgroups(cgroups: &BoxCgroups) -> Result<()> {
    let bounds = [
        ("cgroup.max.depth", CGROUP_DEPTH + 1),
        ("cgroup.max.descendants", CGROUP_DESCENDANTS + 1),
    ];
    for dir in cgroups.paths() {
        if !dir.join("cgroup.max.depth").exists() {
            continue; // v1
        }
        for (file, bound) in bounds {
            let path = dir.join(file);
            fs::write(&path, bound.to_string())
                .with_context(|| format!("write({bound}, {})", path.display()))?;
        }
    }
    Ok(())
}
// ANCHOR_END: bound_the_boxs_cgroups

/// Why this user has no cgroup for the box, and the command that would give one.
fn why_no_cgroup(layout: &Layout, hierarchies: &[Hierarchy]) -> String {
    let uid = nix::unistd::getuid();
    let scope = "systemd-run --user --scope -p Delegate=yes --";
    let again = "<the same command>";
    match layout.kind {
        Kind::V1 | Kind::Hybrid => format!(
            "this host keeps its controllers on cgroup v1, where only root makes cgroups, so none can be delegated to uid {uid}; on a cgroup v2 host (systemd.unified_cgroup_hierarchy=1) `{scope} {again}` gives them"
        ),
        Kind::None => format!(
            "no cgroup filesystem is mounted; on a cgroup v2 host `{scope} {again}` gives them"
        ),
        Kind::V2 => {
            let own = hierarchies
                .first()
                .map(|h| {
                    h.own_dir
                        .components()
                        .collect::<PathBuf>()
                        .display()
                        .to_string()
                })
                .unwrap_or_default();
            format!(
                "this process's cgroup {own} was not delegated to uid {uid}: `{scope} {again}` runs it in one that is"
            )
        }
    }
}

/// Root in the box is the caller: as root, it would be the host's root.
fn need_a_normal_user() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        bail!(
            "this step is for a normal user, without sudo: run as root, the box's root would be the host's root (uid_map `0 0 1`), which is steps 01-05's box"
        );
    }
    Ok(())
}

/// Fail with one line when this kernel, or its settings, allow no user namespace.
fn need_user_namespaces() -> Result<()> {
    if !Path::new("/proc/self/ns/user").exists() {
        bail!(
            "this kernel has no user namespaces (no /proc/self/ns/user: built without CONFIG_USER_NS)"
        );
    }
    let setting =
        |path: &str| fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    if setting("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        bail!(
            "user namespaces are switched off here: user.max_user_namespaces is 0; `sudo sysctl -w user.max_user_namespaces=15000` turns them on"
        );
    }
    if setting("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
    {
        bail!(
            "user namespaces are switched off for normal users here: kernel.unprivileged_userns_clone is 0; `sudo sysctl -w kernel.unprivileged_userns_clone=1` turns them on"
        );
    }
    Ok(())
}

/// The rootfs, if this user may read and enter it: the box's root is this user on
/// the host, and the kernel checks the rootfs's files as for them.
fn readable_rootfs(arg: &RootfsArg) -> Result<PathBuf> {
    if access(&arg.rootfs, AccessFlags::R_OK | AccessFlags::X_OK)
        == Err(Errno::EACCES)
    {
        bail!(
            "the rootfs {} is not readable by uid {} (it or a directory above it is closed to you): build one of your own with `cargo run -- rootfs DIR`",
            arg.rootfs.display(),
            nix::unistd::getuid()
        );
    }
    arg.checked()
}

/// The maps the box gets: one line each, or with `--map-range` the caller's ranges.
fn the_map(range: bool, setgroups: bool) -> Result<Map> {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    if !range {
        if setgroups {
            bail!(
                "--allow-setgroups needs --map-range: with a map of your own IDs alone, the kernel takes the gid_map only once setgroups(2) is denied"
            );
        }
        return Ok(Map::Caller { uid, gid });
    }
    for tool in ["newuidmap", "newgidmap"] {
        if !on_path(tool) {
            bail!(
                "--map-range needs {tool}, which is not installed: `sudo apt-get install uidmap` (Debian, Ubuntu) or `shadow-utils` (Fedora)"
            );
        }
    }
    let name = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let uids = subid::range_for(Path::new("/etc/subuid"), &name, uid, RANGE)?;
    let gids = subid::range_for(Path::new("/etc/subgid"), &name, uid, RANGE)?;
    Ok(Map::Range {
        uid,
        gid,
        uids,
        gids,
        setgroups,
    })
}

fn on_path(program: &str) -> bool {
    let dirs = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&dirs).any(|d| d.join(program).is_file())
}
