//! Step 04, cgroups, on a pure cgroup v2 kernel: Debian's cloud kernel booted
//! under QEMU (src/vm/linux/), where the v2 paths that the host's hybrid layout
//! cannot run are run for real. The guest boots once for this whole file: every
//! check below is one part of that boot's script, and reads its part of the output.
//!
//! Inside, init has mounted cgroup2 at /sys/fs/cgroup and enabled memory, pids and
//! cpu for the root's children, as systemd does. The step runs as root in the
//! root cgroup, with the rootfs builder's output as the box's root (/rootfs); the
//! delegation checks move it into a cgroup of its own first. After each part the
//! guest lists every `isolab-*` cgroup, which must be none.
//!
//! Needs QEMU and the kernel (`cargo run -- doctor` says how to get each); no root
//! on the host. `ISOLAB_GUEST_ACCEL=tcg` skips trying KVM first.

mod common;
use common::*;
use isolab::vm::linux::{Guest, GuestRun, Output};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const STEP: &str = "04-cgroups";

isolab::keys! {
    /// The lines this file's own scripts print in the guest (see KILLED_RUNTIME,
    /// ALONE and SHARING below).
    enum Script {
        Runtime = "runtime",
        CgroupsWhileItRuns = "cgroups while it runs",
        ProcessesInItsCgroup = "processes in its cgroup",
        RuntimeExit = "runtime exit",
        ProcessesLeftInItsCgroup = "processes left in its cgroup",
        CgroupsAfterTheKill = "cgroups after the kill",
        NextRunExit = "next run exit",
        CgroupsAfterTheNextRun = "cgroups after the next run",
        RuntimesCgroup = "runtime's cgroup",
        TreeWhileItRuns = "tree while it runs",
        SubtreeControlWhileItRuns = "subtree_control while it runs",
        BoxMemoryMax = "box memory.max",
        BoxPidsMax = "box pids.max",
        SubtreeControlAfter = "subtree_control after",
        TreeAfter = "tree after",
    }
}

/// Each part of the guest's script: a name for the check that reads it, and a
/// shell script in which `STEP` stands for the step's binary.
const PARTS: &[(&str, &str)] = &[
    (
        "limits",
        "STEP --rootfs /rootfs --memory 32m --pids-limit 16 --cpus 0.5 -- /bin/probe",
    ),
    ("no limits", "STEP --rootfs /rootfs -- /bin/probe"),
    (
        "memory hog",
        "STEP --rootfs /rootfs --memory 32m --stats -- /bin/probe memory-hog --max 512m",
    ),
    (
        "memory hog within the limit",
        "STEP --rootfs /rootfs --memory 32m -- /bin/probe memory-hog --max 8m",
    ),
    (
        "fork bomb",
        "STEP --rootfs /rootfs --pids-limit 16 --stats -- /bin/probe fork-bomb --max 200",
    ),
    (
        "spinner",
        "STEP --rootfs /rootfs --cpus 0.5 --stats -- /bin/probe spin --millis 600 --threads 2",
    ),
    ("killed runtime", KILLED_RUNTIME),
    ("alone in its cgroup", ALONE),
    ("sharing its cgroup", SHARING),
    (
        "rootless, delegated",
        "delegated STEP06 --rootfs /rootfs --memory 32m --pids-limit 16 --cpus 0.5 -- /bin/probe",
    ),
    (
        "rootless memory hog",
        "delegated STEP06 --rootfs /rootfs --memory 32m --stats -- /bin/probe memory-hog --max 512m",
    ),
    (
        "rootless, not delegated",
        "as_tester STEP06 --rootfs /rootfs --memory 32m -- /bin/probe",
    ),
    (
        "rootless, the box raises its limits",
        "delegated STEP06 --rootfs /rootfs --memory 32m --stats -- /bin/probe raise-limits -- /bin/probe memory-hog --max 512m",
    ),
    ("rootless, the box makes cgroups", MAKES_CGROUPS),
    ("rootless, the box's cgroups are bounded", BOUNDED),
];

/// Step 06, rootless: run by `tester` (uid 1000), in a cgroup of its own.
const STEP06: &str = "06-user-namespace";

/// Shell helpers every part can use.
const HELPERS: &str = r#"
# A normal user, tester (uid 1000), for step 06; `as_tester CMD` runs CMD as it.
grep -q '^tester:' /etc/passwd || echo 'tester:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd
grep -q '^tester:' /etc/group || echo 'tester:x:1000:' >> /etc/group
as_tester() { su -p -s /bin/sh tester -c "$*"; }
# `delegated CMD`: CMD as tester, in a cgroup handed to it as systemd's
# Delegate=yes hands one: the directory, and the files that move processes and
# hand controllers down, are the user's.
delegated() {
    d=/sys/fs/cgroup/user-1000
    if [ ! -d $d ]; then
        mkdir $d && chown 1000:1000 $d $d/cgroup.procs $d/cgroup.subtree_control $d/cgroup.threads
    fi
    sh -c "echo \$\$ > $d/cgroup.procs && exec su -p -s /bin/sh tester -c '$*'"
}
# Every isolab-* cgroup, by path under /sys/fs/cgroup, on one line.
cgroups() { cd /sys/fs/cgroup && find . -name 'isolab-*' -type d | sort | tr '\n' ' '; cd /; }
# Wait (at most 30 s) until FILE has a line "ready", while process PID lives;
# else show FILE on stderr and end the part.
ready() {
    i=0
    until grep -qx ready "$1" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$2" 2>/dev/null; then
            echo "the box never said ready; it said:" >&2; cat "$1" >&2; exit 1
        fi
        sleep 0.1
    done
}
"#;

/// A runtime killed with SIGKILL: its box dies with it, its empty cgroup stays,
/// and the next run sweeps it.
const KILLED_RUNTIME: &str = r#"
STEP --rootfs /rootfs --memory 32m -- /bin/probe wait-signal >/tmp/box.out 2>&1 &
rt=$!
ready /tmp/box.out $rt
echo "runtime: $rt"
echo "cgroups while it runs: $(cgroups)"
echo "processes in its cgroup: $(wc -l < /sys/fs/cgroup/isolab-$rt/cgroup.procs)"
kill -KILL $rt
wait $rt
echo "runtime exit: $?"
# The box's init has PR_SET_PDEATHSIG, and the probe dies with its PID namespace.
i=0
while grep -q 'populated 1' /sys/fs/cgroup/isolab-$rt/cgroup.events && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i + 1))
done
echo "processes left in its cgroup: $(wc -l < /sys/fs/cgroup/isolab-$rt/cgroup.procs)"
echo "cgroups after the kill: $(cgroups)"
STEP --rootfs /rootfs -- /bin/probe exit 0
echo "next run exit: $?"
echo "cgroups after the next run: $(cgroups)"
"#;

/// Alone in a cgroup of its own that does not hand down the controllers, the
/// runtime moves itself into a leaf and enables them, then puts it all back.
const ALONE: &str = r#"
mkdir /sys/fs/cgroup/alone
sh -c 'echo $$ > /sys/fs/cgroup/alone/cgroup.procs && exec STEP --rootfs /rootfs --memory 32m --pids-limit 16 -- /bin/probe wait-signal' >/tmp/alone.out 2>&1 &
rt=$!
ready /tmp/alone.out $rt
echo "runtime: $rt"
echo "runtime's cgroup: $(cut -d: -f3 /proc/$rt/cgroup)"
echo "tree while it runs: $(cd /sys/fs/cgroup/alone && find . -mindepth 1 -type d | sort | tr '\n' ' ')"
echo "subtree_control while it runs: $(cat /sys/fs/cgroup/alone/cgroup.subtree_control)"
echo "box memory.max: $(cat /sys/fs/cgroup/alone/isolab-$rt/memory.max)"
echo "box pids.max: $(cat /sys/fs/cgroup/alone/isolab-$rt/pids.max)"
kill -TERM $rt
wait $rt
echo "runtime exit: $?"
echo "subtree_control after: $(cat /sys/fs/cgroup/alone/cgroup.subtree_control)"
echo "tree after: $(cd /sys/fs/cgroup/alone && find . -mindepth 1 -type d | tr '\n' ' ')"
rmdir /sys/fs/cgroup/alone
"#;

/// Sharing its cgroup with another process, the runtime may not empty it, so it
/// refuses, with the remedy, and changes nothing.
const SHARING: &str = r#"
mkdir /sys/fs/cgroup/shared
sleep 600 &
other=$!
echo $other > /sys/fs/cgroup/shared/cgroup.procs
sh -c 'echo $$ > /sys/fs/cgroup/shared/cgroup.procs && exec STEP --rootfs /rootfs --memory 32m -- /bin/probe'
code=$?
echo "subtree_control after: $(cat /sys/fs/cgroup/shared/cgroup.subtree_control)"
echo "tree after: $(cd /sys/fs/cgroup/shared && find . -mindepth 1 -type d | tr '\n' ' ')"
kill $other
wait $other 2>/dev/null
rmdir /sys/fs/cgroup/shared
exit $code
"#;

/// A rootless box that mounts its cgroup again, read-write, in namespaces of its
/// own (the probe's raise-limits), makes a cgroup inside it and moves there.
const MAKES_CGROUPS: &str = r#"
cat > /rootfs/tmp/sub.sh <<'EOF'
mkdir /sys/fs/cgroup/sub && echo $$ > /sys/fs/cgroup/sub/cgroup.procs && echo "my cgroup: $(cat /proc/self/cgroup)"
EOF
delegated STEP06 --rootfs /rootfs --memory 32m -- /bin/probe raise-limits -- /bin/sh /tmp/sub.sh
code=$?
rm /rootfs/tmp/sub.sh
exit $code
"#;

/// A rootless box that makes cgroups in its own (mounted again, read-write, by the
/// probe's raise-limits) until the kernel refuses (or 104 are made): four levels
/// deep, then beside them, 64 in all. Its own bounds say `max`: the ones that hold
/// are one level up.
const BOUNDED: &str = r#"
cat > /rootfs/tmp/bound.sh <<'EOF'
cd /sys/fs/cgroup
echo "my cgroup.max.depth: $(cat cgroup.max.depth)"
echo "my cgroup.max.descendants: $(cat cgroup.max.descendants)"
try() { if err=$(mkdir "$1" 2>&1); then echo made; else echo "refused (${err##*: })"; fi; }
d=.
for i in 1 2 3 4 5; do d=$d/d; echo "level $i: $(try $d)"; done
made=4; i=1
while [ $i -le 100 ] && [ "$(try s$i)" = made ]; do made=$((made + 1)); i=$((i + 1)); done
echo "cgroups made: $made"
echo "one more: $(try s$i)"
EOF
delegated STEP06 --rootfs /rootfs -- /bin/probe raise-limits -- /bin/sh /tmp/bound.sh
code=$?
rm /rootfs/tmp/bound.sh
exit $code
"#;

/// What the guest runs after every part: the `isolab-*` cgroups left anywhere.
const LEFT: &str = "cd /sys/fs/cgroup && find . -name 'isolab-*' -type d";

/// One part of the boot: the run, and the cgroups left after it.
struct Part<'a> {
    run: &'a Output,
    left: &'a Output,
}

impl Part<'_> {
    fn report(&self) -> Report {
        Report::parse(&self.run.stdout)
    }

    fn stats(&self) -> Report {
        Report::parse(&self.run.stderr)
    }

    fn assert_code(&self, code: i32) {
        // The learner's skeleton stops at its first todo!(): say so plainly.
        if let Some(line) = self
            .run
            .stderr
            .lines()
            .find(|l| l.contains("not yet implemented"))
        {
            panic!(
                "{STEP} stopped at a todo!() (exit code {}):\n  {}\nFill it in, then check again.",
                self.run.code,
                line.trim()
            );
        }
        assert_eq!(
            self.run.code, code,
            "exit code of:\n{}\nstdout:\n{}stderr:\n{}",
            self.run.command, self.run.stdout, self.run.stderr
        );
    }
}

/// The one boot of this file, shared by every test. Call it after `needs!(guest)`.
fn guest() -> &'static GuestRun {
    static BOOT: OnceLock<Result<GuestRun, String>> = OnceLock::new();
    let boot = BOOT.get_or_init(|| {
        let bin = step(STEP);
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let rootless = step(STEP06);
        let rootless_name = rootless.file_name().unwrap().to_string_lossy().into_owned();
        let mut guest = Guest::new(probe());
        guest.binaries.push(bin.clone());
        guest.binaries.push(rootless.clone());
        for (_, script) in PARTS {
            let script = script
                .replace("STEP06", &rootless_name)
                .replace("STEP", &name);
            guest.commands.push(format!("{HELPERS}{script}"));
            guest.commands.push(LEFT.into());
        }
        let ran = isolab::vm::linux::run(&guest).map_err(|e| format!("{e:#}"));
        if let Ok(ran) = &ran {
            // Which accelerator ran, on the terminal even when every test passes.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "linux_guest: {ran}");
        }
        ran
    });
    match boot {
        Ok(ran) => ran,
        Err(e) => panic!("booting the Linux guest: {e}"),
    }
}

/// The part named `name` of the boot.
fn part<'a>(ran: &'a GuestRun, name: &str) -> Part<'a> {
    let i = PARTS
        .iter()
        .position(|(n, _)| *n == name)
        .expect("a part of PARTS");
    Part {
        run: &ran.outputs[2 * i],
        left: &ran.outputs[2 * i + 1],
    }
}

/// No part leaves a cgroup behind: after each, the guest finds no `isolab-*`
/// cgroup anywhere.
#[test]
fn no_cgroup_is_left_after_any_run() {
    needs!(guest);
    let ran = guest();
    for (name, _) in PARTS {
        let part = part(ran, name);
        assert_eq!(part.left.code, 0, "{}", part.left.stderr);
        assert_eq!(
            part.left.stdout.trim(),
            "",
            "cgroups left after {name:?}: {}",
            part.left.stdout
        );
    }
}

/// The guest is what the checks need: its own kernel, pure cgroup v2, with the
/// three controllers handed to the root's children.
#[test]
fn the_guest_runs_its_own_kernel_on_pure_cgroup_v2() {
    needs!(guest);
    let ran = guest();
    assert_eq!(ran.release, ran.kernel.release, "{}", ran.console);
    let offered = ran.fact("cgroup2 controllers").unwrap_or_default();
    let enabled = ran.fact("cgroup2 subtree_control").unwrap_or_default();
    for c in ["memory", "pids", "cpu"] {
        assert!(offered.split(' ').any(|o| o == c), "offered: {offered}");
        assert!(enabled.split(' ').any(|o| o == c), "enabled: {enabled}");
    }
    // The probe in the box reports the guest's kernel, not the host's, and knows
    // it runs in a VM, and whose.
    let report = part(ran, "limits").report();
    assert!(
        report[Key::Kernel].starts_with(&format!("Linux {} ", ran.release)),
        "{}",
        &report[Key::Kernel]
    );
    let hypervisor = match ran.accel {
        isolab::vm::linux::Accel::Emulated => "QEMU, emulated (TCG)",
        isolab::vm::linux::Accel::Kvm => "KVM",
    };
    assert_eq!(
        &report[Key::Machine],
        format!("a virtual machine (hypervisor: {hypervisor}), with a kernel of its own")
    );
}

/// The box sees its limits, in its own read-only cgroup2 at /sys/fs/cgroup.
#[test]
fn the_limits_are_visible_in_the_box() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "limits");
    part.assert_code(0);
    let report = part.report();
    assert_eq!(&report[Key::MemoryLimit], "32 MiB", "{}", part.run.stdout);
    assert_eq!(&report[Key::PidsLimit], "16", "{}", part.run.stdout);
    assert!(
        report[Key::CpuLimit].starts_with("0.5 CPU"),
        "{}",
        part.run.stdout
    );
}

#[test]
fn without_limits_the_box_has_none() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "no limits");
    part.assert_code(0);
    let report = part.report();
    for key in [Key::MemoryLimit, Key::PidsLimit, Key::CpuLimit] {
        assert_eq!(&report[key], "none", "{}", part.run.stdout);
    }
}

/// Past 32 MiB the hog is OOM-killed (SIGKILL: 137) and the runtime counts the
/// kill; 8 MiB fits.
#[test]
fn a_memory_hog_is_oom_killed() {
    needs!(guest);
    let ran = guest();
    let hog = part(ran, "memory hog");
    hog.assert_code(137);
    assert_eq!(&hog.stats()[Stat::OomKills], "1", "{}", hog.run.stderr);
    assert!(
        !hog.run.stdout.contains("allocated all"),
        "{}",
        hog.run.stdout
    );
    part(ran, "memory hog within the limit").assert_code(0);
}

/// fork() fails with EAGAIN once the box holds 16 tasks: init, the probe, and 14 children.
#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "fork bomb");
    part.assert_code(0);
    assert!(
        part.run
            .stdout
            .contains("forked 14 children, then fork() failed with EAGAIN"),
        "{}",
        part.run.stdout
    );
    let refused: u64 = part.stats()[Stat::ForksRefused].parse().unwrap_or(0);
    assert!(refused >= 1, "{}", part.run.stderr);
}

/// Under --cpus 0.5 the cgroup counts throttled periods.
#[test]
fn a_spinner_is_throttled() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "spinner");
    part.assert_code(0);
    let throttled = part.stats()[Stat::CpuThrottled].to_string();
    let times: u64 = throttled
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(times >= 1, "no throttled periods: {}", part.run.stderr);
}

/// SIGKILL leaves the runtime's cgroup behind, empty: its box died with it. The
/// next run removes it.
#[test]
fn a_killed_runtimes_cgroup_is_swept_by_the_next_run() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "killed runtime");
    part.assert_code(0);
    let r = part.report();
    let runtime = &r[Script::Runtime];
    let own = format!("./isolab-{runtime}");
    assert_eq!(
        r[Script::CgroupsWhileItRuns].trim(),
        own,
        "{}",
        part.run.stdout
    );
    assert_eq!(&r[Script::ProcessesInItsCgroup], "2", "init and the probe");
    assert_eq!(&r[Script::RuntimeExit], "137");
    assert_eq!(&r[Script::ProcessesLeftInItsCgroup], "0");
    assert_eq!(r[Script::CgroupsAfterTheKill].trim(), own);
    assert_eq!(&r[Script::NextRunExit], "0", "{}", part.run.stderr);
    assert_eq!(r[Script::CgroupsAfterTheNextRun].trim(), "");
}

/// Alone in a cgroup that hands down nothing, the runtime moves into a leaf of its
/// own, enables memory and pids, puts the box beside the leaf, and undoes it all.
#[test]
fn a_runtime_alone_in_its_cgroup_delegates_to_itself() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "alone in its cgroup");
    part.assert_code(0);
    let r = part.report();
    let runtime = &r[Script::Runtime];
    assert_eq!(
        &r[Script::RuntimesCgroup],
        format!("/alone/isolab-{runtime}-runtime"),
        "{}",
        part.run.stdout
    );
    assert_eq!(
        r[Script::TreeWhileItRuns].trim(),
        format!("./isolab-{runtime} ./isolab-{runtime}-runtime")
    );
    assert_eq!(&r[Script::SubtreeControlWhileItRuns], "memory pids");
    assert_eq!(&r[Script::BoxMemoryMax], (32u64 << 20).to_string());
    assert_eq!(&r[Script::BoxPidsMax], "16");
    assert_eq!(
        &r[Script::RuntimeExit],
        "143",
        "SIGTERM, passed on to the box"
    );
    assert_eq!(&r[Script::SubtreeControlAfter], "");
    assert_eq!(r[Script::TreeAfter].trim(), "");
}

/// Sharing its cgroup, the runtime refuses in one line with the remedy, and
/// changes nothing.
#[test]
fn a_runtime_sharing_its_cgroup_refuses_with_the_remedy() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "sharing its cgroup");
    part.assert_code(125);
    let lines: Vec<&str> = part.run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line: {:?}", part.run.stderr);
    for says in [
        ": error: ",
        "also holds 1 other process",
        "sudo systemd-run --scope -p Delegate=yes",
    ] {
        assert!(
            lines[0].contains(says),
            "{:?} does not say {says:?}",
            lines[0]
        );
    }
    let r = part.report();
    assert_eq!(&r[Script::SubtreeControlAfter], "");
    assert_eq!(r[Script::TreeAfter].trim(), "");
}

/// Step 06 on a real delegated tree: run by a normal user in a v2 cgroup handed to
/// it, the rootless box gets step 04's limits, made by the user alone.
#[test]
fn a_rootless_box_gets_limits_in_a_delegated_cgroup() {
    needs!(guest);
    let ran = guest();
    let hog = part(ran, "rootless memory hog");
    let part = part(ran, "rootless, delegated");
    part.assert_code(0);
    let report = part.report();
    assert_eq!(&report[Key::Uid], "0 (root)", "{}", part.run.stdout);
    assert_eq!(&report[Key::UidOnTheHost], "1000 (my uid_map: 0 1000 1)");
    assert_eq!(&report[Key::MemoryLimit], "32 MiB", "{}", part.run.stdout);
    assert_eq!(&report[Key::PidsLimit], "16");
    assert!(
        report[Key::CpuLimit].starts_with("0.5 CPU"),
        "{}",
        part.run.stdout
    );
    assert_eq!(part.run.stderr, "", "the limits were given: nothing to say");
    hog.assert_code(137);
    assert_eq!(&hog.stats()[Stat::OomKills], "1", "{}", hog.run.stderr);
}

/// Not delegated (the user's runtime sits in the root cgroup, which is root's):
/// no limits, one line that says so and how to get them, and the box runs.
#[test]
fn a_rootless_box_without_a_delegated_cgroup_runs_without_limits() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "rootless, not delegated");
    part.assert_code(0);
    let lines: Vec<&str> = part.run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", part.run.stderr);
    for says in [
        ": no limits: this process's cgroup /sys/fs/cgroup was not delegated to uid 1000",
        "systemd-run --user --scope -p Delegate=yes --",
    ] {
        assert!(
            lines[0].contains(says),
            "{:?} does not say {says:?}",
            lines[0]
        );
    }
    assert_ne!(&part.report()[Key::MemoryLimit], "32 MiB");
}

/// A hostile rootless box: its cgroup files are the caller's, and so its root's.
/// Its mounts are locked read-only, but in a user, cgroup and mount namespace of
/// its own it mounts its cgroup again, read-write, and lifts the limit it sees.
/// The same limit one level up, out of reach of any namespace of the box's, holds:
/// the hog is OOM-killed within 32 MiB (with one level only, it grew until the
/// guest itself ran out of memory).
#[test]
fn a_rootless_box_cannot_raise_the_limits_above_it() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "rootless, the box raises its limits");
    part.assert_code(137);
    let r = part.report();
    assert!(
        r[Raise::MountCgroups]
            .starts_with("allowed, in a user, cgroup and mount namespace of my own"),
        "{}",
        part.run.stdout
    );
    assert_eq!(
        &r[Key::MemoryLimit],
        "32 MiB -> none",
        "{}",
        part.run.stdout
    );
    let stats = part.stats();
    assert_eq!(&stats[Stat::OomKills], "1", "{}", part.run.stderr);
    let peak: u64 = stats[Stat::MemoryPeak]
        .trim_end_matches(" KiB")
        .parse()
        .unwrap_or(u64::MAX);
    assert!(peak <= 32 << 10, "{}", part.run.stderr);
}

/// A box that makes cgroups of its own inside its cgroup (and moves into one)
/// does not stop the runtime from removing them all: the exit code is the box's,
/// and no cgroup is left (`no_cgroup_is_left_after_any_run`).
#[test]
fn a_rootless_boxs_own_cgroups_are_removed_with_it() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "rootless, the box makes cgroups");
    part.assert_code(0);
    assert!(
        part.run.stdout.contains("my cgroup: 0::/sub"),
        "{}",
        part.run.stdout
    );
    assert_eq!(part.run.stderr, "", "nothing to warn about");
}

/// The box's root owns its cgroup and may make cgroups in it; step 06 bounds them
/// from the level above, out of the box's reach: four levels below its own cgroup
/// and 64 in all. The kernel refuses the next with EAGAIN, though the box's own
/// files say `max`; the runtime removes all 64 after it
/// (`no_cgroup_is_left_after_any_run`).
#[test]
fn a_rootless_boxs_cgroups_are_bounded_from_above() {
    needs!(guest);
    let ran = guest();
    let part = part(ran, "rootless, the box's cgroups are bounded");
    part.assert_code(0);
    let out = &part.run.stdout;
    let refused = "refused (Resource temporarily unavailable)";
    for line in [
        "my cgroup.max.depth: max".to_string(),
        "my cgroup.max.descendants: max".to_string(),
        "level 1: made".to_string(),
        "level 4: made".to_string(),
        format!("level 5: {refused}"),
        "cgroups made: 64".to_string(),
        format!("one more: {refused}"),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
    assert_eq!(part.run.stderr, "", "nothing to warn about");
}

/// Every QEMU this test process started, by PID (its children named qemu-system-*).
fn our_qemus(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split after its ')'.
        let Some((comm, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if comm.contains("(qemu-system") && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// What the temp dir holds that a guest run could have left. The run itself writes
/// no file (its initramfs is a memfd), so this is for QEMU's own: other tests and
/// programs make isolab-* entries there meanwhile, and do not count.
fn temp_entries() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_lowercase();
            name.contains("qemu") || name.starts_with("isolab-guest")
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Is process `pid` gone (or dead, a zombie its new parent has not reaped yet)?
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// A guest that is not done in time is killed, and leaves no QEMU and no file;
/// neither does the boot every check shares.
#[test]
fn a_guest_killed_halfway_leaves_nothing() {
    needs!(guest);
    guest();
    let before = temp_entries();
    let mut guest = Guest::new(probe());
    guest.commands.push("sleep 600".into());
    guest.timeout = Duration::from_secs(1);
    let err = isolab::vm::linux::run(&guest).unwrap_err().to_string();
    assert!(
        err.contains("was not done within") || err.contains("printed nothing within"),
        "{err}"
    );
    assert_eq!(our_qemus(std::process::id()), Vec::<u32>::new());
    assert_eq!(temp_entries(), before, "the temp dir changed");
}

/// The variable that makes [`boot_until_killed`] boot.
const KILL_ME: &str = "ISOLAB_TEST_BOOT_UNTIL_KILLED";

/// A test process killed with SIGKILL mid-boot takes its QEMU with it, and leaves
/// no file. The test binary runs itself, with only [`boot_until_killed`], and is
/// killed once its QEMU runs.
#[test]
fn a_sigkilled_test_leaves_no_qemu_and_no_file() {
    needs!(guest);
    guest();
    let before = temp_entries();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "boot_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_ME, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let test = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let qemu = loop {
        if let Some(pid) = our_qemus(test).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the child never started QEMU");
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dead(qemu) {
        assert!(Instant::now() < deadline, "QEMU {qemu} outlived its test");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(temp_entries(), before, "the temp dir changed");
}

/// Not a check: what [`a_sigkilled_test_leaves_no_qemu_and_no_file`] runs in a
/// child and kills. It does nothing unless that variable is set.
#[test]
fn boot_until_killed() {
    if std::env::var_os(KILL_ME).is_none() {
        return;
    }
    let mut guest = Guest::new(probe());
    guest.commands.push("sleep 600".into());
    let _ = isolab::vm::linux::run(&guest);
}

/// `isolab guest`, the page "A real kernel": the probe, a plain process of a VM,
/// reports the guest's own kernel, a different release from the host's, says it
/// runs in a VM, and finds no route to a canary on the host.
#[test]
fn isolab_guest_shows_a_kernel_of_its_own() {
    needs!(guest);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isolab"))
        .arg("guest")
        .env(isolab::workshop::env::PREBUILT, "1")
        .output()
        .expect("running isolab guest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kernels = stdout
        .lines()
        .find_map(|l| l.strip_prefix("the host's kernel: Linux "))
        .expect("a line with both kernels");
    let (host, guest) = kernels.split_once("; the guest's: Linux ").expect("both");
    assert_ne!(host, guest, "the guest should run a kernel of its own");
    let report = Report::parse(&stdout);
    assert!(
        report[Key::Kernel].starts_with(&format!("Linux {guest} ")),
        "{stdout}"
    );
    assert!(
        report[Key::Machine].starts_with("a virtual machine"),
        "{stdout}"
    );
    for route in [
        Key::CanaryByPath,
        Key::CanaryViaChrootEscape,
        Key::CanaryViaProcRoot,
        Key::CanaryViaInheritedFd,
        Key::CanaryViaEnvironment,
    ] {
        assert!(!report[route].starts_with("READABLE"), "{stdout}");
    }
    snapshot(
        "isolab_guest",
        &stdout,
        vec![
            (
                r"(?m)^QEMU, (emulated|KVM): Linux \S+, init up [\d.]+ s after QEMU started.*$"
                    .into(),
                "[QEMU, emulated or KVM]: Linux [guest release], init up [N] s after QEMU started"
                    .into(),
            ),
            (
                r"(?m)^the host's kernel: Linux \S+; the guest's: Linux \S+$".into(),
                "the host's kernel: Linux [host release]; the guest's: Linux [guest release]"
                    .into(),
            ),
            (r"(?m)^(pid|ppid): \d+$".into(), "$1: [N]".into()),
            (r"(?m)^(processes): \d+ ".into(), "$1: [N] ".into()),
        ],
    );
}
