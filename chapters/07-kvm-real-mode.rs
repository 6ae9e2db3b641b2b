//! # Step 07: a virtual machine on KVM, in real mode
//!
//! The other side of isolation. A container shares the host's kernel; a virtual
//! machine runs code of its own on a virtual CPU, and every time that code does
//! something only a real machine could answer (here: write to a serial port, halt)
//! the CPU stops it and hands control back to us, the hypervisor, as an *exit*.
//! This step is a whole, tiny hypervisor: open /dev/kvm, check its API version and
//! a few capabilities, create a VM, give it 1 MiB of memory, create a vCPU, map the
//! `kvm_run` structure it shares with us, set its registers to real mode, and drive
//! the run loop: KVM_RUN, decode the exit, handle it, again. The guest is 16-bit
//! code that rustc assembles (`global_asm!`): it writes a greeting to the serial
//! port 0x3f8, one byte and so one exit at a time, and halts.
//!
//! ioctls, each declared here with nix's macros and kvm-bindings' structs:
//! KVM_GET_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM,
//! KVM_SET_USER_MEMORY_REGION, KVM_CREATE_VCPU, KVM_GET_VCPU_MMAP_SIZE,
//! KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_REGS, KVM_SET_REGS, KVM_RUN.
//!
//! ```text
//! $ target/debug/07-kvm-real-mode
//! KVM API version 12
//! ...
//! guest said: Hello from real mode!
//! ...
//! exits: 22 x IO out port 0x3f8, 1 x HLT
//! ```

// Your copy of step 07. Replace each todo!() with your code, then run
// `cargo run -- check 7`. (Generated from solutions/07-kvm-real-mode.rs:
// `cargo run -- reset 7` brings this version back.)

use isolab::prelude::*;
use isolab::vm::{Exit, GuestMemory, KvmArgs, RunArea, Trace};
use kvm_bindings::{
    KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO,
    KVM_EXIT_IO_OUT, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, kvm_regs, kvm_sregs,
    kvm_userspace_memory_region,
};
use nix::{ioctl_read, ioctl_write_int_bad, ioctl_write_ptr, request_code_none};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Step 07: run a real-mode guest on KVM and show every exit it causes.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    kvm: KvmArgs,
    /// Get one thing wrong on purpose, to see what it is for (repeatable)
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    mistakes: Vec<Mistake>,
}

// ANCHOR: mistakes
/// The chapter's "break it" experiments, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mistake {
    /// leave the segment registers as the vCPU starts: cs base 0xffff0000
    Segments,
    /// a cs base that disagrees with its selector: selector 0x100, base 0xffff0000
    Base,
    /// rflags 0, without bit 1, which is reserved and always 1
    Rflags,
    /// a guest that jumps to itself forever and never exits
    Loop,
}

impl Mistake {
    /// Undo part of what `set_real_mode` did; `reset` is the vCPU's first state.
    fn apply(self, reset: &kvm_sregs, sregs: &mut kvm_sregs, regs: &mut kvm_regs) {
        match self {
            Mistake::Segments => *sregs = *reset,
            Mistake::Base => sregs.cs.base = 0xffff_0000,
            Mistake::Rflags => regs.rflags = 0,
            Mistake::Loop => {} // the guest's code, in run_guest
        }
    }
}
// ANCHOR_END: mistakes

/// `jmp $`: two bytes of machine code that jump to themselves.
const JUMP_TO_SELF: [u8; 2] = [0xeb, 0xfe];

// ANCHOR: guest
// The guest: 16-bit real-mode code. The host loads it at GUEST_ADDRESS and points
// CS and DS there, so inside the guest the code starts at offset 0 of its segment.
core::arch::global_asm!(
    r#"
    .pushsection .rodata.guest_real_mode, "a"
    .globl GUEST_REAL_MODE_START
GUEST_REAL_MODE_START:
    .code16
    mov dx, 0x3f8                   # COM1's data port
    .set GREETING_OFFSET, greeting - GUEST_REAL_MODE_START
    mov si, offset GREETING_OFFSET  # ds:si -> the greeting
2:  lodsb                           # al = [ds:si], si += 1
    test al, al
    jz 3f                           # the NUL at the end: done
    out dx, al                      # one byte to the serial port: one exit
    jmp 2b
3:  hlt                             # nothing left to do: the vCPU stops
greeting:
    .asciz "Hello from real mode!\n"
    .code64
    .globl GUEST_REAL_MODE_END
GUEST_REAL_MODE_END:
    .popsection
"#
);
// ANCHOR_END: guest

// The labels are global symbols, named for this step, so that a later step that
// takes this file as a module can link its own guest beside this one.
unsafe extern "C" {
    static GUEST_REAL_MODE_START: u8;
    static GUEST_REAL_MODE_END: u8;
}

/// The guest's machine code, as the assembler left it in this program's read-only
/// data.
fn guest_code() -> &'static [u8] {
    let (start, end) = (
        &raw const GUEST_REAL_MODE_START,
        &raw const GUEST_REAL_MODE_END,
    );
    // SAFETY: both symbols come from the global_asm! above, in one section, END
    // after START; the bytes between them are read-only data that lives as long as
    // the program.
    unsafe { std::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// Guest RAM: 1 MiB at guest-physical address 0, all that real mode can address.
pub const MEMORY_SIZE: usize = 1 << 20;
/// Where the guest's code goes. Below it, a PC keeps the real-mode interrupt table.
pub const GUEST_ADDRESS: u64 = 0x1000;
/// COM1: the guest writes its text here, one byte per `out`.
const SERIAL_PORT: u16 = 0x3f8;

// ANCHOR: kvmio
/// Every KVM ioctl number is built from this "type" byte, as _IO(KVMIO, nr) and
/// friends in <linux/kvm.h>.
pub const KVMIO: u8 = 0xAE;
// ANCHOR_END: kvmio

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        let kvm = isolab::vm::open(&args.kvm.device)?;
        let version = api_version(&kvm, &args.kvm.device)?;
        println!("KVM API version {version}");
        isolab::vm::print_capabilities(|cap| check_extension(&kvm, cap))?;
        isolab::vm::repeat(args.kvm.repeat, |report| {
            run_guest(&kvm, &args.mistakes, report)
        })
    })
}

// ANCHOR: api_version
/// KVM_GET_API_VERSION: 12 since Linux 2.6.22, and KVM promises never to change it.
pub fn api_version(kvm: &File, device: &Path) -> Result<i32> {
    // _IO ioctls take no argument, but KVM refuses one that is not 0 (EINVAL), so
    // we declare them as "write an int" and pass 0 ourselves.
    ioctl_write_int_bad!(kvm_get_api_version, request_code_none!(KVMIO, 0x00));
    // SAFETY: KVM_GET_API_VERSION reads nothing from us and writes nothing to our
    // memory.
    let version =
        unsafe { kvm_get_api_version(kvm.as_raw_fd(), 0) }.with_context(|| {
            format!(
                "ioctl({}, KVM_GET_API_VERSION, 0): not a KVM device?",
                device.display()
            )
        })?;
    if version != 12 {
        bail!("KVM API version {version}, but this program speaks version 12");
    }
    Ok(version)
}

/// KVM_CHECK_EXTENSION: 0 when the capability is missing, 1 (or a number) when not.
pub fn check_extension(kvm: &File, capability: u32) -> Result<i32> {
    ioctl_write_int_bad!(kvm_check_extension, request_code_none!(KVMIO, 0x03));
    // SAFETY: the argument is a plain integer, and the kernel writes nothing to
    // our memory.
    unsafe { kvm_check_extension(kvm.as_raw_fd(), capability as i32) }
        .with_context(|| format!("ioctl(KVM_CHECK_EXTENSION, {capability})"))
}
// ANCHOR_END: api_version

// ANCHOR: run_guest
/// One VM, from nothing to the guest's last exit. Everything it creates (the fds,
/// both mappings) is dropped when it returns, however it returns.
fn run_guest(kvm: &File, mistakes: &[Mistake], report: bool) -> Result<i32> {
    let mut memory = GuestMemory::new(MEMORY_SIZE)?;
    let code = if mistakes.contains(&Mistake::Loop) {
        &JUMP_TO_SELF[..]
    } else {
        guest_code()
    };
    memory.write(GUEST_ADDRESS, code)?;
    let vm = create_vm(kvm, &memory)?;
    let (vcpu, mut run) = create_vcpu(kvm, &vm)?;

    let reset = get_sregs(&vcpu)?;
    let (mut sregs, mut regs) = (reset, kvm_regs::default());
    set_real_mode(&mut sregs, &mut regs);
    for mistake in mistakes {
        mistake.apply(&reset, &mut sregs, &mut regs);
    }
    set_sregs(&vcpu, &sregs)?;
    set_regs(&vcpu, &regs)?;

    let _watchdog = isolab::vm::Watchdog::start()?;
    let mut trace = Trace::default();
    let mut serial = Vec::new();
    loop {
        run_vcpu(&vcpu, &mut run)?;
        let exit = decode(&run)?;
        trace.push(&exit);
        match exit {
            Exit::IoOut {
                port: SERIAL_PORT,
                value,
                ..
            } => serial.push(value as u8),
            Exit::Hlt => break,
            other => {
                print!("{trace}");
                for why in isolab::vm::explain(&other, None) {
                    println!("why: {why}");
                }
                bail!("the guest stopped with {other}");
            }
        }
    }
    if report {
        for line in String::from_utf8_lossy(&serial).lines() {
            println!("guest said: {}", isolab::vm::printable(line));
        }
        print!("{trace}");
    }
    Ok(0)
}
// ANCHOR_END: run_guest

/// A new VM whose guest-physical memory, from address 0, is `memory`.
pub fn create_vm(kvm: &File, memory: &GuestMemory) -> Result<OwnedFd> {
    // ANCHOR: create_vm
    // TODO: Declare two ioctls with nix's macros, then call them:
    //       - KVM_CREATE_VM is _IO(KVMIO, 0x01) and takes the machine type, 0 on
    //         x86: `ioctl_write_int_bad!(kvm_create_vm, request_code_none!(KVMIO,
    //         0x01));` It returns the new VM's fd: wrap it with
    //         `OwnedFd::from_raw_fd`.
    //       - KVM_SET_USER_MEMORY_REGION is _IOW(KVMIO, 0x46,
    //         kvm_userspace_memory_region): `ioctl_write_ptr!`. Call it on the VM's
    //         fd with slot 0, guest_phys_addr 0, memory_size memory.size(),
    //         userspace_addr memory.host_address().
    //       Each call is unsafe: say why it is sound in a `// SAFETY:` comment, and
    //       give each error a context naming the ioctl, e.g. "ioctl(KVM_CREATE_VM,
    //       0)".
    todo!(
        "step 07, `create_vm`: not written yet. Read the TODO above this line in \
         chapters/07-kvm-real-mode.rs, or run `cargo run -- hint 7`"
    );
    // ANCHOR_END: create_vm
}

/// vCPU 0 of `vm`, and its shared `kvm_run`, mapped.
pub fn create_vcpu(kvm: &File, vm: &OwnedFd) -> Result<(OwnedFd, RunArea)> {
    // ANCHOR: create_vcpu
    // TODO: Declare and call two more:
    //       - KVM_CREATE_VCPU is _IO(KVMIO, 0x41), on the VM's fd; its argument is
    //         the vCPU's id, 0. It returns the vCPU's fd.
    //       - KVM_GET_VCPU_MMAP_SIZE is _IO(KVMIO, 0x04), on /dev/kvm's fd (`kvm`),
    //         with the argument 0: KVM refuses any other. It returns how many bytes
    //         to map.
    //       Then map the vCPU's shared run structure: `RunArea::map(&vcpu, size)`.
    todo!(
        "step 07, `create_vcpu`: not written yet. Read the TODO above this line in \
         chapters/07-kvm-real-mode.rs, or run `cargo run -- hint 7`"
    );
    // ANCHOR_END: create_vcpu
}

/// Point the vCPU at the guest's code, in real mode. `sregs` starts as the vCPU's
/// reset state, read with [`get_sregs`]; `regs` starts all zero.
pub fn set_real_mode(sregs: &mut kvm_sregs, regs: &mut kvm_regs) {
    // ANCHOR: set_real_mode
    // TODO: A new vCPU is in real mode already, at the reset vector (cs base
    //       0xffff0000, rip 0xfff0), where this VM has no memory. Point cs and ds
    //       (kvm_segment fields `selector` and `base`) at the guest's code:
    //       selector GUEST_ADDRESS >> 4 and base GUEST_ADDRESS (in real mode, base
    //       = selector * 16). Then regs.rip = 0 (the code starts at offset 0 of cs)
    //       and regs.rflags = 0x2 (bit 1 is reserved and always 1).
    todo!(
        "step 07, `set_real_mode`: not written yet. Read the TODO above this line \
         in chapters/07-kvm-real-mode.rs, or run `cargo run -- hint 7`"
    );
    // ANCHOR_END: set_real_mode
}

/// KVM_GET_SREGS: segments, control registers, EFER, GDT and IDT.
pub fn get_sregs(vcpu: &OwnedFd) -> Result<kvm_sregs> {
    // ANCHOR: get_sregs
    // TODO: KVM_GET_SREGS is _IOR(KVMIO, 0x83, kvm_sregs): declare it with
    //       `ioctl_read!`, which makes an unsafe fn taking the fd and a
    //       `*mut kvm_sregs` for the kernel to fill. Call it on the vCPU's fd with
    //       a `kvm_sregs::default()` and return that.
    todo!(
        "step 07, `get_sregs`: not written yet. Read the TODO above this line in \
         chapters/07-kvm-real-mode.rs, or run `cargo run -- hint 7`"
    );
    // ANCHOR_END: get_sregs
}

/// KVM_SET_SREGS. KVM checks the combination first, and refuses (EINVAL) what no
/// CPU could be in, such as paging in long mode without PAE.
pub fn set_sregs(vcpu: &OwnedFd, sregs: &kvm_sregs) -> Result<()> {
    // ANCHOR: set_sregs
    // TODO: KVM_SET_SREGS is _IOW(KVMIO, 0x84, kvm_sregs): `ioctl_write_ptr!`,
    //       which makes an unsafe fn taking the fd and a `*const kvm_sregs` the
    //       kernel reads. Name cr0, cr4 and efer in the error's context: step 08
    //       gets them wrong on purpose, and KVM's EINVAL says nothing more.
    todo!(
        "step 07, `set_sregs`: not written yet. Read the TODO above this line in \
         chapters/07-kvm-real-mode.rs, or run `cargo run -- hint 7`"
    );
    // ANCHOR_END: set_sregs
}

// ANCHOR: regs
/// KVM_GET_REGS: the general registers (rax ... r15, rip, rflags).
pub fn get_regs(vcpu: &OwnedFd) -> Result<kvm_regs> {
    ioctl_read!(kvm_get_regs, KVMIO, 0x81, kvm_regs);
    let mut regs = kvm_regs::default();
    // SAFETY: the kernel writes one kvm_regs into `regs`, which is exactly that
    // big.
    unsafe { kvm_get_regs(vcpu.as_raw_fd(), &mut regs) }
        .context("ioctl(KVM_GET_REGS)")?;
    Ok(regs)
}

/// KVM_SET_REGS.
pub fn set_regs(vcpu: &OwnedFd, regs: &kvm_regs) -> Result<()> {
    ioctl_write_ptr!(kvm_set_regs, KVMIO, 0x82, kvm_regs);
    // SAFETY: the kernel only reads `regs`, a valid kvm_regs.
    unsafe { kvm_set_regs(vcpu.as_raw_fd(), regs) }
        .context("ioctl(KVM_SET_REGS)")?;
    Ok(())
}
// ANCHOR_END: regs

// ANCHOR: run_vcpu
/// KVM_RUN: run the guest until it does something we must handle. The answer is in
/// the shared run structure, not in the return value: KVM itself writes it into the
/// run area during the call. We never touch `_run` here; taking it as `&mut` is how
/// the compiler checks what the kernel needs, that no reference of ours into the
/// run area is alive while KVM_RUN writes there.
pub fn run_vcpu(vcpu: &OwnedFd, _run: &mut RunArea) -> Result<()> {
    ioctl_write_int_bad!(kvm_run, request_code_none!(KVMIO, 0x80));
    // SAFETY: no pointer argument. The kernel writes only to the vCPU's kvm_run
    // mapping, of which we hold the one &mut for the whole call, and to guest
    // memory, which GuestMemory never lends out (its reads are copies).
    unsafe { kvm_run(vcpu.as_raw_fd(), 0) }.map_err(isolab::vm::run_failed)?;
    Ok(())
}
// ANCHOR_END: run_vcpu

/// Why the vCPU stopped, read from the shared run structure.
pub fn decode(run: &RunArea) -> Result<Exit> {
    // ANCHOR: decode
    // TODO: Read `run.run().exit_reason` and turn it into an `Exit`. The details
    //       are in the union `run.run().__bindgen_anon_1`, in the member the reason
    //       names; reading a union member is unsafe (SAFETY: the exit reason says
    //       which one the kernel filled).
    //       - KVM_EXIT_IO: member `io` (direction, size, port, count, data_offset).
    //         The data is in the run area itself, `size` bytes at `io.data_offset`:
    //         `run.bytes(io.data_offset, size)`, little-endian. KVM_EXIT_IO_OUT
    //         gives Exit::IoOut { port, size, value }; otherwise Exit::IoIn { port,
    //         size }. (`count` is above 1 only for string instructions like
    //         `rep outsb`, which our guests never use, so Exit has no field for
    //         it.)
    //       - KVM_EXIT_MMIO: member `mmio` (phys_addr, data, len, is_write).
    //       - KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN; KVM_EXIT_FAIL_ENTRY (member
    //         `fail_entry`, hardware_entry_failure_reason); KVM_EXIT_INTERNAL_ERROR
    //         (member `internal`, suberror). Anything else: Exit::Other with the
    //         reason.
    todo!(
        "step 07, `decode`: not written yet. Read the TODO above this line in \
         chapters/07-kvm-real-mode.rs, or run `cargo run -- hint 7`"
    );
    // ANCHOR_END: decode
}
