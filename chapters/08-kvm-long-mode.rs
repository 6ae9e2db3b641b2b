//! # Step 08: long mode, MMIO and hypercalls
//!
//! Step 07's hypervisor, now running 64-bit code. Real mode needs nothing from the
//! guest; long mode needs what an OS sets up for itself before anything else: a GDT
//! whose code segment says "64-bit", page tables (here: the first GiB mapped to
//! itself), and the control registers that switch it all on (CR0.PE and CR0.PG,
//! CR4.PAE, EFER.LME and EFER.LMA). The host writes the tables into guest memory
//! and sets the registers with KVM_SET_SREGS, as a boot loader would have.
//!
//! The guest then talks to the host three ways: a *hypercall* over two ports (print
//! the string at an address, exit with a code, which becomes this program's exit
//! code like QEMU's isa-debug-exit), and a *device* at a guest-physical address
//! with no memory behind it, so that every access is an MMIO exit that the host
//! answers: the guest writes 21 and reads back 42. After the run the host reads the
//! guest's registers and memory. `--break WHAT` sets the vCPU up wrong on purpose
//! and explains the exit that follows.
//!
//! New ioctls: KVM_GET_REGS, on top of step 07's.
//!
//! ```text
//! $ target/debug/08-kvm-long-mode --exit-code 3; echo $?
//! guest said: Hello from long mode!
//! guest said: The doubler turned 21 into 42.
//! ...
//! exits: 2 x IO out port 0x500, 1 x MMIO write 0x10000000,
//!   1 x MMIO read 0x10000000, 1 x IO out port 0x501
//! ...
//! 3
//! ```

// Your copy of step 08. Replace each todo!() with your code, then run
// `cargo run -- check 8`. (Generated from solutions/08-kvm-long-mode.rs:
// `cargo run -- reset 8` brings this version back.)

use isolab::prelude::*;
use isolab::vm::{
    CODE_SELECTOR, DATA_SELECTOR, Exit, GDT, GuestMemory, KvmArgs, RunArea, Trace,
};
use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};
use std::fs::File;
use std::os::fd::OwnedFd;

// The finished step this one builds on: step 07's own file, as a module. Its
// ioctls (create_vm, create_vcpu, run_vcpu, decode, the registers) are the ones
// you wrote.
#[path = "../solutions/07-kvm-real-mode.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod kvm_real_mode;
pub use kvm_real_mode::{get_regs, get_sregs, set_regs, set_sregs};

/// Step 08: run a 64-bit guest on KVM, with hypercalls, an MMIO device and an exit
/// code.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    kvm: KvmArgs,
    /// The exit code to ask the guest for (the host hands it over in rdi)
    #[arg(long, value_name = "N", default_value_t = 0)]
    exit_code: u8,
    /// Set the vCPU up wrong on purpose, and see which exit that causes
    #[arg(long = "break", value_name = "WHAT", value_enum)]
    mistake: Option<Mistake>,
}

// ANCHOR: mistakes
/// Deliberate mistakes, for `--break`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Mistake {
    /// rflags with TF, the trap flag: a debug exception after one instruction
    TrapFlag,
    /// a code segment whose "present" flag is clear
    CodeSegment,
    /// CR4 without PAE, which long mode requires
    NoPae,
    /// start at an int3: a breakpoint, with no interrupt table to handle it
    Int3,
}

impl Mistake {
    fn apply(self, sregs: &mut kvm_sregs, regs: &mut kvm_regs) {
        match self {
            Mistake::TrapFlag => regs.rflags |= 0x100,
            Mistake::CodeSegment => sregs.cs.present = 0,
            Mistake::NoPae => sregs.cr4 &= !CR4_PAE,
            Mistake::Int3 => {
                regs.rip = guest_address(&raw const GUEST_LONG_MODE_BREAKPOINT)
            }
        }
    }
}
// ANCHOR_END: mistakes

// ANCHOR: layout
/// Guest RAM: 2 MiB at guest-physical address 0.
pub const MEMORY_SIZE: usize = 2 << 20;
/// The GDT: three descriptors (see isolab::vm::GDT).
pub const GDT_ADDRESS: u64 = 0x1000;
/// The page tables: PML4 here, PDPT at +0x1000, PD at +0x2000.
pub const PML4_ADDRESS: u64 = 0x2000;
/// The guest's code and data.
pub const GUEST_ADDRESS: u64 = 0x1_0000;
/// The stack grows down from the end of RAM.
const STACK_TOP: u64 = MEMORY_SIZE as u64;
/// The doubler: a device with no memory behind it. Mapped by the page tables (they
/// cover the first GiB), but not by any memory slot, so each access exits to us.
const DOUBLER: u64 = 0x1000_0000;
/// Hypercalls: `out` to these ports with eax holding the argument.
pub const HYPERCALL_PRINT: u16 = 0x500; // eax: address of a NUL-terminated string
pub const HYPERCALL_EXIT: u16 = 0x501; // eax: the exit code (QEMU's isa-debug-exit)
// ANCHOR_END: layout

// ANCHOR: control_bits
const CR0_PE: u64 = 1 << 0; // protected mode
const CR0_PG: u64 = 1 << 31; // paging
const CR4_PAE: u64 = 1 << 5; // 64-bit page-table entries: long mode needs them
const EFER_LME: u64 = 1 << 8; // long mode enable
const EFER_LMA: u64 = 1 << 10; // long mode active (set by the CPU; KVM wants it)
// ANCHOR_END: control_bits

// ANCHOR: guest
// The guest: 64-bit code. It runs at GUEST_ADDRESS with paging on, and since the
// page tables map every address to itself, rip-relative addresses are
// guest-physical too.
core::arch::global_asm!(
    r#"
    .pushsection .rodata.guest_long_mode, "a"
    .globl GUEST_LONG_MODE_START
GUEST_LONG_MODE_START:
    .code64
    lea rax, [rip + hello]
    mov dx, {print}
    out dx, eax                     # hypercall: print(hello)
    mov dword ptr [{doubler}], 21   # no memory there: an MMIO write exit
    mov ebx, dword ptr [{doubler}]  # an MMIO read exit; the host answers
    mov qword ptr [rip + GUEST_LONG_MODE_ANSWER], rbx  # kept for the host to find
    cmp ebx, 42
    lea rax, [rip + right]
    lea rcx, [rip + wrong]
    cmovne rax, rcx
    out dx, eax                     # print(right or wrong)
    mov eax, edi                    # the exit code the host handed us in rdi
    mov dx, {exit}
    out dx, eax                     # hypercall: exit(edi)
    hlt
    .globl GUEST_LONG_MODE_BREAKPOINT
GUEST_LONG_MODE_BREAKPOINT:                 # only --break int3 starts here
    int3
hello:
    .asciz "Hello from long mode!\n"
right:
    .asciz "The doubler turned 21 into 42.\n"
wrong:
    .asciz "The doubler got 21 * 2 wrong.\n"
    .balign 8
    .globl GUEST_LONG_MODE_ANSWER
GUEST_LONG_MODE_ANSWER:
    .quad 0
    .globl GUEST_LONG_MODE_END
GUEST_LONG_MODE_END:
    .popsection
"#,
    print = const HYPERCALL_PRINT,
    exit = const HYPERCALL_EXIT,
    doubler = const DOUBLER,
);
// ANCHOR_END: guest

// Global symbols, named for this step (step 07's guest links beside this one).
unsafe extern "C" {
    static GUEST_LONG_MODE_START: u8;
    static GUEST_LONG_MODE_END: u8;
    static GUEST_LONG_MODE_BREAKPOINT: u8;
    static GUEST_LONG_MODE_ANSWER: u8;
}

/// The guest's machine code, as the assembler left it in this program's read-only
/// data.
fn guest_code() -> &'static [u8] {
    let (start, end) = (
        &raw const GUEST_LONG_MODE_START,
        &raw const GUEST_LONG_MODE_END,
    );
    // SAFETY: both symbols come from the global_asm! above, in one section, END
    // after START; the bytes between them are read-only data that lives as long as
    // the program.
    unsafe { std::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// Where a label of the guest ends up in guest memory.
fn guest_address(label: *const u8) -> u64 {
    GUEST_ADDRESS + (label as u64 - (&raw const GUEST_LONG_MODE_START) as u64)
}

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        let kvm = isolab::vm::open(&args.kvm.device)?;
        let version = kvm_real_mode::api_version(&kvm, &args.kvm.device)?;
        println!("KVM API version {version}");
        isolab::vm::print_capabilities(|cap| {
            kvm_real_mode::check_extension(&kvm, cap)
        })?;
        isolab::vm::repeat(args.kvm.repeat, |report| run_guest(&kvm, &args, report))
    })
}

// ANCHOR: run_guest
/// One VM, from nothing to the guest's exit hypercall. Returns the guest's exit
/// code.
fn run_guest(kvm: &File, args: &Args, report: bool) -> Result<i32> {
    let mut memory = GuestMemory::new(MEMORY_SIZE)?;
    memory.write(GDT_ADDRESS, &isolab::vm::x86::gdt_bytes())?;
    memory.write(
        PML4_ADDRESS,
        &isolab::vm::x86::identity_page_tables(PML4_ADDRESS),
    )?;
    memory.write(GUEST_ADDRESS, guest_code())?;
    let vm = kvm_real_mode::create_vm(kvm, &memory)?;
    let (vcpu, mut run) = kvm_real_mode::create_vcpu(kvm, &vm)?;

    let mut sregs = get_sregs(&vcpu)?;
    let mut regs = kvm_regs::default();
    set_long_mode(&mut sregs, &mut regs);
    regs.rdi = args.exit_code.into(); // the guest's one argument
    if let Some(mistake) = args.mistake {
        mistake.apply(&mut sregs, &mut regs);
    }
    set_sregs(&vcpu, &sregs)?;
    set_regs(&vcpu, &regs)?;

    let _watchdog = isolab::vm::Watchdog::start()?;
    let mut trace = Trace::default();
    let mut said = String::new();
    let mut doubler = Doubler::default();
    let code = loop {
        kvm_real_mode::run_vcpu(&vcpu, &mut run)?;
        let exit = kvm_real_mode::decode(&run)?;
        trace.push(&exit);
        match exit {
            Exit::IoOut { port, value, .. } => {
                match hypercall(port, value, &memory)? {
                    Hypercall::Print(text) => {
                        trace.note(format!("print {text:?}"));
                        said += &text;
                    }
                    Hypercall::Exit(code) => {
                        trace.note(format!("exit({code})"));
                        break code;
                    }
                }
            }
            Exit::MmioWrite { .. } | Exit::MmioRead { .. } => {
                let note = mmio(&mut doubler, &exit, &mut run)?;
                trace.note(note);
            }
            other => {
                let (regs, sregs) = (get_regs(&vcpu)?, get_sregs(&vcpu)?);
                print!("{trace}");
                for why in isolab::vm::explain(&other, Some((&regs, &sregs))) {
                    println!("why: {why}");
                }
                bail!("the guest stopped with {other} at rip {:#x}", regs.rip);
            }
        }
    };
    if report {
        for line in said.lines() {
            println!("guest said: {}", isolab::vm::printable(line));
        }
        print!("{trace}");
        report_state(&vcpu, &memory)?;
        println!("guest exit code: {code}");
    }
    Ok(code)
}
// ANCHOR_END: run_guest

/// Set the registers a 64-bit guest starts with: what its boot loader would have
/// done.
pub fn set_long_mode(sregs: &mut kvm_sregs, regs: &mut kvm_regs) {
    // No interrupt table yet: an exception in the guest is fatal (a triple fault).
    sregs.idt = kvm_dtable::default();
    // ANCHOR: long_mode
    // TODO: Switch the vCPU to 64-bit mode, as if a boot loader had done it:
    //       - paging: cr3 = PML4_ADDRESS (the tables are in guest memory already),
    //         cr4 = CR4_PAE, efer = EFER_LME | EFER_LMA, cr0 = CR0_PE | CR0_PG;
    //       - the GDT: sregs.gdt is a kvm_dtable with base GDT_ADDRESS and limit
    //         size_of_val(&GDT) - 1;
    //       - segments: the CPU uses the copies in kvm_segment, not the GDT, so
    //         they must say what the descriptors say (isolab::vm::GDT): cs gets
    //         selector CODE_SELECTOR, base 0, limit 0xffff_ffff, type_ 0xb, present
    //         1, s 1, l 1 (64-bit code), db 0, g 1; ds, es, fs, gs and ss get
    //         selector DATA_SELECTOR, type_ 0x3, db 1, l 0, and the rest as for cs;
    //       - regs: rip GUEST_ADDRESS, rsp STACK_TOP, rflags 0x2.
    todo!(
        "step 08, `long_mode`: not written yet. Read the TODO above this line in \
         chapters/08-kvm-long-mode.rs, or run `cargo run -- hint 8`"
    );
    // ANCHOR_END: long_mode
}

// ANCHOR: hypercall_type
/// What the guest asks of the host through the hypercall ports.
pub enum Hypercall {
    Print(String),
    Exit(i32),
}
// ANCHOR_END: hypercall_type

/// The guest wrote `value` to `port`: which hypercall is it?
pub fn hypercall(port: u16, value: u32, memory: &GuestMemory) -> Result<Hypercall> {
    // ANCHOR: hypercall
    // TODO: HYPERCALL_PRINT: `value` is the guest-physical address of a
    //       NUL-terminated string; read it from guest memory (memory.read_c_string)
    //       and return Hypercall::Print. HYPERCALL_EXIT: `value` is the exit code,
    //       Hypercall::Exit. Any other port has no device behind it: an error that
    //       names the port.
    todo!(
        "step 08, `hypercall`: not written yet. Read the TODO above this line in \
         chapters/08-kvm-long-mode.rs, or run `cargo run -- hint 8`"
    );
    // ANCHOR_END: hypercall
}

// ANCHOR: doubler
/// The one device on this machine: write a number to it, read back its double.
#[derive(Default)]
struct Doubler {
    value: u64,
}
// ANCHOR_END: doubler

/// The guest touched an address with no memory behind it: be the device there.
/// Returns a note for the trace.
fn mmio(doubler: &mut Doubler, exit: &Exit, run: &mut RunArea) -> Result<String> {
    // ANCHOR: mmio
    // TODO: An MmioWrite to DOUBLER: remember the value. An MmioRead from DOUBLER:
    //       the answer is twice the value. The guest's instruction is still waiting
    //       for it: put its `len` low bytes (little-endian) into the `mmio.data` of
    //       the shared run structure (`run.run_mut().__bindgen_anon_1.mmio`), and
    //       KVM hands them to the guest on the next KVM_RUN. Return a note: "stored
    //       21", "answered 42". Any other address: an error, there is neither
    //       memory nor a device there.
    todo!(
        "step 08, `mmio`: not written yet. Read the TODO above this line in \
         chapters/08-kvm-long-mode.rs, or run `cargo run -- hint 8`"
    );
    // ANCHOR_END: mmio
}

// ANCHOR: report_state
/// After the run: the guest's registers and the answer it left in its memory.
fn report_state(vcpu: &OwnedFd, memory: &GuestMemory) -> Result<()> {
    let (regs, sregs) = (get_regs(vcpu)?, get_sregs(vcpu)?);
    println!("after the run (KVM_GET_REGS, KVM_GET_SREGS, guest memory):");
    println!(
        "  rip {:#x}  rsp {:#x}  rbx {:#x}  rdi {:#x}",
        regs.rip, regs.rsp, regs.rbx, regs.rdi
    );
    println!(
        "  cr0 {:#x}  cr3 {:#x}  cr4 {:#x}  efer {:#x}",
        sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer
    );
    let answer = guest_address(&raw const GUEST_LONG_MODE_ANSWER);
    println!(
        "  memory at {answer:#x} (the guest's answer): {}",
        memory.read_u64(answer)?
    );
    Ok(())
}
// ANCHOR_END: report_state
