//! Step 10, both worlds measured: every measurement runs, and the table, the JSON and
//! the chart have their shape. No time is asserted: the numbers belong to the machine.
//! What is checked of them is arithmetic: each row's median, min and max are those of
//! the samples the JSON lists, with an odd number of runs (where a mean is not a
//! median) and with an even one (where the median is between the two middle runs),
//! and the order the samples were taken in: round by round.
//!
//! The chapter's "break it" runs are checked the same way, by what each mistake
//! changes that does not depend on the machine's speed: the mean in the median's
//! place, the order of the samples, a clock stopped before its run was waited for,
//! one call timed alone, and wait4's peak, which counts 10-compare's own.

mod common;
use common::*;
use serde_json::Value;

const STEP: &str = "10-compare";

/// The rows, in order: (key, section, unit).
const ROWS: &[(&str, &str, &str)] = &[
    ("plain", "start", "ms"),
    ("chroot", "start", "ms"),
    ("namespaces", "start", "ms"),
    ("mount-namespace", "start", "ms"),
    ("container", "start", "ms"),
    ("kvm-ioctls", "start", "ms"),
    ("kvm", "start", "ms"),
    ("jailed-vm", "start", "ms"),
    ("syscall-host", "operation", "ns"),
    ("syscall-container", "operation", "ns"),
    ("exit-vmm", "operation", "ns"),
    ("exit-kernel", "operation", "ns"),
    ("box-runtime", "memory", "KiB"),
    ("box-cgroup", "memory", "KiB"),
    ("vmm", "memory", "KiB"),
    ("guest-ram", "memory", "KiB"),
];

/// The rows that start a process and time it to its exit.
const STARTS: &[&str] = &[
    "plain",
    "chroot",
    "namespaces",
    "mount-namespace",
    "container",
    "kvm",
    "jailed-vm",
];

/// The median of the samples, as a reference for the learner's `summarize`.
fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// What one run of the step left: its output, its JSON and its chart.
struct Results {
    run: Run,
    json: Value,
    svg: String,
}

/// Run the step with `--runs runs` and `flags`, its JSON and chart written to a
/// temporary directory, and its own temporary files (the rootfs) under one we can
/// look into.
fn compare(runs: usize, flags: &[&str]) -> Results {
    let out = tempfile::tempdir().expect("temp dir");
    let (json, svg, tmp) = (
        out.path().join("compare.json"),
        out.path().join("compare.svg"),
        out.path().join("tmp"),
    );
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    let runs = runs.to_string();
    let mut args = vec![
        "--runs",
        runs.as_str(),
        "--json",
        json.to_str().expect("a UTF-8 path"),
        "--svg",
        svg.to_str().expect("a UTF-8 path"),
    ];
    args.extend(flags);
    let mut cmd = command(&step(STEP), &args, None);
    cmd.env("TMPDIR", &tmp);
    let run = run_with(cmd);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("read tmp")
        .flatten()
        .collect();
    assert!(left.is_empty(), "10-compare left {left:?} behind");
    let json = serde_json::from_str(&std::fs::read_to_string(&json).expect("read JSON"))
        .expect("the JSON parses");
    let svg = std::fs::read_to_string(&svg).expect("read SVG");
    Results { run, json, svg }
}

/// The samples of a row, and when each was taken.
fn samples(row: &Value) -> (Vec<f64>, Vec<u64>) {
    let numbers =
        |field: &str| -> Vec<Value> { row[field].as_array().cloned().unwrap_or_default() };
    (
        numbers("samples")
            .iter()
            .filter_map(Value::as_f64)
            .collect(),
        numbers("order").iter().filter_map(Value::as_u64).collect(),
    )
}

/// The row with this key.
fn row<'a>(doc: &'a Value, key: &str) -> &'a Value {
    doc["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == key))
        .unwrap_or_else(|| panic!("no row {key} in {doc}"))
}

/// What the step said of the mistake it made on purpose.
fn broken<'a>(doc: &'a Value, mistake: &str) -> &'a Value {
    let broken = doc["broken"].as_array().expect("a broken list");
    assert_eq!(broken.len(), 1, "one mistake, and only that: {broken:?}");
    assert_eq!(broken[0]["mistake"], mistake);
    &broken[0]
}

/// Every row ran, with one sample per run, and its median, min and max are those of
/// its samples (with `--break mean`, the mean in the median's place).
fn check_rows(doc: &Value, runs: usize) {
    assert_eq!(doc["step"], "10-compare");
    assert_eq!(doc["runs"], runs);
    let rows = doc["rows"].as_array().expect("rows");
    let keys: Vec<&str> = rows.iter().filter_map(|r| r["key"].as_str()).collect();
    let expected: Vec<&str> = ROWS.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(keys, expected);
    for (row, (key, section, unit)) in rows.iter().zip(ROWS) {
        assert_eq!(row["section"], *section, "{key}");
        assert_eq!(row["unit"], *unit, "{key}");
        for field in ["name", "world", "how"] {
            assert!(
                row[field].as_str().is_some_and(|s| !s.is_empty()),
                "{key}.{field}"
            );
        }
        assert_eq!(row["status"], "ok", "{key} did not run: {row}");
        let (samples, order) = samples(row);
        assert_eq!(samples.len(), runs, "{key}: one sample per run");
        assert_eq!(order.len(), runs, "{key}: when each sample was taken");
        assert!(samples.iter().all(|s| *s > 0.0), "{key}: {samples:?}");
        let (min, max) = samples
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        let middle = if doc["broken"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["mistake"] == "mean"))
        {
            mean(&samples)
        } else {
            median(&samples)
        };
        for (field, want) in [("median", middle), ("min", min), ("max", max)] {
            let got = row[field].as_f64().unwrap_or(f64::NAN);
            assert!(
                close(got, want),
                "{key}: {field} is {got}, but the samples {samples:?} give {want}"
            );
        }
    }
}

/// The `k`th sample of every row is taken before any row's `k + 1`th: round by
/// round.
fn check_interleaved(doc: &Value, runs: usize) {
    let orders: Vec<Vec<u64>> = doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| samples(r).1)
        .collect();
    for k in 1..runs {
        let last = orders.iter().map(|o| o[k - 1]).max();
        let next = orders.iter().map(|o| o[k]).min();
        assert!(
            last < next,
            "round {k} ends at {last:?}, after round {} begins at {next:?}: {orders:?}",
            k + 1
        );
    }
}

#[test]
fn every_measurement_runs_and_the_results_have_their_shape() {
    needs!(root, kvm);
    let Results { run, json, svg } = compare(3, &[]);

    // The table: every row ran, each with its numbers and unit.
    assert!(!run.stdout.contains("FAILED"), "{}", run.stdout);
    snapshot(
        "table",
        &run.stdout,
        vec![
            (
                r"(?m)^machine: .*$".into(),
                "machine: [this machine]".into(),
            ),
            // busybox's /bin/true where the host has a static busybox, else the probe.
            (
                r"(?m)^trivial command: .*, from the rootfs$".into(),
                "trivial command: [/bin/true, or /bin/probe exit 0], from the rootfs".into(),
            ),
            // The three 9-wide number columns before the unit.
            (
                r"[ \d.]{27}  (ms|ns|KiB) ".into(),
                " [median]    [min]    [max]  $1 ".into(),
            ),
        ],
    );

    // The JSON: the machine, and every row with its samples.
    for key in [
        "cpu",
        "cpus",
        "kernel",
        "under a hypervisor",
        "kvm",
        "cgroups",
        "build",
    ] {
        assert!(
            !json["machine"][key].is_null(),
            "machine.{key} missing: {json}"
        );
    }
    check_rows(&json, 3);
    check_interleaved(&json, 3);
    assert_eq!(json["broken"], serde_json::json!([]), "nothing broken");

    // The chart: an SVG with a bar for every row.
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let bars = svg.matches(r#"<rect x="250""#).count();
    assert_eq!(bars, ROWS.len(), "one bar per row:\n{svg}");
}

/// With an even number of runs, the median lies between the two middle ones.
#[test]
fn an_even_number_of_runs() {
    needs!(root, kvm);
    let json = compare(2, &[]).json;
    check_rows(&json, 2);
    check_interleaved(&json, 2);
}

/// Chapter 10's "break it": `--break mean` puts the mean of each row's samples in
/// the median's place (three runs, where the two differ), and says so.
#[test]
fn break_mean_reports_the_mean() {
    needs!(root, kvm);
    let Results { run, json, .. } = compare(3, &["--break", "mean"]);
    check_rows(&json, 3); // with the mean in the median's place
    assert!(
        run.stdout.contains("broken on purpose, mean: "),
        "{}",
        run.stdout
    );
    broken(&json, "mean");
}

/// `--break sequential` takes every run of a row before the next row: each row's
/// samples come one after another, and after all of the row before.
#[test]
fn break_sequential_takes_each_row_in_one_go() {
    needs!(root, kvm);
    let json = compare(2, &["--break", "sequential"]).json;
    check_rows(&json, 2);
    broken(&json, "sequential");
    let mut before = None;
    for r in json["rows"].as_array().expect("rows") {
        let order = samples(r).1;
        assert!(
            order.windows(2).all(|w| w[1] == w[0] + 1),
            "{}: its samples one after another: {order:?}",
            r["key"]
        );
        assert!(
            before < order.first().copied(),
            "{} began at {order:?}, before the row above ended at {before:?}",
            r["key"]
        );
        before = order.last().copied();
    }
}

/// `--break start-only` stops each start row's clock once the runtime has started.
/// Every such run was looked at when its clock stopped, and none had been waited
/// for yet: whether it had also ended by then depends on the machine's speed, so
/// the test only checks that the two counts add up to every run.
#[test]
fn break_start_only_stops_the_clock_before_the_wait() {
    needs!(root, kvm);
    let runs = 1;
    let json = compare(runs, &["--break", "start-only"]).json;
    check_rows(&json, runs);
    let said = broken(&json, "start-only");
    let (running, ended) = (said["still running"].as_u64(), said["ended"].as_u64());
    let looked = running.zip(ended).map(|(r, e)| r + e);
    // Every start row, in the warm-up and in each run.
    let starts = (STARTS.len() * (runs + 1)) as u64;
    assert_eq!(looked, Some(starts), "{said}");
}

/// `--break one-syscall` has the probe time a single getppid(): each sample is one
/// reading of the clock, a whole number of nanoseconds, where a loop divided
/// gives fractions.
#[test]
fn break_one_syscall_times_a_single_call() {
    needs!(root, kvm);
    let json = compare(2, &["--break", "one-syscall"]).json;
    check_rows(&json, 2);
    broken(&json, "one-syscall");
    for key in ["syscall-host", "syscall-container"] {
        let row = row(&json, key);
        let (samples, _) = samples(row);
        assert!(
            samples.iter().all(|s| s.fract() == 0.0),
            "{key}: {samples:?}"
        );
    }
    let how = row(&json, "syscall-host")["how"].as_str().unwrap_or("");
    assert!(how.starts_with("1 getppid()"), "{how}");
}

/// `--break wait4` reads the peak rows from wait4's ru_maxrss, which counts the
/// memory a process had before its execve: 10-compare's own. In every run it was
/// at least 10-compare's peak (VmHWM) when it started that run.
#[test]
fn break_wait4_counts_the_parents_memory() {
    needs!(root, kvm);
    let runs = 1;
    let json = compare(runs, &["--break", "wait4"]).json;
    check_rows(&json, runs);
    let said = broken(&json, "wait4");
    // The two peak rows, in the warm-up and in each run.
    let peaks = (2 * (runs + 1)) as u64;
    assert_eq!(said["runs"].as_u64(), Some(peaks), "{said}");
    assert_eq!(said["at least our peak"].as_u64(), Some(peaks), "{said}");
    for key in ["box-runtime", "vmm"] {
        let how = row(&json, key)["how"].as_str().unwrap_or("");
        assert!(how.starts_with("wait4's ru_maxrss of "), "{key}: {how}");
    }
}

#[test]
fn bad_runs_are_one_line() {
    for (runs, says) in [
        ("0", "0 is not in 1..=1000"),
        ("many", "invalid value 'many'"),
    ] {
        let run = run(&step(STEP), &["--runs", runs]);
        assert_one_line_error(&run, 2, says);
    }
}

/// `--linux-guest` adds a row: a real kernel booted under QEMU, from QEMU's start
/// to the probe's exit inside, labelled with the accelerator that ran it. It takes
/// seconds where the containers take milliseconds.
#[test]
fn a_real_kernel_is_timed_on_request() {
    needs!(root, kvm, guest);
    let out = tempfile::tempdir().expect("temp dir");
    let json = out.path().join("compare.json");
    let args = [
        "--runs",
        "1",
        "--linux-guest",
        "--json",
        json.to_str().expect("a UTF-8 path"),
    ];
    let mut cmd = command(&step(STEP), &args, None);
    // The guest kernel is in the caller's cache, under HOME.
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    let run = run_with(cmd);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read JSON")).expect("JSON");
    let rows = doc["rows"].as_array().expect("rows");
    let guest = rows
        .iter()
        .find(|r| r["key"] == "linux-guest")
        .expect("a linux-guest row");
    assert_eq!(guest["status"], "ok", "{guest}");
    assert!(
        guest["how"]
            .as_str()
            .is_some_and(|h| h.starts_with("QEMU, ")),
        "{guest}"
    );
    let container = rows
        .iter()
        .find(|r| r["key"] == "container")
        .expect("container");
    let (vm, boxed) = (
        guest["median"].as_f64().unwrap_or(0.0),
        container["median"].as_f64().unwrap_or(f64::MAX),
    );
    assert!(
        vm > boxed,
        "a boot ({vm} ms) should take longer than a box ({boxed} ms)"
    );
}
