//! Step 09's VMM, looking around from inside its jail, and acting as a VMM the
//! guest has taken over: the probe's job, which the probe cannot do there, since
//! the jail holds no program to run. What it sees and tries is printed as `key:
//! value` lines, as the probe prints its report.

use super::{KVM_RUN, NOBODY, Vm, kvm_real_mode};
use anyhow::{Context, Result};
use isolab::container::caps;
use isolab::vm::GuestMemory;
use isolab::workshop::report::{Jail, line};
use nix::errno::Errno;
use nix::sys::prctl;
use nix::unistd::Pid;
use std::fs::File;
use std::os::fd::AsRawFd;

/// What a VMM the guest has taken over tries, for `--attack`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Attack {
    /// read /etc/passwd, a file every host has
    OpenHostFile,
    /// list the host's processes in /proc
    ListProcesses,
    /// run /bin/sh
    RunAShell,
    /// connect to 1.1.1.1, port 53: out to the network
    ConnectOut,
    /// open a vsock socket and bind it: vsock, the channel between VMs and their
    /// host, is in no network namespace
    ConnectVsock,
    /// make a user namespace, in which a process has every capability: the kernel
    /// code those guard (file systems, netfilter, ...) in reach again
    NewUserNamespace,
    /// make a second VM with the /dev/kvm it holds open
    AnotherVm,
    /// set the vCPU's registers without KVM_SET_REGS: through the run area's
    /// sync_regs, which KVM_RUN, the one ioctl allowed, reads and writes
    SetRegisters,
    /// read its user's keyring, which the kernel keeps per uid, not per namespace
    ReadKeyring,
    /// trace init, which kept every capability to build the box
    TraceInit,
    /// write escape sequences to stdout (retitle the window, ask the terminal to
    /// answer on the caller's input), then ask for the terminal's modes, which a
    /// VMM needs to change them or to read what is typed
    Terminal,
    /// write 64 MiB to stdout, as a VMM would that means to fill the caller's
    /// terminal, or the disk under the file it was sent to
    Flood,
    /// write through a null pointer, as a VMM whose memory the guest corrupted
    /// might: a crash, which must not look like a refused call
    Crash,
}

/// What the `terminal` attack writes: OSC 0 sets the window's title, and
/// `ESC [ 6 n` asks the terminal to type the cursor's position into its input,
/// the caller's shell's next command line.
const ESCAPES: &str = "\x1b]0;a jailed VMM was here\x07\x1b[6n\n";

/// How far `look_around` asks for PIDs.
const PID_SCAN: i32 = 1024;

/// What the VMM can see and do from where it stands, before its guest runs: the
/// walls of its box, in `key: value` lines.
pub fn look_around() -> Result<String> {
    let listing = |dir: &str| {
        let mut names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => return format!("unreadable ({e})"),
        };
        names.sort();
        names.join(" ")
    };
    // Every PID that exists, asked with signal 0, which sends nothing: a process we
    // may not signal still answers EPERM, where there is none the answer is ESRCH.
    // A new PID namespace numbers its processes from 1, so the first few hundred
    // PIDs are enough to find them all, and the host's would answer here too.
    let pids: Vec<i32> = (1..=PID_SCAN)
        .filter(|&pid| {
            nix::sys::signal::kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
        })
        .collect();
    let uid = nix::unistd::getuid().as_raw();
    let sets = caps::get()?;
    let capabilities = match (sets.effective | sets.permitted, caps::bounding()) {
        (0, 0) => "none (and the bounding set is empty)".to_string(),
        (have, _) => caps::names(have).join(" "),
    };
    let mut interfaces: Vec<String> = nix::ifaddrs::getifaddrs()
        .context("getifaddrs()")?
        .map(|i| {
            let up = i.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            format!("{} ({})", i.interface_name, if up { "up" } else { "down" })
        })
        .collect();
    interfaces.dedup();
    let environment: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    let stdout = stdout();
    let stdin = match nix::sys::stat::fstat(std::io::stdin()) {
        Ok(st) if st.st_rdev == nix::sys::stat::makedev(1, 3) => {
            "/dev/null".to_string()
        }
        Ok(_) => "READABLE: the caller's (a terminal, pipe or file)".to_string(),
        Err(e) => format!("none ({e})"),
    };
    let lines = [
        (
            Jail::User,
            match uid {
                0 => "0 (root, without capabilities)".to_string(),
                NOBODY => format!("{NOBODY} (nobody), in no group"),
                other => other.to_string(),
            },
        ),
        (Jail::Root, listing("/")),
        (Jail::Dev, listing("/dev")),
        (
            Jail::Processes,
            format!(
                "{} (the PIDs kill(pid, 0) finds from 1 to {PID_SCAN}: {})",
                pids.len(),
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
        (Jail::Capabilities, capabilities),
        (
            Jail::NoNewPrivs,
            if prctl::get_no_new_privs().context("prctl(PR_GET_NO_NEW_PRIVS)")? {
                "on".into()
            } else {
                "off".into()
            },
        ),
        (Jail::Network, interfaces.join(", ")),
        (
            Jail::Environment,
            if environment.is_empty() {
                "empty (wiped)".into()
            } else {
                format!("READABLE: {}", environment.join(" "))
            },
        ),
        (Jail::Stdin, stdin),
        (Jail::Stdout, stdout),
        (
            Jail::SessionKeyring,
            isolab::container::canary::key_in_reach(),
        ),
    ];
    Ok(lines
        .into_iter()
        .map(|(key, value)| line(key, value) + "\n")
        .collect())
}

/// What fd 1 is (fd 2 is the same kind): a write-only pipe, which the runtime
/// relays, or the caller's own terminal or file.
fn stdout() -> String {
    use nix::sys::stat::SFlag;
    // SAFETY: F_GETFL takes a descriptor and returns its flags; no memory of ours.
    let flags = unsafe { libc::fcntl(1, libc::F_GETFL) };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stdout()) else {
        return format!("none ({})", Errno::last());
    };
    let readable = flags & libc::O_ACCMODE != libc::O_WRONLY;
    // SAFETY: isatty takes a descriptor number and touches no memory of ours.
    let terminal = unsafe { libc::isatty(1) } == 1;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    match (terminal, kind, readable) {
        (true, _, true) => {
            "READABLE: a terminal, the caller's: what is typed, and its \
                            modes, are in reach"
                .into()
        }
        (true, _, false) => {
            "WRITABLE: a terminal, the caller's: escape sequences reach \
                             it as they are"
                .into()
        }
        (false, SFlag::S_IFIFO, false) => "a pipe, write-only".into(),
        (false, SFlag::S_IFIFO, true) => "READABLE: a pipe".into(),
        (false, SFlag::S_IFREG, _) => "WRITABLE: a file, the caller's".into(),
        _ => "something else, the caller's".into(),
    }
}

impl Attack {
    /// Try it, from inside the jail, and say how it went. Under the filter most of
    /// these never return: the first call outside the list ends the VMM.
    pub fn try_it(self, kvm: &File, vm: &mut Vm) -> String {
        let refused = |e: std::io::Error, why: &str| {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
            format!("refused ({errno:?}: {why})")
        };
        match self {
            Attack::OpenHostFile => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => format!(
                    "open a host file: READABLE: /etc/passwd, {} users of the host",
                    text.lines().count()
                ),
                Err(e) => format!(
                    "open a host file: {}",
                    refused(e, "there is no /etc/passwd in my root")
                ),
            },
            Attack::ListProcesses => match std::fs::read_dir("/proc") {
                Ok(entries) => {
                    let n = entries
                        .flatten()
                        .filter(|e| {
                            e.file_name().to_string_lossy().parse::<u32>().is_ok()
                        })
                        .count();
                    format!(
                        "list the host's processes: READABLE: /proc lists {n} processes"
                    )
                }
                Err(e) => format!(
                    "list the host's processes: {}",
                    refused(e, "there is no /proc in my root")
                ),
            },
            Attack::RunAShell => {
                let argv =
                    [c"sh", c"-c", c"echo a shell, as uid $(id -u), in $(pwd)"];
                let Err(e) = nix::unistd::execv(c"/bin/sh", &argv);
                format!(
                    "run a shell: {}",
                    refused(e.into(), "there is no /bin/sh in my root")
                )
            }
            Attack::ConnectOut => {
                match std::net::TcpStream::connect(("1.1.1.1", 53)) {
                    Ok(_) => "connect out: CONNECTED to 1.1.1.1:53".into(),
                    Err(e) => format!(
                        "connect out: {}",
                        refused(
                            e,
                            "my network namespace has only lo, and it is down"
                        )
                    ),
                }
            }
            Attack::ConnectVsock => match vsock_bound() {
                Ok(()) => {
                    "open a vsock socket: ALLOWED: bound to a port, one of the \
                           host's: vsock is in no network namespace"
                        .into()
                }
                Err(Errno::EAFNOSUPPORT) => {
                    "open a vsock socket: impossible (this kernel has no vsock)"
                        .into()
                }
                Err(e) => format!(
                    "open a vsock socket: {}",
                    refused(e.into(), "a filter refuses AF_VSOCK")
                ),
            },
            Attack::NewUserNamespace => match child_in_a_user_namespace() {
                Ok(n) => format!(
                    "make a user namespace: ALLOWED: a child of mine holds {n} \
                     capabilities in one of its own"
                ),
                Err(e) => format!(
                    "make a user namespace: {}",
                    refused(e.into(), "a filter refuses new namespaces")
                ),
            },
            Attack::AnotherVm => {
                let vm = GuestMemory::new(4096)
                    .and_then(|m| kvm_real_mode::create_vm(kvm, &m));
                match vm {
                    Ok(vm) => format!(
                        "make another VM: ALLOWED: a second VM on fd {}",
                        vm.as_raw_fd()
                    ),
                    Err(e) => format!("make another VM: refused ({e:#})"),
                }
            }
            Attack::SetRegisters => match set_rip(vm, 0x1234_5000) {
                Ok(rip) => format!(
                    "set the vCPU's registers: ALLOWED: rip is {rip:#x} now, set \
                     through kvm_run's sync_regs by KVM_RUN, the ioctl the filter allows"
                ),
                Err(Errno::EINVAL) => {
                    "set the vCPU's registers: impossible (this KVM \
                                       has no KVM_CAP_SYNC_REGS)"
                        .into()
                }
                Err(e) => format!(
                    "set the vCPU's registers: {}",
                    refused(e.into(), "KVM_RUN")
                ),
            },
            Attack::ReadKeyring => match user_keyring() {
                Ok((serial, description)) if description == "_uid.0" => format!(
                    "read my user's keyring: ROOT'S: keyring {serial} ({description}), which \
                     every process of uid 0 on the host shares"
                ),
                Ok((serial, description)) => {
                    format!(
                        "read my user's keyring: keyring {serial} ({description}), not root's"
                    )
                }
                Err(e) => {
                    format!("read my user's keyring: {}", refused(e, "keyctl"))
                }
            },
            Attack::Terminal => {
                use std::io::Write;
                let mut out = std::io::stdout();
                let _ = out.write_all(ESCAPES.as_bytes()).and_then(|_| out.flush());
                match nix::sys::termios::tcgetattr(std::io::stdout()) {
                    Ok(_) => "drive the terminal: ALLOWED: my stdout is the caller's \
                              terminal: its modes are mine to change, and what is typed \
                              mine to read"
                        .into(),
                    Err(e) => format!(
                        "drive the terminal: {}",
                        refused(e.into(), "my stdout is no terminal")
                    ),
                }
            }
            Attack::Flood => {
                use std::io::Write;
                let mut line = vec![b'A'; 1 << 20];
                line[(1 << 20) - 1] = b'\n';
                let mut out = std::io::stdout();
                let mut written = 0;
                for _ in 0..64 {
                    if let Err(e) = out.write_all(&line) {
                        return format!(
                            "flood my stdout: refused after {written} bytes ({e})"
                        );
                    }
                    written += line.len();
                }
                format!("flood my stdout: ALLOWED: {written} bytes written")
            }
            Attack::Crash => {
                // SAFETY: the store faults before it writes anything (page 0 is
                // never mapped), which is its purpose, and the fault handler
                // (sigsys::name_faults) ends the process.
                unsafe {
                    core::arch::asm!("mov byte ptr [{0}], 1", in(reg) 0usize)
                };
                "crash: the write through a null pointer went through".into()
            }
            Attack::TraceInit => {
                // SAFETY: PTRACE_SEIZE takes a PID and flags; it stops nothing, and
                // writes no memory of ours.
                let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, 1, 0, 0) };
                match Errno::result(rc) {
                    Ok(_) => "trace init: ALLOWED: init is mine to trace".into(),
                    Err(e) => format!(
                        "trace init: {}",
                        refused(e.into(), "init holds what I do not")
                    ),
                }
            }
        }
    }
}

/// Set the vCPU's rip to `rip` with no ioctl but KVM_RUN, as KVM_CAP_SYNC_REGS lets
/// a VMM: registers marked in `kvm_dirty_regs` are loaded from the run area when
/// KVM_RUN starts, those in `kvm_valid_regs` stored there when it returns, and
/// with `immediate_exit` set it returns at once (EINTR) without running the
/// guest. Returns rip as KVM_RUN then reports it.
fn set_rip(vm: &mut Vm, rip: u64) -> Result<u64, Errno> {
    const KVM_SYNC_X86_REGS: u64 = kvm_bindings::KVM_SYNC_X86_REGS as u64;
    let vcpu = vm.vcpu.as_raw_fd();
    let run_once = |area: &mut isolab::vm::RunArea| {
        area.run_mut().immediate_exit = 1;
        area.run_mut().kvm_valid_regs = KVM_SYNC_X86_REGS;
        // SAFETY: KVM_RUN takes no pointer; the kernel writes only the vCPU's run
        // area, borrowed `&mut` here, and returns at once (immediate_exit).
        let rc = unsafe { libc::ioctl(vcpu, KVM_RUN.into(), 0) };
        match Errno::result(rc) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(e),
        }
    };
    run_once(&mut vm.run)?;
    let run = vm.run.run_mut();
    run.s.regs.regs.rip = rip;
    run.kvm_dirty_regs = KVM_SYNC_X86_REGS;
    run_once(&mut vm.run)?;
    // SAFETY: with kvm_valid_regs set, KVM_RUN stored the registers in `regs`, the
    // union's member for them; any bytes are a valid u64.
    Ok(unsafe { vm.run.run().s.regs.regs.rip })
}

/// A child in a user namespace of its own, made with clone(2) (the VMM itself may
/// not unshare one: KVM's thread makes it a process of two threads): how many
/// capabilities the child holds there.
fn child_in_a_user_namespace() -> Result<u32, Errno> {
    use nix::sys::wait::{WaitStatus, waitpid};
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: clone(2) without a new stack is fork(2) with flags: the child runs
    // on a copy of this stack, makes one call (capget) and ends with _exit.
    let pid = Errno::result(unsafe {
        libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize)
    })?;
    if pid == 0 {
        let n = caps::get().map_or(0, |sets| sets.effective.count_ones());
        // SAFETY: _exit ends the child at once.
        unsafe { libc::_exit(n as i32) }
    }
    match waitpid(Pid::from_raw(pid as i32), None)? {
        WaitStatus::Exited(_, n) => Ok(n as u32),
        _ => Err(Errno::ECHILD),
    }
}

/// A vsock stream socket, bound to any port of any of this machine's CIDs.
/// Nothing is sent anywhere.
fn vsock_bound() -> Result<(), Errno> {
    // SAFETY: socket(2) takes integers.
    let fd = Errno::result(unsafe {
        libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    let mut address = libc::sockaddr_vm {
        svm_family: libc::AF_VSOCK as libc::sa_family_t,
        svm_reserved1: 0,
        svm_port: libc::VMADDR_PORT_ANY,
        svm_cid: libc::VMADDR_CID_ANY,
        svm_zero: [0; 4],
    };
    let mut length = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: `address` is a sockaddr_vm of `length` bytes, read by bind and
    // written by getsockname, which writes at most `length` bytes.
    unsafe {
        Errno::result(libc::bind(fd, (&raw const address).cast(), length))?;
        Errno::result(libc::getsockname(
            fd,
            (&raw mut address).cast(),
            &mut length,
        ))?;
    }
    Ok(())
}

/// This user's keyring, as KEYCTL_GET_KEYRING_ID and KEYCTL_DESCRIBE give it:
/// its serial, and its description, which names its uid (`_uid.0` is root's).
fn user_keyring() -> std::io::Result<(i64, String)> {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEYCTL_DESCRIBE: libc::c_long = 6;
    const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
    // SAFETY: KEYCTL_GET_KEYRING_ID takes integers and writes no memory of ours.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_USER_KEYRING,
            1,
        )
    };
    if serial < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut text = [0u8; 256];
    // SAFETY: the kernel writes at most text.len() bytes into `text`.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            serial,
            text.as_mut_ptr(),
            text.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // "type;uid;gid;perm;description", NUL-terminated.
    let described = String::from_utf8_lossy(&text[..(n as usize).min(text.len())]);
    let description = described.trim_end_matches('\0').rsplit(';').next();
    Ok((serial, description.unwrap_or_default().to_string()))
}
