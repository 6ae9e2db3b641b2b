//! The exercise generator: one source of truth for reference and skeleton.
//!
//! In `solutions/NN-slug.rs`, an exercise is an mdBook anchor region whose first
//! lines are `//>` hints:
//!
//! ```text
//! fn enter_rootfs(rootfs: &Path) -> Result<()> {
//!     // ANCHOR: enter_rootfs
//!     //> chroot(2) into `rootfs`, then chdir("/")
//!     chroot(rootfs).context("chroot")?;
//!     ...
//!     // ANCHOR_END: enter_rootfs
//! }
//! ```
//!
//! The skeleton keeps the anchor lines (the book includes the same region from both
//! files), turns the hints into a `// TODO:` comment and the code into a `todo!()`
//! that names the step and says what to do. Anchor regions without hints are left
//! as they are: the book shows them, the learner does not write them.

use anyhow::{Result, bail};

/// One exercise: the anchor's name and its hint lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Exercise {
    pub name: String,
    pub hint: Vec<String>,
}

fn anchor_start(line: &str) -> Option<&str> {
    line.trim().strip_prefix("// ANCHOR: ").map(str::trim)
}

fn anchor_end(line: &str) -> Option<&str> {
    line.trim().strip_prefix("// ANCHOR_END: ").map(str::trim)
}

fn hint_line(line: &str) -> Option<&str> {
    let t = line.trim_start();
    t.strip_prefix("//>")
        .map(|h| h.strip_prefix(' ').unwrap_or(h))
}

/// The exercises of a solution, in order.
pub fn exercises(solution: &str) -> Vec<Exercise> {
    let lines: Vec<&str> = solution.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = anchor_start(line) {
            let hint: Vec<String> = lines[i + 1..]
                .iter()
                .map_while(|l| hint_line(l))
                .map(String::from)
                .collect();
            if !hint.is_empty() {
                found.push(Exercise {
                    name: name.to_string(),
                    hint,
                });
            }
        }
    }
    found
}

/// The learner's skeleton for step `number`, whose chapter file is `file`.
pub fn skeleton(number: u8, file: &str, solution: &str) -> Result<String> {
    let lines: Vec<&str> = solution.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut header_done = false;
    while i < lines.len() {
        let line = lines[i];
        if !header_done && !line.starts_with("//!") {
            header_done = true;
            out.push(format!(
                "\n// Your copy of step {number:02}. Replace each todo!() with your code, then run\n\
                 // `cargo run -- check {number}`. (Generated from solutions/{file}: `cargo run -- reset {number}`\n\
                 // brings this version back.)"
            ));
            if !line.is_empty() {
                out.push(String::new());
            }
        }
        let Some(name) = anchor_start(line) else {
            out.push(line.to_string());
            i += 1;
            continue;
        };
        let hints: Vec<&str> = lines[i + 1..].iter().map_while(|l| hint_line(l)).collect();
        if hints.is_empty() {
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
        let Some(end) = lines[i..].iter().position(|l| anchor_end(l) == Some(name)) else {
            bail!("solutions/{file}: anchor `{name}` has no `// ANCHOR_END: {name}`");
        };
        out.push(line.to_string());
        for (k, hint) in hints.iter().enumerate() {
            let lead = if k == 0 { "// TODO: " } else { "//       " };
            out.push(format!("{indent}{lead}{hint}").trim_end().to_string());
        }
        // Laid out as rustfmt lays out a call whose argument does not fit on one line;
        // a statement, so that it may stand in the middle of a function too.
        out.push(format!("{indent}todo!("));
        out.push(format!(
            "{indent}    \"step {number:02}, `{name}`: not written yet. Read the TODO above this line in chapters/{file}, or run `cargo run -- hint {number}`\""
        ));
        out.push(format!("{indent});"));
        out.push(lines[i + end].to_string());
        i += end + 1;
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOLUTION: &str = "//! Step 09: a test.\n\nfn f() -> u8 {\n    // ANCHOR: body\n    //> return 7,\n    //> the answer\n    7\n    // ANCHOR_END: body\n}\n\n// ANCHOR: shown\nfn g() {}\n// ANCHOR_END: shown\n";

    #[test]
    fn finds_only_regions_with_hints() {
        assert_eq!(
            exercises(SOLUTION),
            vec![Exercise {
                name: "body".into(),
                hint: vec!["return 7,".into(), "the answer".into()]
            }]
        );
    }

    #[test]
    fn turns_the_region_into_a_todo_and_keeps_the_rest() {
        let skeleton = skeleton(9, "09-test.rs", SOLUTION).unwrap();
        insta::assert_snapshot!(skeleton);
    }

    #[test]
    fn an_unclosed_region_is_an_error() {
        let err = skeleton(9, "09-test.rs", "// ANCHOR: x\n//> hint\ncode\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "solutions/09-test.rs: anchor `x` has no `// ANCHOR_END: x`"
        );
    }
}
