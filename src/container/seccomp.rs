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
/// Stop the call and send the thread SIGSYS, which a handler can catch (see
/// [`crate::container::sigsys`]); the call itself never runs.
pub const TRAP: u32 = 0x0003_0000;
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

/// What a filter sees of one system call: the `struct seccomp_data` above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Call {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Call {
    /// An x86-64 call of `nr` with these arguments (the rest 0).
    pub fn x86_64(nr: u32, args: &[u64]) -> Call {
        let mut call = Call {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args: [0; 6],
        };
        call.args[..args.len()].copy_from_slice(args);
        call
    }

    /// The 32-bit word at `offset` of seccomp_data, as BPF_LD | BPF_W | BPF_ABS reads it.
    fn word(&self, offset: u32) -> Option<u32> {
        match offset {
            NR => Some(self.nr),
            ARCH => Some(self.arch),
            o if (16..64).contains(&o) && o % 4 == 0 => {
                let arg = self.args[((o - 16) / 8) as usize];
                Some(if o % 8 == 0 {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                })
            }
            _ => None,
        }
    }
}

/// Run `program` on `call` as the kernel would, and return its verdict: how step 09
/// counts what a filter lets through, and how the tests check a filter without
/// installing it. Knows the instructions the helpers above make, and no others.
pub fn evaluate(program: &[Instruction], call: &Call) -> Result<u32> {
    let mut accumulator = 0;
    let mut pc = 0;
    while let Some(i) = program.get(pc) {
        pc += 1;
        let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
        match i.code {
            BPF_LD_W_ABS => {
                accumulator = call
                    .word(i.k)
                    .with_context(|| format!("instruction {}: no word at offset {}", pc - 1, i.k))?
            }
            BPF_JMP_JEQ_K => pc += jump(accumulator == i.k),
            BPF_JMP_JGE_K => pc += jump(accumulator >= i.k),
            BPF_JMP_JSET_K => pc += jump(accumulator & i.k != 0),
            BPF_RET_K => return Ok(i.k),
            code => anyhow::bail!(
                "instruction {}: opcode {code:#x} is not one of ours",
                pc - 1
            ),
        }
    }
    anyhow::bail!("the program ran off its end without a verdict")
}

/// Run every filter of a stack on `call`, as the kernel does for a process that
/// installed more than one, and return the verdict that wins: the strictest, in
/// the kernel's order (KILL_PROCESS, then KILL_THREAD, TRAP, ERRNO, ..., ALLOW;
/// `seccomp_run_filters` compares the action as a signed number). Between two of
/// the same action, the filter installed last wins; `stack` lists them in the
/// order they were installed.
pub fn evaluate_stack(stack: &[&[Instruction]], call: &Call) -> Result<u32> {
    let action = |verdict: u32| (verdict & 0xffff_0000) as i32;
    let mut winner = ALLOW;
    for program in stack.iter().rev() {
        let verdict = evaluate(program, call)?;
        if action(verdict) < action(winner) {
            winner = verdict;
        }
    }
    Ok(winner)
}

/// A verdict in words.
pub fn verdict_name(verdict: u32) -> String {
    match verdict {
        ALLOW => "ALLOW".into(),
        KILL_PROCESS => "KILL_PROCESS".into(),
        TRAP => "TRAP".into(),
        v if v & 0xffff_0000 == 0x0005_0000 => {
            format!("ERRNO({:?})", Errno::from_raw((v & 0xffff) as i32))
        }
        v => format!("{v:#x}"),
    }
}

/// The program as a listing, one instruction a line, each jump with the line it
/// lands on: what `--show-filter` prints. `name` puts a name to a system call number.
pub fn disassemble(program: &[Instruction], name: impl Fn(u32) -> Option<String>) -> String {
    let mut out = String::new();
    let offset = |k: u32| match k {
        NR => "nr".to_string(),
        ARCH => "arch".to_string(),
        k if k >= 16 => format!(
            "args[{}]{}",
            (k - 16) / 8,
            if k % 8 == 0 { "" } else { " high" }
        ),
        k => format!("[{k}]"),
    };
    let mut loaded = NR;
    for (at, i) in program.iter().enumerate() {
        let target = |skip: u8| at + 1 + usize::from(skip);
        let text = match i.code {
            BPF_LD_W_ABS => {
                loaded = i.k;
                format!("load {}", offset(i.k))
            }
            BPF_RET_K => format!("return {}", verdict_name(i.k)),
            code => {
                let op = match code {
                    BPF_JMP_JEQ_K => "==",
                    BPF_JMP_JGE_K => ">=",
                    BPF_JMP_JSET_K => "&",
                    _ => "?",
                };
                let value = match (loaded, name(i.k)) {
                    (NR, Some(name)) if code == BPF_JMP_JEQ_K => name,
                    _ => format!("{:#x}", i.k),
                };
                format!(
                    "if {} {op} {value}: go to {}, else {}",
                    offset(loaded),
                    target(i.jt),
                    target(i.jf)
                )
            }
        };
        out += &format!("{at:4}  {text}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-rule filter, run by the interpreter: the verdicts the kernel would give.
    #[test]
    fn evaluate_runs_a_filter_as_the_kernel_would() {
        let program = [
            load(ARCH),
            jump_if_equal(AUDIT_ARCH_X86_64, 1, 0),
            ret(KILL_PROCESS),
            load(NR),
            jump_if_equal(libc::SYS_write as u32, 0, 3),
            load(arg_low(0)),
            jump_if_equal(1, 0, 1),
            ret(ALLOW),
            ret(TRAP),
        ];
        let write = |fd: u64| Call::x86_64(libc::SYS_write as u32, &[fd]);
        assert_eq!(evaluate(&program, &write(1)).unwrap(), ALLOW);
        assert_eq!(evaluate(&program, &write(3)).unwrap(), TRAP);
        // Only the low half of an argument is compared.
        assert_eq!(evaluate(&program, &write(1 << 32 | 1)).unwrap(), ALLOW);
        let i386 = Call {
            arch: 0x4000_0003,
            ..write(1)
        };
        assert_eq!(evaluate(&program, &i386).unwrap(), KILL_PROCESS);
        assert_eq!(verdict_name(errno(Errno::EPERM)), "ERRNO(EPERM)");
        // Stacked under a filter that refuses write(1) with EPERM and allows the
        // rest: TRAP beats ERRNO beats ALLOW, and KILL_PROCESS beats them all.
        let deny = [
            load(NR),
            jump_if_equal(libc::SYS_write as u32, 0, 1),
            ret(errno(Errno::EPERM)),
            ret(ALLOW),
        ];
        let stack = [&deny[..], &program[..]];
        let stacked = |call: &Call| evaluate_stack(&stack, call).unwrap();
        assert_eq!(stacked(&write(1)), errno(Errno::EPERM));
        assert_eq!(stacked(&write(3)), TRAP);
        assert_eq!(stacked(&i386), KILL_PROCESS);
        let read = Call::x86_64(libc::SYS_read as u32, &[0]);
        assert_eq!(evaluate_stack(&[&deny[..]], &read).unwrap(), ALLOW);
        let listing = disassemble(&program, |n| Some(format!("nr{n}")));
        assert!(
            listing.contains("   4  if nr == nr1: go to 5, else 8"),
            "{listing}"
        );
        assert!(
            listing.contains("   6  if args[0] == 0x1: go to 7, else 8"),
            "{listing}"
        );
    }
}
