//! The host canary: a file on the host, outside every rootfs, with contents nobody
//! else could guess. Whether the box can read it is the yes/no answer to "can the box
//! read the host's files?". The probe recognises it by its first line.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The first line of every canary; the probe checks for it, so a file that merely
/// has the same name inside the box does not count.
pub const MARKER: &str = "isolab host canary";

/// The canary's other form: a variable in the environment of whoever starts a box,
/// as a token or a password in a shell's environment would be. The tests and the
/// tour set it for every runtime they start, with [`ENV_VALUE`].
pub const ENV: &str = "ISOLAB_CANARY";
pub const ENV_VALUE: &str = "isolab host canary, in the caller's environment";

/// A canary in its own temporary directory, removed when dropped.
pub struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    pub fn create() -> Result<Canary> {
        let dir = tempfile::Builder::new()
            .prefix("isolab-canary-")
            .tempdir()
            .context("creating the canary's temporary directory")?;
        let mut secret = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .context("reading /dev/urandom")?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.path().join("canary");
        std::fs::write(&path, format!("{MARKER}\n{hex}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Canary { dir })
    }

    /// The canary's absolute path on the host; pass it to the probe with `--canary`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("canary")
    }

    /// The directory that holds the canary (a host directory outside the rootfs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
