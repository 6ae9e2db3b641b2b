//! The probe's timer, for step 10: the cost of one system call from wherever the
//! probe runs. It prints `key: value` lines that step 10 reads.

use isolab::workshop::report::{Timer, line};
use std::process::ExitCode;
use std::time::Instant;

// ANCHOR: syscalls
/// Time `count` getppid() calls in a row and print the cost of one. getppid is
/// about the cheapest real system call: the kernel reads one field and returns, and
/// no C library answers it from a cache (glibc once cached getpid's answer).
/// Calling it through libc::syscall makes sure every call enters the kernel. One
/// call is far shorter than reading the clock reliably, so we time them all and
/// divide.
pub fn syscalls(count: u64) -> ExitCode {
    let start = Instant::now();
    for _ in 0..count {
        // SAFETY: getppid takes no arguments, touches no memory of ours, cannot
        // fail.
        std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    let elapsed = start.elapsed();
    println!("{}", line(Timer::Syscall, "getppid"));
    println!("{}", line(Timer::Calls, count));
    println!(
        "{}",
        line(Timer::Total, format!("{} ns", elapsed.as_nanos()))
    );
    let each = elapsed.as_nanos() as f64 / count.max(1) as f64;
    println!("{}", line(Timer::Each, format!("{each:.1} ns")));
    ExitCode::SUCCESS
}
// ANCHOR_END: syscalls
