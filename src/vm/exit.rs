//! Why KVM_RUN returned, decoded, and in words when it ends a run badly.

use kvm_bindings::{kvm_regs, kvm_sregs};
use std::fmt;

// ANCHOR: exit
/// Why KVM_RUN returned: `kvm_run.exit_reason` and the union member it selects,
/// decoded. The ones our guests cause have their own variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// KVM_EXIT_IO, KVM_EXIT_IO_OUT: the guest ran `out`: `size` bytes to `port`.
    IoOut { port: u16, size: u8, value: u32 },
    /// KVM_EXIT_IO, KVM_EXIT_IO_IN: the guest runs `in`; we put `size` bytes at
    /// `io.data_offset` before the next KVM_RUN.
    IoIn { port: u16, size: u8 },
    /// KVM_EXIT_MMIO, is_write: the guest wrote `len` bytes to a guest-physical
    /// address with no memory behind it.
    MmioWrite { addr: u64, len: usize, value: u64 },
    /// KVM_EXIT_MMIO, a read: we fill `mmio.data` before the next KVM_RUN.
    MmioRead { addr: u64, len: usize },
    /// KVM_EXIT_HLT: the guest halted, and there is no interrupt to wake it.
    Hlt,
    /// KVM_EXIT_SHUTDOWN: the guest triple-faulted (a PC would reset).
    Shutdown,
    /// KVM_EXIT_FAIL_ENTRY: the CPU refused to enter the guest with this state.
    FailEntry { reason: u64 },
    /// KVM_EXIT_INTERNAL_ERROR: KVM itself could not go on (suberror 1: it could
    /// not emulate an instruction).
    InternalError { suberror: u32 },
    /// Any other exit reason (the KVM_EXIT_* number).
    Other { reason: u32 },
}
// ANCHOR_END: exit

impl Exit {
    /// The exit without its data: what the trace counts.
    pub fn kind(&self) -> String {
        Kind(self).to_string()
    }

    /// Whether two exits are of one kind (what [`Exit::kind`] says), without formatting
    /// either: the trace groups and counts every exit by its kind.
    pub(super) fn same_kind(&self, other: &Exit) -> bool {
        match (self, other) {
            (Exit::IoOut { port: a, .. }, Exit::IoOut { port: b, .. })
            | (Exit::IoIn { port: a, .. }, Exit::IoIn { port: b, .. }) => a == b,
            (Exit::MmioWrite { addr: a, .. }, Exit::MmioWrite { addr: b, .. })
            | (Exit::MmioRead { addr: a, .. }, Exit::MmioRead { addr: b, .. }) => a == b,
            (Exit::Other { reason: a }, Exit::Other { reason: b }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// An exit's kind, written where it is printed instead of into a new `String`.
pub(super) struct Kind<'a>(pub(super) &'a Exit);

impl fmt::Display for Kind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Exit::IoOut { port, .. } => write!(f, "IO out port {port:#x}"),
            Exit::IoIn { port, .. } => write!(f, "IO in port {port:#x}"),
            Exit::MmioWrite { addr, .. } => write!(f, "MMIO write {addr:#x}"),
            Exit::MmioRead { addr, .. } => write!(f, "MMIO read {addr:#x}"),
            Exit::Hlt => f.write_str("HLT"),
            Exit::Shutdown => f.write_str("SHUTDOWN"),
            Exit::FailEntry { .. } => f.write_str("FAIL_ENTRY"),
            Exit::InternalError { .. } => f.write_str("INTERNAL_ERROR"),
            Exit::Other { reason } => write!(f, "exit reason {reason}"),
        }
    }
}

fn bytes(n: usize) -> &'static str {
    if n == 1 { "byte" } else { "bytes" }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = Kind(self);
        match *self {
            Exit::IoOut { size, value, .. } => {
                write!(f, "{kind}, {size} {}: {value:#x}", bytes(size.into()))?;
                match u8::try_from(value).map(char::from) {
                    Ok(c) if size == 1 && (c.is_ascii_graphic() || c == ' ') => write!(f, " '{c}'"),
                    Ok(c) if size == 1 => write!(f, " {:?}", c),
                    _ => Ok(()),
                }
            }
            Exit::IoIn { size, .. } => write!(f, "{kind}, {size} {}", bytes(size.into())),
            Exit::MmioWrite { len, value, .. } => {
                write!(f, "{kind}, {len} {}: {value:#x}", bytes(len))
            }
            Exit::MmioRead { len, .. } => write!(f, "{kind}, {len} {}", bytes(len)),
            Exit::Hlt => write!(f, "HLT"),
            Exit::Shutdown => write!(f, "SHUTDOWN (triple fault)"),
            Exit::FailEntry { reason } => write!(f, "FAIL_ENTRY, hardware reason {reason:#x}"),
            Exit::InternalError { suberror } => {
                let what = match suberror {
                    1 => " (emulation failed)",
                    2 => " (exception while delivering an exception)",
                    3 => " (could not deliver an event)",
                    _ => "",
                };
                write!(f, "INTERNAL_ERROR, suberror {suberror}{what}")
            }
            Exit::Other { reason } => write!(f, "exit reason {reason} (not handled here)"),
        }
    }
}

/// Why the guest stopped, in words, for the exits that end a run badly. `state` is
/// the vCPU's registers when the host could read them.
pub fn explain(exit: &Exit, state: Option<(&kvm_regs, &kvm_sregs)>) -> Vec<String> {
    let mut why = Vec::new();
    match exit {
        Exit::Shutdown => {
            why.push(
                "the guest triple-faulted: an exception found no handler (there is no IDT), \
                 nor did the double fault that followed, so the CPU gave up (a PC would reset)."
                    .into(),
            );
            if let Some((regs, sregs)) = state {
                if regs.rflags & 0x100 != 0 {
                    why.push(format!(
                        "rflags {:#x} has TF (0x100, the trap flag) set: the CPU ran one \
                         instruction, stopped at rip {:#x} and raised a debug exception (#DB).",
                        regs.rflags, regs.rip
                    ));
                }
                if sregs.cr2 != 0 {
                    why.push(format!(
                        "cr2 {:#x}: a page fault at that address. Do the page tables map it?",
                        sregs.cr2
                    ));
                }
            }
        }
        Exit::InternalError { suberror: 1 } => {
            why.push(
                "KVM had to emulate an instruction itself and could not: the code runs from \
                 an address with no memory behind it, or (on a paravirtualised host like \
                 kvm_pvm) a software interrupt met an empty IDT, which bare-metal KVM reports \
                 as a triple fault (SHUTDOWN) instead."
                    .into(),
            );
            if let Some((regs, sregs)) = state {
                why.push(format!(
                    "it stopped at cs base {:#x} + rip {:#x}",
                    sregs.cs.base, regs.rip
                ));
            }
        }
        Exit::FailEntry { reason } => why.push(format!(
            "the CPU refused to enter the guest: the state we set breaks a rule of VM entry. \
             On Intel, hardware reason {reason:#x} & 0xffff = {} ({}).",
            reason & 0xffff,
            if reason & 0xffff == 33 {
                "invalid guest state, e.g. a code segment that is not present"
            } else {
                "see the SDM's list of VM-entry failures"
            }
        )),
        Exit::Hlt => why.push(
            "the guest halted, and with no interrupt controller nothing will ever wake it.".into(),
        ),
        _ => {}
    }
    why
}
