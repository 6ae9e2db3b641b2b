//! Who the probe is and what it can see.

use std::fs;
use std::os::fd::RawFd;

pub fn pid() -> String {
    nix::unistd::getpid().to_string()
}

pub fn ppid() -> String {
    let ppid = nix::unistd::getppid().as_raw();
    if ppid == 0 {
        "0 (my parent is outside my PID namespace)".into()
    } else {
        ppid.to_string()
    }
}

pub fn uid() -> String {
    let uid = nix::unistd::getuid().as_raw();
    if uid == 0 {
        "0 (root)".into()
    } else {
        uid.to_string()
    }
}

/// One line of /proc/self/uid_map: `count` IDs from `inside` are `outside` and on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The user namespace's uid_map as this process sees it: which IDs of the parent
/// namespace its IDs are. `None` without /proc.
pub fn uid_map() -> Option<Vec<Mapping>> {
    let text = fs::read_to_string("/proc/self/uid_map").ok()?;
    text.lines()
        .map(|l| {
            let n: Vec<u32> = l
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            match n[..] {
                [inside, outside, count] => Some(Mapping {
                    inside,
                    outside,
                    count,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The initial user namespace, the host's, maps every ID to itself.
const HOST_MAP: Mapping = Mapping {
    inside: 0,
    outside: 0,
    count: u32::MAX,
};

/// Is this process in a user namespace of its own (not the host's)?
pub fn in_own_user_namespace() -> Option<bool> {
    uid_map().map(|map| map != [HOST_MAP])
}

/// What `uid` (an ID in this namespace) is in the parent namespace, if it is mapped.
pub fn host_uid(uid: u32) -> Option<u32> {
    uid_map()?
        .iter()
        .find(|m| uid >= m.inside && uid - m.inside < m.count)
        .map(|m| m.outside + (uid - m.inside))
}

/// Who the host's kernel sees when it looks at this process's uid.
pub fn uid_on_the_host() -> String {
    let Some(map) = uid_map() else {
        return "unknown (no /proc/self/uid_map)".into();
    };
    if map == [HOST_MAP] {
        return "the same (my user namespace is the host's)".into();
    }
    let lines: Vec<String> = map
        .iter()
        .map(|m| format!("{} {} {}", m.inside, m.outside, m.count))
        .collect();
    let uid = nix::unistd::getuid().as_raw();
    match host_uid(uid) {
        Some(outside) => format!("{outside} (my uid_map: {})", lines.join(", ")),
        None => format!(
            "none: uid {uid} is not mapped (my uid_map: {})",
            lines.join(", ")
        ),
    }
}

pub fn hostname() -> String {
    match nix::unistd::gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(e) => format!("unknown ({e})"),
    }
}

pub fn kernel() -> String {
    match nix::sys::utsname::uname() {
        Ok(u) => format!(
            "{} {} (this machine's: every container on it shares this one)",
            u.sysname().to_string_lossy(),
            u.release().to_string_lossy()
        ),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Bare metal, or a virtual machine, and whose: the CPU says. Bit 31 of CPUID
/// leaf 1's ECX is set by every hypervisor that wants to be seen, and leaf
/// 0x40000000 then holds its 12-letter signature. A VM's kernel is its own; the
/// host below it runs another.
pub fn machine() -> String {
    use std::arch::x86_64::__cpuid;
    let features = __cpuid(1);
    if features.ecx & (1 << 31) == 0 {
        return "bare metal, as far as the CPU says (no hypervisor bit)".into();
    }
    let leaf = __cpuid(0x4000_0000);
    let bytes: Vec<u8> = [leaf.ebx, leaf.ecx, leaf.edx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let signature = String::from_utf8_lossy(&bytes)
        .trim_end_matches('\0')
        .to_string();
    let who = match signature.as_str() {
        "KVMKVMKVM" => "KVM".to_string(),
        "TCGTCGTCGTCG" => "QEMU, emulated (TCG)".to_string(),
        "Microsoft Hv" => "Hyper-V".to_string(),
        "VMwareVMware" => "VMware".to_string(),
        "XenVMMXenVMM" => "Xen".to_string(),
        "VBoxVBoxVBox" => "VirtualBox".to_string(),
        "" => "one that gives no name".to_string(),
        other => format!("signature {other:?}"),
    };
    format!("a virtual machine (hypervisor: {who}), with a kernel of its own")
}

pub fn root_entries() -> String {
    match fs::read_dir("/") {
        Ok(dir) => {
            let mut names: Vec<String> = dir
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.join(" ")
        }
        Err(e) => format!("unreadable ({e})"),
    }
}

/// Whether "/" is mounted read-only, from statvfs(2): no write needed to find out.
pub fn root_mount() -> String {
    match nix::sys::statvfs::statvfs("/") {
        Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => "read-only".into(),
        Ok(_) => "read-write".into(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// getcwd(2). For a working directory outside the process's root (a chroot
/// without the chdir) the kernel answers "(unreachable)/..." and glibc turns that
/// into ENOENT.
pub fn working_directory() -> String {
    match std::env::current_dir() {
        Ok(dir) if dir.starts_with("(unreachable)") => "outside my root!".into(),
        Ok(dir) => dir.display().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "outside my root! (getcwd says ENOENT)".into()
        }
        Err(e) => format!("unknown ({e})"),
    }
}

/// The numeric entries of /proc: the processes this /proc shows.
pub fn proc_pids() -> Option<Vec<u32>> {
    if fs::metadata("/proc/self").is_err() {
        return None;
    }
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort();
    Some(pids)
}

/// Short lists are printed in full (a box has few processes, few mounts); long
/// ones are counted, since the exact number on a host changes from run to run.
const LIST_AT_MOST: usize = 8;

pub fn processes() -> String {
    let Some(pids) = proc_pids() else {
        return "none listed (/proc is not mounted)".into();
    };
    if pids.len() > LIST_AT_MOST {
        return format!("{} (too many to list: the host's processes)", pids.len());
    }
    let named: Vec<String> = pids
        .iter()
        .map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{pid} {}", comm.trim())
        })
        .collect();
    format!("{} ({})", pids.len(), named.join(", "))
}

pub fn mounts() -> String {
    let Ok(table) = fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown (/proc is not mounted)".into();
    };
    // Field 5 of each line is the mount point, as seen from our root. Whatever is
    // mounted under /sys/fs/cgroup is one entry: how many hierarchies it holds is
    // the host's layout (v1, v2 or hybrid), not the box's. The mounts that mask parts
    // of /proc (step 05) are one entry too, `/proc/*`: which of them exist depends
    // on the host's kernel; and so are the device nodes bound under /dev (step 06).
    let mut points: Vec<&str> = Vec::new();
    for point in table.lines().filter_map(|l| l.split(' ').nth(4)) {
        let point = if point.starts_with("/sys/fs/cgroup/") {
            "/sys/fs/cgroup"
        } else if point.starts_with("/proc/") {
            "/proc/*"
        } else if point.starts_with("/dev/") {
            // Step 06's device nodes, each the host's own, bind-mounted.
            "/dev/*"
        } else {
            point
        };
        if !points.contains(&point) {
            points.push(point);
        }
    }
    if points.len() > LIST_AT_MOST {
        return format!("{} (too many to list: the host's mounts)", points.len());
    }
    format!("{} ({})", points.len(), points.join(" "))
}

/// Descriptors 0..1024 that are open, found with fcntl(F_GETFD) so that it works
/// without /proc.
pub fn open_fds() -> Vec<RawFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives EBADF.
    (0..1024)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

pub fn describe_fds(fds: &[RawFd]) -> String {
    let mut parts = Vec::new();
    let mut extra = Vec::new();
    for &fd in fds {
        parts.push(fd.to_string());
        if fd > 2 {
            extra.push(format!("{fd} is {}", fd_kind(fd)));
        }
    }
    if extra.is_empty() {
        parts.join(" ")
    } else {
        format!("{} (inherited: {})", parts.join(" "), extra.join(", "))
    }
}

pub fn fd_kind(fd: RawFd) -> &'static str {
    // SAFETY: we only borrow a descriptor number we found open; fstat does not keep it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match nix::sys::stat::fstat(borrowed) {
        Ok(st) => match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => "a directory",
            libc::S_IFREG => "a file",
            libc::S_IFIFO => "a pipe",
            libc::S_IFSOCK => "a socket",
            libc::S_IFCHR => "a character device",
            _ => "something else",
        },
        Err(_) => "unknown",
    }
}
