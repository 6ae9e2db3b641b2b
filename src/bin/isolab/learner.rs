//! The learner's loop: `list`, `check`, `hint`, `reset`, `solve`, `run`, `rootfs`.

use crate::cargo::{build_chapter, build_references, build_test, repo, target_dir};
use crate::privilege::{as_root, is_root, needs_sudo, rerun_with_sudo};
use crate::step_arg;
use crate::terminal::paint;
use anyhow::{Context, Result, bail};
use isolab::workshop::env;
use isolab::workshop::env::prebuilt;
use isolab::workshop::exercise;
use isolab::workshop::steps::{Needs, STEPS, Step};
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Where the learner's file for a step is.
fn chapter_path(step: &Step) -> PathBuf {
    repo().join("chapters").join(step.file())
}

fn skeleton(step: &Step) -> Result<String> {
    exercise::skeleton(step.number, &step.file(), step.solution)
}

/// Has the learner changed the file since it was generated?
fn started(step: &Step) -> Result<bool> {
    let current = std::fs::read_to_string(chapter_path(step)).unwrap_or_default();
    Ok(current != skeleton(step)? && current != challenge(step)?)
}

/// Did the learner start from the challenge skeleton? Its header says so, and stays
/// in the file as they work.
fn on_challenge_tier(step: &Step) -> bool {
    std::fs::read_to_string(chapter_path(step)).is_ok_and(|text| {
        text.contains(&format!(
            "// Your copy of step {:02}, the challenge",
            step.number
        ))
    })
}

/// `text` in lines of at most `width` columns, every line after the first indented.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split_whitespace() {
        let lead = if lines.len() == 1 { 6 } else { 0 };
        let line = lines.last_mut().expect("one line");
        if !line.trim().is_empty() && lead + line.len() + 1 + word.len() > width {
            lines.push(format!("{indent}{word}"));
        } else {
            if !line.trim().is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

fn challenge(step: &Step) -> Result<String> {
    exercise::skeleton_of(
        exercise::Tier::Challenge,
        step.number,
        &step.file(),
        step.solution,
    )
}

/// What a check found.
struct Checked {
    passed: bool,
    output: String,
}

/// Build step N's test as this user, then run it against the learner's binary,
/// through sudo when the step needs root. A failing check writes nothing: no
/// snapshot is updated (INSTA_UPDATE=no) and the root run builds nothing.
fn run_checks(step: &Step, announce: bool) -> Result<Checked> {
    let test_user = if step.needs == Needs::NormalUser && is_root() {
        Some(test_user(step)?)
    } else {
        None
    };
    if announce {
        println!("building the tests (a minute or two the first time, seconds after)...");
    }
    let executable = build_test(step)?;
    let mut env = vec![
        (env::CHECK, "chapters".to_string()),
        (env::PREBUILT, "1".to_string()),
        ("INSTA_UPDATE", "no".to_string()),
        ("INSTA_WORKSPACE_ROOT", repo().display().to_string()),
        ("RUST_BACKTRACE", "0".to_string()),
    ];
    env.extend(test_user.map(|name| (env::TEST_USER, name)));
    let mut cmd = if needs_sudo(step.needs) {
        as_root(&executable, &env)?
    } else {
        let mut cmd = Command::new(&executable);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    };
    let result = cmd
        .current_dir(repo())
        .output()
        .context("running the tests")?;
    Ok(Checked {
        passed: result.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ),
    })
}

/// Who runs a rootless step's box when root checks it: the user ISOLAB_TEST_USER
/// names, or the one who called sudo. The step refuses root, and the tests run it
/// as that user.
fn test_user(step: &Step) -> Result<String> {
    let named = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty() && v != "root")
    };
    if let Some(name) = named(env::TEST_USER).or_else(|| named("SUDO_USER")) {
        return Ok(name);
    }
    bail!(
        "step {n:02}'s tests run its box as a normal user, and you are root: name one, `{var}=NAME cargo run -- check {n}` (a user with a range in /etc/subuid runs the --map-range checks too), or run the check as that user, in a checkout of their own (Setting up, in the book, says how)",
        n = step.number,
        var = env::TEST_USER
    )
}

/// The lines of a passing check's output that say a comparison was left out: the
/// test, what it compares with, and why it could not here.
fn left_out(output: &str) -> Vec<String> {
    let mark = format!("{} ", env::LEFT_OUT);
    output
        .lines()
        .filter_map(|l| l.strip_prefix(&mark))
        .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest).to_string())
        .collect()
}

/// Did every failing test fail only because it cannot run here (it needs root, a
/// user, ...), rather than because the step differs from the reference?
fn could_not_run(output: &str) -> bool {
    let failed = output
        .lines()
        .filter(|l| l.starts_with("---- ") && l.ends_with(" ----"))
        .count();
    failed > 0 && output.matches("this check cannot run here").count() >= failed
}

/// The part of the test output a learner needs: the todo!()s their step stopped
/// at, or else each failing test with its message, in the learner's words (the
/// tests compare `yours` on the left with `expected` on the right, and insta's
/// "old snapshot" is the reference).
fn explain_failure(output: &str) -> String {
    let mut todos: Vec<&str> = Vec::new();
    for line in output.lines().map(str::trim) {
        if line.starts_with("not yet implemented:") && !todos.contains(&line) {
            todos.push(line);
        }
    }
    if !todos.is_empty() {
        return format!("your step stopped at a todo!():\n  {}", todos.join("\n  "));
    }
    let noise = [
        "note: run with `RUST_BACKTRACE",
        "stack backtrace",
        "Stopped on the first failure",
        "To update snapshots",
        "Source:",
        "snapshot assertion for",
    ];
    let mut shown = Vec::new();
    let mut inside = false;
    for line in output.lines() {
        if line.starts_with("---- ") && line.ends_with(" ----") {
            inside = true;
            let test = line.trim_matches('-').trim().replace(" stdout", "");
            shown.push(format!("\nthe test `{test}`:"));
            continue;
        }
        if line == "failures:" || line.starts_with("test result:") {
            inside = false;
        }
        let trimmed = line.trim_start();
        if !inside
            || noise.iter().any(|n| trimmed.starts_with(n))
            || line.contains("/.cargo/registry/")
        {
            continue;
        }
        let line = line
            .replace("  left: ", "     yours: ")
            .replace(" right: ", "  expected: ")
            .replace("-old snapshot", "-the reference")
            .replace("+new results", "+yours");
        shown.push(format!("  {line}"));
    }
    if shown.is_empty() {
        return output.to_string();
    }
    let text = shown.join("\n");
    format!("What differs from the reference:\n{}", text.trim_end())
}

pub fn check(number: u8) -> Result<ExitCode> {
    let step = step_arg(number)?;
    println!(
        "checking step {:02} ({}): chapters/{}",
        step.number,
        step.title,
        step.file()
    );
    if !build_chapter(step, false)? {
        println!(
            "\n{} chapters/{} does not compile yet: fix the errors above, then `cargo run -- check {number}` again.",
            paint("not yet:", "red"),
            step.file()
        );
        return Ok(ExitCode::FAILURE);
    }
    if needs_sudo(step.needs) {
        println!("(the tests of this step need root: running them with sudo)");
    }
    let checked = run_checks(step, true)?;
    if checked.passed {
        println!(
            "\n{} step {:02}: you built {}.",
            paint("passes:", "green"),
            step.number,
            step.built
        );
        let left = left_out(&checked.output);
        if !left.is_empty() {
            println!(
                "\nLeft out here: {} comparison(s) with what your step runs beside (a root box, another user). Your step passed everything else; CI runs these too.",
                left.len()
            );
            for line in &left {
                println!("  - {line}");
            }
        }
        match STEPS.iter().find(|s| s.number > number) {
            Some(next) => println!(
                "next: step {:02}, {} (read book/src/{}.md, then edit chapters/{}).",
                next.number,
                next.title,
                next.name(),
                next.file()
            ),
            None => println!("that was the last step: well done."),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if could_not_run(&checked.output) {
        println!(
            "\n{} step {:02}: its tests cannot run here, so nothing in your step was found wrong. {}",
            paint("not checked:", "yellow"),
            step.number,
            explain_failure(&checked.output)
                .replace("What differs from the reference:", "What they need:")
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "\n{} step {:02}. {}",
        paint("not yet:", "red"),
        step.number,
        explain_failure(&checked.output)
    );
    // A learner on the challenge tier has asked for some hint levels, and the nudge
    // would tell the rest: show it only once they have asked for all of them.
    if on_challenge_tier(step) && hints_used(step.number) < exercise::LEVELS {
        println!(
            "\n(`cargo run -- hint {number}` tells one level more; the check changed no file.)"
        );
    } else {
        println!("\nhint: {}", wrap(step.hint, 84, "      "));
        println!(
            "(`cargo run -- hint {number}` says what each todo!() needs; the check changed no \
             file.)"
        );
    }
    Ok(ExitCode::FAILURE)
}

pub fn list() -> Result<ExitCode> {
    println!("step  {:<62}  hints  state", "title");
    for step in STEPS {
        let state = if !started(step)? {
            "not started".to_string()
        } else if !build_chapter(step, true)? {
            paint("in progress (does not compile)", "yellow")
        } else {
            match run_checks(step, false) {
                Ok(c) if c.passed => paint("passing", "green"),
                Ok(_) => paint("in progress", "yellow"),
                Err(e) => format!("could not check: {e:#}"),
            }
        };
        let hints = match hints_used(step.number) {
            0 => "-".to_string(),
            n => format!("{n}/{}", exercise::LEVELS),
        };
        println!(
            "{:02}    {:<62}  {hints:<5}  {state}",
            step.number, step.title
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `hint N`: one more level of every exercise of step N than last time (the goal,
/// then the system calls, then their arguments), or with `level`, up to that level
/// without counting. `list` shows how many levels each step has used.
pub fn hint(number: u8, level: Option<usize>) -> Result<ExitCode> {
    let step = step_arg(number)?;
    let used = hints_used(step.number);
    let shown = level.unwrap_or(used + 1).clamp(1, exercise::LEVELS);
    println!("step {:02}, {}", step.number, step.title);
    println!(
        "your file: chapters/{}   the chapter: book/src/{}.md\n",
        step.file(),
        step.name()
    );
    println!(
        "hint level {shown} of {}: {}, todo!() by todo!():",
        exercise::LEVELS,
        exercise::LEVEL_NAMES[..shown].join(", then ")
    );
    for exercise in exercise::exercises(step.solution) {
        println!("\n  {}:", exercise.name);
        for (i, lines) in exercise.levels.iter().enumerate().take(shown) {
            let label = ["goal", "calls", "args"][i];
            for (j, line) in lines.iter().enumerate() {
                let lead = if j == 0 {
                    format!("{label}:")
                } else {
                    String::new()
                };
                println!("    {lead:<6} {line}");
            }
        }
    }
    if shown == exercise::LEVELS {
        println!("\na nudge: {}", wrap(step.hint, 84, "  "));
        println!(
            "\nThat is every hint. The guided skeleton's TODOs say the same;\n\
             `cargo run -- solve {number}` puts the reference in your file."
        );
    } else {
        println!(
            "\n`cargo run -- hint {number}` again tells {}.",
            exercise::LEVEL_NAMES[shown]
        );
    }
    if level.is_none()
        && shown > used
        && let Err(e) = set_hints_used(step.number, shown)
    {
        eprintln!(
            "isolab: could not note the hint in {}: {e:#}",
            progress_file().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `hint` counts the levels used: .isolab/hints in the repository, one
/// `STEP LEVEL` line per step (ISOLAB_PROGRESS names another file, as the tests do).
fn progress_file() -> PathBuf {
    std::env::var_os("ISOLAB_PROGRESS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".isolab/hints"))
}

/// How many hint levels step `number` has used (0: none).
pub fn hints_used(number: u8) -> usize {
    let text = std::fs::read_to_string(progress_file()).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| n.parse() == Ok(number))
        .filter_map(|(_, level)| level.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

fn set_hints_used(number: u8, level: usize) -> Result<()> {
    let path = progress_file();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| {
            l.split_once(' ')
                .is_none_or(|(n, _)| n.parse() != Ok(number))
        })
        .map(String::from)
        .collect();
    lines.push(format!("{number} {level}"));
    lines.sort();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir -p {}", dir.display()))?;
    }
    std::fs::write(&path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Ask before replacing the learner's file, unless told not to.
fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question}: add --yes to confirm (there is no terminal to ask on)");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Keep the learner's current file in chapters/.backup/ before replacing it.
fn back_up(step: &Step) -> Result<Option<PathBuf>> {
    let current = std::fs::read_to_string(chapter_path(step)).unwrap_or_default();
    if current.is_empty()
        || current == skeleton(step)?
        || current == challenge(step)?
        || current == step.solution
    {
        return Ok(None);
    }
    let dir = repo().join("chapters/.backup");
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir -p {}", dir.display()))?;
    let stamp = timestamp();
    let backup = dir.join(format!("{}.{stamp}", step.file()));
    std::fs::write(&backup, current).with_context(|| format!("writing {}", backup.display()))?;
    Ok(Some(backup))
}

/// Now, as `20261130-114205` (UTC): a backup's name sorts by time and reads as one.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year}{month:02}{day:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn replace_chapter(step: &Step, text: &str, what: &str, yes: bool) -> Result<ExitCode> {
    let path = chapter_path(step);
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == text {
        println!("chapters/{} is already {what}: nothing to do.", step.file());
        return Ok(ExitCode::SUCCESS);
    }
    let question = format!(
        "replace chapters/{} with {what}? (your version is kept in chapters/.backup/)",
        step.file()
    );
    if started(step)? && !confirm(&question, yes)? {
        println!("left chapters/{} as it was.", step.file());
        return Ok(ExitCode::FAILURE);
    }
    let backup = back_up(step)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("chapters/{} is now {what}.", step.file());
    if let Some(backup) = backup {
        println!("your version: {}", backup.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reset(number: u8, challenge: bool, yes: bool) -> Result<ExitCode> {
    let step = step_arg(number)?;
    if challenge {
        let text = exercise::skeleton_of(
            exercise::Tier::Challenge,
            step.number,
            &step.file(),
            step.solution,
        )?;
        let code = replace_chapter(step, &text, "the challenge skeleton", yes)?;
        if code == ExitCode::SUCCESS {
            println!(
                "Each TODO now says only what to achieve; `cargo run -- hint {number}` \
                 tells one level more each time you ask."
            );
        }
        return Ok(code);
    }
    replace_chapter(step, &skeleton(step)?, "the untouched skeleton", yes)
}

pub fn solve(number: u8, yes: bool) -> Result<ExitCode> {
    let step = step_arg(number)?;
    let code = replace_chapter(step, step.solution, "the reference solution", yes)?;
    if code == ExitCode::SUCCESS {
        println!(
            "`cargo run -- check {number}` passes with it; read it next to the chapter before you move on."
        );
    }
    Ok(code)
}

/// The arguments after `run N`, exactly as given: clap drops a `--` that comes
/// first, and here `--` matters (it separates the step's options from the command).
fn raw_run_args() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some(i) = args.iter().position(|a| a == "run") else {
        return Vec::new();
    };
    let mut rest = args.into_iter().skip(i + 1).peekable();
    rest.next_if(|a| a == "--reference");
    rest.skip(1).collect() // the step's number
}

pub fn run(number: u8, reference: bool, parsed: &[OsString]) -> Result<ExitCode> {
    let step = step_arg(number)?;
    let raw = raw_run_args();
    let args = if raw.is_empty() { parsed } else { &raw[..] };
    // `run 5 --reference` means `run --reference 5`: no step has a flag of that name.
    let (reference, args) = match args.split_first() {
        Some((first, rest)) if first == "--reference" => (true, rest),
        _ => (reference, args),
    };
    if step.needs == Needs::NormalUser && is_root() {
        bail!(
            "step {:02} runs as a normal user, and you are root: run isolab as one, in a checkout and with a Rust toolchain of their own, e.g. `runuser -u NAME -- sh -c 'cd ~/isolab && cargo run -- run {number}'` (Setting up, in the book, says how to make one); from here, `ISOLAB_TEST_USER=NAME cargo run -- check {number}` checks your step as NAME",
            step.number
        );
    }
    if !prebuilt() {
        build_references()?; // the probe, for the rootfs, and the references
        if !reference && !build_chapter(step, false)? {
            bail!(
                "chapters/{} does not compile yet: fix the errors above first",
                step.file()
            );
        }
        if needs_sudo(step.needs) {
            return rerun_with_sudo();
        }
    }
    let target = target_dir()?;
    let bin = target.join(if reference {
        step.solution_bin()
    } else {
        step.name()
    });
    let mut cmd = Command::new(&bin);
    // Kept until the step has run: the rootfs, and the canary the probe looks for.
    let mut _lab = None;
    // And a key of yours in another session of yours, whose serial the probe gets.
    let mut _key = None;
    if matches!(step.needs, Needs::Kvm | Needs::RootAndKvm) {
        cmd.args(args);
    } else {
        let work = run_dir()?;
        let rootfs = work.path().join("rootfs");
        isolab::container::rootfs::build(&rootfs, &target.join("probe"))?;
        // The learner's flags, and their command after `--`; without one, the probe.
        let split = args.iter().position(|a| a == "--");
        let (flags, command) = match split {
            Some(i) => (&args[..i], args[i + 1..].to_vec()),
            None => (args, Vec::new()),
        };
        // The runtime starts as the tests start it: from a careless caller, with a
        // secret in its environment and in its session keyring, and a host directory
        // open on fd 3, and with a canary made for this run that the probe looks for,
        // and a key of the caller's in another session, whose serial the probe gets.
        // Beside the rootfs, in the same directory, so that it goes with it.
        let canary = isolab::container::canary::Canary::create_in(work.path())?;
        cmd.env(
            isolab::container::canary::ENV,
            isolab::container::canary::ENV_VALUE,
        );
        isolab::run::std_fds_only(&mut cmd, Some(canary.dir()))?;
        isolab::container::canary::in_a_session_keyring(&mut cmd);
        let key = isolab::container::canary::KeyHolder::start(Command::new(target.join("probe")))?;
        let command = if command.is_empty() {
            let mut probe = vec![
                step.probe(&target.join("probe")).into_os_string(),
                "--canary".into(),
                canary.path().into_os_string(),
            ];
            probe.extend(key.probe_args());
            probe
        } else {
            command
        };
        _key = Some(key);
        cmd.args(step.args(&rootfs, flags, &command));
        _lab = Some((work, canary));
    }
    // If isolab is killed, the step goes with it (and with it its box).
    die_with_us(&mut cmd);
    eprintln!("isolab: running {}", describe(&cmd));
    outlive_signals();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    STEP.store(child.id() as i32, std::sync::atomic::Ordering::Relaxed);
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", bin.display()))?;
    if let Some((work, canary)) = _lab {
        drop(canary);
        let path = work.keep();
        if let Err(e) = remove_run_dir(&path) {
            eprintln!("isolab: warning: {e:#}: remove the rest by hand");
        }
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// How the directories of `run` are named: this prefix, the PID of the isolab that
/// made it, and a random part.
const RUN_DIR: &str = "isolab-run-";

/// A directory for one run's rootfs, only its owner may enter: a box may leave files
/// there (a setuid file, which runs as the box's root on the host) that no other
/// user of the host should reach. Directories that an isolab killed with SIGKILL
/// left (its PID is gone) are removed first.
fn run_dir() -> Result<tempfile::TempDir> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = std::env::temp_dir();
    let me = nix::unistd::geteuid().as_raw();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(RUN_DIR)
            .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = entry.metadata().is_ok_and(|m| m.uid() == me);
        if ours
            && !Path::new(&format!("/proc/{pid}")).exists()
            && let Err(e) = remove_run_dir(&entry.path())
        {
            eprintln!("isolab: warning: an earlier run's directory: {e:#}");
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{RUN_DIR}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&tmp)
        .with_context(|| format!("making a directory in {}", tmp.display()))
}

/// The step's PID, for [`pass_on`].
static STEP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Live through the signals that end a run, so that the run's directory is
/// removed after the step: Ctrl-C (SIGINT) and SIGQUIT reach the step anyway,
/// from the terminal, with the whole foreground group; SIGTERM and SIGHUP are
/// passed on to it. The step ends, and this process cleans up after it.
/// The handlers are reset to the default in the step when it execs.
fn outlive_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let ignore = SigAction::new(
        SigHandler::Handler(nothing),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let forward = SigAction::new(
        SigHandler::Handler(pass_on),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for (signal, action) in [
        (Signal::SIGINT, &ignore),
        (Signal::SIGQUIT, &ignore),
        (Signal::SIGTERM, &forward),
        (Signal::SIGHUP, &forward),
    ] {
        // SAFETY: both handlers make at most one async-signal-safe call (kill)
        // and touch only an atomic.
        if let Err(e) = unsafe { sigaction(signal, action) } {
            eprintln!("isolab: warning: sigaction({signal}): {e}");
        }
    }
}

extern "C" fn nothing(_: libc::c_int) {}

extern "C" fn pass_on(signal: libc::c_int) {
    let step = STEP.load(std::sync::atomic::Ordering::Relaxed);
    if step > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes no pointers.
        unsafe { libc::kill(step, signal) };
    }
}

/// Have the kernel SIGKILL `cmd` when this process dies, however it dies.
fn die_with_us(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes one system call, prctl, which
    // takes no pointers.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Remove a run's directory, whatever the box left in it, with the toolkit's
/// `tree::remove_all`: a tree of any depth, a directory closed to its owner,
/// symlinks never followed, and what cannot be removed named. A rootless box with
/// `--map-range` may leave files owned by IDs of the caller's range, which the
/// caller may not remove on the host. What is left then is removed by a child of
/// ours that is root in a user namespace mapped to the caller and their ranges,
/// as `podman unshare rm -rf` would, but running no program: nothing the box left
/// is ever run.
fn remove_run_dir(path: &Path) -> Result<()> {
    use isolab::container::{subid, tree};
    let Err(as_caller) = tree::remove_all(path) else {
        return Ok(());
    };
    // Root, or a user without a range: the first removal said what is wrong.
    let ranges = if is_root() {
        None
    } else {
        subid::root_over_my_ranges().ok()
    };
    let Some((uids, gids)) = ranges else {
        return Err(as_caller);
    };
    subid::in_a_mapped_namespace(&uids, &gids, || tree::remove_all(path))
}

/// The command as a shell would take it: arguments with spaces or quotes quoted.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty()
                || a.contains(|c: char| c.is_whitespace() || "'\"$;&|<>()*?".contains(c))
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn rootfs(dir: &Path) -> Result<ExitCode> {
    if !prebuilt() {
        build_references()?;
    }
    let probe = target_dir()?.join("probe");
    let built = isolab::container::rootfs::build(dir, &probe)?;
    println!("built a rootfs in {}", dir.display());
    println!("  /bin/probe       from {}", probe.display());
    for lib in &built.libraries {
        let name = lib.file_name().unwrap_or_default().to_string_lossy();
        println!("  /lib/{name:<11} from {}", lib.display());
    }
    match &built.busybox {
        Some(b) => println!(
            "  /bin/busybox     from {} (with its applets: try `-- /bin/sh`)",
            b.display()
        ),
        None => println!("  no busybox: install Debian's busybox-static to get a shell in the box"),
    }
    Ok(ExitCode::SUCCESS)
}
