//! Step 07, a VM on KVM in real mode: the guest's greeting reaches the host one
//! port write, so one exit, at a time, and then the guest halts. These tests run a
//! real VM on this machine's /dev/kvm.

mod common;
use common::*;
use isolab::workshop::scorecard::GuestSummary;

const STEP: &str = "07-kvm-real-mode";
const NO_ARGS: &[&str] = &[];

/// The capabilities, what the guest said, and every exit it caused.
#[test]
fn trace() {
    needs!(kvm);
    let run = run(&step(STEP), NO_ARGS);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    snapshot("trace", &run.stdout, vec![]);
}

/// One `out` per byte, one exit per `out`: the greeting and its newline, then HLT.
#[test]
fn every_byte_is_one_exit() {
    needs!(kvm);
    let run = run(&step(STEP), NO_ARGS);
    let summary = GuestSummary::parse(&run.stdout).expect("a `guest said:` and an `exits:` line");
    assert_eq!(summary.said, "Hello from real mode!");
    assert_eq!(summary.exits as usize, summary.said.len() + 1 + 1);
}

/// Chapter 07's "break it": with the segments as the vCPU starts, cs's base is
/// 0xffff0000, and with rip 0 the first fetch is from an address with no memory.
/// A cs base that disagrees with its selector does the same: the CPU uses the base.
#[test]
fn break_segments_and_base_fetch_from_nowhere() {
    needs!(kvm);
    for mistake in ["segments", "base"] {
        let run = run(&step(STEP), &["--break", mistake]);
        assert_one_line_error(
            &run,
            125,
            "the guest stopped with INTERNAL_ERROR, suberror 1 (emulation failed)",
        );
        assert!(
            run.stdout.contains("exits: 1 x INTERNAL_ERROR"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("\nwhy: "), "{}", run.stdout);
    }
}

/// Chapter 07's "break it": rflags without its reserved bit 1 changes nothing, since
/// KVM sets the bit itself.
#[test]
fn break_rflags_changes_nothing() {
    needs!(kvm);
    let run = run(&step(STEP), &["--break", "rflags"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let summary = GuestSummary::parse(&run.stdout).expect("a `guest said:` and an `exits:` line");
    assert_eq!(summary.said, "Hello from real mode!");
}

/// Chapter 07's "break it": a guest that never exits keeps KVM_RUN from returning,
/// until the watchdog's SIGALRM interrupts it (after 5 s).
#[test]
fn break_loop_is_stopped_by_the_watchdog() {
    needs!(kvm);
    let run = run(&step(STEP), &["--break", "loop"]);
    assert_one_line_error(
        &run,
        125,
        "the guest ran for 5 s without an exit, so the watchdog stopped it",
    );
}

/// Many VMs, one after another, in one process: every fd is closed and every
/// mapping unmapped, so the process does not grow.
#[test]
fn many_vms_leave_nothing_behind() {
    needs!(kvm);
    assert_many_vms_leave_nothing_behind(&step(STEP));
}

#[test]
fn a_missing_device_is_one_line() {
    assert_a_missing_device_is_one_line(&step(STEP));
}

/// EACCES, as for a user outside the kvm group: a device file we may not open (as
/// root, we run the step as nobody to be refused).
#[test]
fn a_device_we_may_not_open_is_one_line() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let device = dir.path().join("kvm");
    std::fs::write(&device, "").expect("creating the stand-in device");
    let try_open = |mode: u32, group: u32, says: &str| {
        std::fs::set_permissions(&device, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&device, Some(0), Some(group)).expect("chown");
        }
        let mut cmd = command(&step(STEP), &["--device", device.to_str().unwrap()], None);
        if nix::unistd::geteuid().is_root() {
            cmd.uid(65534).gid(65534);
        }
        assert_one_line_error(&run_with(cmd), 125, says);
    };
    // Only root may open it: the remedy is sudo.
    try_open(0o600, 0, "permission denied: ");
    if nix::unistd::geteuid().is_root() {
        try_open(0o600, 0, "belongs to root alone here, so run it with sudo");
        // A device with a group (most distributions: root:kvm 0660): join the group.
        let disk = nix::unistd::Group::from_name("disk")
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
            .unwrap_or(6);
        try_open(
            0o660,
            disk,
            "add yourself to the disk group (`sudo usermod -aG disk $USER`, then log in again), or run it with sudo",
        );
    }
}

#[test]
fn a_file_that_is_not_kvm_is_one_line() {
    let run = run(&step(STEP), &["--device", "/dev/null"]);
    assert_one_line_error(
        &run,
        125,
        "ioctl(/dev/null, KVM_GET_API_VERSION, 0): not a KVM device?",
    );
}

/// `07-kvm-real-mode | head -1`: a reader that has gone away ends the step quietly,
/// with the 141 a shell shows for a program SIGPIPE killed, not with a panic.
#[test]
fn a_closed_stdout_ends_it_quietly() {
    needs!(kvm);
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = std::process::Command::new(step(STEP))
        .stdout(write)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
