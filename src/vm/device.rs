//! The KVM device: the options both KVM steps take, opening /dev/kvm with an error
//! that says what to do, and the table of capabilities the steps print.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The options both KVM steps take.
#[derive(clap::Args, Debug, Clone)]
pub struct KvmArgs {
    /// Run the guest N times, each in a fresh VM, then report whether the process
    /// grew (open fds, memory mappings, resident memory): a leak check
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// The KVM device to open (for machines that put it elsewhere, and for tests)
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm", hide = true)]
    pub device: PathBuf,
}

/// Open the KVM device read-write. A missing device or a refused open is one line
/// that says what to do about it.
pub fn open(device: &Path) -> Result<File> {
    let shown = device.display();
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
    {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot open {shown}: no such device: enable virtualization (VT-x or AMD-V) in the \
             firmware, or nested virtualization for this VM, and load kvm_intel or kvm_amd"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!(
                "cannot open {shown}: permission denied: {}",
                permission_advice(device)
            )
        }
        Err(e) => Err(e).with_context(|| format!("open({shown}, O_RDWR)")),
    }
}

/// What to do about a device we may not open: join its group when the device has
/// one (most distributions make /dev/kvm `root:kvm 0660`), otherwise use sudo.
pub fn permission_advice(device: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let group = std::fs::metadata(device)
        .ok()
        .filter(|m| m.gid() != 0 && m.mode() & 0o060 == 0o060)
        .and_then(|m| {
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                .ok()
                .flatten()
        });
    match group {
        Some(group) => format!(
            "add yourself to the {0} group (`sudo usermod -aG {0} $USER`, then log in again), \
             or run it with sudo",
            group.name
        ),
        None => format!(
            "{} belongs to root alone here, so run it with sudo (`cargo run -- run N` does that for you)",
            device.display()
        ),
    }
}

// ANCHOR: capabilities
/// The capabilities worth knowing about for these two steps, and why. All of them
/// have been in x86 KVM for years, so the table reads the same on every host.
pub const CAPABILITIES: &[(&str, u32, &str)] = &[
    (
        "user memory",
        kvm_bindings::KVM_CAP_USER_MEMORY,
        "guest RAM is memory this process maps",
    ),
    (
        "set TSS address",
        kvm_bindings::KVM_CAP_SET_TSS_ADDR,
        "real mode on old Intel CPUs needs a scratch area",
    ),
    (
        "in-kernel irqchip",
        kvm_bindings::KVM_CAP_IRQCHIP,
        "KVM could emulate the interrupt controllers (we do not ask)",
    ),
    (
        "ioeventfd",
        kvm_bindings::KVM_CAP_IOEVENTFD,
        "a guest write can wake a thread without an exit to us",
    ),
    (
        "coalesced MMIO",
        kvm_bindings::KVM_CAP_COALESCED_MMIO,
        "MMIO writes can be batched instead of one exit each",
    ),
    (
        "sync regs",
        kvm_bindings::KVM_CAP_SYNC_REGS,
        "registers can travel in kvm_run, saving ioctls per exit",
    ),
];
// ANCHOR_END: capabilities

/// Print the capability table, asking `check` (KVM_CHECK_EXTENSION) about each.
/// Any value above zero means yes; some capabilities answer with a number.
pub fn print_capabilities(check: impl Fn(u32) -> Result<i32>) -> Result<()> {
    println!("capabilities (KVM_CHECK_EXTENSION):");
    for (name, cap, why) in CAPABILITIES {
        let has = check(*cap)? > 0;
        println!("  {name:<18} {:<4} {why}", if has { "yes" } else { "no" });
    }
    Ok(())
}
