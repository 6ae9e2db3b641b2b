//! Step 08, a 64-bit guest on KVM: page tables and a GDT in guest memory, long mode
//! switched on with KVM_SET_SREGS, a hypercall to print and one to exit with a code,
//! and an MMIO device the host answers for. These tests run a real VM on this
//! machine's /dev/kvm. The GDT and page-table bytes have their own snapshots, made
//! without KVM, in src/kvm.rs.

mod common;
use common::*;
use isolab::workshop::scorecard::GuestSummary;

const STEP: &str = "08-kvm-long-mode";
const NO_ARGS: &[&str] = &[];

/// What the guest said, every exit, and its registers and memory afterwards.
#[test]
fn trace() {
    needs!(kvm);
    let run = run(&step(STEP), NO_ARGS);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    snapshot("trace", &run.stdout, vec![]);
}

/// The guest read back 42 after writing 21: the host answered, not memory (which
/// would have given back 21). It says so, keeps it in rbx and in its memory.
#[test]
fn the_host_answers_the_mmio_read() {
    needs!(kvm);
    let run = run(&step(STEP), NO_ARGS);
    let summary = GuestSummary::parse(&run.stdout).expect("a `guest said:` and an `exits:` line");
    assert_eq!(summary.said, "Hello from long mode!");
    assert!(
        run.stdout
            .contains("guest said: The doubler turned 21 into 42.")
            && run.stdout.contains("rbx 0x2a")
            && run.stdout.contains("(the guest's answer): 42"),
        "the guest did not read 42 back from the doubler: does mmio() put the answer into \
         the run area's mmio.data before the next KVM_RUN?\n{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("MMIO read 0x10000000, 4 bytes  => answered 42"),
        "{}",
        run.stdout
    );
}

/// The exit hypercall's value becomes this process's exit code.
#[test]
fn the_guest_exit_code_is_passed_on() {
    needs!(kvm);
    for code in [3, 255] {
        let run = run(&step(STEP), &["--exit-code", &code.to_string()]);
        assert_eq!(run.code, Some(code), "stderr: {}", run.stderr);
        assert!(
            run.stdout.contains(&format!("=> exit({code})")),
            "{}",
            run.stdout
        );
    }
}

/// A bad RFLAGS: with the trap flag set, the CPU raises #DB after the first
/// instruction, there is no IDT, and the guest triple-faults. The same on bare
/// metal and here.
#[test]
fn break_trap_flag() {
    needs!(kvm);
    let run = run(&step(STEP), &["--break", "trap-flag"]);
    assert_one_line_error(
        &run,
        125,
        "the guest stopped with SHUTDOWN (triple fault) at rip 0x10007",
    );
    snapshot("break_trap_flag", &run.stdout, vec![]);
}

/// Long mode without PAE is a state no CPU can be in: KVM_SET_SREGS refuses it
/// before the guest runs at all.
#[test]
fn break_no_pae() {
    needs!(kvm);
    let run = run(&step(STEP), &["--break", "no-pae"]);
    assert_one_line_error(
        &run,
        125,
        "ioctl(KVM_SET_SREGS, cr0 0x80000001 cr4 0x0 efer 0x500)",
    );
    assert!(!run.stdout.contains("exit trace"), "{}", run.stdout);
}

/// int3 with no IDT: a triple fault on bare-metal KVM (SHUTDOWN). On a
/// paravirtualised host such as kvm_pvm, KVM emulates the software interrupt and
/// gives up instead: INTERNAL_ERROR, emulation failed. Either way it is explained.
#[test]
fn break_int3() {
    needs!(kvm);
    let run = run(&step(STEP), &["--break", "int3"]);
    assert_eq!(run.code, Some(125), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("SHUTDOWN (triple fault)")
            || run
                .stderr
                .contains("INTERNAL_ERROR, suberror 1 (emulation failed)"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("\nwhy: "), "{}", run.stdout);
}

/// A code segment that is not present: Intel's VM entry refuses it (FAIL_ENTRY);
/// AMD and kvm_pvm never look at the flag in 64-bit mode, and the guest runs.
#[test]
fn break_code_segment() {
    needs!(kvm);
    let run = run(&step(STEP), &["--break", "code-segment"]);
    match run.code {
        Some(0) => assert!(run.stdout.contains("guest exit code: 0"), "{}", run.stdout),
        _ => assert_one_line_error(&run, 125, "FAIL_ENTRY"),
    }
}

#[test]
fn many_vms_leave_nothing_behind() {
    needs!(kvm);
    assert_many_vms_leave_nothing_behind(&step(STEP));
}

#[test]
fn a_missing_device_is_one_line() {
    assert_a_missing_device_is_one_line(&step(STEP));
}
