//! A writer of "newc" cpio archives, the format the kernel unpacks an initramfs
//! from (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Each entry is a 110-byte ASCII header (the magic `070701`, then 13 fields of 8
//! hex digits), the path with a NUL, padding to a multiple of 4, the contents, and
//! padding again. The archive ends with an entry named `TRAILER!!!`. Every entry
//! here belongs to root (uid and gid 0) and has mtime 0, so the same inputs give the
//! same bytes.

use anyhow::{Context, Result, bail};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// A newc archive being written to `out`.
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer { out, next_ino: 1 }
    }

    /// A directory. Parents must come before their children.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.header(path, S_IFDIR | (mode & 0o7777), 0, 2)
    }

    /// A regular file with these contents.
    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> Result<()> {
        self.header(path, S_IFREG | (mode & 0o7777), contents.len(), 1)?;
        self.out.write_all(contents)?;
        self.pad(contents.len())
    }

    /// A regular file copied from the host file `from`, with its permissions.
    pub fn copy(&mut self, path: &str, from: &Path) -> Result<()> {
        let mut file = fs::File::open(from).with_context(|| format!("open({})", from.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("fstat({})", from.display()))?;
        let size = meta.len() as usize;
        self.header(
            path,
            S_IFREG | (meta.permissions().mode() & 0o7777),
            size,
            1,
        )?;
        let copied = io::copy(&mut file, &mut self.out)
            .with_context(|| format!("copying {} into the archive", from.display()))?;
        if copied as usize != size {
            bail!("{} changed size while it was archived", from.display());
        }
        self.pad(size)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.header(path, S_IFLNK | 0o777, target.len(), 1)?;
        self.out.write_all(target.as_bytes())?;
        self.pad(target.len())
    }

    /// Write the trailer and hand back the output.
    pub fn finish(mut self) -> Result<W> {
        self.header("TRAILER!!!", 0, 0, 1)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, path: &str, mode: u32, size: usize, nlink: u32) -> Result<()> {
        let path = path.trim_start_matches('/');
        if path.is_empty() || path.contains('\0') {
            bail!("{path:?} cannot be a path in a cpio archive");
        }
        let Ok(size) = u32::try_from(size) else {
            bail!("{path} is larger than a newc archive can hold (4 GiB)");
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            0,
            0,
            path.len() as u32 + 1,
            0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(path.as_bytes())?;
        self.out.write_all(b"\0")?;
        self.pad(header.len() + path.len() + 1)
    }

    /// Zeros up to the next multiple of 4 after `written` bytes.
    fn pad(&mut self, written: usize) -> Result<()> {
        let zeros = (4 - written % 4) % 4;
        self.out.write_all(&[0; 3][..zeros])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One file, byte for byte as `cpio -o -H newc` writes it (with uid, gid and
    /// mtime 0), then the trailer.
    #[test]
    fn a_file_and_the_trailer() {
        let mut w = Writer::new(Vec::new());
        w.file("init", 0o755, b"hi\n").unwrap();
        let bytes = w.finish().unwrap();
        let fields = [
            "00000001", "000081ED", "00000000", "00000000", "00000001", "00000000",
        ];
        let rest = [
            "00000003", "00000000", "00000000", "00000000", "00000000", "00000005",
        ];
        let want = format!("070701{}{}00000000", fields.concat(), rest.concat());
        assert_eq!(&bytes[..110], want.as_bytes());
        // header (110) + "init\0" (5) + 1 zero = 116, then "hi\n" + 1 zero.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..120], b"hi\n\0");
        let text = String::from_utf8_lossy(&bytes[120..]);
        assert!(text.starts_with("070701"), "{text:?}");
        assert!(text.contains("TRAILER!!!\0"));
        assert_eq!(bytes.len() % 4, 0);
    }
}
