//! Guest RAM: memory of this process that KVM maps into the guest.

use anyhow::{Context, Result, bail};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

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
        // The guest writes to it only inside KVM_RUN, and no borrow made here outlives
        // the method that made it: every read hands out a copy.
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

    /// A copy of the `len` bytes at guest-physical address `addr`. A copy, not a
    /// borrow: the guest may change its memory at the next KVM_RUN, and a Rust
    /// reference to bytes that change under it would be undefined behaviour.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let range = self.range(addr, len)?;
        Ok(self.bytes()[range].to_vec())
    }

    /// The little-endian u64 at guest-physical address `addr`.
    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.read(addr, 8)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_memory_is_bounds_checked() {
        let mut memory = GuestMemory::new(0x2000).unwrap();
        memory.write(0x1ffe, b"hi").unwrap();
        assert_eq!(memory.read(0x1ffe, 2).unwrap(), b"hi".to_vec());
        assert!(memory.write(0x1fff, b"hi").is_err());
        assert!(memory.read(u64::MAX, 2).is_err());
        memory.write(0x100, b"text\0").unwrap();
        assert_eq!(memory.read_c_string(0x100).unwrap(), "text");
        assert!(
            memory.read_c_string(0x1fff).is_err(),
            "no NUL before the end"
        );
    }
}
