//! Step 10's VMM to time: step 07's set-up around two small guests, and
//! KVM_IOEVENTFD, which has KVM handle a port write in the kernel.
//!
//! - [`lifecycle`]: open `/dev/kvm`, create a VM with step 07's memory and a vCPU,
//!   run a guest of one `hlt`, close it all: the least any process that runs a
//!   guest must do.
//! - [`exits`]: a guest that writes to an I/O port `count` times in a loop, each
//!   write an exit; timed from the guest's first exit to its `hlt`, so the vCPU's
//!   first entry (which costs more) is not counted.
//! - the same loop with the port bound to an *ioeventfd*: KVM handles each write in
//!   the kernel (it signals an eventfd) and resumes the guest without returning to
//!   us, the way virtio devices avoid most exits to the VMM.
//!
//! Every ioctl but KVM_IOEVENTFD is step 07's or 08's own function.

use super::kvm_real_mode;
use anyhow::{Context, Result, bail};
use isolab::vm::{Exit, GuestMemory, RunArea};
use kvm_bindings::{kvm_ioeventfd, kvm_ioeventfd_flag_nr_pio, kvm_regs};
use nix::errno::Errno;
use nix::ioctl_write_ptr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

// ANCHOR: guest
// The guest of the exit measurements, in real mode. The host sets ecx (how many
// writes) and dx (to which port). The first `out`, to START_PORT, tells the host
// that the loop begins: it starts its clock when that exit reaches it.
core::arch::global_asm!(
    r#"
    .pushsection .rodata.guest_timed, "a"
    .globl GUEST_TIMED_START
GUEST_TIMED_START:
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
    .globl GUEST_TIMED_END
GUEST_TIMED_END:
    .popsection
"#
);
// ANCHOR_END: guest

unsafe extern "C" {
    static GUEST_TIMED_START: u8;
    static GUEST_TIMED_END: u8;
}

fn exit_loop_code() -> &'static [u8] {
    let (start, end) = (&raw const GUEST_TIMED_START, &raw const GUEST_TIMED_END);
    // SAFETY: both symbols come from the global_asm! above, in one section, END
    // after START; the bytes between them are read-only data that lives as long as
    // the program.
    unsafe { std::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// The guest of [`lifecycle`]: a single `hlt`.
const HLT: [u8; 1] = [0xf4];
/// The port whose write starts the host's clock.
const START_PORT: u16 = 0x501;
/// The port the measured loop writes to.
pub const LOOP_PORT: u16 = 0x510;

/// One VM with one vCPU in real mode, about to run `code` where step 07 puts its
/// guest. Fields drop in order: the run area, the vCPU, the VM, then the memory the
/// VM used.
pub struct Vm {
    run: RunArea,
    vcpu: OwnedFd,
    vm: OwnedFd,
    _memory: GuestMemory,
}

impl Vm {
    /// Step 07's set-up, in one call: memory, VM, vCPU, run area, real-mode
    /// registers; then `regs` (the guest's arguments) on top.
    pub fn new(kvm: &File, code: &[u8], regs: kvm_regs) -> Result<Vm> {
        let mut memory = GuestMemory::new(kvm_real_mode::MEMORY_SIZE)?;
        memory.write(kvm_real_mode::GUEST_ADDRESS, code)?;
        let vm = kvm_real_mode::create_vm(kvm, &memory)?;
        let (vcpu, run) = kvm_real_mode::create_vcpu(kvm, &vm)?;
        let mut sregs = kvm_real_mode::get_sregs(&vcpu)?;
        let mut start = kvm_regs::default();
        kvm_real_mode::set_real_mode(&mut sregs, &mut start);
        kvm_real_mode::set_sregs(&vcpu, &sregs)?;
        kvm_real_mode::set_regs(
            &vcpu,
            &kvm_regs {
                rip: start.rip,
                rflags: start.rflags,
                ..regs
            },
        )?;
        Ok(Vm {
            run,
            vcpu,
            vm,
            _memory: memory,
        })
    }

    /// KVM_RUN until the next exit that reaches us, and why it stopped.
    pub fn run(&mut self) -> Result<Exit> {
        kvm_real_mode::run_vcpu(&self.vcpu, &mut self.run)?;
        kvm_real_mode::decode(&self.run)
    }

    // ANCHOR: ioeventfd
    /// Have KVM itself handle every 1-byte write to `port`: it signals the returned
    /// eventfd and resumes the guest, with no exit to us (KVM_IOEVENTFD).
    pub fn ioeventfd(&self, port: u16) -> Result<OwnedFd> {
        ioctl_write_ptr!(
            kvm_set_ioeventfd,
            kvm_real_mode::KVMIO,
            0x79,
            kvm_ioeventfd
        );
        // SAFETY: eventfd takes two integers and returns a new fd or -1.
        let fd =
            unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let fd =
            Errno::result(fd).context("eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)")?;
        // SAFETY: eventfd returned a new fd that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        let request = kvm_ioeventfd {
            addr: u64::from(port),
            len: 1,
            fd: event.as_raw_fd(),
            flags: 1 << kvm_ioeventfd_flag_nr_pio,
            ..Default::default()
        };
        // SAFETY: `request` is a valid kvm_ioeventfd that the kernel only reads;
        // the eventfd stays open for as long as the VM that uses it (we return it).
        unsafe { kvm_set_ioeventfd(self.vm.as_raw_fd(), &request) }.with_context(
            || format!("ioctl(KVM_IOEVENTFD, port {port:#x}, 1 byte)"),
        )?;
        Ok(event)
    }
    // ANCHOR_END: ioeventfd
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
    let kvm = isolab::vm::open(device)?;
    let mut vm = Vm::new(&kvm, &HLT, kvm_regs::default())?;
    match vm.run()? {
        Exit::Hlt => {}
        other => bail!("the one-`hlt` guest stopped with {other}, not HLT"),
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
/// [`Handler::Kernel`] none is, and the eventfd's counter proves the writes
/// happened.
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
    let _watchdog = isolab::vm::Watchdog::start()?;
    match vm.run()? {
        Exit::IoOut {
            port: START_PORT, ..
        } => {}
        other => bail!(
            "the guest's first exit was {other}, not its write to {START_PORT:#x}"
        ),
    }
    let start = Instant::now();
    let mut returns_to_us: u32 = 0;
    loop {
        let exit = vm.run()?;
        returns_to_us += 1;
        match exit {
            Exit::IoOut {
                port: LOOP_PORT, ..
            } => continue,
            Exit::Hlt => break,
            other => bail!("the guest stopped with {other} in its loop"),
        }
    }
    let elapsed = start.elapsed();
    if handler == Handler::Kernel && returns_to_us > 1 {
        bail!(
            "KVM passed {} writes to the ioeventfd's port on to us instead of \
             handling them",
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
    Ok(ExitTiming { count, elapsed })
}
// ANCHOR_END: exits
