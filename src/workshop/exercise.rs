//! The exercise generator: one source of truth for reference and skeleton.
//!
//! In `solutions/NN-slug.rs`, an exercise is an mdBook anchor region right below
//! its `//>` hint lines:
//!
//! ```text
//! fn enter_rootfs(rootfs: &Path) -> Result<()> {
//!     //> chroot(2) into `rootfs`, then chdir("/")
//!     // ANCHOR: enter_rootfs
//!     chroot(rootfs).context("chroot")?;
//!     ...
//!     // ANCHOR_END: enter_rootfs
//! }
//! ```
//!
//! The skeleton keeps the anchor lines (the book includes the same region from both
//! files), turns the hints into a `// TODO:` comment inside the region and the code
//! into a `todo!()` that names the step and says what to do. Anchor regions without
//! hints are left as they are: the book shows them, the learner does not write them.
//!
//! Why the hints stand *above* the anchor: the book's "Solution" folds include the
//! reference's region, and mdBook shows every line between the anchor lines (it can
//! drop none but other anchor lines). Outside the region, the hints stay where a
//! maintainer edits the code they describe, and no page shows them. A region nested
//! in a larger one (`deny_list` in step 05's `filter`) has its hints inside that
//! one: a page shows the larger region from the skeleton, where the TODO stands in
//! their place, and `check-book` fails on any `//>` line a page would show.
//!
//! Each exercise has three levels of hints, for two tiers of skeleton:
//!
//! ```text
//!     //>1 The goal, and the line of the report (or output) it changes.
//!     //>2 The system calls that get there.
//!     //> The calls with their arguments, as the guided TODO says it.
//!     // ANCHOR: enter_rootfs
//! ```
//!
//! The guided skeleton (the one in chapters/) has level 3 as its TODO; the
//! challenge skeleton (`cargo run -- reset N --challenge`) has level 1 only, and
//! `cargo run -- hint N` gives one more level each time it is asked.
//!
//! The skeleton is shown in the book's code box, so the generator rewraps the hints
//! to [`BOOK_COLUMNS`] (the `// TODO: ` prefix is wider than `//> `) and splits the
//! `todo!()` message with a string continuation, which rustfmt leaves as it is.

use anyhow::{Result, bail};

/// The widest line the book's code box shows without scrolling, in columns. mdBook
/// 0.5's default theme gives a code block 730 px of text (a 750 px column less 10 px
/// of padding each side) in Source Code Pro at 14 px, 8.4 px a character: 86
/// columns, measured in headless Chromium at 1280 and 1920 px wide (an 87-column
/// line scrolls). 84 keeps two spare, for fonts that fall back to a wider face.
/// `check-book` holds every code line the book shows to it, and rustfmt holds the
/// code in solutions/ and chapters/ to it (their rustfmt.toml).
pub const BOOK_COLUMNS: usize = 84;

/// How much a skeleton's TODOs give away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Level 3: the calls and their arguments. The skeleton in chapters/.
    Guided,
    /// Level 1: the goal and what it changes; `hint` gives the rest on request.
    Challenge,
}

/// The hint levels: the goal, then the system calls, then their arguments.
pub const LEVELS: usize = 3;

/// What each level is, as `hint` names it.
pub const LEVEL_NAMES: [&str; LEVELS] = ["the goal", "the system calls", "the arguments"];

/// One exercise: the anchor's name and its hint lines, level by level (index 0 is
/// level 1, the goal).
#[derive(Debug, Clone, PartialEq)]
pub struct Exercise {
    pub name: String,
    pub levels: [Vec<String>; LEVELS],
}

impl Exercise {
    /// The guided hint: level 3, what the TODO in chapters/ says.
    pub fn hint(&self) -> &[String] {
        &self.levels[LEVELS - 1]
    }
}

fn anchor_start(line: &str) -> Option<&str> {
    line.trim().strip_prefix("// ANCHOR: ").map(str::trim)
}

fn anchor_end(line: &str) -> Option<&str> {
    line.trim().strip_prefix("// ANCHOR_END: ").map(str::trim)
}

/// The text of a `//>` hint line of any level, without the marker and the one space
/// after it.
pub fn hint_line(line: &str) -> Option<&str> {
    hint_level(line).map(|(_, text)| text)
}

/// A hint line's level (`//>1`, `//>2`, or plain `//>` for 3) and its text.
pub fn hint_level(line: &str) -> Option<(usize, &str)> {
    let rest = line.trim_start().strip_prefix("//>")?;
    let (level, text) = match rest.as_bytes().first() {
        Some(b'1') => (1, &rest[1..]),
        Some(b'2') => (2, &rest[1..]),
        _ => (LEVELS, rest),
    };
    Some((level, text.strip_prefix(' ').unwrap_or(text)))
}

/// The run of hint lines that starts at `lines[i]`, and the anchor it stands above.
fn hints_at<'a>(lines: &[&'a str], i: usize) -> Option<(Vec<(usize, &'a str)>, &'a str)> {
    let hints: Vec<(usize, &str)> = lines[i..].iter().map_while(|l| hint_level(l)).collect();
    if hints.is_empty() {
        return None;
    }
    let name = lines.get(i + hints.len()).and_then(|l| anchor_start(l))?;
    Some((hints, name))
}

/// The lines of one level.
fn level(hints: &[(usize, &str)], level: usize) -> Vec<String> {
    hints
        .iter()
        .filter(|(l, _)| *l == level)
        .map(|(_, text)| text.to_string())
        .collect()
}

/// The exercises of a solution, in order.
pub fn exercises(solution: &str) -> Vec<Exercise> {
    let lines: Vec<&str> = solution.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        match hints_at(&lines, i) {
            Some((hints, name)) => {
                found.push(Exercise {
                    name: name.to_string(),
                    levels: [level(&hints, 1), level(&hints, 2), level(&hints, 3)],
                });
                i += hints.len();
            }
            None => i += 1,
        }
    }
    found
}

/// The hints as a `// TODO:` comment at `indent`, rewrapped to [`BOOK_COLUMNS`].
///
/// Consecutive hint lines are one paragraph; a line that starts with `- ` starts a
/// list item, and lines indented by two spaces continue it; an empty hint line is a
/// paragraph break. Words are never split, nor is a `code span` in backticks unless
/// it is wider than a line.
pub fn todo_comment(indent: &str, hints: &[&str]) -> Vec<String> {
    // Each block: its first line's lead ("" or "- ") and its words.
    let mut blocks: Vec<(&str, Vec<String>)> = Vec::new();
    let mut in_item = false;
    for hint in hints {
        if hint.trim().is_empty() {
            blocks.push(("", Vec::new()));
            in_item = false;
        } else if let Some(item) = hint.strip_prefix("- ") {
            blocks.push(("- ", words(item)));
            in_item = true;
        } else if in_item && hint.starts_with("  ") {
            if let Some((_, item)) = blocks.last_mut() {
                item.extend(words(hint));
            }
        } else if let Some((_, paragraph)) = blocks.last_mut()
            && !in_item
            && !paragraph.is_empty()
        {
            paragraph.extend(words(hint));
        } else {
            blocks.push(("", words(hint)));
            in_item = false;
        }
    }
    let mut out: Vec<String> = Vec::new();
    for (lead, words) in blocks {
        if words.is_empty() {
            out.push(format!("{indent}//"));
            continue;
        }
        let hang = " ".repeat(lead.len());
        // A code span wider than a whole line is split at its spaces after all.
        let room = BOOK_COLUMNS.saturating_sub(indent.len() + "// TODO: ".len() + hang.len());
        let words = words.into_iter().flat_map(|word| {
            if word.chars().count() > room {
                word.split(' ').map(String::from).collect()
            } else {
                vec![word]
            }
        });
        let mut line = String::new();
        for word in words {
            if line.is_empty() {
                let prefix = if out.is_empty() {
                    "// TODO: "
                } else {
                    "//       "
                };
                line = format!("{indent}{prefix}{lead}{word}");
            } else if line.chars().count() + 1 + word.chars().count() > BOOK_COLUMNS {
                out.push(std::mem::replace(
                    &mut line,
                    format!("{indent}//       {hang}{word}"),
                ));
            } else {
                line.push(' ');
                line.push_str(&word);
            }
        }
        out.push(line);
    }
    out
}

/// The words of a hint line; a span in backticks stays one word.
fn words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut in_code = false;
    for piece in text.split(' ').filter(|p| !p.is_empty()) {
        match words.last_mut() {
            Some(last) if in_code => {
                last.push(' ');
                last.push_str(piece);
            }
            _ => words.push(piece.to_string()),
        }
        if piece.matches('`').count() % 2 == 1 {
            in_code = !in_code;
        }
    }
    words
}

/// The `todo!()` that stands for the learner's code: a statement, so that it may
/// stand in the middle of a function too, laid out as rustfmt lays out a call whose
/// argument does not fit on one line. The message is split with `\` continuations
/// (the string is the same, without the line breaks) to fit [`BOOK_COLUMNS`].
fn todo_call(indent: &str, number: u8, name: &str, file: &str) -> Vec<String> {
    let message = format!(
        "step {number:02}, `{name}`: not written yet. Read the TODO above this line in \
         chapters/{file}, or run `cargo run -- hint {number}`"
    );
    let mut out = vec![format!("{indent}todo!(")];
    let mut line = format!("{indent}    \"");
    let mut first = true;
    for word in message.split(' ') {
        // Room for the word, a space, and the ` \` or `"` that ends the line.
        if !first && line.chars().count() + 1 + word.chars().count() + 2 > BOOK_COLUMNS {
            out.push(format!("{line} \\"));
            line = format!("{indent}     ");
            first = true;
        }
        if !first {
            line.push(' ');
        }
        line.push_str(word);
        first = false;
    }
    out.push(format!("{line}\""));
    out.push(format!("{indent});"));
    out
}

/// The learner's skeleton for step `number`, whose chapter file is `file`: the
/// guided one, as in chapters/.
pub fn skeleton(number: u8, file: &str, solution: &str) -> Result<String> {
    skeleton_of(Tier::Guided, number, file, solution)
}

/// The skeleton of either tier. The two differ only in their TODO comments.
pub fn skeleton_of(tier: Tier, number: u8, file: &str, solution: &str) -> Result<String> {
    let lines: Vec<&str> = solution.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut header_done = false;
    while i < lines.len() {
        let line = lines[i];
        if !header_done && !line.starts_with("//!") {
            header_done = true;
            out.push(match tier {
                Tier::Guided => format!(
                    "\n// Your copy of step {number:02}. Replace each todo!() with your code, then run\n\
                     // `cargo run -- check {number}`. (Generated from solutions/{file}:\n\
                     // `cargo run -- reset {number}` brings this version back.)"
                ),
                Tier::Challenge => format!(
                    "\n// Your copy of step {number:02}, the challenge: each TODO says only what to\n\
                     // achieve. `cargo run -- hint {number}` tells one level more each time (the\n\
                     // system calls, then their arguments); `cargo run -- check {number}` tests it.\n\
                     // (`cargo run -- reset {number}` brings the guided version back.)"
                ),
            });
            if !line.is_empty() {
                out.push(String::new());
            }
        }
        if hint_line(line).is_none() {
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let Some((hints, name)) = hints_at(&lines, i) else {
            bail!(
                "solutions/{file}:{}: `//>` hint lines must stand right above the \
                 `// ANCHOR:` of their exercise",
                i + 1
            );
        };
        let start = i + hints.len();
        let Some(end) = lines[start..]
            .iter()
            .position(|l| anchor_end(l) == Some(name))
        else {
            bail!("solutions/{file}: anchor `{name}` has no `// ANCHOR_END: {name}`");
        };
        let anchor = lines[start];
        let indent: String = anchor.chars().take_while(|c| c.is_whitespace()).collect();
        out.push(anchor.to_string());
        let shown = level(&hints, if tier == Tier::Guided { LEVELS } else { 1 });
        if shown.is_empty() {
            bail!(
                "solutions/{file}: exercise `{name}` has no {} hint lines (`{}`)",
                if tier == Tier::Guided {
                    "guided"
                } else {
                    "goal"
                },
                if tier == Tier::Guided {
                    "//> "
                } else {
                    "//>1 "
                }
            );
        }
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        out.extend(todo_comment(&indent, &shown));
        out.extend(todo_call(&indent, number, name, file));
        out.push(lines[start + end].to_string());
        i = start + end + 1;
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOLUTION: &str = "//! Step 09: a test.\n\nfn f() -> u8 {\n    //>1 the answer\n    //>2 a literal\n    //> return 7,\n    //> the answer\n    // ANCHOR: body\n    7\n    // ANCHOR_END: body\n}\n\n// ANCHOR: shown\nfn g() {}\n// ANCHOR_END: shown\n";

    #[test]
    fn finds_only_regions_with_hints() {
        assert_eq!(
            exercises(SOLUTION),
            vec![Exercise {
                name: "body".into(),
                levels: [
                    vec!["the answer".into()],
                    vec!["a literal".into()],
                    vec!["return 7,".into(), "the answer".into()]
                ],
            }]
        );
    }

    #[test]
    fn the_challenge_skeleton_shows_only_the_goal() {
        let challenge = skeleton_of(Tier::Challenge, 9, "09-test.rs", SOLUTION).unwrap();
        assert!(
            challenge.contains("    // TODO: the answer\n    todo!("),
            "{challenge}"
        );
        assert!(!challenge.contains("return 7"), "{challenge}");
        assert!(!challenge.contains("a literal"), "{challenge}");
    }

    /// What the compiler sees: every line with its comments taken out.
    fn code_only(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| match l.find("//") {
                Some(i) if !l[..i].contains('"') => l[..i].trim_end().to_string(),
                _ => l.trim_end().to_string(),
            })
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The challenge tier, checked as the guided one is: every exercise of every
    /// step has all three levels, and the challenge skeleton is the guided one
    /// with other comments, so that it compiles wherever the guided one does (the
    /// guided ones are compiled in chapters/, and tests/skeletons.rs runs them).
    #[test]
    fn every_step_has_a_challenge_tier_that_compiles_as_the_guided_one() {
        for step in crate::workshop::steps::STEPS {
            for exercise in exercises(step.solution) {
                for (i, lines) in exercise.levels.iter().enumerate() {
                    assert!(
                        !lines.is_empty(),
                        "solutions/{}: exercise `{}` has no level {} hint ({})",
                        step.file(),
                        exercise.name,
                        i + 1,
                        LEVEL_NAMES[i]
                    );
                }
            }
            let guided = skeleton(step.number, &step.file(), step.solution).unwrap();
            let challenge =
                skeleton_of(Tier::Challenge, step.number, &step.file(), step.solution).unwrap();
            assert_eq!(
                code_only(&guided),
                code_only(&challenge),
                "step {}",
                step.number
            );
        }
    }

    #[test]
    fn turns_the_region_into_a_todo_and_keeps_the_rest() {
        let skeleton = skeleton(9, "09-test.rs", SOLUTION).unwrap();
        insta::assert_snapshot!(skeleton);
    }

    #[test]
    fn rewraps_the_hints_to_the_book_and_keeps_items_and_paragraphs() {
        let hints = [
            "Declare two ioctls with nix's macros, then call them, each with a context that",
            "names the ioctl:",
            "- KVM_CREATE_VM is _IO(KVMIO, 0x01) and takes the machine type, 0 on x86:",
            "  `ioctl_write_int_bad!(kvm_create_vm, request_code_none!(KVMIO, 0x01));`",
            "",
            "Each call is unsafe.",
        ];
        let comment = todo_comment("    ", &hints);
        for line in &comment {
            assert!(line.chars().count() <= BOOK_COLUMNS, "too wide: {line}");
        }
        assert_eq!(
            comment,
            [
                "    // TODO: Declare two ioctls with nix's macros, then call them, each with a",
                "    //       context that names the ioctl:",
                "    //       - KVM_CREATE_VM is _IO(KVMIO, 0x01) and takes the machine type, 0 on",
                "    //         x86: `ioctl_write_int_bad!(kvm_create_vm, request_code_none!(KVMIO,",
                "    //         0x01));`",
                "    //",
                "    //       Each call is unsafe.",
            ]
        );
    }

    #[test]
    fn the_todo_message_fits_the_book_and_reads_as_one_line() {
        let call = todo_call("        ", 5, "drop_capabilities", "05-hardening.rs");
        for line in &call {
            assert!(line.chars().count() <= BOOK_COLUMNS, "too wide: {line}");
        }
        let literal: String = call[1..call.len() - 1]
            .iter()
            .map(|l| l.trim_start().trim_end_matches('\\'))
            .collect();
        assert_eq!(
            literal,
            "\"step 05, `drop_capabilities`: not written yet. Read the TODO above this line \
             in chapters/05-hardening.rs, or run `cargo run -- hint 5`\""
        );
    }

    #[test]
    fn hints_away_from_an_anchor_are_an_error() {
        let err = skeleton(9, "09-test.rs", "fn f() {\n    //> hint\n    f();\n}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "solutions/09-test.rs:2: `//>` hint lines must stand right above the \
             `// ANCHOR:` of their exercise"
        );
    }

    #[test]
    fn an_unclosed_region_is_an_error() {
        let err = skeleton(9, "09-test.rs", "//> hint\n// ANCHOR: x\ncode\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "solutions/09-test.rs: anchor `x` has no `// ANCHOR_END: x`"
        );
    }
}
