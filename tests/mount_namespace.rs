//! Step 03, mount namespace: its own mount table, root, /proc and /dev; every route
//! to the host canary closed; nothing it mounts ever reaches the host.

mod common;
use common::*;
use nix::sys::signal::Signal;

const STEP: &str = "03-mount-namespace";

/// Only its own processes and mounts, fds 0-2, and the canary out of reach by
/// every route; the same host kernel and network, and root's full powers.
#[test]
fn report() {
    needs!(root);
    let lab = Lab::new();
    let (canary, key) = (lab.canary_arg(), lab.key_arg());
    let probe = ["/bin/probe", "--canary", &canary, "--key-serial", &key];
    let run = run_with(command(
        &step(STEP),
        &box_args(&lab, &[], &probe),
        Some(lab.canary.dir()),
    ));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_no_process_from(&lab.rootfs());
    snapshot(
        "report",
        &run.stdout,
        host_filters(&["network", "outside network"]),
    );
}

#[test]
fn every_route_to_the_canary_is_closed() {
    needs!(root);
    let lab = Lab::new();
    let canary = lab.canary_arg();
    let run = run_with(command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "--canary", &canary]),
        Some(lab.canary.dir()),
    ));
    let report = Report::parse(&run.stdout);
    for route in [
        Key::CanaryByPath,
        Key::CanaryViaChrootEscape,
        Key::CanaryViaProcRoot,
        Key::CanaryViaInheritedFd,
    ] {
        assert!(
            !report[route].starts_with("READABLE"),
            "{route:?}: {}",
            &report[route]
        );
    }
    assert_eq!(
        &report[Key::OpenFds],
        "0 1 2",
        "fd 3 was handed to the runtime and must not reach the box"
    );
}

#[test]
fn read_only_root() {
    needs!(root);
    let lab = Lab::new();
    let run = run(
        &step(STEP),
        &box_args(&lab, &["--read-only"], &["/bin/probe"]),
    );
    assert_eq!(&Report::parse(&run.stdout)[Key::RootMount], "read-only");
    let run = run_with(command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe"]),
        None,
    ));
    assert_eq!(&Report::parse(&run.stdout)[Key::RootMount], "read-write");
}

/// While the box runs, with /proc, /dev and its root mounted, the host's mount table
/// is exactly what it was: private propagation keeps every mount inside.
#[test]
fn the_boxs_mounts_never_reach_the_host() {
    needs!(root);
    let lab = Lab::new();
    let before = mount_table();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    assert_eq!(
        mount_table(),
        before,
        "a mount of the box appeared on the host"
    );
    box_.signal(Signal::SIGTERM);
    assert_eq!(box_.finish().0, 143);
}

#[test]
fn init_reaps_orphans() {
    needs!(root);
    let lab = Lab::new();
    let run = run(&step(STEP), &box_args(&lab, &[], &["/bin/probe", "orphan"]));
    assert!(
        run.stdout.contains("orphan reaped: yes"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn signals_and_exit_codes_are_passed_on() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(
            &lab,
            &[],
            &["/bin/probe", "wait-signal", "--exit-code", "5"],
        ),
        None,
    ));
    box_.wait_for_line("ready");
    box_.signal(Signal::SIGTERM);
    assert_eq!(box_.finish().0, 5);
    let killed = run(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "kill-self", "INT"]),
    );
    assert_eq!(killed.code, Some(130));
    let exited = run(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "exit", "17"]),
    );
    assert_eq!(exited.code, Some(17));
}

#[test]
fn killed_runtime_leaves_nothing() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    box_.signal(Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137); // and the host's mount table is unchanged
    assert_no_process_from(&lab.rootfs());
}

/// With busybox in the rootfs (CI installs busybox-static), the box runs a real shell.
#[test]
fn a_shell_runs_in_the_box() {
    needs!(root);
    let lab = Lab::new();
    if !has_busybox(&lab) {
        return;
    }
    let run = run(
        &step(STEP),
        &box_args(
            &lab,
            &[],
            &["/bin/sh", "-c", "echo $(hostname) $$ $(cat /proc/1/comm)"],
        ),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    // The box's hostname, the shell's PID (2: init is 1), and PID 1's name.
    assert_eq!(run.stdout.trim(), "isolab 2 init");
}

#[test]
fn rootfs_without_dev_is_one_line() {
    needs!(root);
    let lab = Lab::new();
    std::fs::remove_dir(lab.rootfs().join("dev")).unwrap();
    let run = run(&step(STEP), &box_args(&lab, &[], &["/bin/probe"]));
    assert_one_line_error(
        &run,
        125,
        "has no /dev directory to mount on: create it with `mkdir",
    );
}

/// A hostile rootfs whose /dev is a symlink (to "/", here) would have the box's /dev
/// mounted over its own root: refused in one line before anything is mounted.
#[test]
fn a_mount_point_that_is_a_symlink_is_one_line() {
    needs!(root);
    let lab = Lab::new();
    std::fs::remove_dir(lab.rootfs().join("dev")).unwrap();
    std::os::unix::fs::symlink("/", lab.rootfs().join("dev")).unwrap();
    let run = run(&step(STEP), &box_args(&lab, &[], &["/bin/probe"]));
    assert_one_line_error(&run, 125, "the rootfs's /dev is a symlink");
}

/// A runtime started inside a chroot has no mount at "/" to make private or pivot
/// from: it says so in one line instead of failing with a bare EINVAL.
#[test]
fn runtime_inside_a_chroot_is_one_line() {
    needs!(root);
    let outer = Lab::new();
    let runtime = outer.rootfs().join("bin/runtime");
    std::fs::copy(step(STEP), &runtime).unwrap();
    isolab::container::rootfs::build(&outer.rootfs().join("inner"), &probe()).unwrap();
    let chroot = target_dir().join("01-chroot-solution");
    let run = run(
        &chroot,
        &[
            "--rootfs",
            &outer.rootfs().display().to_string(),
            "--",
            "/bin/runtime",
            "--rootfs",
            "/inner",
            "--",
            "/bin/probe",
        ],
    );
    assert_one_line_error(&run, 125, "run the runtime from the host's own root");
}

/// Chapter 03's "break it": chroot instead of pivot_root, and the chroot escape
/// reaches the canary again, fresh /proc or not.
#[test]
fn break_chroot_opens_the_chroot_escape_again() {
    needs!(root);
    let lab = Lab::new();
    let canary = lab.canary_arg();
    let run = run(
        &step(STEP),
        &box_args(
            &lab,
            &["--break", "chroot"],
            &["/bin/probe", "--canary", &canary],
        ),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let report = Report::parse(&run.stdout);
    assert!(
        report[Key::CanaryViaChrootEscape].starts_with("READABLE"),
        "{}",
        run.stdout
    );
    assert!(report[Key::Processes].starts_with("2 "), "{}", run.stdout);
}

/// Chapter 03's "break it": descriptors closed in the command only. The command
/// holds no fd 3, but init does, and the box opens it again through /proc/1/fd/3.
#[test]
fn break_close_fds_leaves_the_descriptor_in_init() {
    needs!(root);
    let lab = Lab::new();
    let canary = lab.canary_arg();
    let route = |flags: &[&str]| {
        let cmd = command(
            &step(STEP),
            &box_args(&lab, flags, &["/bin/probe", "--canary", &canary]),
            Some(lab.canary.dir()),
        );
        let run = run_with(cmd);
        assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
        let report = Report::parse(&run.stdout);
        assert_eq!(&report[Key::OpenFds], "0 1 2", "{}", run.stdout);
        report[Key::CanaryViaInheritedFd].to_string()
    };
    assert_eq!(
        route(&["--break", "close-fds"]),
        "READABLE (init holds a directory: open /proc/1/fd/3, climb ..)"
    );
    assert_eq!(
        route(&[]),
        "no route (no directory descriptor was inherited)"
    );
}

/// Chapter 03's "break it": without MS_PRIVATE, where "/" is shared (systemd makes it
/// so), the box's first mount (its rootfs bound onto itself) appears outside the box
/// and stays there, and pivot_root refuses to run at all. Run in a mount namespace
/// of the test's own, made private first (so nothing reaches the host) and then
/// shared, as a systemd host's is: the book's command.
#[test]
fn break_private_lets_the_boxs_mounts_out() {
    needs!(root);
    let lab = Lab::new();
    let left_outside = |flags: &[&str]| {
        let script = format!(
            "mount --make-rshared / && \"$@\" >/dev/null; grep -c ' {} ' /proc/self/mountinfo",
            lab.rootfs().display()
        );
        let mut args = vec![
            "--mount".to_string(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
            step(STEP).display().to_string(),
        ];
        args.extend(box_args(&lab, flags, &["/bin/probe", "exit", "0"]));
        let run = run(std::path::Path::new("/usr/bin/unshare"), &args);
        (run.stdout.trim().to_string(), run.stderr)
    };
    let (broken, said) = left_outside(&["--break", "private"]);
    assert_ne!(broken, "0", "the box's mounts should have got out");
    assert!(
        said.contains("\"/\" is a shared mount, and pivot_root refuses"),
        "{said}"
    );
    assert_eq!(left_outside(&[]).0, "0");
}
