//! Step 10, both worlds measured: every measurement runs, and the table, the JSON and
//! the chart have their shape. No time is asserted: the numbers belong to the machine.
//! What is checked of them is arithmetic: each row's median, min and max are those of
//! the samples the JSON lists, with an odd number of runs (where a mean is not a
//! median) and with an even one (where the median is between the two middle runs).

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

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// What one run of the step left: its output, its JSON and its chart.
struct Results {
    run: Run,
    json: Value,
    svg: String,
}

/// Run the step with `--runs runs`, its JSON and chart written to a temporary
/// directory, and its own temporary files (the rootfs) under one we can look into.
fn compare(runs: usize) -> Results {
    let out = tempfile::tempdir().expect("temp dir");
    let (json, svg, tmp) = (
        out.path().join("compare.json"),
        out.path().join("compare.svg"),
        out.path().join("tmp"),
    );
    std::fs::create_dir(&tmp).expect("mkdir tmp");
    let runs = runs.to_string();
    let args = [
        "--runs",
        runs.as_str(),
        "--json",
        json.to_str().expect("a UTF-8 path"),
        "--svg",
        svg.to_str().expect("a UTF-8 path"),
    ];
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

/// Every row ran, with one sample per run, and its median, min and max are those of
/// its samples.
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
        let samples: Vec<f64> = row["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(samples.len(), runs, "{key}: one sample per run");
        assert!(samples.iter().all(|s| *s > 0.0), "{key}: {samples:?}");
        let (min, max) = samples
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        for (field, want) in [("median", median(&samples)), ("min", min), ("max", max)] {
            let got = row[field].as_f64().unwrap_or(f64::NAN);
            assert!(
                close(got, want),
                "{key}: {field} is {got}, but the samples {samples:?} give {want}"
            );
        }
    }
}

#[test]
fn every_measurement_runs_and_the_results_have_their_shape() {
    needs!(root, kvm);
    let Results { run, json, svg } = compare(3);

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

    // The chart: an SVG with a bar for every row.
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let bars = svg.matches(r#"<rect x="250""#).count();
    assert_eq!(bars, ROWS.len(), "one bar per row:\n{svg}");
}

/// With an even number of runs, the median lies between the two middle ones.
#[test]
fn an_even_number_of_runs() {
    needs!(root, kvm);
    check_rows(&compare(2).json, 2);
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
