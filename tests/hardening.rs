//! Step 05, hardening: each restriction is proven by the probe really trying the
//! forbidden thing. Every action refused in step 05 is allowed (in the safe sense:
//! it got past the kernel's permission check) in step 04, so a restriction that
//! never took effect would fail these tests.

mod common;
use common::*;
use isolab::report::Report;

const STEP: &str = "05-hardening";

/// The whole report: reduced capabilities that stay reduced after exec,
/// no_new_privs, a seccomp filter, every forbidden action refused, only `lo`.
#[test]
fn report() {
    needs!(root);
    let lab = Lab::new();
    let canary = lab.canary_arg();
    let cmd = command(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/probe", "--canary", &canary]),
        Some(lab.canary.dir()),
    );
    let run = run_with(cmd);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_no_process_from(&lab.rootfs());
    snapshot("report", &run.stdout, vec![]);
}

/// The attempts that step 05 must refuse and step 04 (same box, no hardening) lets
/// through: the proof that each restriction is what refuses it.
#[test]
fn each_restriction_takes_effect() {
    needs!(root);
    let lab = Lab::new();
    let hardened = Report::parse(&run(&step(STEP), &box_args(&lab, &[], &["/bin/probe"])).stdout);
    let without = Report::parse(
        &run(
            &target_dir().join("04-cgroups-solution"),
            &box_args(&lab, &[], &["/bin/probe"]),
        )
        .stdout,
    );
    for key in [
        "mount a filesystem",
        "reboot",
        "load a module",
        "set the clock",
        "new user namespace",
        "ptrace my parent",
    ] {
        assert_eq!(hardened.get(key), "refused (EPERM)", "{key} in step 05");
        assert_eq!(
            without.get(key),
            "allowed",
            "{key} in step 04, without the restrictions"
        );
    }
    assert_eq!(
        hardened.get("setuid-root binary"),
        "refused (euid stays 65534)"
    );
    assert_eq!(without.get("setuid-root binary"), "grants root (euid 0)");
    assert_eq!(
        hardened.get("no_new_privs"),
        "on (exec can never grant more privileges)"
    );
    assert_eq!(without.get("no_new_privs"), "off");
    assert_eq!(hardened.get("seccomp"), "filter");
    assert_eq!(without.get("seccomp"), "off");
    assert_eq!(
        hardened.get("capabilities"),
        "9 of 41: chown dac_override fowner fsetid kill setgid setuid setpcap net_bind_service"
    );
    assert_eq!(hardened.get("capabilities after exec"), "the same");
    assert!(
        without.get("capabilities").starts_with("all "),
        "{}",
        without.get("capabilities")
    );
    // chroot is refused too (no CAP_SYS_CHROOT, and the filter), so the escape cannot start.
    assert_eq!(hardened.get("network"), "lo (up)");
    assert_eq!(hardened.get("outside network"), "unreachable (no route)");
}

/// The filter refuses syscalls the probe does not try by itself: checked with
/// busybox's own tools inside the box (CI installs busybox-static).
#[test]
fn a_shell_in_the_box_is_refused_too() {
    needs!(root);
    let lab = Lab::new();
    if !has_busybox(&lab) {
        return;
    }
    let script = "mount -t tmpfs none /tmp 2>&1; unshare -r id 2>&1; hostname box2 2>&1; echo done";
    let run = run(
        &step(STEP),
        &box_args(&lab, &[], &["/bin/sh", "-c", script]),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(
        lines[0].contains("Operation not permitted") || lines[0].contains("permission denied"),
        "mount: {}",
        lines[0]
    );
    assert!(
        lines[1].contains("Operation not permitted"),
        "unshare: {}",
        lines[1]
    );
    // sethostname needs CAP_SYS_ADMIN, which the box no longer has.
    assert!(
        lines[2].contains("Operation not permitted") || lines[2].contains("permission"),
        "hostname: {}",
        lines[2]
    );
    assert_eq!(lines[3], "done");
}

#[test]
fn a_killed_runtime_leaves_nothing() {
    needs!(root);
    let lab = Lab::new();
    let mut box_ = Running::start(command(
        &step(STEP),
        &box_args(
            &lab,
            &["--pids-limit", "16"],
            &["/bin/probe", "wait-signal"],
        ),
        None,
    ));
    box_.wait_for_line("ready");
    box_.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(box_.finish().0, 137);
    assert_no_process_from(&lab.rootfs());
}

#[test]
fn the_hardened_box_still_runs_ordinary_work() {
    needs!(root);
    let lab = Lab::new();
    for (command, code) in [
        (&["/bin/probe", "exit", "3"][..], 3),
        (&["/bin/probe", "orphan"], 0),
        (&["/bin/probe", "kill-self", "TERM"], 143),
    ] {
        let run = run(&step(STEP), &box_args(&lab, &["--memory", "64m"], command));
        assert_eq!(run.code, Some(code), "{command:?}: {}", run.stderr);
    }
    let orphan = run(&step(STEP), &box_args(&lab, &[], &["/bin/probe", "orphan"]));
    assert!(
        orphan.stdout.contains("orphan reaped: yes"),
        "{}",
        orphan.stdout
    );
}

/// `--break R` leaves one restriction out: the lines only R was holding flip to
/// allowed, and what the other restrictions hold stays refused. This is what the
/// chapter's "break it" section runs, and it shows each restriction has an effect
/// of its own.
#[test]
fn breaking_one_restriction_opens_only_its_doors() {
    needs!(root);
    let lab = Lab::new();
    let report = |restriction: &str| {
        let run = run(
            &step(STEP),
            &box_args(&lab, &["--break", restriction], &["/bin/probe"]),
        );
        assert_eq!(run.code, Some(0), "--break {restriction}: {}", run.stderr);
        Report::parse(&run.stdout)
    };
    // Capabilities: raising the priority needs CAP_SYS_NICE, and no filter refuses it.
    let r = report("capabilities");
    assert!(
        r.get("capabilities").starts_with("all "),
        "{}",
        r.get("capabilities")
    );
    assert_eq!(r.get("raise my priority"), "allowed");
    assert_eq!(r.get("new user namespace"), "refused (EPERM)");
    // no_new_privs: the setuid bit works again, although capabilities are dropped.
    let r = report("no-new-privs");
    assert_eq!(r.get("no_new_privs"), "off");
    assert_eq!(r.get("setuid-root binary"), "grants root (euid 0)");
    assert_eq!(
        r.get("seccomp"),
        "filter",
        "the filter goes in before the capabilities go"
    );
    assert_eq!(r.get("raise my priority"), "refused (EACCES)");
    // seccomp: namespaces and ptrace need no capability, only the filter refuses them.
    let r = report("seccomp");
    assert_eq!(r.get("seccomp"), "off");
    assert_eq!(r.get("new user namespace"), "allowed");
    assert_eq!(r.get("ptrace my parent"), "allowed");
    assert_eq!(
        r.get("mount a filesystem"),
        "refused (EPERM)",
        "still no CAP_SYS_ADMIN"
    );
    // The network namespace: the host's interfaces are back.
    let r = report("network");
    assert_ne!(r.get("network"), "lo (up)");
    assert_eq!(r.get("mount a filesystem"), "refused (EPERM)");
}

#[test]
fn an_unknown_restriction_is_one_line() {
    let lab = Lab::new();
    let run = run(
        &step(STEP),
        &box_args(&lab, &["--break", "everything"], &["/bin/probe"]),
    );
    assert_one_line_error(
        &run,
        2,
        "invalid value 'everything' for '--break <RESTRICTION>'",
    );
}
