//! Every untouched skeleton in chapters/ compiles and stops at its first todo!() with
//! a message that names the step and says what to do. A chapter the learner has
//! edited is theirs: `cargo run -- check N` tests it, and this file leaves it alone.

mod common;
use common::*;
use isolab::workshop::steps::{Needs, STEPS};

#[test]
fn untouched_skeletons_stop_at_their_first_todo() {
    let root = nix::unistd::geteuid().is_root();
    let lab = Lab::new();
    let mut checked = Vec::new();
    // Every untouched skeleton, built with one cargo before any runs.
    let untouched: Vec<String> = STEPS
        .iter()
        .filter(|step| {
            let skeleton =
                isolab::workshop::exercise::skeleton(step.number, &step.file(), step.solution)
                    .unwrap();
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("chapters")
                .join(step.file());
            std::fs::read_to_string(path).unwrap_or_default() == skeleton
        })
        .map(|step| step.name())
        .collect();
    build_chapters(&untouched);
    for step in STEPS {
        if !untouched.contains(&step.name()) {
            let why = format!(
                "chapters/{} has been edited, so it is not a skeleton any more",
                step.file()
            );
            skip(&format!("step {:02}: {why}", step.number));
            continue;
        }
        let needs = match step.needs {
            Needs::Root | Needs::RootAndKvm if !root => Some("root"),
            Needs::Kvm | Needs::RootAndKvm if missing("kvm").is_some() => Some("kvm"),
            _ => None,
        };
        if let Some(req) = needs {
            let why = missing(req).unwrap_or_default();
            skip(&format!("step {:02}: it {why}", step.number));
            continue;
        }
        // The rootless step runs as a normal user: ourselves, or the tests' user.
        let user = if step.needs == Needs::NormalUser {
            match normal_user() {
                Ok(user) => Some(UserLab::new(&user)),
                Err(why) => {
                    skip(&format!("step {:02}: it {why}", step.number));
                    continue;
                }
            }
        } else {
            None
        };
        // A container step runs a command in a rootfs; the others take none.
        let container = matches!(step.needs, Needs::Nothing | Needs::Root | Needs::NormalUser);
        let mut args: Vec<String> = Vec::new();
        if step.number > 0 && container {
            let rootfs = user.as_ref().map_or(lab.rootfs(), |u| u.rootfs());
            args.extend(["--rootfs".into(), rootfs.display().to_string()]);
        }
        args.extend(step.tour_args.iter().map(|s| s.to_string()));
        if container {
            args.push("--".into());
            args.push(if step.number == 0 {
                probe().display().to_string()
            } else {
                "/bin/probe".into()
            });
        }
        let out = match &user {
            Some(user) => {
                let bin = user.runnable(target_dir().join(step.name()));
                let mut cmd = user.command(&bin, &args, None);
                cmd.env("PATH", "/usr/bin:/bin");
                cmd.output().unwrap()
            }
            None => std::process::Command::new(target_dir().join(step.name()))
                .args(&args)
                .output()
                .unwrap(),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = isolab::workshop::exercise::exercises(step.solution);
        let names: Vec<String> = first
            .iter()
            .map(|e| format!("step {:02}, `{}`: not written yet", step.number, e.name))
            .collect();
        assert_eq!(
            out.status.code(),
            Some(101),
            "step {:02}: a todo!() panics with 101; stderr: {stderr}",
            step.number
        );
        assert!(
            names
                .iter()
                .any(|n| stderr.contains(&format!("not yet implemented: {n}"))),
            "step {:02}: stderr should name one of {names:?}:\n{stderr}",
            step.number
        );
        assert!(
            stderr.contains(&format!("cargo run -- hint {}", step.number)),
            "the message says how to get a hint"
        );
        // The panic ends the box's process where it is: nothing of the runtime's
        // (its cgroups, say) is cleaned up from inside the box, so nothing warns.
        assert!(
            !stderr.contains("warning"),
            "step {:02}: a todo!() should say only that:\n{stderr}",
            step.number
        );
        assert_no_process_from(&lab.rootfs());
        checked.push(step.name());
    }
    eprintln!("checked the skeletons of {checked:?}");
}
