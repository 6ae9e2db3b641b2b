//! The KVM floor, for bench/containers.sh: a process that opens /dev/kvm, creates a
//! VM with step 07's memory and a vCPU, runs a guest of one `hlt`, closes it all and
//! exits. Step 07's whole process is measured against it. It is made of step 07's
//! and 08's own functions (through step 10's VMM to time), so it costs what their
//! ioctls cost and nothing else the steps do (arguments, the capability table,
//! printing).

#[path = "../solutions/08-kvm-long-mode.rs"]
#[allow(dead_code)] // a whole step, of which this uses a few functions
#[rustfmt::skip] // formatted as its own step, to solutions/rustfmt.toml's width
mod kvm_long_mode;
use kvm_long_mode::kvm_real_mode;

#[path = "../solutions/10-compare/timed_vm.rs"]
#[allow(dead_code)]
#[rustfmt::skip] // formatted as a part of step 10, to solutions/rustfmt.toml's width
mod timed_vm;

fn main() -> std::process::ExitCode {
    isolab::main(|| {
        let took = timed_vm::lifecycle(std::path::Path::new("/dev/kvm"))?;
        println!("kvm lifecycle: {} ns", took.as_nanos());
        Ok(0)
    })
}
