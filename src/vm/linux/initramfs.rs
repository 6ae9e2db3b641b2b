//! The guest's initramfs: the rootfs builder's output, the step binaries asked
//! for, the commands to run, and our init, as one newc cpio archive in memory.
//!
//! ```text
//! /init                  src/vm/linux/init.sh (busybox sh)
//! /bin /lib /lib64 /etc  the rootfs builder's output: the probe, its libraries, busybox
//! /dev /proc /sys /tmp   mount points
//! /isolab/bin/NAME       each step binary, on PATH by its file name
//! /isolab/commands/NNN   each command, a shell script, run in order
//! /newroot               where init mounts the tmpfs it switches into
//! ```
//!
//! Nothing is written to disk. The rootfs builder's [`Plan`](crate::container::rootfs::Plan)
//! goes straight into the archive, and the archive into a memfd, a file with no
//! name: QEMU reads it through the descriptor it inherits, and when both are gone,
//! so is the file, however they ended.

use super::cpio;
use crate::container::rootfs::Entry;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufWriter, Seek};
use std::path::{Path, PathBuf};

/// The init the kernel runs: see its own comments.
pub const INIT: &str = include_str!("init.sh");

/// Where init finds the commands, and the step binaries.
pub const COMMANDS: &str = "isolab/commands";
pub const BINARIES: &str = "isolab/bin";

/// The most commands one boot runs (their file names have three digits).
pub const MAX_COMMANDS: usize = 999;

/// Build the initramfs around `probe`, with `binaries` in /isolab/bin and
/// `commands` (shell scripts) in /isolab/commands. Returns the archive as an
/// anonymous in-memory file, positioned at its start.
pub fn build(probe: &Path, binaries: &[PathBuf], commands: &[String]) -> Result<File> {
    if commands.len() > MAX_COMMANDS {
        bail!(
            "{} commands for one boot: at most {MAX_COMMANDS}",
            commands.len()
        );
    }
    let mut plan = crate::container::rootfs::plan(probe)?;
    if plan.busybox.is_none() {
        bail!(
            "the Linux guest's init is a busybox script, and this host has no static busybox: apt-get install busybox-static"
        );
    }
    let mut names = Vec::new();
    for bin in binaries {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", bin.display()))?;
        if !bin.is_file() {
            bail!(
                "{} does not exist: build it first (cargo build)",
                bin.display()
            );
        }
        // A step links what the probe links (libc, libgcc_s), but ask its loader anyway.
        let (_, needed) = crate::container::rootfs::libraries(bin)?;
        for entry in needed {
            if !plan.entries.iter().any(|e| e.path() == entry.path()) {
                plan.entries.push(entry);
            }
        }
        if names.iter().any(|n| n == name) {
            bail!("two binaries named {name} for the guest's /{BINARIES}");
        }
        names.push(name.to_string());
    }

    let memfd =
        nix::sys::memfd::memfd_create(c"isolab-initramfs", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .context("memfd_create(isolab-initramfs)")?;
    let write = || -> Result<File> {
        let mut archive = cpio::Writer::new(BufWriter::new(File::from(memfd)));
        for entry in &plan.entries {
            let path = entry
                .path()
                .to_str()
                .context("a rootfs path that is not UTF-8")?;
            match entry {
                Entry::Dir { mode, .. } => archive.dir(path, *mode)?,
                Entry::Copy { from, .. } => archive.copy(path, from)?,
                Entry::Symlink { target, .. } => archive.symlink(
                    path,
                    target
                        .to_str()
                        .context("a symlink target that is not UTF-8")?,
                )?,
                Entry::File { contents, .. } => archive.file(path, 0o644, contents)?,
            }
        }
        archive.dir("isolab", 0o755)?;
        archive.dir(BINARIES, 0o755)?;
        for (bin, name) in binaries.iter().zip(&names) {
            archive.copy(&format!("{BINARIES}/{name}"), bin)?;
        }
        archive.dir(COMMANDS, 0o755)?;
        for (i, command) in commands.iter().enumerate() {
            archive.file(
                &format!("{COMMANDS}/{:03}", i + 1),
                0o644,
                command.as_bytes(),
            )?;
        }
        archive.dir("newroot", 0o755)?;
        archive.file("init", 0o755, INIT.as_bytes())?;
        let mut file = archive.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(file)
    };
    write().context("writing the initramfs into a memfd")
}
