//! Step 04, cgroups: the box's limits are visible inside and enforced (a memory hog
//! is OOM-killed, a fork bomb stops at the limit, a spinner is throttled), bad limits
//! are one line, and no cgroup is left behind, even after SIGKILL.

mod common;
use common::*;
use isolab::workshop::report::Report;
use std::path::PathBuf;

const STEP: &str = "04-cgroups";

/// Every `isolab-*` cgroup directory under this test's own cgroups (the runtime's
/// parent cgroups): what a runtime created and has not removed yet.
fn our_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for h in isolab::container::cgroup::Layout::detect()
        .unwrap()
        .for_box()
        .unwrap()
    {
        for entry in std::fs::read_dir(&h.own_dir).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("isolab-") && entry.path().is_dir() {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Run the step and check that the cgroups it made (named after its PID) are gone.
fn run_box(lab: &Lab, flags: &[&str], command: &[&str]) -> Run {
    let run = run(&step(STEP), &box_args(lab, flags, command));
    let name = format!("isolab-{}", run.pid);
    let left: Vec<_> = our_cgroups()
        .into_iter()
        .filter(|d| d.ends_with(&name))
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    assert_no_process_from(&lab.rootfs());
    run
}

/// The box sees its own limits, through its own read-only cgroup filesystems.
#[test]
fn report() {
    needs!(root);
    let lab = Lab::new();
    let (canary, key) = (lab.canary_arg(), lab.key_arg());
    let flags = ["--memory", "64m", "--pids-limit", "32", "--cpus", "0.5"];
    let probe = ["/bin/probe", "--canary", &canary, "--key-serial", &key];
    let cmd = command(
        &step(STEP),
        &box_args(&lab, &flags, &probe),
        Some(lab.canary.dir()),
    );
    let run = run_with(cmd);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_no_process_from(&lab.rootfs());
    snapshot(
        "report",
        &run.stdout,
        host_filters(&["network", "outside network"]),
    );
}

#[test]
fn without_limits_the_box_has_none() {
    needs!(root);
    let lab = Lab::new();
    let run = run_box(&lab, &[], &["/bin/probe"]);
    let report = Report::parse(&run.stdout);
    for key in [Key::MemoryLimit, Key::PidsLimit, Key::CpuLimit] {
        assert_eq!(&report[key], "none", "{}", run.stdout);
    }
}

/// Allocating past the limit gets the hog OOM-killed (SIGKILL: 137), the runtime
/// counts the kill, and the same hog under the limit runs to the end.
#[test]
fn a_memory_hog_is_oom_killed() {
    needs!(root);
    let lab = Lab::new();
    let run = run_box(
        &lab,
        &["--memory", "64m", "--stats"],
        &["/bin/probe", "memory-hog", "--max", "512m"],
    );
    assert_eq!(
        run.code,
        Some(137),
        "stdout {} stderr {}",
        run.stdout,
        run.stderr
    );
    let stats = Report::parse(&run.stderr);
    assert!(
        stats[Stat::OomKills].parse::<u64>().unwrap_or(0) >= 1,
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("allocated all"), "{}", run.stdout);
    let within = run_box(
        &lab,
        &["--memory", "64m"],
        &["/bin/probe", "memory-hog", "--max", "16m"],
    );
    assert_eq!(
        within.code,
        Some(0),
        "16 MiB fits in 64 MiB: {}",
        within.stderr
    );
}

/// fork() fails with EAGAIN once the box holds 32 tasks: init, the probe, and 30 children.
#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    needs!(root);
    let lab = Lab::new();
    let run = run_box(
        &lab,
        &["--pids-limit", "32", "--stats"],
        &["/bin/probe", "fork-bomb", "--max", "200"],
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stdout
            .contains("forked 30 children, then fork() failed with EAGAIN"),
        "{}",
        run.stdout
    );
    assert!(
        Report::parse(&run.stderr)[Stat::ForksRefused]
            .parse::<u64>()
            .unwrap_or(0)
            >= 1
    );
}

/// Under --cpus 0.1 the spinner is throttled: the cgroup counts the throttled
/// periods, and the spinner gets about a tenth of a CPU. A small quota, because the
/// box's cgroup competes with the rest of the machine as one: on a busy machine it
/// may get less than half a CPU whatever its quota, and would never be throttled at
/// 0.5, while a tenth it reaches anyway.
#[test]
fn a_spinner_is_throttled() {
    needs!(root);
    let lab = Lab::new();
    let run = run_box(
        &lab,
        &["--cpus", "0.1", "--stats"],
        &["/bin/probe", "spin", "--millis", "600"],
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let throttled = Report::parse(&run.stderr)[Stat::CpuThrottled].to_string();
    let times: u64 = throttled
        .split(' ')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(times >= 1, "no throttled periods counted: {throttled}");
    // "... ms on a CPU (NN% of one CPU)": 10 ms per 100 ms caps it near 10%.
    let share: u64 = run
        .stdout
        .split('(')
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    assert!(
        share <= 25,
        "the spinner got {share}% of a CPU under a 0.1 CPU quota: {}",
        run.stdout
    );
}

#[test]
fn bad_limits_are_one_line() {
    let lab = Lab::new();
    for (flag, value, says) in [
        ("--memory", "64Q", "64Q is not a size"),
        ("--memory", "-1", "-1 is not a size"),
        ("--memory", "0", "too little memory"),
        (
            "--memory",
            "99999999999999g",
            "more than a cgroup can express",
        ),
        ("--pids-limit", "-1", "-1 is not a number of processes"),
        (
            "--pids-limit",
            "0",
            "0 processes would not even let the box start",
        ),
        ("--pids-limit", "9999999", "more than the kernel allows"),
        ("--cpus", "0", "too little"),
        ("--cpus", "half", "not a number of CPUs"),
        ("--cpus", "100000", "more than this machine has"),
    ] {
        let run = run(
            &step(STEP),
            &box_args(&lab, &[flag, value], &["/bin/probe"]),
        );
        assert_one_line_error(&run, 2, says);
    }
}

/// The file formats the kernel expects, for v1 and v2, whichever this host runs:
/// on a host without v2 controllers (like a hybrid one) this is the check of the v2
/// code that cannot run here.
#[test]
fn limit_files_for_v1_and_v2() {
    let lab = Lab::new();
    let flags = [
        "--show-limit-files",
        "--memory",
        "64m",
        "--pids-limit",
        "32",
        "--cpus",
        "0.5",
    ];
    let run = run(&step(STEP), &box_args(&lab, &flags, &["/bin/probe"]));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    snapshot("limit_files", &run.stdout, vec![]);
    let layout = isolab::container::cgroup::Layout::detect().unwrap();
    if layout
        .v2
        .as_ref()
        .is_none_or(|(_, c)| !c.iter().any(|c| c == "memory"))
    {
        // Not a skip (the test checked what it could), but say what it could not.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "note: no v2 memory controller on this host: the v2 limits were checked as files and values, not run"
        );
    }
}

/// A runtime killed with SIGKILL cannot remove its cgroups; no process survives it,
/// and the next run removes the empty cgroups it left.
#[test]
fn killed_runtime_leaves_no_process_and_the_next_run_cleans_up() {
    needs!(root);
    let lab = Lab::new();
    let before = our_cgroups();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(&lab, &["--memory", "64m"], &["/bin/probe", "wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    let runtime = box_.child.id();
    let made: Vec<PathBuf> = our_cgroups()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert!(
        made.iter()
            .any(|d| d.ends_with(format!("isolab-{runtime}"))),
        "no cgroup isolab-{runtime} in {made:?}"
    );
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137);
    assert_no_process_from(&lab.rootfs());
    // The next run sweeps what the dead runtime left.
    let run = run(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "exit", "0"]),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let left: Vec<_> = made.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "the next run did not remove {left:?}");
}

/// The box's cgroups are children of the runtime's own cgroup in every hierarchy,
/// never placed anywhere else; inside, the box sees its own cgroup as "/".
#[test]
fn the_box_is_under_the_runtimes_own_cgroup() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "wait-signal"]),
        None,
    ));
    box_.wait_for_line("ready");
    let name = format!("isolab-{}", box_.child.id());
    for h in isolab::container::cgroup::Layout::detect()
        .unwrap()
        .for_box()
        .unwrap()
    {
        let dir = h.own_dir.join(&name);
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert_eq!(
            procs.lines().count(),
            2,
            "{}: init and the probe, got {procs:?}",
            dir.display()
        );
    }
    box_.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(box_.finish().0, 143);
    // Inside, the box's own cgroup is the root of every hierarchy it sees.
    if has_busybox(&lab) {
        let run = run(
            &step(STEP),
            &box_args(&lab, &[], &["/bin/sh", "-c", "cat /proc/self/cgroup"]),
        );
        assert!(
            run.stdout.lines().all(|l| l.ends_with(":/")),
            "{}",
            run.stdout
        );
    }
}

/// The lesson chapter 04 ends with, and its "break it": root in this box has
/// CAP_SYS_ADMIN, so it mounts its cgroup filesystems again, read-write, and lifts
/// its own limits. A memory hog then takes twice the memory the runtime allowed.
/// Step 05 refuses this (tests/hardening.rs).
#[test]
fn root_in_the_box_can_raise_its_own_limits() {
    needs!(root);
    let lab = Lab::new();
    let run = run_box(
        &lab,
        &["--memory", "64m", "--pids-limit", "16", "--cpus", "0.5"],
        &[
            "/bin/probe",
            "raise-limits",
            "--",
            "/bin/probe",
            "memory-hog",
            "--max",
            "128m",
        ],
    );
    assert_eq!(
        run.code,
        Some(0),
        "stdout {} stderr {}",
        run.stdout,
        run.stderr
    );
    let said = Report::parse(&run.stdout);
    assert!(
        said[Raise::MountCgroups].starts_with("allowed"),
        "{}",
        run.stdout
    );
    assert_eq!(&said[Key::MemoryLimit], "64 MiB -> none", "{}", run.stdout);
    assert_eq!(&said[Key::PidsLimit], "16 -> none", "{}", run.stdout);
    assert!(said[Key::CpuLimit].ends_with("-> none"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("memory hog: allocated all 128 MiB: no memory limit stopped me"),
        "{}",
        run.stdout
    );
}

/// Chapter 04's "break it": joining late. With init outside the box's cgroups, the
/// pids limit counts one task fewer, and the bomb gets 31 children under 32.
#[test]
fn break_join_late_leaves_init_outside() {
    needs!(root);
    let lab = Lab::new();
    let bomb = |flags: &[&str]| {
        let mut all = vec!["--pids-limit", "32"];
        all.extend(flags);
        run_box(&lab, &all, &["/bin/probe", "fork-bomb", "--max", "200"]).stdout
    };
    assert!(
        bomb(&["--break", "join-late"]).contains("forked 31 children"),
        "init outside the cgroup, the command and 31 children inside"
    );
    assert!(bomb(&[]).contains("forked 30 children"));
}

/// Chapter 04's "break it": without cleanup the box's cgroups stay after it; the next
/// run's sweep removes them (their runtime's PID is gone).
#[test]
fn break_cleanup_leaves_cgroups_until_the_next_run() {
    needs!(root);
    let lab = Lab::new();
    let leaky = run(
        &step(STEP),
        &box_args(
            &lab,
            &["--memory", "64m", "--break", "cleanup"],
            &["/bin/probe", "exit", "0"],
        ),
    );
    assert_eq!(leaky.code, Some(0), "stderr: {}", leaky.stderr);
    let name = format!("isolab-{}", leaky.pid);
    let left: Vec<PathBuf> = our_cgroups()
        .into_iter()
        .filter(|d| d.ends_with(&name))
        .collect();
    assert!(
        !left.is_empty(),
        "--break cleanup should leave {name} behind"
    );
    run_box(&lab, &[], &["/bin/probe", "exit", "0"]);
    let still: Vec<&PathBuf> = left.iter().filter(|d| d.exists()).collect();
    assert!(still.is_empty(), "the next run did not sweep {still:?}");
}
