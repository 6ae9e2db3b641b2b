//! Step 01, chroot: the rootfs is `/`, the canary is hidden by path, and the chroot
//! escape still reaches it.

mod common;
use common::*;

const STEP: &str = "01-chroot";

fn probe_args<'a>(lab: &'a Lab, rootfs: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut args = vec![
        "--rootfs".to_string(),
        rootfs.to_string(),
        "--".into(),
        "/bin/probe".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let _ = lab;
    args
}

/// The rootfs is the root, but PIDs, hostname and the rest are the host's, and the
/// escape (and the leaked descriptor) still reach the canary.
#[test]
fn report() {
    needs!(root);
    let lab = Lab::new();
    let rootfs = lab.rootfs().display().to_string();
    let (canary, key) = (lab.canary_arg(), lab.key_arg());
    let args = probe_args(&lab, &rootfs, &["--canary", &canary, "--key-serial", &key]);
    let run = run_with(command(&step(STEP), &args, Some(lab.canary.dir())));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_no_process_from(&lab.rootfs());
    snapshot(
        "report",
        &run.stdout,
        host_filters(&["pid", "ppid", "hostname", "network", "outside network"]),
    );
}

/// The escape is real: the canary's path is not in the rootfs, yet the probe reads it.
#[test]
fn the_chroot_escape_reaches_the_host() {
    needs!(root);
    let lab = Lab::new();
    let rootfs = lab.rootfs().display().to_string();
    let run = run(
        &step(STEP),
        &probe_args(&lab, &rootfs, &["--canary", &lab.canary_arg()]),
    );
    let report = isolab::workshop::report::Report::parse(&run.stdout);
    assert!(
        !lab.rootfs()
            .join(lab.canary.path().strip_prefix("/").unwrap())
            .exists()
    );
    assert_eq!(
        &report[Key::CanaryByPath],
        "hidden (no such file under my root)"
    );
    assert!(
        report[Key::CanaryViaChrootEscape].starts_with("READABLE"),
        "{}",
        run.stdout
    );
}

#[test]
fn exit_codes_are_passed_on() {
    needs!(root);
    let lab = Lab::new();
    let rootfs = lab.rootfs().display().to_string();
    let exited = run(&step(STEP), &probe_args(&lab, &rootfs, &["exit", "3"]));
    assert_eq!(exited.code, Some(3), "stderr: {}", exited.stderr);
    let killed = run(
        &step(STEP),
        &probe_args(&lab, &rootfs, &["kill-self", "TERM"]),
    );
    assert_eq!(killed.code, Some(143), "stderr: {}", killed.stderr);
}

#[test]
fn leaves_the_rootfs_as_it_found_it() {
    needs!(root);
    let lab = Lab::new();
    let rootfs = lab.rootfs().display().to_string();
    let before = listing(&lab.rootfs());
    let run = run(
        &step(STEP),
        &probe_args(&lab, &rootfs, &["--canary", &lab.canary_arg()]),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(listing(&lab.rootfs()), before);
    assert_no_process_from(&lab.rootfs());
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            all.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    all.sort();
    all
}

#[test]
fn missing_rootfs_is_one_line() {
    let run = run(
        &step(STEP),
        &["--rootfs", "/nonexistent/isolab-rootfs", "--", "/bin/probe"],
    );
    if !nix::unistd::geteuid().is_root() {
        assert_one_line_error(&run, 125, "needs root");
        return;
    }
    assert_one_line_error(
        &run,
        125,
        "rootfs /nonexistent/isolab-rootfs does not exist: make one with `cargo run -- rootfs",
    );
}

#[test]
fn rootfs_that_is_a_file_is_one_line() {
    needs!(root);
    let lab = Lab::new();
    let file = lab.rootfs().join("etc/passwd").display().to_string();
    let run = run(&step(STEP), &["--rootfs", &file, "--", "/bin/probe"]);
    assert_one_line_error(&run, 125, "is not a directory");
}

#[test]
fn command_not_in_the_rootfs_is_one_line() {
    needs!(root);
    let lab = Lab::new();
    let rootfs = lab.rootfs().display().to_string();
    let missing = run(
        &step(STEP),
        &["--rootfs", &rootfs, "--", "isolab-no-such-command"],
    );
    assert_one_line_error(
        &missing,
        125,
        "command `isolab-no-such-command` is not in the rootfs",
    );
    let not_a_program = run(&step(STEP), &["--rootfs", &rootfs, "--", "/etc/passwd"]);
    assert_one_line_error(&not_a_program, 125, "is not an executable file");
}

#[test]
fn no_command_is_one_line() {
    let run = run(&step(STEP), &["--rootfs", "/tmp"]);
    assert_one_line_error(&run, 2, "no command given");
}

#[test]
fn killed_runtime_leaves_nothing() {
    needs!(root);
    let lab = Lab::new();
    let rootfs = lab.rootfs().display().to_string();
    let mut box_ = Running::start(command(
        &step(STEP),
        &probe_args(&lab, &rootfs, &["wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    assert!(
        !processes_from(&lab.rootfs()).is_empty(),
        "the probe should be running"
    );
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    let (code, _) = box_.finish();
    assert_eq!(code, 137);
    assert_no_process_from(&lab.rootfs());
}

/// Chapter 01's "break it": chroot without chdir leaves the working directory in the
/// host's tree, outside the new root.
#[test]
fn break_chdir_leaves_the_working_directory_outside() {
    needs!(root);
    let lab = Lab::new();
    let rootfs = lab.rootfs().display().to_string();
    let run = run(
        &step(STEP),
        &["--rootfs", &rootfs, "--break", "chdir", "--", "/bin/probe"],
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(
        Report::parse(&run.stdout)[Key::WorkingDirectory].starts_with("outside my root!"),
        "{}",
        run.stdout
    );
}
