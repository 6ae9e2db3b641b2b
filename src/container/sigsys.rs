//! Naming the system call a seccomp filter refused. A filter whose verdict is
//! [`TRAP`](super::seccomp::TRAP) stops the call before it runs and sends the
//! thread SIGSYS; the signal's `siginfo_t` holds the call's number (`si_syscall`)
//! and the saved registers hold its arguments. The handler here writes one line
//! that names the call, and ends the process at once, as Firecracker's does: a VMM
//! that makes a call it never makes is no longer running its own code, and must not
//! get to try another.
//!
//! A signal handler may only do what is async-signal-safe: no allocation, no locks,
//! no formatting machinery. So the line is put together in a buffer on the stack,
//! written with write(2), and the process ends with _exit(2): two calls the filter
//! must allow.
//!
//! A crash under such a filter needs the same care ([`name_faults`]): the standard
//! library's handler for SIGSEGV and SIGBUS (it looks for stack overflows) puts the
//! default action back with rt_sigaction, which an allow-list traps, so a crash,
//! the first sign of a VMM whose memory a guest corrupted, would be reported as a
//! refused call.

use super::syscalls;
use anyhow::{Context, Result};
use libc::{c_int, c_void, siginfo_t};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use std::sync::OnceLock;

/// The exit code after a refused call: 128 + SIGSYS, what a shell reports for a
/// process the kernel killed with SIGSYS (which is what a filter returning
/// KILL_PROCESS would do, without a word).
pub const EXIT_CODE: i32 = 128 + libc::SIGSYS;

/// The start of the line: `NAME: error: `, made before the handler can run.
static PREFIX: OnceLock<String> = OnceLock::new();

/// The SIGSYS part of `siginfo_t` on x86-64 (`_sigsys` in the kernel's
/// `include/uapi/asm-generic/siginfo.h`): after the three ints and the padding that
/// aligns the union, the address of the call, its number and its architecture.
#[repr(C)]
#[allow(dead_code)] // the layout needs every field; the handler reads one
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: *mut libc::c_void,
    syscall: i32,
    arch: u32,
}

/// From now on, a call the filter traps ends this process with one line on stderr
/// that names it (`program` starts the line, as every error of the step does).
pub fn name_refused_calls(program: &str) -> Result<()> {
    let _ = PREFIX.set(format!("{program}: error: "));
    let action = SigAction::new(
        SigHandler::SigAction(on_sigsys),
        SaFlags::SA_SIGINFO,
        SigSet::all(), // nothing else interrupts the handler
    );
    // SAFETY: the handler only calls async-signal-safe functions (write, _exit) and
    // reads memory that was set up before it was installed.
    unsafe { sigaction(Signal::SIGSYS, &action) }.context("sigaction(SIGSYS)")?;
    Ok(())
}

/// The faults [`name_faults`] names.
const FAULTS: [(Signal, &[u8]); 4] = [
    (Signal::SIGSEGV, b"SIGSEGV"),
    (Signal::SIGBUS, b"SIGBUS"),
    (Signal::SIGILL, b"SIGILL"),
    (Signal::SIGFPE, b"SIGFPE"),
];

/// From now on, a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE) ends this process with
/// one line on stderr that says it crashed, at which address and instruction, and
/// the exit code a shell reports for a process the fault killed (128 + the signal).
/// The handler runs on the alternate signal stack the standard library set up, so a
/// stack overflow is named too: a SIGSEGV just below the stack.
pub fn name_faults(program: &str) -> Result<()> {
    let _ = PREFIX.set(format!("{program}: error: "));
    let action = SigAction::new(
        SigHandler::SigAction(on_fault),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
        SigSet::all(),
    );
    for (signal, _) in FAULTS {
        // SAFETY: the handler only calls async-signal-safe functions (write,
        // _exit) and reads memory that was set up before it was installed.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("sigaction({signal})"))?;
    }
    Ok(())
}

extern "C" fn on_fault(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo_t; for these four signals it fills
    // si_addr, the address that faulted.
    let address = unsafe { (*info).si_addr() } as u64;
    let context = context.cast::<libc::ucontext_t>();
    // SAFETY: with SA_SIGINFO the third argument is the interrupted thread's
    // ucontext_t, whose saved rip is the instruction that faulted.
    let rip = unsafe { (*context).uc_mcontext.gregs[libc::REG_RIP as usize] } as u64;
    let name = FAULTS
        .iter()
        .find(|(s, _)| *s as c_int == signal)
        .map_or(b"a fault".as_slice(), |(_, name)| name);
    let mut line = Line {
        bytes: [0; 320],
        len: 0,
    };
    line.push(PREFIX.get().map_or(b"error: ".as_slice(), |p| p.as_bytes()));
    line.push(b"the VMM crashed: ");
    line.push(name);
    line.push(b" at address ");
    line.push_hex(address);
    line.push(b", instruction ");
    line.push_hex(rip);
    line.push(b": a fault, not a refused call\n");
    // SAFETY: write(2) and _exit(2) are async-signal-safe, and `line` is ours.
    unsafe {
        libc::write(2, line.bytes.as_ptr().cast(), line.len);
        libc::_exit(128 + signal);
    }
}

/// A fixed buffer that text is appended to, without allocating.
struct Line {
    bytes: [u8; 320],
    len: usize,
}

impl Line {
    fn push(&mut self, text: &[u8]) {
        let room = self.bytes.len() - self.len;
        let n = text.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&text[..n]);
        self.len += n;
    }

    fn push_hex(&mut self, value: u64) {
        let mut digits = [0u8; 18];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 2;
        digits[i..i + 2].copy_from_slice(b"0x");
        self.push(&digits[i..]);
    }

    fn push_decimal(&mut self, value: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

// ANCHOR: handler
extern "C" fn on_sigsys(_: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo_t, and for SIGSYS from seccomp it
    // fills the _sigsys member, whose layout SigsysInfo repeats.
    let number = unsafe { (*info.cast::<SigsysInfo>()).syscall } as u32;
    let context = context.cast::<libc::ucontext_t>();
    // SAFETY: with SA_SIGINFO the third argument is the interrupted thread's
    // ucontext_t; its saved registers hold the call's arguments (rdi, rsi, rdx).
    let registers = unsafe { (*context).uc_mcontext.gregs };
    let mut line = Line {
        bytes: [0; 320],
        len: 0,
    };
    line.push(PREFIX.get().map_or(b"error: ".as_slice(), |p| p.as_bytes()));
    line.push(b"the seccomp filter stopped the VMM at ");
    line.push(
        syscalls::name(number)
            .unwrap_or("an unknown call")
            .as_bytes(),
    );
    line.push(b" (system call ");
    line.push_decimal(number);
    line.push(b", arguments ");
    for (i, register) in [libc::REG_RDI, libc::REG_RSI, libc::REG_RDX]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            line.push(b" ");
        }
        line.push_hex(registers[register as usize] as u64);
    }
    line.push(b"): a call outside its allow-list, so it ends here\n");
    // SAFETY: write(2) and _exit(2) are async-signal-safe, and `line` is ours.
    unsafe {
        libc::write(2, line.bytes.as_ptr().cast(), line.len);
        libc::_exit(EXIT_CODE);
    }
}
// ANCHOR_END: handler

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_allocating() {
        let mut line = Line {
            bytes: [0; 320],
            len: 0,
        };
        line.push(b"openat (");
        line.push_decimal(257);
        line.push(b") ");
        line.push_hex(0xffff_ff9c);
        line.push(b" ");
        line.push_hex(0);
        assert_eq!(&line.bytes[..line.len], b"openat (257) 0xffffff9c 0x0");
    }
}
