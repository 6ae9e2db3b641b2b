//! What the probe may ask of the kernel. Each attempt is made so that the kernel
//! refuses it *after* its permission check whatever happens: EPERM means the box
//! blocked it; any other answer means it got past the check and would have been
//! allowed. Nothing here changes the machine.

use crate::routes::in_fork;
use nix::errno::Errno;

use isolab::container::caps;

fn effective_caps() -> Option<u64> {
    caps::get().ok().map(|s| s.effective)
}

pub fn capabilities() -> String {
    let Some(eff) = effective_caps() else {
        return "unknown (capget failed)".into();
    };
    let full = eff.count_ones() == caps::last_cap() + 1;
    if full && crate::view::in_own_user_namespace() == Some(true) {
        return format!("all {} in my own user namespace", eff.count_ones());
    }
    if eff == caps::bounding() && eff.count_ones() > 30 {
        // Whatever the host grants root, untouched: all 41 on a laptop; a sandbox
        // may hold a few back.
        return format!("all {} that root has on this host", eff.count_ones());
    }
    if eff == 0 {
        return "none".into();
    }
    let names = caps::names(eff);
    format!(
        "{} of {}: {}",
        names.len(),
        caps::last_cap() + 1,
        names.join(" ")
    )
}

/// Capabilities count in the user namespace that holds them. In the host's, they
/// act on the whole machine; in one of its own, only on what that namespace owns
/// (its mounts, its network, its hostname), and the kernel checks what belongs to
/// the machine (modules, the clock, devices, host files) against the host's.
pub fn capabilities_count_in() -> String {
    match crate::view::in_own_user_namespace() {
        Some(false) => "the host's user namespace (they act on the whole machine)".into(),
        Some(true) => "my own user namespace (only over what it owns, never the host)".into(),
        None => "unknown (no /proc/self/uid_map)".into(),
    }
}

pub fn no_new_privs() -> String {
    // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers.
    match unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } {
        1 => "on (exec can never grant more privileges)".into(),
        0 => "off".into(),
        _ => "unknown".into(),
    }
}

pub fn seccomp() -> String {
    // SAFETY: PR_GET_SECCOMP takes no pointers.
    match unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } {
        0 => "off".into(),
        1 => "strict".into(),
        2 => "filter".into(),
        _ => "unknown".into(),
    }
}

/// EPERM is the box saying no; anything else got past the permission check.
fn verdict(result: Result<(), Errno>) -> String {
    match result {
        Err(Errno::EPERM) => "refused (EPERM)".into(),
        _ => "allowed".into(),
    }
}

/// mount(2) of a filesystem type that does not exist: ENODEV after the check.
pub fn try_mount() -> String {
    let r = nix::mount::mount(
        Some("isolab"),
        "/",
        Some("isolab-no-such-filesystem"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    verdict(r)
}

/// reboot(2) with a wrong second magic number: EINVAL after the check.
pub fn try_reboot() -> String {
    // SAFETY: with a bad magic number reboot does nothing; the last argument is unused.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_reboot,
            libc::LINUX_REBOOT_MAGIC1,
            0,
            0,
            std::ptr::null::<u8>(),
        )
    };
    verdict(Errno::result(rc).map(drop))
}

/// finit_module(2) with no file: EBADF after the check. A kernel built without
/// module support has no such call at all (ENOSYS): nothing to refuse there.
pub fn try_load_module() -> String {
    // SAFETY: fd -1 and an empty parameter string; the kernel reads only the string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) };
    match Errno::result(rc) {
        Err(Errno::ENOSYS) => "impossible (this kernel has no module support)".into(),
        result => verdict(result.map(drop)),
    }
}

/// io_uring_setup(2) with 0 entries: EINVAL after the check. io_uring is a second
/// way to make system calls (reads, writes, opens, sockets) that a filter on the
/// ordinary calls never sees, and one of the kernel's largest recent attack surfaces.
pub fn try_io_uring() -> String {
    let mut params = [0u8; 120]; // struct io_uring_params, all zero
    // SAFETY: `params` is as big as struct io_uring_params; with 0 entries the kernel
    // fails before it writes anything.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 0, params.as_mut_ptr()) };
    match Errno::result(rc) {
        Err(Errno::ENOSYS) => "impossible (this kernel has no io_uring)".into(),
        Ok(fd) => {
            // SAFETY: the kernel made a ring after all; the descriptor is ours to close.
            unsafe { libc::close(fd as i32) };
            "allowed".into()
        }
        result => verdict(result.map(drop)),
    }
}

/// socket(AF_VSOCK): the channel between a VM and its host. It has no network
/// namespace, so a box with only loopback could still talk to the host (or to a
/// guest) through it.
pub fn try_vsock() -> String {
    // SAFETY: socket(2) takes integers; we close the descriptor it returns.
    let rc = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    match Errno::result(rc) {
        Ok(fd) => {
            // SAFETY: `fd` is the socket just made, closed once.
            unsafe { libc::close(fd) };
            "allowed (vsock has no network namespace: it reaches past the box's)".into()
        }
        Err(Errno::EAFNOSUPPORT) => "impossible (this kernel has no vsock)".into(),
        Err(e) => verdict(Err(e)),
    }
}

/// `probe alg-key`: the AF_ALG route to a key (Linux 6.2+), one line. An
/// hmac(sha256) socket takes a `user` or `logon` key the caller may search as its
/// own key, by serial number (ALG_SET_KEY_BY_KEY_SERIAL), without keyctl: whoever
/// holds it then has the key's HMAC of any message (for a linear algorithm such
/// as ghash, the key itself). Keys belong to no namespace, as for keyctl.
pub fn alg_key(serial: Option<i32>) -> std::process::ExitCode {
    println!("AF_ALG key by serial: {}", try_alg_key(serial));
    std::process::ExitCode::SUCCESS
}

fn try_alg_key(serial: Option<i32>) -> String {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) takes integers; OwnedFd closes what it returns.
    let rc = unsafe { libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    let socket = match Errno::result(rc) {
        // SAFETY: `fd` is the socket just made, owned by nothing else.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(Errno::EAFNOSUPPORT) => {
            return "impossible (socket(AF_ALG): EAFNOSUPPORT, this kernel has no AF_ALG)".into();
        }
        Err(e) => return format!("refused (socket(AF_ALG): {e:?})"),
    };
    let Some(serial) = serial else {
        return "socket(AF_ALG) allowed (no --key-serial given)".into();
    };
    // SAFETY: sockaddr_alg is plain old data; all zeroes is a valid value.
    let mut address: libc::sockaddr_alg = unsafe { std::mem::zeroed() };
    address.salg_family = libc::AF_ALG as u16;
    address.salg_type[..4].copy_from_slice(b"hash");
    address.salg_name[..12].copy_from_slice(b"hmac(sha256)");
    // SAFETY: the kernel reads `size_of::<sockaddr_alg>()` bytes from `address`.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_alg>() as libc::socklen_t,
        )
    };
    if let Err(e) = Errno::result(rc) {
        return format!("socket(AF_ALG) allowed; bind(hmac(sha256)): {e:?}");
    }
    // SAFETY: the kernel reads the 4 bytes of `serial`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_ALG,
            libc::ALG_SET_KEY_BY_KEY_SERIAL,
            (&raw const serial).cast(),
            4,
        )
    };
    match Errno::result(rc) {
        Ok(_) => "KEYED (ALG_SET_KEY_BY_KEY_SERIAL took the key: its HMAC of anything)".into(),
        Err(Errno::ENOPROTOOPT) => "socket(AF_ALG) allowed; this kernel has no \
                                   ALG_SET_KEY_BY_KEY_SERIAL (before 6.2)"
            .into(),
        Err(e) => format!("socket(AF_ALG) allowed; ALG_SET_KEY_BY_KEY_SERIAL: {e:?}"),
    }
}

/// personality(2) with ADDR_NO_RANDOMIZE, in a child: memory layouts without
/// randomisation make exploits reliable.
pub fn try_personality() -> String {
    let code = in_fork(|| {
        // SAFETY: personality takes an integer; it changes only this child.
        let rc = unsafe { libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) };
        if rc == -1 { Errno::last() as i32 } else { 0 }
    });
    child_verdict(code)
}

/// settimeofday(NULL, NULL) asks for CAP_SYS_TIME and then has nothing to set.
pub fn try_set_clock() -> String {
    // SAFETY: both pointers are NULL, which settimeofday accepts and ignores.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_settimeofday,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
        )
    };
    verdict(Errno::result(rc).map(drop))
}

/// setpriority(2) to nice -1, in a child so the probe itself is unchanged: making
/// a process more important than others needs CAP_SYS_NICE (the kernel says
/// EACCES without it). No seccomp filter refuses it: it is the capability test.
pub fn try_raise_priority() -> String {
    let code = in_fork(|| {
        // SAFETY: setpriority takes integers; it changes only this child.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -1) };
        if rc == 0 { 0 } else { Errno::last() as i32 }
    });
    child_verdict(code)
}

/// What a child that tried something reported: 0 for success, else the errno.
fn child_verdict(code: Option<i32>) -> String {
    match code {
        Some(0) => "allowed".into(),
        Some(e) => format!("refused ({:?})", Errno::from_raw(e)),
        None => "unknown (fork failed)".into(),
    }
}

/// unshare(CLONE_NEWUSER) in a child: a user namespace would give it a full set of
/// capabilities inside it. (The kernel also refuses it to a chrooted process.)
pub fn try_user_namespace() -> String {
    let code = in_fork(
        || match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
            Ok(()) => 0,
            Err(e) => e as i32,
        },
    );
    child_verdict(code)
}

/// A child asks to trace its parent (us) with PTRACE_SEIZE, which does not stop the
/// tracee; the child then exits, which detaches it.
pub fn try_ptrace_parent() -> String {
    let code = in_fork(|| {
        let parent = nix::unistd::getppid();
        match nix::sys::ptrace::seize(parent, nix::sys::ptrace::Options::empty()) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }
    });
    child_verdict(code)
}

/// The network interfaces this process can see, and whether they are up.
pub fn network() -> String {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return "unknown (getifaddrs failed)".into();
    };
    let mut seen: Vec<(String, bool)> = Vec::new();
    for a in addrs {
        if !seen.iter().any(|(n, _)| *n == a.interface_name) {
            let up = a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            seen.push((a.interface_name, up));
        }
    }
    if seen.is_empty() {
        return "no interfaces".into();
    }
    seen.iter()
        .map(|(n, up)| format!("{n} ({})", if *up { "up" } else { "down" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// This program's path: /proc/self/exe, or argv[0] when /proc is not mounted.
fn my_path() -> Option<std::path::PathBuf> {
    std::env::current_exe().ok().or_else(|| {
        let argv0 = std::path::PathBuf::from(std::env::args_os().next()?);
        (argv0.is_absolute() && argv0.is_file()).then_some(argv0)
    })
}

/// Run `program arg` in a child (after `before_exec` there) and return what it printed.
fn run_self(
    program: &std::path::Path,
    arg: &str,
    before_exec: impl FnOnce() -> bool,
) -> Option<String> {
    use std::os::fd::AsRawFd;
    let (read, write) = nix::unistd::pipe().ok()?;
    let path = std::ffi::CString::new(program.as_os_str().as_encoded_bytes()).ok()?;
    let argv = [path.clone(), std::ffi::CString::new(arg).ok()?];
    // The output is a line or two, far less than a pipe holds, so waiting for the
    // child before reading cannot block it.
    let code = in_fork(|| {
        // SAFETY: dup2 onto stdout; both descriptors are ours and open.
        if unsafe { libc::dup2(write.as_raw_fd(), 1) } < 0 || !before_exec() {
            return 1;
        }
        let _ = nix::unistd::execv(&path, &argv);
        1
    });
    drop(write);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut out).ok()?;
    (code == Some(0)).then(|| out.trim().to_string())
}

/// A setuid-root program run by an ordinary user runs as root (that is what `su`
/// and `sudo` are). With no_new_privs, exec ignores the setuid bit. The probe makes
/// a setuid-root copy of itself in /tmp, drops to user 65534 in a child, runs the
/// copy, and asks it for its effective user ID.
pub fn try_setuid_binary() -> String {
    use std::os::unix::fs::PermissionsExt;
    let Some(me) = my_path() else {
        return "unknown (cannot find my own program)".into();
    };
    if let Ok(st) = nix::sys::statvfs::statvfs("/tmp") {
        let flags = st.flags();
        if flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            return "not tried (/tmp is read-only)".into();
        }
        if flags.contains(nix::sys::statvfs::FsFlags::ST_NOSUID) {
            return "not tried (/tmp is mounted nosuid)".into();
        }
    }
    let copy = std::path::PathBuf::from(format!("/tmp/.isolab-setuid-{}", std::process::id()));
    let made = std::fs::copy(&me, &copy)
        .and_then(|_| std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)));
    let result = match made {
        Err(e) => match e.raw_os_error().map(Errno::from_raw) {
            Some(errno) => format!("not tried (could not make a setuid copy: {errno:?})"),
            None => format!("not tried (could not make a setuid copy: {e})"),
        },
        Ok(())
            if crate::view::in_own_user_namespace() == Some(true)
                && crate::view::host_uid(65534).is_none() =>
        {
            "not tried (only my own uid is mapped: there is no other user to run it as)".into()
        }
        Ok(()) => {
            let nobody = nix::unistd::Uid::from_raw(65534);
            let euid = run_self(&copy, "euid", || nix::unistd::setuid(nobody).is_ok());
            match euid.as_deref() {
                Some("0") if crate::view::in_own_user_namespace() == Some(true) => format!(
                    "grants my namespace's root (euid 0 here, uid {} on the host)",
                    crate::view::host_uid(0).map_or("?".into(), |u| u.to_string())
                ),
                Some("0") => "grants root (euid 0)".into(),
                Some(other) => format!("refused (euid stays {other})"),
                None => "refused (could not run it)".into(),
            }
        }
    };
    let _ = std::fs::remove_file(&copy);
    result
}

/// Whether any route leads beyond loopback: connect(2) on a UDP socket sends
/// nothing, it only looks up a route (to TEST-NET-1, an address nobody uses).
pub fn outside_network() -> String {
    let socket = match std::net::UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => return format!("unknown ({e})"),
    };
    match socket.connect("192.0.2.1:9") {
        Ok(()) => "reachable (there is a route out)".into(),
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => "unreachable (no route)".into(),
        Err(e) => format!("unreachable ({e})"),
    }
}
