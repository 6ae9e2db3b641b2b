//! Capabilities: root's powers split into 41 pieces (capabilities(7)). Thin wrappers
//! over capget(2), capset(2) and prctl(2), which nix does not wrap.

use anyhow::{Context, Result};
use nix::errno::Errno;

/// Capability names, by number, as capabilities(7) spells them without `CAP_`.
pub const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The number of a capability by name (`"sys_admin"` is 21).
pub fn number(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).map(|n| n as u32)
}

/// A set of capabilities as a bit mask: bit N is capability N.
pub type CapSet = u64;

/// The mask of these named capabilities.
pub fn set_of(names: &[&str]) -> CapSet {
    names
        .iter()
        .filter_map(|n| number(n))
        .fold(0, |set, n| set | 1 << n)
}

/// The names in a set, in number order.
pub fn names(set: CapSet) -> Vec<&'static str> {
    (0..64u32)
        .filter(|n| set & (1 << n) != 0)
        .map(|n| NAMES.get(n as usize).copied().unwrap_or("?"))
        .collect()
}

/// The highest capability this kernel knows: the bounding set answers for each
/// number it knows and says EINVAL beyond.
pub fn last_cap() -> u32 {
    // SAFETY: PR_CAPBSET_READ takes an integer and reads nothing from memory.
    (0..64u32)
        .take_while(|&c| unsafe { libc::prctl(libc::PR_CAPBSET_READ, c) } >= 0)
        .last()
        .unwrap_or(0)
}

/// The bounding set: the most any exec can ever give this process.
pub fn bounding() -> CapSet {
    (0..=last_cap())
        // SAFETY: PR_CAPBSET_READ takes an integer and reads nothing from memory.
        .filter(|&c| unsafe { libc::prctl(libc::PR_CAPBSET_READ, c) } == 1)
        .fold(0, |set, c| set | 1 << c)
}

/// The three per-thread sets capget(2) and capset(2) read and write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sets {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

/// capget(2) for this thread.
pub fn get() -> Result<Sets> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: version 3 writes exactly two Data structs; both pointers are valid.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    Errno::result(rc).context("capget()")?;
    let join = |lo: u32, hi: u32| lo as u64 | (hi as u64) << 32;
    Ok(Sets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// capset(2) for this thread: the new sets may only shrink the permitted set.
pub fn set(sets: Sets) -> Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |s: CapSet| (s as u32, (s >> 32) as u32);
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        Data {
            effective: e.0,
            permitted: p.0,
            inheritable: i.0,
        },
        Data {
            effective: e.1,
            permitted: p.1,
            inheritable: i.1,
        },
    ];
    // SAFETY: version 3 reads exactly two Data structs; both pointers are valid.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    Errno::result(rc).with_context(|| {
        format!(
            "capset(effective {:#x}, permitted {:#x})",
            sets.effective, sets.permitted
        )
    })?;
    Ok(())
}

/// Remove one capability from the bounding set, for good (prctl PR_CAPBSET_DROP).
pub fn drop_from_bounding(cap: u32) -> Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer and reads nothing from memory.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    let name = NAMES.get(cap as usize).copied().unwrap_or("?");
    Errno::result(rc).with_context(|| format!("prctl(PR_CAPBSET_DROP, {name})"))?;
    Ok(())
}

/// Empty the ambient set (prctl PR_CAP_AMBIENT_CLEAR_ALL): ambient capabilities
/// survive exec even of programs without file capabilities.
pub fn clear_ambient() -> Result<()> {
    // SAFETY: PR_CAP_AMBIENT with CLEAR_ALL takes integers only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(rc).context("prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)")?;
    Ok(())
}
