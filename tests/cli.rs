//! The isolab CLI as a learner uses it: a check of an untouched skeleton fails with
//! the hint, `solve` then `check` passes, `reset` restores the skeleton exactly,
//! `list` reports each step's state, and mistakes get one clear line.

mod common;
use insta_cmd::assert_cmd_snapshot;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CLI, with its hint counter in /dev/null unless a test gives it a file: the
/// tests never touch the learner's own (.isolab/hints).
fn isolab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isolab"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ISOLAB_PROGRESS", "/dev/null");
    cmd
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = isolab().args(args).output().expect("running isolab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chapter(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("chapters")
        .join(file)
}

/// Puts a chapter file back as it was, however the test ends.
struct Restore {
    path: PathBuf,
    text: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.text);
    }
}

#[test]
fn unknown_subcommand_is_one_line() {
    assert_cmd_snapshot!(isolab().arg("frobnicate"));
}

#[test]
fn a_step_that_does_not_exist_is_one_line() {
    assert_cmd_snapshot!(isolab().args(["check", "42"]));
    assert_cmd_snapshot!(isolab().args(["hint", "seven"]));
}

/// `hint` gives one level more each time: the goal, then the system calls, then
/// their arguments (what the guided TODO says); `list` counts the levels used, and
/// `--level` shows a level without counting it.
#[test]
fn hint_tells_one_level_more_each_time() {
    let progress = tempfile::tempdir().unwrap();
    let file = progress.path().join("hints");
    let hint = |args: &[&str]| {
        let out = isolab()
            .args(args)
            .env("ISOLAB_PROGRESS", &file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let goal = "Make `rootfs` this process's";
    let calls = "chroot(2), then chdir(2).";
    let args = "chroot(2) into `rootfs`";

    let first = hint(&["hint", "1"]);
    assert!(first.contains("hint level 1 of 3: the goal"), "{first}");
    assert!(
        first.contains("enter_rootfs:") && first.contains(goal),
        "{first}"
    );
    assert!(!first.contains(calls) && !first.contains(args), "{first}");
    assert!(first.contains("book/src/01-chroot.md"), "{first}");

    let second = hint(&["hint", "1"]);
    assert!(second.contains(goal) && second.contains(calls), "{second}");
    assert!(!second.contains(args), "{second}");

    let third = hint(&["hint", "1"]);
    assert!(
        third.contains(args) && third.contains("That is every hint"),
        "{third}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1 3\n");

    // --level shows without counting: step 02 stays at none used.
    let peek = hint(&["hint", "2", "--level", "3"]);
    assert!(
        peek.contains("unshare(2) with CloneFlags::CLONE_NEWPID"),
        "{peek}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1 3\n");
}

/// The whole loop on step 00 (it needs no root): an untouched skeleton fails its
/// check with the todo and the hint; `solve` makes it pass; `list` says so;
/// `reset` brings the skeleton back byte for byte. Skipped when the learner has
/// started step 00: this test never touches a learner's work.
#[test]
fn check_solve_list_reset() {
    let path = chapter("00-process.rs");
    let original = std::fs::read_to_string(&path).unwrap();
    let step = isolab::workshop::steps::find(0).unwrap();
    let skeleton = isolab::workshop::exercise::skeleton(0, &step.file(), step.solution).unwrap();
    if original != skeleton {
        common::skip("would replace chapters/00-process.rs, which has your changes");
        return;
    }
    let _restore = Restore {
        path: path.clone(),
        text: original.clone(),
    };

    let (code, out, _) = run(&["check", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not yet: step 00. your step stopped at a todo!()"),
        "{out}"
    );
    assert!(out.contains("hint: fork(2) returns twice"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original,
        "a check changes nothing"
    );

    let (code, out, _) = run(&["solve", "0", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), step.solution);

    let (code, out, _) = run(&["check", "0"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("passes: step 00"), "{out}");
    assert!(out.contains("next: step 01"), "{out}");

    let (code, out, _) = run(&["list"]);
    assert_eq!(code, 0, "{out}");
    let line = |n: &str| {
        out.lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("00 ").ends_with("passing"), "{out}");
    assert!(line("01 ").ends_with("not started"), "{out}");

    // Without a terminal to ask on, reset wants --yes and leaves the file alone.
    let (code, _, err) = run(&["reset", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("add --yes to confirm"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), step.solution);

    let (code, out, _) = run(&["reset", "0", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original,
        "reset restores the skeleton exactly"
    );

    // The challenge tier: its check keeps the answer back, and points at `hint`.
    let (code, _, _) = run(&["reset", "0", "--challenge", "--yes"]);
    assert_eq!(code, 0);
    let (code, out, _) = run(&["check", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("hint: fork(2)"), "{out}");
    assert!(
        out.contains("`cargo run -- hint 0` tells one level more"),
        "{out}"
    );
}

/// The tour runs every reference step on the probe and prints the scorecard: the
/// walls go up step by step, as the book's ladder says. Column 00 is the host
/// itself, so it is not compared; steps 01-05 are facts about the boxes.
#[test]
fn the_tour_prints_the_scorecard() {
    needs!(root, kvm);
    let (code, out, err) = run(&["tour"]);
    assert_eq!(code, 0, "stderr: {err}");
    // wall: the cells of steps 01 to 06. Step 06 runs as a normal user, rootless.
    let expected = [
        ("/ is the rootfs", "yes yes yes yes yes yes"),
        ("canary hidden by path", "yes yes yes yes yes yes"),
        ("chroot escape blocked", "no no yes yes yes yes"),
        ("/proc/*/root blocked", "none no yes yes yes yes"),
        ("leaked fd blocked", "no no yes yes yes yes"),
        ("own hostname", "no yes yes yes yes yes"),
        ("own PID numbers", "no yes yes yes yes yes"),
        ("host processes hidden", "no /proc|no|yes|yes|yes|yes"),
        ("own mount table", "no /proc|no|yes|yes|yes|yes"),
        // Step 06 has limits only where a cgroup was delegated to its user.
        ("memory limit", "? ? ? yes yes ?^yes"),
        ("pids limit", "? ? ? yes yes ?^yes"),
        ("cpu limit", "? ? ? yes yes ?^yes"),
        ("capabilities reduced", "no no no no yes no"),
        ("box root not host root", "no /proc|no|no|no|no|yes"),
        ("no_new_privs", "no no no no yes no"),
        // Step 06's box has one, on the routes to keys only (keys have no namespace).
        ("seccomp filter", "no no no no yes yes"),
        ("mount refused", "no no no no yes no"),
        // Step 06's PID namespace is the runtime's user namespace's, not the box's.
        ("reboot refused", "no no no no yes yes"),
        ("only loopback", "no no no no yes yes"),
        // Step 06's key filter refuses io_uring too: it makes sockets past filters.
        ("io_uring refused", "no no no no yes yes"),
        ("ASLR stays on", "no no no no yes no"),
        ("environment kept out", "no no no no yes yes"),
        ("keyring kept out", "no no no no yes yes"),
        ("keys by serial refused", "no no no no yes yes"),
        ("host settings read-only", "no /proc|no|no|no|yes|yes"),
        ("kernel tables hidden", "no /proc|no|no|no|yes|yes"),
        ("caller's terminal kept out", "no no no no yes yes"),
        ("setuid planting refused", "no no no no yes yes"),
        ("device nodes refused", "no no no no yes yes"),
        // The VM table: steps 07, 08 and 09, the last in its jail.
        ("own kernel code", "yes yes yes"),
        ("exits handled by the host", "23 5 2"),
        ("VMM's root holds only /dev/kvm", "- - yes"),
        ("VMM runs as nobody", "- - yes"),
        ("seccomp allow-list", "- - yes"),
    ];
    for (wall, cells) in expected {
        let line = out
            .lines()
            .find(|l| l.starts_with(wall))
            .unwrap_or_else(|| panic!("no row {wall:?} in:\n{out}"));
        // Cells are separated by two or more spaces; "no /proc" has one inside.
        let found: Vec<&str> = line[wall.len()..]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let mut want: Vec<&str> = if cells.contains('|') {
            cells.split('|').collect()
        } else {
            cells.split(' ').collect()
        };
        // "?^yes" as the last cell: either.
        let last = want.pop().unwrap();
        let steps = &found[found.len() - want.len() - 1..];
        assert_eq!(
            &steps[..want.len()],
            want.as_slice(),
            "row {wall:?}: {line}"
        );
        assert!(
            last.split('^').any(|c| c == steps[want.len()]),
            "row {wall:?}, last column: {line}"
        );
    }
    assert!(out.contains("columns: 00 process, 01 chroot"), "{out}");
    // The real kernel: the box shares the host's release, the Linux guest runs
    // another, and neither reaches the canary.
    if common::missing("guest").is_none() {
        let row = |name: &str| -> Vec<String> {
            let line = out
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no row {name:?} in:\n{out}"));
            line[name.len()..]
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        let kernels = row("kernel release");
        assert_eq!(kernels.len(), 3, "{kernels:?}");
        assert_eq!(kernels[0], kernels[1], "a box runs on the host's kernel");
        assert_ne!(kernels[0], kernels[2], "a VM boots its own");
        assert_eq!(
            row("host canary reachable"),
            ["yes", "no route", "no route"]
        );
    }
}

/// `run --reference N` runs the reference of step N (a learner who starts at step 05
/// can still see step 04's box), with the arguments and the command given.
#[test]
fn run_reference_runs_the_reference_step() {
    needs!(root);
    let (code, _, err) = run(&[
        "run",
        "--reference",
        "4",
        "--pids-limit",
        "16",
        "--",
        "/bin/probe",
        "exit",
        "3",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("04-cgroups-solution --rootfs")
            && err.contains("--pids-limit 16 -- /bin/probe exit 3"),
        "{err}"
    );
}

/// `run` outlives the signals that end a run, so that it removes the run's
/// directory after the step: SIGTERM is passed on to the step, and Ctrl-C (SIGINT
/// to the whole foreground group) reaches the step from the terminal. Either way
/// the step's own status comes back and nothing of the run is left in TMPDIR.
#[test]
fn a_run_ended_by_a_signal_leaves_no_directory() {
    needs!(root);
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    for (signal, whole_group, expected) in [
        (libc::SIGTERM, false, 7),
        (libc::SIGINT, true, 128 + libc::SIGINT),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = isolab()
            .args(["run", "--reference", "4", "--", "/bin/probe", "wait-signal"])
            .args(if signal == libc::SIGTERM {
                &["--exit-code", "7"][..]
            } else {
                &[][..]
            })
            .env("TMPDIR", tmp.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the step did not start");
        let pid = child.id() as i32;
        // SAFETY: kill(2) takes no pointers; the process (group) is our child's.
        unsafe { libc::kill(if whole_group { -pid } else { pid }, signal) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(expected), "signal {signal}");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "signal {signal} left {left:?}");
    }
}
