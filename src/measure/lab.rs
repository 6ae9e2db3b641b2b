//! The step binaries next to the running program, and a rootfs of their own.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The step binaries next to this program, and a rootfs of its own.
pub struct Lab {
    bins: PathBuf,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Find the directory this program was built in (where cargo also put the
    /// reference steps and the probe) and build a rootfs in a new temporary
    /// directory, removed when the lab is dropped.
    pub fn new() -> Result<Lab> {
        let exe = std::env::current_exe().context("readlink(/proc/self/exe)")?;
        let bins = exe
            .parent()
            .context("the directory of this program")?
            .to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("isolab-compare-")
            .tempdir()
            .context("making a temporary directory for the rootfs")?;
        let lab = Lab { bins, dir };
        let probe = lab.bin("probe")?;
        crate::container::rootfs::build(&lab.rootfs(), &probe)?;
        Ok(lab)
    }

    /// The trivial command every start-up row runs, as the box sees it: busybox's
    /// `/bin/true`, or, in a rootfs without busybox, `/bin/probe exit 0`.
    pub fn trivial(&self) -> Vec<&'static str> {
        if self.rootfs().join("bin/true").exists() {
            vec!["/bin/true"]
        } else {
            vec!["/bin/probe", "exit", "0"]
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A binary next to this program, which must be there.
    pub fn bin(&self, name: &str) -> Result<PathBuf> {
        let path = self.bins.join(name);
        if !path.exists() {
            let build = if cfg!(debug_assertions) {
                "cargo build"
            } else {
                "cargo build --release"
            };
            bail!(
                "{} is missing: this step runs the reference steps next to it, so build them first with `{build}`",
                path.display()
            );
        }
        Ok(path)
    }

    /// A command for the binary `name` next to this program, with these arguments.
    /// Its output is discarded, except for errors, which would say why a run failed.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, name: &str, args: &[S]) -> Result<Command> {
        let mut command = Command::new(self.bin(name)?);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Ok(command)
    }

    /// A container step's command: `NAME --rootfs ROOTFS FLAGS -- COMMAND`.
    pub fn step(&self, name: &str, flags: &[&str], command: &[&str]) -> Result<Command> {
        let mut args = vec!["--rootfs".to_string(), self.rootfs().display().to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(command.iter().map(|s| s.to_string()));
        self.command(name, &args)
    }

    /// The trivial command as the host sees it: its path inside the rootfs.
    pub fn trivial_on_host(&self) -> Vec<String> {
        let mut command: Vec<String> = self.trivial().iter().map(|s| s.to_string()).collect();
        command[0] = format!("{}{}", self.rootfs().display(), command[0]);
        command
    }
}
