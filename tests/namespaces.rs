//! Step 02, namespaces: its own hostname and PID numbers under a real init, which
//! reaps orphans and passes signals on; yet /proc is the host's.

mod common;
use common::*;
use nix::sys::signal::Signal;

const STEP: &str = "02-namespaces";

/// The step's arguments, running the probe with `probe` as its arguments.
fn args(lab: &Lab, flags: &[&str], probe: &[&str]) -> Vec<String> {
    let mut command = vec!["/bin/probe"];
    command.extend_from_slice(probe);
    box_args(lab, flags, &command)
}

/// pid 2 under init (pid 1), hostname `isolab`; but the host's /proc, so the host's
/// processes and the /proc/*/root route, and chroot's doors, are all still there.
#[test]
fn report() {
    needs!(root);
    let lab = Lab::new();
    let (canary, key) = (lab.canary_arg(), lab.key_arg());
    let run = run_with(command(
        &step(STEP),
        &args(&lab, &[], &["--canary", &canary, "--key-serial", &key]),
        Some(lab.canary.dir()),
    ));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_no_process_from(&lab.rootfs());
    // /proc is the host's: its process count and submounts are the host's.
    let mut filters = host_filters(&[
        "mounts",
        "network",
        "outside network",
        "open init's program",
    ]);
    filters.push(count_filter("processes"));
    snapshot("report", &run.stdout, filters);
}

#[test]
fn hostname_is_the_boxs_own() {
    needs!(root);
    let lab = Lab::new();
    let host = nix::unistd::gethostname().unwrap();
    let run = run(&step(STEP), &args(&lab, &["--hostname", "box-7"], &[]));
    let report = isolab::workshop::report::Report::parse(&run.stdout);
    assert_eq!(&report[Key::Hostname], "box-7");
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        host,
        "the host's name must not change"
    );
}

#[test]
fn init_reaps_orphans() {
    needs!(root);
    let lab = Lab::new();
    let run = run(&step(STEP), &args(&lab, &[], &["orphan"]));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("orphan reaped: yes"), "{}", run.stdout);
}

#[test]
fn sigterm_reaches_the_command() {
    needs!(root);
    let lab = Lab::new();
    // The probe does not handle SIGTERM: it dies of it, and 143 is passed on.
    let mut box_ = Running::start(command(
        &step(STEP),
        &args(&lab, &[], &["wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    box_.signal(Signal::SIGTERM);
    let (code, _) = box_.finish();
    assert_eq!(code, 143);
    assert_no_process_from(&lab.rootfs());
}

#[test]
fn a_command_that_handles_sigterm_exits_with_its_own_code() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &args(&lab, &[], &["wait-signal", "--exit-code", "42"]),
        None,
    ));
    box_.wait_for_line("ready");
    box_.signal(Signal::SIGTERM);
    let (code, lines) = box_.finish();
    assert_eq!(code, 42);
    assert!(
        lines.iter().any(|l| l == "caught SIGTERM, exiting with 42"),
        "{lines:?}"
    );
}

#[test]
fn exit_codes_are_passed_on() {
    needs!(root);
    let lab = Lab::new();
    for (probe, code) in [
        (&["exit", "0"][..], 0),
        (&["exit", "9"], 9),
        (&["kill-self", "TERM"], 143),
        (&["kill-self", "KILL"], 137),
    ] {
        let run = run(&step(STEP), &args(&lab, &[], probe));
        assert_eq!(run.code, Some(code), "{probe:?}: stderr {}", run.stderr);
    }
}

#[test]
fn killed_runtime_leaves_nothing() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &args(&lab, &[], &["wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    assert_eq!(
        processes_from(&lab.rootfs()).len(),
        1,
        "the probe should be running"
    );
    box_.signal(Signal::SIGKILL);
    let (code, _) = box_.finish(); // also checks the host's mount table
    assert_eq!(code, 137);
    assert_no_process_from(&lab.rootfs());
}

#[test]
fn bad_hostnames_are_one_line() {
    let lab = Lab::new();
    let run1 = run(&step(STEP), &args(&lab, &["--hostname", ""], &[]));
    assert_one_line_error(&run1, 2, "the hostname is empty");
    let long = "x".repeat(65);
    let run2 = run(&step(STEP), &args(&lab, &["--hostname", &long], &[]));
    assert_one_line_error(
        &run2,
        2,
        "the hostname is 65 bytes long: the kernel allows at most 64",
    );
}

#[test]
fn rootfs_without_proc_is_one_line() {
    needs!(root);
    let lab = Lab::new();
    std::fs::remove_dir(lab.rootfs().join("proc")).unwrap();
    let run = run(&step(STEP), &args(&lab, &[], &[]));
    assert_one_line_error(
        &run,
        125,
        "has no /proc directory to mount on: create it with `mkdir",
    );
}

/// Chapter 02's "break it": an init that waits for the command only never reaps an
/// orphan, which stays a zombie.
#[test]
fn break_reaping_leaves_zombies() {
    needs!(root);
    let lab = Lab::new();
    let run = run(
        &step(STEP),
        &box_args(&lab, &["--break", "reaping"], &["/bin/probe", "orphan"]),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stdout
            .contains("orphan reaped: no (still a zombie after 2 s: nobody called wait)"),
        "{}",
        run.stdout
    );
}

/// Chapter 02's "break it": with the command as PID 1 and no init, SIGTERM passed on
/// to it is dropped: PID 1 gets only the signals it has a handler for.
#[test]
fn break_init_makes_sigterm_do_nothing() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(&lab, &["--break", "init"], &["/bin/probe", "wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    box_.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        box_.child.try_wait().expect("wait").is_none(),
        "the box ended on SIGTERM, but PID 1 without a handler should ignore it"
    );
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137);
    assert_no_process_from(&lab.rootfs());
}
