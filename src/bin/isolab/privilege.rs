//! Root, sudo and /dev/kvm: who may run what, and running it with root's powers
//! without ever building as root.

use anyhow::{Context, Result, bail};
use isolab::workshop::env::PREBUILT;
use isolab::workshop::steps::Needs;
use std::process::{Command, ExitCode};

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Can this user use /dev/kvm as they are?
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Does running something that needs `needs` take sudo, for this user?
pub fn needs_sudo(needs: Needs) -> bool {
    match needs {
        Needs::Nothing | Needs::NormalUser => false,
        Needs::Root => !is_root(),
        Needs::Kvm => !is_root() && !kvm_usable(),
        Needs::RootAndKvm => !is_root(),
    }
}

/// The command that runs `program` with root's powers: the program itself when we
/// are root, or `sudo` in front of it. Environment variables go through `env`, which
/// sudo's default policy keeps (unlike `--preserve-env`).
pub fn as_root(program: &std::path::Path, env: &[(&str, String)]) -> Result<Command> {
    if is_root() {
        let mut cmd = Command::new(program);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        return Ok(cmd);
    }
    let sudo = ["/usr/bin/sudo", "/bin/sudo"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(sudo) = sudo else {
        bail!(
            "this needs root and sudo is not installed: run it as root, e.g. `su -c '{} ...'`",
            program.display()
        );
    };
    let mut cmd = Command::new(sudo);
    cmd.arg("env");
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(program);
    Ok(cmd)
}

/// Run this very command line again through sudo, telling it the binaries are
/// built. Its exit code is passed on.
pub fn rerun_with_sudo() -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    eprintln!("isolab: this needs root: running it again with sudo (it may ask for your password)");
    let status = as_root(&exe, &[(PREBUILT, "1".into())])?
        .args(std::env::args_os().skip(1))
        .status()
        .context("running sudo")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
