//! The finished hypervisor of step 06, for step 08 (and the probe) to measure with.
//!
//! Like [`crate::container`] for the container steps, this is "what you already
//! wrote": step 06's ioctls and run loop, kept in one place so that step 08 can time
//! a VM's life and a guest's exits without repeating the lesson. Three measurements
//! live here:
//!
//! - [`lifecycle`]: open `/dev/kvm`, create a VM with memory and a vCPU, run a guest
//!   of one `hlt`, close it all: the least any process that runs a guest must do.
//! - [`exits`]: a guest that writes to an I/O port `count` times in a loop, each
//!   write an exit; timed from the guest's first exit to its `hlt`, so the vCPU's
//!   first entry (which costs more) is not counted.
//! - the same loop with the port bound to an *ioeventfd*: KVM handles each write in
//!   the kernel (it signals an eventfd) and resumes the guest without returning to
//!   us, the way virtio devices avoid most exits to the VMM.

use crate::kvm::{GuestMemory, RunArea};
use anyhow::{Context, Result, bail};
use kvm_bindings::{
    KVM_EXIT_HLT, KVM_EXIT_IO, KVM_EXIT_IO_OUT, kvm_ioeventfd, kvm_ioeventfd_flag_nr_pio, kvm_regs,
    kvm_sregs, kvm_userspace_memory_region,
};
use nix::errno::Errno;
use nix::{ioctl_read, ioctl_write_int_bad, ioctl_write_ptr, request_code_none};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

const KVMIO: u8 = 0xAE;

ioctl_write_int_bad!(kvm_check_extension, request_code_none!(KVMIO, 0x03));
ioctl_write_int_bad!(kvm_create_vm, request_code_none!(KVMIO, 0x01));
ioctl_write_int_bad!(kvm_get_vcpu_mmap_size, request_code_none!(KVMIO, 0x04));
ioctl_write_int_bad!(kvm_create_vcpu, request_code_none!(KVMIO, 0x41));
ioctl_write_int_bad!(kvm_run, request_code_none!(KVMIO, 0x80));
ioctl_write_ptr!(
    kvm_set_user_memory_region,
    KVMIO,
    0x46,
    kvm_userspace_memory_region
);
ioctl_write_ptr!(kvm_set_ioeventfd, KVMIO, 0x79, kvm_ioeventfd);
ioctl_write_ptr!(kvm_set_regs, KVMIO, 0x82, kvm_regs);
ioctl_read!(kvm_get_sregs, KVMIO, 0x83, kvm_sregs);
ioctl_write_ptr!(kvm_set_sregs, KVMIO, 0x84, kvm_sregs);

// ANCHOR: guest
// The guest of the exit measurements, in real mode. The host sets ecx (how many
// writes) and dx (to which port). The first `out`, to START_PORT, tells the host
// that the loop begins: it starts its clock when that exit reaches it.
core::arch::global_asm!(
    r#"
    .pushsection .rodata.guest08, "a"
    .globl EXIT_LOOP_START
EXIT_LOOP_START:
    .code16
    mov si, dx          # keep the loop's port
    mov dx, 0x501       # START_PORT
    out dx, al          # exit: the host starts its clock
    mov dx, si
    test ecx, ecx
    jz 2f
1:  out dx, al          # one write, one exit
    dec ecx
    jnz 1b
2:  hlt                 # exit: the host stops its clock
    .code64
    .globl EXIT_LOOP_END
EXIT_LOOP_END:
    .popsection
"#
);
// ANCHOR_END: guest

unsafe extern "C" {
    static EXIT_LOOP_START: u8;
    static EXIT_LOOP_END: u8;
}

fn exit_loop_code() -> &'static [u8] {
    let (start, end) = (&raw const EXIT_LOOP_START, &raw const EXIT_LOOP_END);
    // SAFETY: both symbols come from the global_asm! above, in one section, END after
    // START; the bytes between them are read-only data that lives as long as the program.
    unsafe { std::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// The guest of [`lifecycle`]: a single `hlt`.
const HLT: [u8; 1] = [0xf4];
/// Where the guest's code goes, as in step 06.
const GUEST_ADDRESS: u64 = 0x1000;
/// Guest RAM for these guests: 64 KiB is plenty for a few bytes of code.
const MEMORY_SIZE: usize = 64 << 10;
/// The port whose write starts the host's clock.
const START_PORT: u16 = 0x501;
/// The port the measured loop writes to.
pub const LOOP_PORT: u16 = 0x510;

/// Why the vCPU stopped, as far as these guests need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Out(u16),
    Hlt,
    Other(u32),
}

/// One VM with one vCPU in real mode, about to run `code` at [`GUEST_ADDRESS`].
/// Fields drop in order: the run area, the vCPU, the VM, then the memory the VM used.
pub struct Vm {
    run: RunArea,
    vcpu: OwnedFd,
    vm: OwnedFd,
    _memory: GuestMemory,
}

impl Vm {
    /// Step 06's set-up, in one call: memory, VM, vCPU, run area, real-mode registers.
    pub fn new(kvm: &File, code: &[u8], regs: kvm_regs) -> Result<Vm> {
        let mut memory = GuestMemory::new(MEMORY_SIZE)?;
        memory.write(GUEST_ADDRESS, code)?;
        // SAFETY: the argument is the machine type, a plain integer (0: the default).
        let fd = unsafe { kvm_create_vm(kvm.as_raw_fd(), 0) }.context("ioctl(KVM_CREATE_VM, 0)")?;
        // SAFETY: KVM_CREATE_VM returned a new fd that nothing else owns.
        let vm = unsafe { OwnedFd::from_raw_fd(fd) };
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: memory.size(),
            userspace_addr: memory.host_address(),
        };
        // SAFETY: `region` is a valid struct the kernel only reads; the memory it names
        // outlives the VM (fields drop in order, `_memory` last).
        unsafe { kvm_set_user_memory_region(vm.as_raw_fd(), &region) }
            .context("ioctl(KVM_SET_USER_MEMORY_REGION, slot 0)")?;
        // SAFETY: the argument is the vCPU id, a plain integer.
        let fd =
            unsafe { kvm_create_vcpu(vm.as_raw_fd(), 0) }.context("ioctl(KVM_CREATE_VCPU, 0)")?;
        // SAFETY: KVM_CREATE_VCPU returned a new fd that nothing else owns.
        let vcpu = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: no pointer argument; the kernel writes nothing to our memory.
        let size = unsafe { kvm_get_vcpu_mmap_size(kvm.as_raw_fd(), 0) }
            .context("ioctl(KVM_GET_VCPU_MMAP_SIZE, 0)")?;
        let run = RunArea::map(&vcpu, size as usize)?;
        let mut sregs = kvm_sregs::default();
        // SAFETY: the kernel writes one kvm_sregs into `sregs`, which is exactly that big.
        unsafe { kvm_get_sregs(vcpu.as_raw_fd(), &mut sregs) }.context("ioctl(KVM_GET_SREGS)")?;
        for segment in [&mut sregs.cs, &mut sregs.ds] {
            segment.selector = (GUEST_ADDRESS >> 4) as u16;
            segment.base = GUEST_ADDRESS;
        }
        // SAFETY: the kernel only reads `sregs`, a valid kvm_sregs.
        unsafe { kvm_set_sregs(vcpu.as_raw_fd(), &sregs) }.context("ioctl(KVM_SET_SREGS)")?;
        let regs = kvm_regs {
            rip: 0,
            rflags: 0x2,
            ..regs
        };
        // SAFETY: the kernel only reads `regs`, a valid kvm_regs.
        unsafe { kvm_set_regs(vcpu.as_raw_fd(), &regs) }.context("ioctl(KVM_SET_REGS)")?;
        Ok(Vm {
            run,
            vcpu,
            vm,
            _memory: memory,
        })
    }

    /// KVM_RUN until the next exit that reaches us, and why it stopped.
    pub fn run(&mut self) -> Result<Stop> {
        // SAFETY: no pointer argument. The kernel writes only to the vCPU's kvm_run
        // mapping, which no Rust reference borrows while this call runs.
        unsafe { kvm_run(self.vcpu.as_raw_fd(), 0) }.map_err(crate::kvm::run_failed)?;
        let run = self.run.run();
        Ok(match run.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: the exit reason is KVM_EXIT_IO, so the kernel filled `io`.
                let io = unsafe { run.__bindgen_anon_1.io };
                if u32::from(io.direction) == KVM_EXIT_IO_OUT {
                    Stop::Out(io.port)
                } else {
                    Stop::Other(KVM_EXIT_IO)
                }
            }
            KVM_EXIT_HLT => Stop::Hlt,
            reason => Stop::Other(reason),
        })
    }

    // ANCHOR: ioeventfd
    /// Have KVM itself handle every 1-byte write to `port`: it signals the returned
    /// eventfd and resumes the guest, with no exit to us (KVM_IOEVENTFD).
    pub fn ioeventfd(&self, port: u16) -> Result<OwnedFd> {
        // SAFETY: eventfd takes two integers and returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let fd = Errno::result(fd).context("eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)")?;
        // SAFETY: eventfd returned a new fd that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        let request = kvm_ioeventfd {
            addr: u64::from(port),
            len: 1,
            fd: event.as_raw_fd(),
            flags: 1 << kvm_ioeventfd_flag_nr_pio,
            ..Default::default()
        };
        // SAFETY: `request` is a valid kvm_ioeventfd that the kernel only reads; the
        // eventfd stays open for as long as the VM that uses it (we return it).
        unsafe { kvm_set_ioeventfd(self.vm.as_raw_fd(), &request) }
            .with_context(|| format!("ioctl(KVM_IOEVENTFD, port {port:#x}, 1 byte)"))?;
        Ok(event)
    }
    // ANCHOR_END: ioeventfd
}

/// KVM_CHECK_EXTENSION: 0 when the capability is missing, 1 (or a number) when not.
pub fn check_extension(kvm: &File, capability: u32) -> Result<i32> {
    // SAFETY: the argument is a plain integer, and the kernel writes nothing to our memory.
    unsafe { kvm_check_extension(kvm.as_raw_fd(), capability as i32) }
        .with_context(|| format!("ioctl(KVM_CHECK_EXTENSION, {capability})"))
}

/// How many times an eventfd was signalled since it was made (it is read once).
fn eventfd_count(event: &OwnedFd) -> Result<u64> {
    let mut count = [0u8; 8];
    match nix::unistd::read(event, &mut count) {
        Ok(8) => Ok(u64::from_ne_bytes(count)),
        Ok(n) => bail!("read(eventfd) gave {n} bytes, not 8"),
        Err(Errno::EAGAIN) => Ok(0),
        Err(e) => Err(e).context("read(eventfd)"),
    }
}

/// A VM's whole life in this process: open `device`, create the VM, its memory and
/// a vCPU, run a guest of one `hlt` to its exit, and close everything. Returns how
/// long it took.
pub fn lifecycle(device: &Path) -> Result<Duration> {
    let start = Instant::now();
    let kvm = crate::kvm::open(device)?;
    let mut vm = Vm::new(&kvm, &HLT, kvm_regs::default())?;
    match vm.run()? {
        Stop::Hlt => {}
        other => bail!("the one-`hlt` guest stopped with {other:?}, not HLT"),
    }
    drop(vm);
    drop(kvm);
    Ok(start.elapsed())
}

/// Where a guest's port writes are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// By us: every write is an exit out of KVM_RUN to this process and back.
    Vmm,
    /// By KVM, through an ioeventfd: the guest never leaves the kernel.
    Kernel,
}

/// What [`exits`] timed: `count` port writes in `elapsed`.
#[derive(Debug, Clone, Copy)]
pub struct ExitTiming {
    pub count: u32,
    pub elapsed: Duration,
    /// KVM_RUN returns seen while the clock ran.
    pub returns_to_us: u32,
}

impl ExitTiming {
    /// Nanoseconds per write.
    pub fn ns_each(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / f64::from(self.count.max(1))
    }
}

// ANCHOR: exits
/// Run a fresh guest that writes to [`LOOP_PORT`] `count` times, handled by
/// `handler`, and time the loop: from the guest's first exit (to START_PORT) to its
/// `hlt`. With [`Handler::Vmm`] each write is one return from KVM_RUN; with
/// [`Handler::Kernel`] none is, and the eventfd's counter proves the writes happened.
pub fn exits(kvm: &File, count: u32, handler: Handler) -> Result<ExitTiming> {
    let regs = kvm_regs {
        rcx: u64::from(count),
        rdx: u64::from(LOOP_PORT),
        ..Default::default()
    };
    let mut vm = Vm::new(kvm, exit_loop_code(), regs)?;
    let event = match handler {
        Handler::Kernel => Some(vm.ioeventfd(LOOP_PORT)?),
        Handler::Vmm => None,
    };
    let _watchdog = crate::kvm::Watchdog::start()?;
    match vm.run()? {
        Stop::Out(START_PORT) => {}
        other => bail!("the guest's first exit was {other:?}, not its write to {START_PORT:#x}"),
    }
    let start = Instant::now();
    let mut returns_to_us = 0;
    loop {
        let stop = vm.run()?;
        returns_to_us += 1;
        match stop {
            Stop::Out(LOOP_PORT) => continue,
            Stop::Hlt => break,
            other => bail!("the guest stopped with {other:?} in its loop"),
        }
    }
    let elapsed = start.elapsed();
    if handler == Handler::Kernel && returns_to_us > 1 {
        bail!(
            "KVM passed {} writes to the ioeventfd's port on to us instead of handling them",
            returns_to_us - 1
        );
    }
    let handled = match &event {
        Some(event) => eventfd_count(event)?,
        None => u64::from(returns_to_us - 1), // every return but the HLT
    };
    if handled != u64::from(count) {
        bail!("the guest wrote {count} times, but {handled} writes were handled");
    }
    Ok(ExitTiming {
        count,
        elapsed,
        returns_to_us,
    })
}
// ANCHOR_END: exits
