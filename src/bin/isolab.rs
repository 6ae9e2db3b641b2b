//! `isolab`: the workshop's command line. Tour the finished steps, check your own,
//! and see what this machine can do.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use isolab::steps::{self, Needs, STEPS, Step};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// isolab: build process isolation one layer at a time, then a tiny hypervisor.
///
/// Start with `isolab tour` to see every finished step at work, then `isolab doctor`
/// to see what your machine offers. Write each step in chapters/NN-*.rs and check it
/// with `isolab check N`.
#[derive(Parser)]
#[command(version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every reference step with the probe inside and print which walls exist
    Tour,
    /// Check what this machine offers: root, namespaces, cgroups, /dev/kvm, busybox
    Doctor,
    /// Test your own step N (chapters/NN-*.rs) against the reference's snapshots
    Check {
        /// The step's number, e.g. 1 for chapters/01-chroot.rs
        step: u8,
    },
    /// Build a minimal root filesystem in DIR (the probe, its libraries, busybox if present)
    Rootfs {
        /// A new or empty directory
        dir: PathBuf,
    },
    /// Maintainer tasks: regenerate the skeletons, check the book's includes
    #[command(hide = true, subcommand)]
    Dev(Dev),
}

#[derive(Subcommand)]
enum Dev {
    /// Regenerate chapters/ from solutions/ (with --check: fail if they differ)
    SyncChapters {
        #[arg(long)]
        check: bool,
    },
    /// Check that every {{#include}} in the book names a file and anchor that exist
    CheckBook,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Tour => tour(),
        Cmd::Doctor => doctor(),
        Cmd::Check { step } => check(step),
        Cmd::Rootfs { dir } => rootfs(&dir),
        Cmd::Dev(Dev::SyncChapters { check }) => sync_chapters(check),
        Cmd::Dev(Dev::CheckBook) => check_book(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("isolab: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The checkout this binary was built from.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put this binary, and so the step binaries and the probe.
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    Ok(exe
        .parent()
        .context("this program's directory")?
        .to_path_buf())
}

fn step_arg(number: u8) -> Result<&'static Step> {
    steps::find(number).with_context(|| {
        let have: Vec<String> = STEPS.iter().map(|s| s.number.to_string()).collect();
        format!(
            "there is no step {number}: the steps are {}",
            have.join(", ")
        )
    })
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo());
    cmd
}

/// Build the reference binaries and the probe if any is missing or stale.
fn build_references() -> Result<()> {
    let status = cargo()
        .args(["build", "--quiet", "--package", "isolab", "--bins"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bins failed (see above)");
    }
    Ok(())
}

fn rootfs(dir: &Path) -> Result<ExitCode> {
    build_references()?;
    let probe = target_dir()?.join("probe");
    let built = isolab::rootfs::build(dir, &probe)?;
    println!("built a rootfs in {}", dir.display());
    println!("  /bin/probe       from {}", probe.display());
    for lib in &built.libraries {
        println!(
            "  /lib/{:<11} from {}",
            lib.file_name().unwrap_or_default().to_string_lossy(),
            lib.display()
        );
    }
    match &built.busybox {
        Some(b) => println!(
            "  /bin/busybox     from {} (with its applets: try `-- /bin/sh`)",
            b.display()
        ),
        None => println!("  no busybox: install Debian's busybox-static to get a shell in the box"),
    }
    Ok(ExitCode::SUCCESS)
}

fn tour() -> Result<ExitCode> {
    build_references()?;
    let target = target_dir()?;
    let work = tempfile::Builder::new().prefix("isolab-tour-").tempdir()?;
    let rootfs = work.path().join("rootfs");
    isolab::rootfs::build(&rootfs, &target.join("probe"))?;
    let canary = isolab::canary::Canary::create()?;
    let root = nix::unistd::geteuid().is_root();
    println!("isolab tour: every reference step runs the probe in a fresh rootfs.");
    println!(
        "The host canary is {}; each runtime is also handed fd 3,",
        canary.path().display()
    );
    println!("an open directory on the host, as a careless caller might.\n");
    let mut columns = Vec::new();
    for step in STEPS
        .iter()
        .filter(|s| matches!(s.needs, Needs::Nothing | Needs::Root))
    {
        if step.needs == Needs::Root && !root {
            println!(
                "  step {:02} skipped: it needs root (run `sudo target/debug/isolab tour`)",
                step.number
            );
            continue;
        }
        let mut cmd = Command::new(target.join(step.solution_bin()));
        if step.number > 0 {
            cmd.arg("--rootfs").arg(&rootfs);
        }
        cmd.args(step.tour_args).arg("--");
        if step.number == 0 {
            cmd.arg(target.join("probe"));
        } else {
            cmd.arg("/bin/probe");
        }
        cmd.arg("--canary").arg(canary.path());
        isolab::run::std_fds_only(&mut cmd, Some(canary.dir()))?;
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", step.solution_bin()))?;
        if !out.status.success() {
            println!(
                "  step {:02} failed ({}); its column is left out",
                step.number, out.status
            );
            continue;
        }
        let report = isolab::report::Report::parse(&String::from_utf8_lossy(&out.stdout));
        columns.push((step.name(), report));
    }
    println!(
        "{}",
        isolab::scorecard::render(&columns, std::io::stdout().is_terminal())
    );
    println!("Read down a column to see one box; across a row to see when a wall appears.");
    tour_kvm(&target)?;
    if let Some(step) = STEPS.iter().find(|s| s.needs == Needs::RootAndKvm) {
        println!(
            "Step {:02} measures both worlds on this machine: `cargo build --release`, then \
             `sudo target/release/{}`",
            step.number,
            step.solution_bin()
        );
    }
    println!("Each chapter of the book explains one column: start with `mdbook serve book`.");
    Ok(ExitCode::SUCCESS)
}

/// The other side: run each KVM reference step and show what its guest had of its
/// own and how many exits the host handled for it.
fn tour_kvm(target: &Path) -> Result<()> {
    let steps: Vec<&Step> = STEPS.iter().filter(|s| s.needs == Needs::Kvm).collect();
    if steps.is_empty() {
        return Ok(());
    }
    println!();
    if let Err(why) = kvm_status() {
        println!("The hypervisor steps are skipped: /dev/kvm is {why}");
        return Ok(());
    }
    println!("The other side: each guest runs code of its own on a virtual CPU, and every");
    println!("privileged thing it does (port I/O, MMIO, halting) is an exit the host handles.\n");
    let mut columns = Vec::new();
    for step in steps {
        let out = Command::new(target.join(step.solution_bin()))
            .args(step.tour_args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", step.solution_bin()))?;
        let summary = out
            .status
            .success()
            .then(|| isolab::kvm::Summary::parse(&String::from_utf8_lossy(&out.stdout)))
            .flatten();
        if summary.is_none() {
            println!(
                "  step {:02} failed ({}); its column is left out",
                step.number, out.status
            );
            continue;
        }
        columns.push((step.name(), summary));
    }
    println!("{}", isolab::kvm::Summary::render(&columns));
    Ok(())
}

fn doctor() -> Result<ExitCode> {
    let mut problems = 0;
    let mut row = |what: &str, ok: bool, detail: String| {
        let mark = if ok { "ok " } else { "-- " };
        if !ok {
            problems += 1;
        }
        println!("{mark} {what:<16} {detail}");
    };
    let root = nix::unistd::geteuid().is_root();
    row(
        "root",
        root,
        if root {
            "yes: every container step can run".into()
        } else {
            "no: steps 01-05 need root; run them (and `isolab check`) with sudo".into()
        },
    );
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    row(
        "user namespaces",
        userns != "0",
        format!("max_user_namespaces = {userns}"),
    );
    match isolab::cgroup::Layout::detect() {
        Ok(layout) => {
            use isolab::cgroup::Kind;
            let kind = match layout.kind {
                Kind::V2 => "cgroup v2 (unified)",
                Kind::V1 => "cgroup v1",
                Kind::Hybrid => "hybrid: controllers on v1, plus a cgroup2 hierarchy",
                Kind::None => "none mounted",
            };
            row("cgroups", layout.kind != Kind::None, kind.into());
            for c in ["memory", "pids", "cpu"] {
                let place = layout.place_of(c);
                row(
                    &format!("  {c}"),
                    place.is_some(),
                    place.unwrap_or_else(|| "not available: step 04 cannot limit it".into()),
                );
            }
        }
        Err(e) => row("cgroups", false, format!("{e:#}")),
    }
    let kvm = kvm_status();
    row("/dev/kvm", kvm.is_ok(), kvm.unwrap_or_else(|e| e));
    let busybox = isolab::rootfs::find_static_busybox();
    row("busybox", busybox.is_some(), match busybox {
        Some(p) => format!("{} (static): the rootfs gets a shell", p.display()),
        None => "no static busybox: `apt-get install busybox-static` for a shell in the box (optional)".into(),
    });
    println!();
    if problems == 0 {
        println!("Everything the workshop uses is here.");
    } else {
        println!("Lines marked -- say what is missing and how to get it.");
    }
    Ok(ExitCode::SUCCESS)
}

fn kvm_status() -> std::result::Result<String, String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "missing: steps 06-08 need KVM (enable virtualization, or nested virtualization in your VM)".to_string(),
        std::io::ErrorKind::PermissionDenied => "no permission: add yourself to the kvm group, or run steps 06-08 with sudo".to_string(),
        _ => format!("cannot open: {e}"),
    })?;
    // SAFETY: KVM_GET_API_VERSION (_IO(0xAE, 0)) takes no argument, and KVM insists
    // that the unused one is 0 (EINVAL otherwise), so pass 0 rather than leave it to chance.
    let version = unsafe { libc::ioctl(file.as_raw_fd(), 0xAE00, 0) };
    Ok(format!("usable (KVM API version {version})"))
}

fn check(number: u8) -> Result<ExitCode> {
    let step = step_arg(number)?;
    let name = step.name();
    println!(
        "checking step {:02} ({}): chapters/{}",
        step.number,
        step.title,
        step.file()
    );
    let build = cargo()
        .args([
            "build",
            "--quiet",
            "--package",
            "isolab-chapters",
            "--bin",
            &name,
        ])
        .status()
        .context("running cargo build")?;
    if !build.success() {
        println!(
            "\nchapters/{} does not compile yet: fix the errors above, then run `isolab check {number}` again.",
            step.file()
        );
        return Ok(ExitCode::FAILURE);
    }
    let test = cargo()
        .args([
            "test",
            "--quiet",
            "--package",
            "isolab",
            "--test",
            &step.test_name(),
        ])
        .env("ISOLAB_CHECK", "chapters")
        .env("ISOLAB_PREBUILT", "1")
        .env("INSTA_UPDATE", "no")
        .status()
        .context("running cargo test")?;
    if test.success() {
        println!(
            "\nstep {:02} passes: you built {}.",
            step.number, step.built
        );
        // The next step by number: numbers may have gaps while steps are written.
        match STEPS.iter().find(|s| s.number > number) {
            Some(next) => println!(
                "next: step {:02}, {} (chapters/{}).",
                next.number,
                next.title,
                next.file()
            ),
            None => println!("that was the last step."),
        }
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "\nstep {:02} does not pass yet. Hint: {}",
            step.number, step.hint
        );
        Ok(ExitCode::FAILURE)
    }
}

fn sync_chapters(check: bool) -> Result<ExitCode> {
    let mut stale = Vec::new();
    for step in STEPS {
        let skeleton = isolab::exercise::skeleton(step.number, &step.file(), step.solution)?;
        let path = repo().join("chapters").join(step.file());
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != skeleton {
            if check {
                stale.push(step.file());
            } else {
                std::fs::write(&path, skeleton)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote chapters/{}", step.file());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "chapters/ is stale ({}): run `cargo run -- dev sync-chapters`",
            stale.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check_book() -> Result<ExitCode> {
    let src = repo().join("book/src");
    let mut problems = Vec::new();
    let mut count = 0;
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let page = entry?.path();
        if page.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&page)?;
        for include in text.split("{{#").skip(1) {
            let Some(body) = include.split("}}").next() else {
                continue;
            };
            let Some(target) = body
                .strip_prefix("include ")
                .or_else(|| body.strip_prefix("rustdoc_include "))
            else {
                continue;
            };
            count += 1;
            let (file, anchor) = match target.trim().split_once(':') {
                Some((f, a)) if !a.chars().all(|c| c.is_ascii_digit() || c == ':') => (f, Some(a)),
                Some((f, _)) => (f, None),
                None => (target.trim(), None),
            };
            let path = page.parent().unwrap_or(&src).join(file);
            let where_ = format!(
                "{}: {{{{#{body}}}}}",
                page.file_name().unwrap_or_default().to_string_lossy()
            );
            match std::fs::read_to_string(&path) {
                Err(_) => problems.push(format!("{where_}: no file {}", path.display())),
                Ok(content) => {
                    if let Some(anchor) = anchor {
                        let start = format!("ANCHOR: {anchor}");
                        if !content.lines().any(|l| l.trim_end().ends_with(&start)) {
                            problems.push(format!("{where_}: no anchor `{anchor}` in {file}"));
                        }
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} broken include(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    println!("all {count} includes in book/src resolve");
    Ok(ExitCode::SUCCESS)
}
