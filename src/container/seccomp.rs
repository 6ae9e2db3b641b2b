//! Seccomp filters, in the kernel's own language: classic BPF. A filter is a small
//! program the kernel runs on every system call the process makes. It reads the
//! call's number and arguments from a `struct seccomp_data` and returns a verdict.
//! These helpers name the few instructions a readable filter needs; the policy is
//! written in step 05.
//!
//! ```text
//! struct seccomp_data {   offset
//!     int   nr;           0    the system call's number
//!     __u32 arch;         4    AUDIT_ARCH_X86_64 for a 64-bit x86 call
//!     __u64 instruction_pointer;  8
//!     __u64 args[6];      16   args[0] at 16 (low half on x86-64), args[1] at 24, ...
//! };
//! ```

use anyhow::{Context, Result};
use nix::errno::Errno;

pub use libc::sock_filter as Instruction;

/// Offsets into `struct seccomp_data`.
pub const NR: u32 = 0;
pub const ARCH: u32 = 4;
/// Where the low 32 bits of argument `index` are (x86-64 is little-endian). A
/// filter that looks only at these sees what the kernel sees for any argument that
/// is an int, a mode or a flag word of 32 bits.
pub const fn arg_low(index: u32) -> u32 {
    16 + 8 * index
}

/// The architecture a filter must check first: a 32-bit x86 call uses other
/// numbers for the same syscalls, and a filter that does not look would let them by.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// x32 calls are x86-64 calls with this bit set in the number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Verdicts.
pub const ALLOW: u32 = 0x7fff_0000;
pub const KILL_PROCESS: u32 = 0x8000_0000;
pub fn errno(e: Errno) -> u32 {
    0x0005_0000 | (e as u32 & 0xffff)
}

// BPF opcodes (linux/bpf_common.h): class | size | mode, or class | op | source.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP (0x05) | BPF_JEQ (0x10) | BPF_K (0x00)
const BPF_JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE (0x30) | BPF_K
const BPF_JMP_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET (0x40) | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET (0x06) | BPF_K

/// Load the 32-bit word at `offset` of seccomp_data into the accumulator.
pub fn load(offset: u32) -> Instruction {
    Instruction {
        code: BPF_LD_W_ABS,
        jt: 0,
        jf: 0,
        k: offset,
    }
}

/// If the accumulator equals `k`, skip `if_true` instructions, else `if_false`.
pub fn jump_if_equal(k: u32, if_true: u8, if_false: u8) -> Instruction {
    Instruction {
        code: BPF_JMP_JEQ_K,
        jt: if_true,
        jf: if_false,
        k,
    }
}

/// If the accumulator is at least `k`, skip `if_true`, else `if_false`.
pub fn jump_if_at_least(k: u32, if_true: u8, if_false: u8) -> Instruction {
    Instruction {
        code: BPF_JMP_JGE_K,
        jt: if_true,
        jf: if_false,
        k,
    }
}

/// If the accumulator has any bit of `mask` set, skip `if_true`, else `if_false`.
pub fn jump_if_any_bit(mask: u32, if_true: u8, if_false: u8) -> Instruction {
    Instruction {
        code: BPF_JMP_JSET_K,
        jt: if_true,
        jf: if_false,
        k: mask,
    }
}

/// Stop with this verdict.
pub fn ret(verdict: u32) -> Instruction {
    Instruction {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: verdict,
    }
}

/// Install `program` for this thread and every process it will start. Without
/// CAP_SYS_ADMIN the kernel requires no_new_privs first; the filter stays for good.
pub fn install(program: &[Instruction]) -> Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .context("a seccomp program has at most 4096 instructions")?,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prog points at `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    Errno::result(rc).context("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)")?;
    Ok(())
}
