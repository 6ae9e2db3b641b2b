//! Building in this checkout, as the user who owns it: cargo, the references, one
//! chapter, and a step's test binary (found in cargo's JSON messages).

use crate::privilege::is_root;
use anyhow::{Context, Result, bail};
use isolab::workshop::steps::Step;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The checkout this binary was built from.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put this binary, and so the step binaries and the probe.
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    Ok(exe
        .parent()
        .context("this program's directory")?
        .to_path_buf())
}

/// cargo, to build in this checkout as the user who owns it. Building as root in
/// someone else's checkout would leave files in target/ they cannot remove, so
/// that is refused with what to do instead.
pub fn cargo() -> Result<Command> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(repo()).map(|m| m.uid()).unwrap_or(0);
    if is_root() && owner != 0 {
        bail!(
            "not building as root in a checkout that belongs to user {owner} (target/ would get root's files): \
             run isolab as yourself, e.g. `cargo run -- tour`; it asks for sudo only to run the steps"
        );
    }
    let cargo = std::env::var_os("CARGO").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("cargo"))
            .find(|p| p.is_file())
    });
    let Some(cargo) = cargo else {
        bail!(
            "cargo is not on PATH (sudo resets PATH): run isolab as yourself, e.g. `cargo run -- tour`; \
             it asks for sudo only to run the steps"
        );
    };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo());
    Ok(cmd)
}

/// Build the reference binaries and the probe if any is missing or stale.
pub fn build_references() -> Result<()> {
    let status = cargo()?
        .args(["build", "--quiet", "--package", "isolab", "--bins"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bins failed (see above)");
    }
    Ok(())
}

/// Build the learner's binary for one step, and only that one, as this user.
/// Compiler errors go to the terminal unless `quiet`.
pub fn build_chapter(step: &Step, quiet: bool) -> Result<bool> {
    let mut cmd = cargo()?;
    cmd.args([
        "build",
        "--quiet",
        "--package",
        "isolab-chapters",
        "--bin",
        &step.name(),
    ]);
    if quiet {
        cmd.stderr(Stdio::null());
    }
    Ok(cmd.status().context("running cargo build")?.success())
}

/// Build step N's test binary as this user and say where it is: cargo prints one
/// JSON message per artifact, and the test's names its executable.
pub fn build_test(step: &Step) -> Result<PathBuf> {
    let out = cargo()?
        .args([
            "test",
            "--no-run",
            "--quiet",
            "--package",
            "isolab",
            "--test",
            &step.test_name(),
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the tests failed (see above)");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["kind"][0] == "test"
        })
        .and_then(|artifact| artifact["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo did not say where the test {} is", step.test_name()))
}
