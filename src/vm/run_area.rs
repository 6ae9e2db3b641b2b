//! The vCPU's `kvm_run`, the page KVM shares with us to say why the guest stopped.

use anyhow::{Context, Result, bail};
use kvm_bindings::kvm_run;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;

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
        // bytes (checked in `map`); the kernel writes it only during KVM_RUN, and
        // step 07's run_vcpu takes this area as `&mut` for that call, so the borrow
        // checker refuses any borrow from here that would still be alive then.
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
