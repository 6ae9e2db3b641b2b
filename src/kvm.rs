//! The hypervisor steps' plumbing: what steps 06 and 07 share that is not the lesson.
//!
//! The lesson (declaring the KVM ioctls, calling them in order, setting the
//! registers, the run loop) lives in `solutions/06-kvm-real-mode.rs` and
//! `solutions/07-kvm-long-mode.rs`. This module holds the rest: opening the device
//! with an error that says what to do, the two memory mappings (guest RAM and the
//! vCPU's shared `kvm_run`), the decoded [`Exit`] and its trace, the capability
//! table, the GDT and page-table bytes of step 07, the leak check behind `--repeat`,
//! and the summary the tour reads back.

use anyhow::{Context, Result, bail};
use kvm_bindings::{kvm_regs, kvm_run, kvm_sregs};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous, munmap};
use std::ffi::c_void;
use std::fmt;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// The options both KVM steps take.
#[derive(clap::Args, Debug, Clone)]
pub struct KvmArgs {
    /// Run the guest N times, each in a fresh VM, then report whether the process
    /// grew (open fds, memory mappings, resident memory): a leak check
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// The KVM device to open (for machines that put it elsewhere, and for tests)
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm", hide = true)]
    pub device: PathBuf,
}

/// Open the KVM device read-write. A missing device or a refused open is one line
/// that says what to do about it.
pub fn open(device: &Path) -> Result<File> {
    let shown = device.display();
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
    {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot open {shown}: no such device: enable virtualization (VT-x or AMD-V) in the \
             firmware, or nested virtualization for this VM, and load kvm_intel or kvm_amd"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!(
                "cannot open {shown}: permission denied: {}",
                permission_advice(device)
            )
        }
        Err(e) => Err(e).with_context(|| format!("open({shown}, O_RDWR)")),
    }
}

/// What to do about a device we may not open: join its group when the device has
/// one (most distributions make /dev/kvm `root:kvm 0660`), otherwise use sudo.
pub fn permission_advice(device: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let group = std::fs::metadata(device)
        .ok()
        .filter(|m| m.gid() != 0 && m.mode() & 0o060 == 0o060)
        .and_then(|m| {
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                .ok()
                .flatten()
        });
    match group {
        Some(group) => format!(
            "add yourself to the {0} group (`sudo usermod -aG {0} $USER`, then log in again), \
             or run it with sudo",
            group.name
        ),
        None => format!(
            "{} belongs to root alone here, so run it with sudo (`cargo run -- run N` does that for you)",
            device.display()
        ),
    }
}

// ANCHOR: capabilities
/// The capabilities worth knowing about for these two steps, and why. All of them
/// have been in x86 KVM for years, so the table reads the same on every host.
pub const CAPABILITIES: &[(&str, u32, &str)] = &[
    (
        "user memory",
        kvm_bindings::KVM_CAP_USER_MEMORY,
        "guest RAM is memory this process maps",
    ),
    (
        "set TSS address",
        kvm_bindings::KVM_CAP_SET_TSS_ADDR,
        "real mode on old Intel CPUs needs a scratch area",
    ),
    (
        "in-kernel irqchip",
        kvm_bindings::KVM_CAP_IRQCHIP,
        "KVM could emulate the interrupt controllers (we do not ask)",
    ),
    (
        "ioeventfd",
        kvm_bindings::KVM_CAP_IOEVENTFD,
        "a guest write can wake a thread without an exit to us",
    ),
    (
        "coalesced MMIO",
        kvm_bindings::KVM_CAP_COALESCED_MMIO,
        "MMIO writes can be batched instead of one exit each",
    ),
    (
        "sync regs",
        kvm_bindings::KVM_CAP_SYNC_REGS,
        "registers can travel in kvm_run, saving ioctls per exit",
    ),
];
// ANCHOR_END: capabilities

/// Print the capability table, asking `check` (KVM_CHECK_EXTENSION) about each.
/// Any value above zero means yes; some capabilities answer with a number.
pub fn print_capabilities(check: impl Fn(u32) -> Result<i32>) -> Result<()> {
    println!("capabilities (KVM_CHECK_EXTENSION):");
    for (name, cap, why) in CAPABILITIES {
        let has = check(*cap)? > 0;
        println!("  {name:<18} {:<4} {why}", if has { "yes" } else { "no" });
    }
    Ok(())
}

/// Guest RAM: anonymous memory in this process that KVM maps into the guest's
/// physical address space. The kernel only backs the pages the guest (or we)
/// touch. Unmapped when dropped.
pub struct GuestMemory {
    ptr: NonNull<c_void>,
    size: usize,
}

impl GuestMemory {
    /// `size` bytes of zeroed memory.
    pub fn new(size: usize) -> Result<GuestMemory> {
        let length = NonZeroUsize::new(size).context("guest memory of 0 bytes")?;
        // SAFETY: a fresh anonymous private mapping at an address the kernel picks
        // cannot overlap anything Rust owns.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .with_context(|| format!("mmap({size} bytes of guest memory)"))?;
        Ok(GuestMemory { ptr, size })
    }

    /// Where the memory is in this process: what KVM_SET_USER_MEMORY_REGION wants
    /// as `userspace_addr`.
    pub fn host_address(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn size(&self) -> u64 {
        self.size as u64
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes, readable, and lives as long as self.
        // The guest writes to it only inside KVM_RUN, which cannot run while this
        // borrow is alive (we call KVM_RUN only between uses).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.size) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.size) }
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>> {
        let start = usize::try_from(addr).ok();
        match start.and_then(|s| Some(s..s.checked_add(len)?)) {
            Some(r) if r.end <= self.size => Ok(r),
            _ => bail!(
                "guest address {addr:#x} (+{len} bytes) is outside the guest's memory (0x0 to {:#x})",
                self.size
            ),
        }
    }

    /// Copy `bytes` to guest-physical address `addr`.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<()> {
        let range = self.range(addr, bytes.len())?;
        self.bytes_mut()[range].copy_from_slice(bytes);
        Ok(())
    }

    /// `len` bytes at guest-physical address `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<&[u8]> {
        let range = self.range(addr, len)?;
        Ok(&self.bytes()[range])
    }

    /// The little-endian u64 at guest-physical address `addr`.
    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.read(addr, 8)?);
        Ok(u64::from_le_bytes(word))
    }

    /// The NUL-terminated string at guest-physical address `addr` (at most 4 KiB;
    /// bytes that are not UTF-8 are replaced).
    pub fn read_c_string(&self, addr: u64) -> Result<String> {
        let start = self.range(addr, 0)?.start;
        let rest = &self.bytes()[start..];
        let rest = &rest[..rest.len().min(4096)];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            bail!("the guest's string at {addr:#x} has no NUL byte within 4 KiB");
        };
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range in `new`, and nothing borrows it any
        // more. An error here could only mean a bad range, which cannot happen.
        let _ = unsafe { munmap(self.ptr, self.size) };
    }
}

/// A vCPU's `kvm_run`: the page(s) the kernel shares with us through mmap(2) on the
/// vCPU's fd. KVM_RUN writes why it stopped there; we write our answers (the data
/// of an `in` or an MMIO read) there before the next KVM_RUN. Unmapped when dropped.
pub struct RunArea {
    ptr: NonNull<c_void>,
    size: usize,
}

impl RunArea {
    /// Map `size` bytes (what KVM_GET_VCPU_MMAP_SIZE said) of the vCPU's fd.
    pub fn map(vcpu: impl AsFd, size: usize) -> Result<RunArea> {
        if size < size_of::<kvm_run>() {
            bail!(
                "KVM_GET_VCPU_MMAP_SIZE said {size} bytes, less than a kvm_run ({})",
                size_of::<kvm_run>()
            );
        }
        let length = NonZeroUsize::new(size).context("a run area of 0 bytes")?;
        // SAFETY: a new shared mapping of the vCPU's fd at an address the kernel
        // picks; it overlaps nothing Rust owns.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                vcpu,
                0,
            )
        }
        .with_context(|| format!("mmap(vcpu fd, {size} bytes, MAP_SHARED)"))?;
        Ok(RunArea { ptr, size })
    }

    /// The shared structure, to read why the vCPU stopped.
    pub fn run(&self) -> &kvm_run {
        // SAFETY: the mapping is page-aligned and at least size_of::<kvm_run>()
        // bytes (checked in `map`); the kernel writes it only during KVM_RUN, which
        // needs no borrow of self and is never called while this one lives.
        unsafe { self.ptr.cast::<kvm_run>().as_ref() }
    }

    /// The shared structure, to write an answer before the next KVM_RUN.
    pub fn run_mut(&mut self) -> &mut kvm_run {
        // SAFETY: as in `run`; `&mut self` makes this the only borrow.
        unsafe { self.ptr.cast::<kvm_run>().as_mut() }
    }

    /// `len` bytes at `offset` from the start of the area: where an `out` left its
    /// data (`io.data_offset`).
    pub fn bytes(&self, offset: u64, len: usize) -> Result<&[u8]> {
        let range = self.range(offset, len)?;
        // SAFETY: as in `run`, for the whole mapping; `range` lies inside it.
        let all = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.size) };
        Ok(&all[range])
    }

    /// `len` bytes at `offset`, to write: where an `in` takes its data from.
    pub fn bytes_mut(&mut self, offset: u64, len: usize) -> Result<&mut [u8]> {
        let range = self.range(offset, len)?;
        // SAFETY: as in `bytes`; `&mut self` makes this the only borrow.
        let all =
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u8>(), self.size) };
        Ok(&mut all[range])
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>> {
        let start = usize::try_from(offset).ok();
        match start.and_then(|s| Some(s..s.checked_add(len)?)) {
            Some(r) if r.end <= self.size => Ok(r),
            _ => bail!(
                "offset {offset:#x} (+{len} bytes) is outside the {} bytes of kvm_run",
                self.size
            ),
        }
    }
}

impl Drop for RunArea {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range in `map`, and nothing borrows it.
        let _ = unsafe { munmap(self.ptr, self.size) };
    }
}

/// What KVM_RUN's failure means. EINTR is our own watchdog (see [`Watchdog`]): the
/// guest ran for seconds without a single exit.
pub fn run_failed(errno: Errno) -> anyhow::Error {
    if errno == Errno::EINTR {
        anyhow::anyhow!(
            "the guest ran for {} s without an exit, so the watchdog stopped it: is it in an endless loop?",
            Watchdog::SECONDS
        )
    } else {
        anyhow::Error::new(errno).context("ioctl(vcpu, KVM_RUN, 0)")
    }
}

/// A guest in an endless loop never exits, so KVM_RUN would never return. The
/// watchdog sends us SIGALRM after a few seconds; a handler that does nothing is
/// enough to make KVM_RUN return EINTR. Disarmed when dropped.
pub struct Watchdog(());

impl Watchdog {
    pub const SECONDS: u32 = 5;

    pub fn start() -> Result<Watchdog> {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        extern "C" fn wake(_: nix::libc::c_int) {}
        // No SA_RESTART: the point is to interrupt KVM_RUN.
        let action = SigAction::new(SigHandler::Handler(wake), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(Signal::SIGALRM, &action) }.context("sigaction(SIGALRM)")?;
        nix::unistd::alarm::set(Self::SECONDS);
        Ok(Watchdog(()))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        nix::unistd::alarm::cancel();
    }
}

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
        match self {
            Exit::IoOut { port, .. } => format!("IO out port {port:#x}"),
            Exit::IoIn { port, .. } => format!("IO in port {port:#x}"),
            Exit::MmioWrite { addr, .. } => format!("MMIO write {addr:#x}"),
            Exit::MmioRead { addr, .. } => format!("MMIO read {addr:#x}"),
            Exit::Hlt => "HLT".into(),
            Exit::Shutdown => "SHUTDOWN".into(),
            Exit::FailEntry { .. } => "FAIL_ENTRY".into(),
            Exit::InternalError { .. } => "INTERNAL_ERROR".into(),
            Exit::Other { reason } => format!("exit reason {reason}"),
        }
    }
}

fn bytes(n: usize) -> &'static str {
    if n == 1 { "byte" } else { "bytes" }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
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

/// The exits of one run, in order, each with an optional note on what the host did
/// about it. Printed compactly: a run of the same kind shows its first
/// [`Trace::SHOWN`] exits in full, then a count.
#[derive(Debug, Default)]
pub struct Trace {
    exits: Vec<(Exit, Option<String>)>,
}

impl Trace {
    pub const SHOWN: usize = 3;

    pub fn push(&mut self, exit: &Exit) {
        self.exits.push((exit.clone(), None));
    }

    /// Say what the host did about the last exit.
    pub fn note(&mut self, note: impl Into<String>) {
        if let Some(last) = self.exits.last_mut() {
            last.1 = Some(note.into());
        }
    }

    pub fn len(&self) -> usize {
        self.exits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exits.is_empty()
    }

    /// `exits: 22 x IO out port 0x3f8, 1 x HLT`: each kind with its count, in order of
    /// first appearance.
    pub fn summary(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (exit, _) in &self.exits {
            let kind = exit.kind();
            match counts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((kind, 1)),
            }
        }
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} x {k}")).collect();
        format!("exits: {}", parts.join(", "))
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit trace:")?;
        let mut i = 0;
        while i < self.exits.len() {
            let kind = self.exits[i].0.kind();
            let same = self.exits[i..]
                .iter()
                .take_while(|(e, _)| e.kind() == kind)
                .count();
            let shown = if same > Self::SHOWN + 1 {
                Self::SHOWN
            } else {
                same
            };
            for (k, (exit, note)) in self.exits[i..i + shown].iter().enumerate() {
                write!(f, "  {:>4}  {exit}", i + k + 1)?;
                match note {
                    Some(note) => writeln!(f, "  => {note}")?,
                    None => writeln!(f)?,
                }
            }
            if same > shown {
                writeln!(f, "        ... {} more {kind}", same - shown)?;
            }
            i += same;
        }
        writeln!(f, "{}", self.summary())
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

/// What this process holds right now: open fds, memory mappings, resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub fds: usize,
    pub mappings: usize,
    pub rss_kib: u64,
}

impl Usage {
    pub fn now() -> Result<Usage> {
        let fds = std::fs::read_dir("/proc/self/fd")
            .context("reading /proc/self/fd")?
            .count();
        let mappings = std::fs::read_to_string("/proc/self/maps")
            .context("reading /proc/self/maps")?
            .lines()
            .count();
        let status =
            std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS line in /proc/self/status")?;
        Ok(Usage {
            fds,
            mappings,
            rss_kib,
        })
    }
}

/// Run a VM `times` times, one after another: the first run prints its report
/// (`run(true)`), the others run quietly. With more than one, print what the process
/// held after the first VM and after the last. Every VM closes its fds and unmaps its
/// memory, so the two must match (resident memory may move by a few pages).
pub fn repeat(times: u32, mut run: impl FnMut(bool) -> Result<i32>) -> Result<i32> {
    let code = run(true)?;
    if times > 1 {
        let first = Usage::now()?;
        for _ in 1..times {
            run(false)?;
        }
        let last = Usage::now()?;
        println!(
            "ran {times} VMs one after another: open fds {} -> {}, memory mappings {} -> {}, VmRSS {} -> {} KiB",
            first.fds, last.fds, first.mappings, last.mappings, first.rss_kib, last.rss_kib
        );
    }
    Ok(code)
}

impl Usage {
    /// Read back the line [`repeat`] prints: what the process held after the first
    /// VM and after the last.
    pub fn parse_repeat_line(stdout: &str) -> Option<(Usage, Usage)> {
        let line = stdout.lines().find(|l| l.starts_with("ran "))?;
        let numbers: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let [_, fds1, fds2, maps1, maps2, rss1, rss2] = numbers[..] else {
            return None;
        };
        let usage = |fds: u64, mappings: u64, rss_kib| Usage {
            fds: fds as usize,
            mappings: mappings as usize,
            rss_kib,
        };
        Some((usage(fds1, maps1, rss1), usage(fds2, maps2, rss2)))
    }
}

/// Text as the guest wrote it, on one line: newlines and other control characters
/// escaped, so the report stays one `key: value` line.
pub fn printable(text: &str) -> String {
    text.trim_end_matches('\n')
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Step 07: the guest's own "OS work", done for it by the host: a GDT and page tables.
// ---------------------------------------------------------------------------------

/// Page-table entry bits (the same in every level of x86-64 paging).
pub mod pte {
    /// The entry is valid: without it the CPU raises a page fault.
    pub const PRESENT: u64 = 1 << 0;
    /// Writes are allowed.
    pub const WRITABLE: u64 = 1 << 1;
    /// In a page directory: the entry maps a 2 MiB page itself, no page table below.
    pub const HUGE: u64 = 1 << 7;
}

/// Two MiB: what one page-directory entry with [`pte::HUGE`] maps.
pub const MIB2: u64 = 2 << 20;

// ANCHOR: page_tables
/// Page tables that identity-map the first GiB (guest virtual address X is guest
/// physical address X) with 2 MiB pages, for a PML4 at `base`: three 4 KiB tables,
/// PML4 at `base`, PDPT at `base + 0x1000`, PD at `base + 0x2000`. Returns their
/// bytes, to be copied to `base` in guest memory; CR3 = `base`.
pub fn identity_page_tables(base: u64) -> Vec<u8> {
    let (pdpt, pd) = (base + 0x1000, base + 0x2000);
    let mut entries = vec![0u64; 3 * 512];
    entries[0] = pdpt | pte::PRESENT | pte::WRITABLE; // PML4[0]: the first 512 GiB
    entries[512] = pd | pte::PRESENT | pte::WRITABLE; // PDPT[0]: the first GiB
    for i in 0..512 {
        // PD[i]: the 2 MiB page at i * 2 MiB
        entries[1024 + i] = (i as u64 * MIB2) | pte::PRESENT | pte::WRITABLE | pte::HUGE;
    }
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}
// ANCHOR_END: page_tables

/// A readable dump of page tables built by [`identity_page_tables`]: every entry
/// that is not zero, its address and value, and what it says. A long run of PD
/// entries that each map the next 2 MiB is shortened.
pub fn describe_page_tables(base: u64, bytes: &[u8]) -> String {
    let names = ["PML4", "PDPT", "PD"];
    let mut out = String::new();
    for (t, table) in bytes.chunks(4096).enumerate() {
        let at = base + t as u64 * 0x1000;
        out += &format!("{} at {at:#x}\n", names.get(t).unwrap_or(&"table"));
        let entries: Vec<u64> = table
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        let mut skipped = 0;
        for (i, &e) in entries.iter().enumerate() {
            if e == 0 {
                continue;
            }
            let in_run = i > 1
                && i + 1 < entries.len()
                && e.wrapping_sub(entries[i - 1]) == MIB2
                && entries[i + 1].wrapping_sub(e) == MIB2;
            if in_run && e & pte::HUGE != 0 {
                skipped += 1;
                continue;
            }
            if skipped > 0 {
                out += &format!(
                    "  ... [{}] to [{}]: the same, each 2 MiB further\n",
                    i - skipped,
                    i - 1
                );
                skipped = 0;
            }
            let addr = e & 0x000f_ffff_ffff_f000;
            let mut flags = vec![];
            for (bit, name) in [
                (pte::PRESENT, "present"),
                (pte::WRITABLE, "writable"),
                (pte::HUGE, "huge"),
            ] {
                if e & bit != 0 {
                    flags.push(name);
                }
            }
            let what = if e & pte::HUGE != 0 {
                format!("the 2 MiB page at {addr:#x}")
            } else {
                format!("the table at {addr:#x}")
            };
            out += &format!(
                "  {:#06x} [{i:>3}] {e:#018x}  {what} ({})\n",
                at + i as u64 * 8,
                flags.join(", ")
            );
        }
    }
    out
}

// ANCHOR: gdt
/// The GDT's selectors: a selector is the entry's byte offset in the table.
pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;

/// A flat 64-bit GDT: the null descriptor, a code segment, a data segment. In long
/// mode base and limit are ignored; what matters are the flag bits.
pub const GDT: [u64; 3] = [
    0,
    // code: type 0xb (execute/read, accessed), S=1, DPL=0, P=1, L=1 (64-bit), D=0, G=1
    0x00af_9b00_0000_ffff,
    // data: type 0x3 (read/write, accessed), S=1, DPL=0, P=1, D/B=1, G=1
    0x00cf_9300_0000_ffff,
];
// ANCHOR_END: gdt

/// The GDT's bytes, to copy into guest memory.
pub fn gdt_bytes() -> Vec<u8> {
    GDT.iter().flat_map(|d| d.to_le_bytes()).collect()
}

/// A readable dump of a GDT: each descriptor's address, value and fields, in the
/// names `kvm_segment` uses for them.
pub fn describe_gdt(base: u64, bytes: &[u8]) -> String {
    let mut out = format!("GDT at {base:#x}, limit {:#x}\n", bytes.len() - 1);
    for (i, raw) in bytes.chunks_exact(8).enumerate() {
        let d = u64::from_le_bytes(raw.try_into().unwrap_or_default());
        let at = base + i as u64 * 8;
        if d == 0 {
            out += &format!("  {at:#06x} sel {:#04x} {d:#018x}  null\n", i * 8);
            continue;
        }
        let limit = (d & 0xffff) | ((d >> 48) & 0xf) << 16;
        let seg_base = ((d >> 16) & 0xff_ffff) | ((d >> 56) & 0xff) << 24;
        let bit = |n: u32| (d >> n) & 1;
        let type_ = (d >> 40) & 0xf;
        let kind = if type_ & 0x8 != 0 { "code" } else { "data" };
        out += &format!(
            "  {at:#06x} sel {:#04x} {d:#018x}  {kind}: base {seg_base:#x} limit {limit:#x} type {type_:#x} s {} dpl {} present {} l {} db {} g {}\n",
            i * 8,
            bit(44),
            (d >> 45) & 3,
            bit(47),
            bit(53),
            bit(54),
            bit(55),
        );
    }
    out
}

/// What the tour reads back from a KVM step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// What the guest printed (`guest said:`).
    pub said: String,
    /// How many exits the host handled (the sum of the `exits:` line).
    pub exits: u32,
}

impl Summary {
    /// The tour's rows for the KVM steps: one column per step.
    pub fn render(columns: &[(String, Option<Summary>)]) -> String {
        let width = columns.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
        type Cell = fn(&Summary) -> String;
        let rows: [(&str, Cell); 2] = [
            ("own kernel code", |_| "yes".into()),
            ("exits handled by the host", |s| s.exits.to_string()),
        ];
        let label = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = format!("{:label$}", "");
        for (heading, _) in columns {
            out += &format!("  {heading:>width$}");
        }
        out.push('\n');
        for (name, cell) in rows {
            out += &format!("{name:label$}");
            for (_, summary) in columns {
                let value = summary.as_ref().map(cell).unwrap_or_else(|| "?".into());
                out += &format!("  {value:>width$}");
            }
            out.push('\n');
        }
        out
    }

    pub fn parse(stdout: &str) -> Option<Summary> {
        let said = stdout
            .lines()
            .find_map(|l| l.strip_prefix("guest said: "))?
            .to_string();
        let exits = stdout
            .lines()
            .find_map(|l| l.strip_prefix("exits: "))?
            .split(", ")
            .map(|part| part.split(" x ").next()?.parse::<u32>().ok())
            .sum::<Option<u32>>()?;
        Some(Summary { said, exits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tables() {
        let bytes = identity_page_tables(0x2000);
        assert_eq!(bytes.len(), 3 * 4096);
        // The dump below shortens the page directory: check every entry here.
        let entry = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        for i in 0..512 {
            assert_eq!(entry(1024 + i), (i as u64 * MIB2) | 0x83, "PD[{i}]");
        }
        insta::assert_snapshot!("page_tables", describe_page_tables(0x2000, &bytes));
    }

    #[test]
    fn gdt() {
        insta::assert_snapshot!("gdt", describe_gdt(0x1000, &gdt_bytes()));
    }

    #[test]
    fn trace_shortens_runs_and_counts_kinds() {
        let mut trace = Trace::default();
        for b in b"Hello" {
            trace.push(&Exit::IoOut {
                port: 0x3f8,
                size: 1,
                value: u32::from(*b),
            });
        }
        trace.push(&Exit::MmioRead {
            addr: 0x1000_0000,
            len: 4,
        });
        trace.note("answered 42");
        trace.push(&Exit::Hlt);
        insta::assert_snapshot!("trace", trace.to_string());
        assert_eq!(
            Summary::parse(&format!("guest said: Hello\n{trace}")),
            Some(Summary {
                said: "Hello".into(),
                exits: 7
            })
        );
    }

    #[test]
    fn tour_rows() {
        let summary = |exits| {
            Some(Summary {
                said: String::new(),
                exits,
            })
        };
        let columns = [
            ("06-kvm-real-mode".to_string(), summary(23)),
            ("07-kvm-long-mode".to_string(), summary(5)),
        ];
        insta::assert_snapshot!("tour_rows", Summary::render(&columns));
    }

    #[test]
    fn guest_memory_is_bounds_checked() {
        let mut memory = GuestMemory::new(0x2000).unwrap();
        memory.write(0x1ffe, b"hi").unwrap();
        assert_eq!(memory.read(0x1ffe, 2).unwrap(), b"hi");
        assert!(memory.write(0x1fff, b"hi").is_err());
        assert!(memory.read(u64::MAX, 2).is_err());
        memory.write(0x100, b"text\0").unwrap();
        assert_eq!(memory.read_c_string(0x100).unwrap(), "text");
        assert!(
            memory.read_c_string(0x1fff).is_err(),
            "no NUL before the end"
        );
    }

    #[test]
    fn printable_keeps_one_line() {
        assert_eq!(printable("Hello\n"), "Hello");
        assert_eq!(printable("a\nb\x07"), "a\\nb\\u{7}");
    }
}
