//! The VM world: what the hypervisor steps share that is not the lesson.
//!
//! The lesson (declaring the KVM ioctls, calling them in order, setting the
//! registers, the run loop) lives in `solutions/07-kvm-real-mode.rs` and
//! `solutions/08-kvm-long-mode.rs`. This folder holds the rest, one job per file:
//!
//! - [`device`]: the options of the KVM steps, opening /dev/kvm, the capability table;
//! - [`memory`]: guest RAM, memory of ours that KVM maps into the guest;
//! - [`run_area`]: the vCPU's shared `kvm_run`;
//! - [`watchdog`]: a timer that stops a guest that never exits;
//! - [`exit`]: why KVM_RUN returned, decoded and explained;
//! - [`trace`]: the exits of one run, as the steps print them;
//! - [`x86`]: step 08's GDT and page tables;
//! - [`repeat`]: many VMs in one process, and the leak check;
//! - [`linux`]: a real Linux kernel under QEMU, booted from an initramfs we build,
//!   running commands (the probe, the container steps) and reporting back.

pub mod device;
pub mod exit;
pub mod linux;
pub mod memory;
pub mod repeat;
pub mod run_area;
pub mod trace;
pub mod watchdog;
pub mod x86;

pub use crate::lines::printable;
pub use device::{KvmArgs, open, print_capabilities};
pub use exit::{Exit, explain};
pub use memory::GuestMemory;
pub use repeat::repeat;
pub use run_area::RunArea;
pub use trace::Trace;
pub use watchdog::{Watchdog, run_failed};
pub use x86::{CODE_SELECTOR, DATA_SELECTOR, GDT};
