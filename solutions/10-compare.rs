//! # Step 10: both worlds, measured
//!
//! The book's claim, turned into numbers from your own machine. A container is an
//! ordinary process that the shared kernel shows a smaller world to, so it should
//! start almost as fast as a plain process and pay the same price for a system
//! call. A virtual machine runs code of its own on a virtual CPU, and pays for its
//! stronger walls every time its guest needs the host: each exit is a trip out of
//! the guest and back. This step runs the reference steps as whole processes, the
//! same way each time, and prints the median and the spread of:
//!
//! - start to exit of a trivial command: a plain process (00), chrooted (01), in
//!   namespaces (02, 03), in the full container with limits (04); and a VM: its
//!   ioctls alone (create a VM, run one `hlt`, close it, in this process), step
//!   07's whole process, and step 09's, the VMM in a box of its own;
//! - one system call, on the host and inside the container, against one guest exit
//!   to this process (a port write), and one that KVM handles in the kernel;
//! - memory: what the box costs, against what the VM costs.
//!
//! It builds its own rootfs in a temporary directory and removes it however it
//! ends. Nothing here asserts a time: it measures and reports. `--json FILE` and
//! `--svg FILE` also write the results as data and as a chart. `--break MISTAKE`
//! measures the wrong way on purpose, and the table's header says so.
//!
//! Calls: the steps through fork, execve and wait (std::process); getppid(2) in a
//! loop (the probe); KVM_RUN on a guest that loops over `out`, and KVM_IOEVENTFD
//! (10-compare/timed_vm.rs, on step 07's and 08's own ioctls); ptrace(2) with
//! PTRACE_O_TRACEEXIT, to read a process's peak memory as it exits
//! (src/measure/peak.rs).
//!
//! ```text
//! $ sudo target/release/10-compare --runs 20
//! ...
//!                                   median      min      max  unit how
//!   plain process                     2.07     1.74     2.60  ms   00-process
//!   full container, with limits       4.22     3.55     4.71  ms   04-cgroups ...
//!   syscall in the box                 150      130      170  ns   the same, in 04
//!   guest exit to the VMM             7480     5633     9064  ns   port writes
//! ```

use isolab::container::cgroup::Stat;
use isolab::measure::{
    Broken, Lab, Machine, Measurement, Outcome, Row, Sample, Sampler, Spread,
    Table, World,
};
use isolab::prelude::*;
use isolab::workshop::report::Timer;
use kvm_bindings::KVM_CAP_IOEVENTFD;
use std::cell::Cell;
use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

// The finished steps this one measures with: step 08's own file, and through it
// step 07's, whose ioctls the VMM to time is made of.
#[path = "../solutions/08-kvm-long-mode.rs"]
#[allow(dead_code)] // its main, and what this step does not call
pub mod kvm_long_mode;
pub use kvm_long_mode::kvm_real_mode;

// A small VMM to time, built from those steps' functions.
#[path = "../solutions/10-compare/timed_vm.rs"]
mod timed_vm;
use timed_vm::Handler;

/// Step 10: measure containers and VMs on this machine, side by side.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// How many times to run each measurement, after one warm-up run
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Also write the results, with every sample, as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also draw the results as an SVG bar chart in FILE
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Also boot a real Linux kernel under QEMU in every round, and time it from
    /// QEMU's start to the probe's exit inside (seconds a round when emulated)
    #[arg(long)]
    linux_guest: bool,
    /// Measure the wrong way on purpose, to see what the right way is for
    /// (repeatable)
    #[arg(long = "break", value_name = "MISTAKE", value_enum)]
    mistakes: Vec<Mistake>,
}

/// The chapter's "break it" experiments, for `--break`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Mistake {
    /// stop the clock when a run has started, not when it has ended
    StartOnly,
    /// put the mean of the samples in the median's place
    Mean,
    /// take every run of one row before the next row, not round by round
    Sequential,
    /// time one system call alone, not a loop of them divided
    OneSyscall,
    /// take a process's peak memory from wait4's ru_maxrss, not from VmHWM
    Wait4,
}

/// The limits of the full container: the tour's, and docker's flags.
const LIMITS: [&str; 6] =
    ["--memory", "64m", "--pids-limit", "32", "--cpus", "0.5"];
/// getppid() calls per syscall sample.
const SYSCALLS: u32 = 200_000;
/// Port writes per exit sample: to us, and to an ioeventfd (handled by KVM).
const EXITS: u32 = 10_000;
const KERNEL_EXITS: u32 = 20_000;

fn main() -> ExitCode {
    isolab::main(|| {
        let args: Args = isolab::cli::parse();
        isolab::run::need_root("running the container steps")?;
        let kvm = isolab::vm::open(Path::new("/dev/kvm"))?;
        isolab::measure::catch_interrupts()?;
        let lab = Lab::new()?;
        let mistakes = Mistakes::new(&args.mistakes);
        let mut all = measurements(&lab, &kvm, &mistakes)?;
        if args.linux_guest {
            all.push(linux_guest(&lab)?);
        }
        let rows = measure(all, args.runs, &mistakes)?;
        let broken = mistakes.report(&rows);
        let table = Table {
            runs: args.runs,
            trivial: lab.trivial().join(" "),
            machine: Machine::detect(),
            rows,
            broken,
        };
        print!("{}", table.render());
        if let Some(path) = &args.json {
            std::fs::write(path, table.to_json())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &args.svg {
            std::fs::write(path, table.to_svg())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if !table.all_ran() {
            bail!("some measurements failed: see FAILED in the table");
        }
        Ok(0)
    })
}

// ANCHOR: measurements
/// Every row of the table: what it runs, and how one sample is taken.
#[rustfmt::skip] // a table, laid out by hand
fn measurements<'a>(
    lab: &'a Lab,
    kvm: &'a File,
    m: &'a Mistakes, // --break: the wrong ways, made on purpose
) -> Result<Vec<Measurement<'a>>> {
    use World::{Container, Host, Vm};
    let t = lab.trivial(); // /bin/true
    let on_host = [vec!["--".to_string()], lab.trivial_on_host()].concat();
    let with_stats = [&["--stats"][..], &LIMITS].concat();
    let calls = if m.made(Mistake::OneSyscall) { 1 } else { SYSCALLS };
    let count = calls.to_string();
    let syscalls = ["/bin/probe", "syscalls", "--count", &count];
    let ioctls = "open, create VM and vCPU, HLT, close; in-process";
    let peak_of =
        if m.made(Mistake::Wait4) { "wait4's ru_maxrss" } else { "VmHWM" };
    Ok(vec![
        // Start to exit of a trivial command, in ms: a plain process, then each
        // box ...
        start("plain", "plain process", Host,
            lab.command("00-process-solution", &on_host)?, m),
        start("chroot", "chroot", Host,
            lab.step("01-chroot-solution", &[], &t)?, m),
        start("namespaces", "namespaces and an init", Container,
            lab.step("02-namespaces-solution", &[], &t)?, m),
        start("mount-namespace", "mount namespace, pivot_root", Container,
            lab.step("03-mount-namespace-solution", &[], &t)?, m),
        start("container", "full container, with limits", Container,
            lab.step("04-cgroups-solution", &LIMITS, &t)?, m),
        // ... and of a VM: its ioctls alone (in this process), then step 07's
        // process.
        Measurement::ms("kvm-ioctls", "VM: its ioctls alone", Vm, ioctls,
            Box::new(|| Ok(Sample::Value(
                timed_vm::lifecycle(Path::new("/dev/kvm"))?.as_secs_f64() * 1e3,
            )))),
        start("kvm", "VM: step 07's guest", Vm,
            lab.command::<&str>("07-kvm-real-mode-solution", &[])?, m)
            .how("07-kvm-real-mode: 22 port writes, then HLT"),
        start("jailed-vm", "VM in a jail: step 09's", Vm,
            lab.command("09-jailed-vm-solution", &LIMITS)?, m)
            .how("09-jailed-vm --memory 64m ...: the box, the filter, 2 exits"),

        // One operation, in ns: a system call from the host and from inside the
        // box ...
        Measurement::ns("syscall-host", "syscall on the host", Host,
            &format!("{calls} getppid() in the probe, divided"),
            per_call(lab.command("probe", &syscalls[1..])?)),
        Measurement::ns("syscall-container", "syscall in the box", Container,
            "the same, inside 04's box",
            per_call(lab.step("04-cgroups-solution", &LIMITS, &syscalls)?)),
        // ... against a guest's exit: to us, the VMM, or handled by KVM itself.
        Measurement::ns("exit-vmm", "guest exit to the VMM", Vm,
            &format!("{EXITS} port writes, each a KVM_RUN return"),
            Box::new(move || Ok(Sample::Value(
                timed_vm::exits(kvm, EXITS, Handler::Vmm)?.ns_each(),
            )))),
        Measurement::ns("exit-kernel", "guest exit handled in KVM", Vm,
            &format!("{KERNEL_EXITS} port writes to an ioeventfd"),
            Box::new(move || {
                if kvm_real_mode::check_extension(kvm, KVM_CAP_IOEVENTFD)? <= 0 {
                    return Ok(Sample::NotAvailable(
                        "this KVM has no ioeventfd".into(),
                    ));
                }
                Ok(Sample::Value(
                    timed_vm::exits(kvm, KERNEL_EXITS, Handler::Kernel)?.ns_each(),
                ))
            })),

        // Memory, in KiB: what the box costs, and what the VM costs.
        Measurement::kib("box-runtime", "box: the runtime, peak", Container,
            &format!("{peak_of} of 04-cgroups as it exits"),
            peak(lab.step("04-cgroups-solution", &LIMITS, &t)?, m)),
        Measurement::kib("box-cgroup", "box: its cgroup, peak", Container,
            "its memory cgroup's peak (--stats)", {
                let step = lab.step("04-cgroups-solution", &with_stats, &t)?;
                Box::new(move || {
                    let stats =
                        isolab::measure::run_with_peak_memory(&step)?.stderr;
                    Ok(Sample::Value(
                        isolab::measure::value_of(&stats, Stat::MemoryPeak)?,
                    ))
                })
            }),
        Measurement::kib("vmm", "VM: the VMM, peak", Vm,
            &format!("{peak_of} of 07-kvm-real-mode as it exits"),
            peak(lab.command::<&str>("07-kvm-real-mode-solution", &[])?, m)),
        Measurement::kib("guest-ram", "VM: guest RAM", Vm,
            "07's memory slot: given, backed where touched",
            Box::new(|| {
                Ok(Sample::Value((kvm_real_mode::MEMORY_SIZE >> 10) as f64))
            })),
    ])
}
// ANCHOR_END: measurements

/// A start-to-exit row: one sample is one whole run of `command`, in milliseconds
/// (with `--break start-only`, only its start).
fn start<'a>(
    key: &'static str,
    name: &'static str,
    world: World,
    mut command: Command,
    mistakes: &'a Mistakes,
) -> Measurement<'a> {
    let how = isolab::measure::describe(&command);
    let start_only = mistakes.made(Mistake::StartOnly);
    Measurement::ms(
        key,
        name,
        world,
        &how,
        Box::new(move || {
            let took = if start_only {
                time_start(&mut command, mistakes)?
            } else {
                time_run(&mut command)?
            };
            Ok(Sample::Value(took.as_secs_f64() * 1e3))
        }),
    )
}

/// A real kernel under QEMU: one sample is one boot, from QEMU's start to the
/// probe's exit inside the guest. Labelled with the accelerator the first boot
/// used (KVM if it keeps up with a whole kernel here, else emulation); where QEMU
/// or the guest kernel is missing, the row says so.
fn linux_guest<'a>(lab: &Lab) -> Result<Measurement<'a>> {
    use isolab::vm::linux::{Guest, run};
    let mut guest = Guest::new(lab.bin("probe")?);
    guest.commands.push("/rootfs/bin/probe exit 0".into());
    let name = "VM: a real kernel, start to probe";
    let how = match run(&guest) {
        Ok(ran) => format!("{}: {}, init, the probe", ran.accel, ran.release),
        Err(e) => {
            let why = format!("{e:#}");
            return Ok(Measurement::ms(
                "linux-guest",
                name,
                World::Vm,
                "QEMU",
                Box::new(move || Ok(Sample::NotAvailable(why.clone()))),
            ));
        }
    };
    Ok(Measurement::ms(
        "linux-guest",
        name,
        World::Vm,
        &how,
        Box::new(move || {
            let ran = run(&guest)?;
            Ok(Sample::Value(ran.outputs[0].ended.as_secs_f64() * 1e3))
        }),
    ))
}

/// One syscall sample: run the probe's loop and read what one call cost.
fn per_call<'a>(probe: Command) -> Sampler<'a> {
    Box::new(move || {
        let report = isolab::measure::run_with_peak_memory(&probe)?.stdout;
        Ok(Sample::Value(isolab::measure::value_of(
            &report,
            Timer::Each,
        )?))
    })
}

/// One memory sample: the peak resident memory of a whole run of `command`
/// (with `--break wait4`, what wait4 calls its peak).
fn peak<'a>(command: Command, mistakes: &'a Mistakes) -> Sampler<'a> {
    let wait4 = mistakes.made(Mistake::Wait4);
    Box::new(move || {
        let kib = if wait4 {
            let maxrss = isolab::measure::run_with_maxrss(&command)?;
            mistakes.saw_maxrss(maxrss);
            maxrss.child_kib
        } else {
            isolab::measure::run_with_peak_memory(&command)?.peak_kib
        };
        Ok(Sample::Value(kib as f64))
    })
}

/// Start `command`, wait for it to end, and return how long that took.
fn time_run(command: &mut Command) -> Result<Duration> {
    //>1 Time one whole run of `command`, from start to end, and report no time for
    //>1 a run that failed.
    //>2 Instant::now(), then command.status() (fork, exec and wait), then the
    //>2 elapsed time.
    //> Take the time with Instant::now(), run the command to its end with
    //> command.status() (spawn and wait: the whole life of the process), and take
    //> the elapsed time. Only then look at the status: when it is not a success,
    //> bail! with the program's name (command.get_program()) and the status, because
    //> the time of a failed run measures something else. Return the elapsed time.
    // ANCHOR: time_run
    let start = Instant::now();
    let status = command.status().with_context(|| {
        format!("starting {}", command.get_program().to_string_lossy())
    })?;
    let took = start.elapsed();
    if !status.success() {
        bail!(
            "{} failed ({status})",
            command.get_program().to_string_lossy()
        );
    }
    Ok(took)
    // ANCHOR_END: time_run
}

/// `--break start-only`: stop the clock once `command` has started (spawn returns
/// when the program has been exec'd), not when it has ended. The run is still
/// waited for, after the clock, so that no two runs overlap and none is left
/// behind; and what the clock left out is counted: had the run ended yet?
fn time_start(command: &mut Command, mistakes: &Mistakes) -> Result<Duration> {
    let program = command.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let took = start.elapsed();
    mistakes.saw_clock_stop(isolab::measure::has_exited(child.id())?);
    let status = child
        .wait()
        .with_context(|| format!("waitpid({}) for {program}", child.id()))?;
    if !status.success() {
        bail!("{program} failed ({status})");
    }
    Ok(took)
}

// ANCHOR: measure
/// One warm-up round, then `runs` rounds in which every measurement takes one
/// sample: interleaved, so that a machine that gets busier halfway through slows
/// every row alike instead of the last ones. A row that fails, or that this host
/// cannot do, stops there and says why; the others go on. Each sample keeps its
/// place in the order they were taken.
fn measure(
    mut measurements: Vec<Measurement>,
    runs: u32,
    mistakes: &Mistakes,
) -> Result<Vec<Row>> {
    // (round, row): round by round, a sample of every row in each.
    let n = measurements.len();
    let mut plan: Vec<(u32, usize)> = (0..=runs)
        .flat_map(|round| (0..n).map(move |row| (round, row)))
        .collect();
    if mistakes.made(Mistake::Sequential) {
        plan.sort_by_key(|&(round, row)| (row, round)); // row by row instead
    }
    type Taken = (Vec<f64>, Vec<usize>); // the samples, and when each was taken
    let mut results: Vec<std::result::Result<Taken, Outcome>> = measurements
        .iter()
        .map(|_| Ok(Default::default()))
        .collect();
    let mut taken = 0;
    for (round, row) in plan {
        let Ok((samples, order)) = &mut results[row] else {
            continue;
        };
        let sample = (measurements[row].sample)();
        isolab::measure::check_interrupted()?;
        match sample {
            Ok(Sample::Value(_)) if round == 0 => {} // the warm-up
            Ok(Sample::Value(value)) => {
                samples.push(value);
                order.push(taken);
            }
            Ok(Sample::NotAvailable(why)) => {
                results[row] = Err(Outcome::NotAvailable(why))
            }
            Err(e) => results[row] = Err(Outcome::Failed(format!("{e:#}"))),
        }
        taken += 1;
    }
    let rows = measurements
        .into_iter()
        .zip(results)
        .map(|(m, result)| Row {
            outcome: match result {
                Ok((samples, order)) => Outcome::Measured {
                    summary: if mistakes.made(Mistake::Mean) {
                        // The mean in the median's place; min and max stay.
                        Spread {
                            median: mean(&samples),
                            ..summarize(&samples)
                        }
                    } else {
                        summarize(&samples)
                    },
                    samples,
                    order,
                },
                Err(outcome) => outcome,
            },
            section: m.section,
            key: m.key,
            name: m.name,
            world: m.world,
            unit: m.unit,
            how: m.how,
        });
    Ok(rows.collect())
}
// ANCHOR_END: measure

/// The median of the samples, and the spread: the smallest and the largest.
fn summarize(samples: &[f64]) -> Spread {
    //>1 Summarize the samples as the table shows them: the median, the min and the
    //>1 max.
    //>2 No system call: a sort (f64 needs total_cmp), then the middle sample, or
    //>2 the mean of the two in the middle.
    //> Sort a copy of the samples (f64 is not Ord, because of NaN: sort_by with
    //> f64::total_cmp). The median is the middle sample, or the mean of the two in
    //> the middle when there is an even number of them. min and max are the two ends.
    //> There is always at least one sample.
    // ANCHOR: summarize
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Spread {
        median,
        min: sorted[0],
        max: sorted[n - 1],
    }
    // ANCHOR_END: summarize
}

/// The arithmetic mean, for `--break mean`.
fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// The mistakes `--break` asked for, and what they found as the rows ran.
struct Mistakes {
    made: Vec<Mistake>,
    /// start-only: runs whose clock stopped before they had ended, and runs that
    /// had ended by then but had not been waited for.
    still_running: Cell<u64>,
    ended: Cell<u64>,
    /// wait4: runs measured, those whose ru_maxrss was at least our own peak
    /// when we started them, and the largest of our peaks.
    maxrss_runs: Cell<u64>,
    at_least_ours: Cell<u64>,
    our_peak_kib: Cell<u64>,
}

impl Mistakes {
    fn new(asked: &[Mistake]) -> Mistakes {
        let mut made = Vec::new();
        for mistake in asked {
            if !made.contains(mistake) {
                made.push(*mistake);
            }
        }
        Mistakes {
            made,
            still_running: Cell::new(0),
            ended: Cell::new(0),
            maxrss_runs: Cell::new(0),
            at_least_ours: Cell::new(0),
            our_peak_kib: Cell::new(0),
        }
    }

    fn made(&self, mistake: Mistake) -> bool {
        self.made.contains(&mistake)
    }

    fn saw_clock_stop(&self, ended: bool) {
        let count = if ended {
            &self.ended
        } else {
            &self.still_running
        };
        count.set(count.get() + 1);
    }

    fn saw_maxrss(&self, maxrss: isolab::measure::MaxRss) {
        self.maxrss_runs.set(self.maxrss_runs.get() + 1);
        if maxrss.child_kib >= maxrss.ours_kib {
            self.at_least_ours.set(self.at_least_ours.get() + 1);
        }
        let ours = self.our_peak_kib.get().max(maxrss.ours_kib);
        self.our_peak_kib.set(ours);
    }

    /// What each mistake did, and found, for the table's header and the JSON.
    fn report(&self, rows: &[Row]) -> Vec<Broken> {
        self.made.iter().map(|m| self.says(*m, rows)).collect()
    }

    fn says(&self, mistake: Mistake, rows: &[Row]) -> Broken {
        let name = clap::ValueEnum::to_possible_value(&mistake)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        let (says, counts) = match mistake {
            Mistake::StartOnly => {
                let (running, ended) = (self.still_running.get(), self.ended.get());
                let says = format!(
                    "each run that starts a process stopped the clock once it \
                     had started; the run had not ended then in {running} of {} \
                     runs (warm-ups included), and had ended, not yet waited \
                     for, in {ended}",
                    running + ended
                );
                (says, vec![("still running", running), ("ended", ended)])
            }
            Mistake::Mean => (furthest_from_median(rows), vec![]),
            Mistake::Sequential => (
                "each row took all its runs before the next row began (the \
                 JSON's order says when each sample was taken)"
                    .to_string(),
                vec![],
            ),
            Mistake::OneSyscall => (
                "the probe timed one getppid() alone, not a loop of them".into(),
                vec![],
            ),
            Mistake::Wait4 => {
                let (runs, at_least, ours) = (
                    self.maxrss_runs.get(),
                    self.at_least_ours.get(),
                    self.our_peak_kib.get(),
                );
                let says = format!(
                    "the peak rows are wait4's ru_maxrss, which was at least \
                     10-compare's own peak (VmHWM, up to {ours} KiB) when it \
                     started the run in {at_least} of {runs} runs"
                );
                let counts = vec![
                    ("runs", runs),
                    ("at least our peak", at_least),
                    ("our peak (KiB)", ours),
                ];
                (says, counts)
            }
        };
        Broken {
            mistake: name,
            says,
            counts,
        }
    }
}

/// `--break mean`: what the median column holds, and the row where the mean
/// strays furthest from the median of the same samples.
fn furthest_from_median(rows: &[Row]) -> String {
    let says = "the median column holds the mean of each row's samples";
    let strays = rows.iter().filter_map(|row| match &row.outcome {
        Outcome::Measured {
            samples, summary, ..
        } => Some((row, summary.median, summarize(samples).median)),
        _ => None,
    });
    let off = |(_, mean, median): &(&Row, f64, f64)| (mean - median).abs() / median;
    let furthest = strays
        .filter(|(_, _, median)| *median > 0.0)
        .max_by(|a, b| off(a).total_cmp(&off(b)));
    match furthest {
        Some((row, mean, median)) if mean != median => format!(
            "{says}; furthest from its median: \"{}\", {} {} against {}",
            row.name,
            isolab::measure::number(mean),
            row.unit,
            isolab::measure::number(median)
        ),
        _ => says.to_string(),
    }
}
