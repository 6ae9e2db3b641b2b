//! Step 00, a plain process: the command runs, its exit status is passed on, and the
//! probe sees the host as it is.

mod common;
use common::*;

const STEP: &str = "00-process";

/// Everything is the host's: the report shows the host's values (filtered, since
/// they differ between machines) and the canary readable by every route.
#[test]
fn report() {
    needs!(root);
    let lab = Lab::new();
    let probe = probe_path();
    let (canary, key) = (lab.canary_arg(), lab.key_arg());
    let args = ["--", &probe, "--canary", &canary, "--key-serial", &key];
    let run = run_with(command(&step(STEP), &args, Some(lab.canary.dir())));
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let mut host = host_filters(&[
        "pid",
        "ppid",
        "hostname",
        "root",
        "root mount",
        "working directory",
        "mounts",
        "memory limit",
        "pids limit",
        "cpu limit",
        "network",
        "setuid-root binary",
        "outside network",
        "open init's program",
        "plant a setuid file",
        "plant a device node",
    ]);
    host.push(count_filter("processes"));
    snapshot("report", &run.stdout, host);
}

#[test]
fn exit_code_is_passed_on() {
    let probe = probe_path();
    let run = run(&step(STEP), &["--", &probe, "exit", "7"]);
    assert_eq!(run.code, Some(7), "stderr: {}", run.stderr);
}

#[test]
fn death_by_signal_is_128_plus_the_signal() {
    let probe = probe_path();
    for (signal, code) in [("TERM", 143), ("KILL", 137), ("INT", 130)] {
        let run = run(&step(STEP), &["--", &probe, "kill-self", signal]);
        assert_eq!(
            run.code,
            Some(code),
            "killed by SIG{signal}; stderr: {}",
            run.stderr
        );
    }
}

#[test]
fn no_command_is_one_line() {
    let run = run(&step(STEP), &[] as &[&str]);
    assert_one_line_error(&run, 2, "no command given: put it after `--`");
}

#[test]
fn unknown_command_is_one_line() {
    let run = run(&step(STEP), &["--", "isolab-no-such-command"]);
    assert_one_line_error(
        &run,
        125,
        "command `isolab-no-such-command` not found on $PATH",
    );
}

#[test]
fn killed_runtime_leaves_no_process() {
    let probe = probe_path();
    let mut box_ = Running::start(command(&step(STEP), &["--", &probe, "wait-signal"], None));
    box_.wait_for_line("ready");
    let pids_before = probe_children(box_.child.id());
    assert!(!pids_before.is_empty(), "the probe should be running");
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    let (code, _) = box_.finish();
    assert_eq!(code, 137);
    // PR_SET_PDEATHSIG: the kernel kills the command when its runtime dies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while pids_before.iter().any(|p| probe_processes().contains(p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the command outlived its runtime"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn probe_path() -> String {
    probe().display().to_string()
}

/// Running probe processes started from this test's probe binary, still alive (not zombies).
fn probe_processes() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let exe = std::fs::read_link(entry.path().join("exe"));
        if exe.is_ok_and(|e| e == probe()) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// Is `pid` alive, adopted by a parent other than `runtime`, and with no SIGKILL
/// pending (SigPnd and ShdPnd in /proc/PID/status; SIGKILL is bit 8)?
fn outlived(pid: &str, runtime: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let sigkill_pending = ["SigPnd:", "ShdPnd:"]
        .iter()
        .any(|f| u64::from_str_radix(&field(f), 16).is_ok_and(|m| m & 0x100 != 0));
    !field("State:").starts_with('Z') && field("PPid:") != runtime.to_string() && !sigkill_pending
}

/// The probe processes whose parent is `parent`: the command of that runtime, and
/// none of the other tests', which run beside this one.
fn probe_children(parent: u32) -> Vec<String> {
    probe_processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // The fields after the command's name, which ends at the last ')'.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                rest.split_whitespace().nth(1) == Some(parent.to_string().as_str())
            })
        })
        .collect()
}

/// Chapter 00's "break it": a runtime that reports 0 whatever happened hides every
/// failure from the scripts built on it.
#[test]
fn break_status_hides_the_commands_status() {
    let probe = probe_path();
    let run = run(
        &step(STEP),
        &["--break", "status", "--", &probe, "exit", "7"],
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
}

/// Chapter 00's "break it": without PR_SET_PDEATHSIG the command outlives a runtime
/// killed with SIGKILL, adopted by whoever reaps orphans. The test kills it after.
#[test]
fn break_pdeathsig_leaves_the_command_running() {
    let probe = probe_path();
    let mut box_ = Running::start(command(
        &step(STEP),
        &["--break", "pdeathsig", "--", &probe, "wait-signal"],
        None,
    ));
    box_.wait_for_line("ready");
    let running = probe_children(box_.child.id());
    assert!(!running.is_empty(), "the command should be running");
    let runtime = box_.child.id();
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137);
    // The runtime is reaped. With PR_SET_PDEATHSIG its exit has already queued a
    // SIGKILL for the command; without it, the command lives on, adopted by
    // another parent, with no SIGKILL coming. Looked at now, not after a pause
    // in which anything else on the machine might end it.
    let survivors: Vec<String> = running
        .iter()
        .filter(|pid| outlived(pid, runtime))
        .cloned()
        .collect();
    for pid in &running {
        let pid = nix::unistd::Pid::from_raw(pid.parse().expect("a pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(
        !survivors.is_empty(),
        "without die_with, the command should have outlived its runtime"
    );
}
