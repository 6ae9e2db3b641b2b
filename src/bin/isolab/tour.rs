//! `cargo run -- tour`: every reference step with the probe inside, and a scorecard.

use crate::cargo::{build_references, target_dir};
use crate::kvm_status;
use crate::privilege::{is_root, rerun_with_sudo};
use anyhow::{Context, Result};
use isolab::container::canary::KeyHolder;
use isolab::workshop::env::prebuilt;
use isolab::workshop::steps::{Needs, STEPS, Step};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

pub fn tour() -> Result<ExitCode> {
    if !prebuilt() {
        build_references()?;
    }
    if !is_root() {
        return rerun_with_sudo();
    }
    let target = target_dir()?;
    let work = tempfile::Builder::new().prefix("isolab-tour-").tempdir()?;
    let rootfs = work.path().join("rootfs");
    isolab::container::rootfs::build(&rootfs, &target.join("probe"))?;
    let canary = isolab::container::canary::Canary::create()?;
    // Root's own key, in a session of root's that no box is started from.
    let key = KeyHolder::start(Command::new(target.join("probe")))?;
    println!("isolab tour: every reference step runs the probe in a fresh rootfs.");
    println!(
        "The host canary is {}; each runtime is also handed fd 3,",
        canary.path().display()
    );
    println!("an open directory on the host, as a careless caller might, a key in a");
    println!("session keyring of its own, and a terminal of its own as stdin, as a shell");
    println!("would; and the probe is told the serial number of a key of its user's, held");
    println!("in another session that no box was started from.\n");
    let mut columns = Vec::new();
    for step in STEPS.iter().filter(|s| container(s)) {
        let probe = step.probe(&target.join("probe")).into_os_string();
        let command = [probe, "--canary".into(), canary.path().into_os_string()];
        let flags: Vec<OsString> = step.tour_args.iter().map(OsString::from).collect();
        // The rootless step's user holds a key of their own, for as long as it runs.
        let mut _user_key = None;
        let mut cmd = if step.needs == Needs::NormalUser {
            let (cmd, key) = as_normal_user(step, work.path(), &target, &flags, &command)?;
            _user_key = Some(key);
            cmd
        } else {
            let command = [&command[..], &key.probe_args()].concat();
            let mut cmd = Command::new(target.join(step.solution_bin()));
            cmd.args(step.args(&rootfs, &flags, &command));
            cmd
        };
        cmd.env(
            isolab::container::canary::ENV,
            isolab::container::canary::ENV_VALUE,
        );
        isolab::run::std_fds_only(&mut cmd, Some(canary.dir()))?;
        isolab::container::canary::in_a_session_keyring(&mut cmd);
        let terminal = hand_a_terminal(&mut cmd)?;
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", step.solution_bin()))?;
        drop(terminal);
        if !out.status.success() {
            println!(
                "  step {:02} failed ({}); its column is left out",
                step.number, out.status
            );
            continue;
        }
        let report = isolab::workshop::report::Report::parse(&String::from_utf8_lossy(&out.stdout));
        columns.push((format!("{:02}", step.number), report));
    }
    println!(
        "{}",
        isolab::workshop::scorecard::render(&columns, std::io::stdout().is_terminal())
    );
    let names: Vec<String> = STEPS
        .iter()
        .filter(|s| container(s))
        .map(|s| format!("{:02} {}", s.number, s.slug))
        .collect();
    println!("columns: {}", names.join(", "));
    println!("Read down a column to see one box; across a row to see when a wall appears.");
    println!("yes: the wall stands. no: the probe got through. ?: the box cannot see its own");
    println!("limits (no cgroup filesystem inside it). no /proc, none: nothing to try it with.");
    println!("-: not tried.");
    tour_kvm(&target)?;
    tour_guest(&columns)?;
    if let Some(step) = STEPS.iter().find(|s| s.slug == "compare") {
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

/// The steps of the container table: those that run the probe in a box.
fn container(step: &Step) -> bool {
    matches!(step.needs, Needs::Nothing | Needs::Root | Needs::NormalUser)
}

/// The tour runs as root (through sudo), and a rootless step refuses root: run it
/// as the user who called sudo (or, for a tour started as root, as nobody), on a
/// rootfs and a copy of the binary of that user's own, with a key of that user's
/// held in a session of theirs (whose serial the probe gets).
fn as_normal_user(
    step: &Step,
    work: &Path,
    target: &Path,
    flags: &[OsString],
    command: &[OsString],
) -> Result<(Command, KeyHolder)> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    let (uid, gid) = match (id("SUDO_UID"), id("SUDO_GID")) {
        (Some(uid), Some(gid)) if uid != 0 => (uid, gid),
        _ => (65534, 65534),
    };
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o711))?;
    let own = work.join("user");
    let rootfs = own.join("rootfs");
    isolab::container::rootfs::build(&rootfs, &target.join("probe"))?;
    let bin = own.join(step.solution_bin());
    std::fs::copy(target.join(step.solution_bin()), &bin)?;
    let mut pending = vec![own.clone()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
        if path.is_dir() && !path.is_symlink() {
            pending.extend(std::fs::read_dir(&path)?.flatten().map(|e| e.path()));
        }
    }
    println!(
        "Step {:02} runs as uid {uid}, not root: its box's root is that user on the host.",
        step.number
    );
    let mut holder = Command::new(rootfs.join("bin/probe"));
    holder.uid(uid).gid(gid);
    let key = KeyHolder::start(holder)?;
    let command = [command, &key.probe_args()].concat();
    let mut cmd = Command::new(&bin);
    cmd.args(step.args(&rootfs, flags, &command))
        .uid(uid)
        .gid(gid);
    Ok((cmd, key))
}

/// The other side: run each KVM reference step and show what its guest had of its
/// own and how many exits the host handled for it, and the walls around a jailed VMM.
fn tour_kvm(target: &Path) -> Result<()> {
    let steps: Vec<&Step> = STEPS.iter().filter(|s| s.runs_a_guest()).collect();
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
            .then(|| {
                isolab::workshop::scorecard::GuestSummary::parse(&String::from_utf8_lossy(
                    &out.stdout,
                ))
            })
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
    println!(
        "{}",
        isolab::workshop::scorecard::GuestSummary::render(&columns)
    );
    println!("Below the first two rows, the walls of a jail around the VMM, as the VMM finds");
    println!(
        "them from inside (step 09). -: the step runs its VMM as a plain process, in no jail."
    );
    Ok(())
}

/// A real kernel: the probe as a plain process of a Linux VM under QEMU, beside the
/// host and the last box of the table. Left out, with the remedy, where QEMU or the
/// guest kernel is missing.
fn tour_guest(boxes: &[(String, isolab::workshop::report::Report)]) -> Result<()> {
    use isolab::workshop::report::Key;
    println!();
    let ran = match crate::guest::probe_in_guest(512, 1) {
        Ok(ran) => ran,
        Err(why) => {
            println!("The real kernel is skipped: {why:#}");
            println!("(`cargo run -- doctor` says how to get QEMU and the guest kernel.)");
            return Ok(());
        }
    };
    let Some(output) = ran.outputs.first().filter(|o| o.code == 0) else {
        println!("The real kernel: the probe failed in the guest; its column is left out");
        return Ok(());
    };
    let guest = isolab::workshop::report::Report::parse(&output.stdout);
    println!(
        "A real kernel: the probe as a process of a Linux VM ({}), beside a box.",
        ran.accel
    );
    println!("A box runs on the host's kernel; a VM boots its own.\n");
    // Step 05's box: the hardened one, with its limits visible inside.
    let (name, last_box) = boxes
        .iter()
        .find(|(n, _)| n == "05")
        .or(boxes.last())
        .context("no box ran")?;
    let host = nix::sys::utsname::uname().context("uname()")?;
    let value = |report: &isolab::workshop::report::Report, key: Key| {
        report.get(key).unwrap_or("?").to_string()
    };
    let release = |report: &isolab::workshop::report::Report| {
        value(report, Key::Kernel)
            .split(' ')
            .nth(1)
            .unwrap_or("?")
            .to_string()
    };
    let canary = |report: &isolab::workshop::report::Report| {
        let open = [
            Key::CanaryByPath,
            Key::CanaryViaChrootEscape,
            Key::CanaryViaProcRoot,
            Key::CanaryViaInheritedFd,
            Key::CanaryViaEnvironment,
        ]
        .iter()
        .filter(|k| value(report, **k).starts_with("READABLE"))
        .count();
        if open == 0 {
            "no route".to_string()
        } else {
            format!("{open} routes")
        }
    };
    let rows = [
        (
            "kernel release".to_string(),
            host.release().to_string_lossy().into_owned(),
            release(last_box),
            release(&guest),
        ),
        (
            "host canary reachable".into(),
            "yes".into(),
            canary(last_box),
            canary(&guest),
        ),
        (
            "memory, CPUs".into(),
            "the machine's".into(),
            value(last_box, Key::MemoryLimit),
            "512 MiB, 1 CPU (the VM's)".into(),
        ),
    ];
    println!(
        "{:<24}{:<28}{:<28}Linux guest",
        "",
        "host",
        format!("box {name}")
    );
    for (row, h, b, g) in rows {
        println!("{row:<24}{h:<28}{b:<28}{g}");
    }
    println!("guest machine: {}", value(&guest, Key::Machine));
    println!(
        "`cargo run -- guest` shows the guest's whole report (the page \"A real kernel in a VM\")."
    );
    Ok(())
}

/// Start `cmd` as a shell starts a command, in a session whose controlling terminal
/// is on its stdin: a fresh pseudo-terminal, so that the terminal row reads the same
/// whether the tour runs from a terminal or not. Returns the master, to keep open
/// until the command has ended.
fn hand_a_terminal(cmd: &mut Command) -> Result<std::os::fd::OwnedFd> {
    use std::os::unix::process::CommandExt;
    let pty = nix::pty::openpty(None, None).context("openpty()")?;
    cmd.stdin(Stdio::from(pty.slave));
    // SAFETY: between fork and exec the closure only calls setsid and ioctl, which are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(pty.master)
}
