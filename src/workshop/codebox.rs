//! `cargo run -- dev check-book`'s look at the code boxes: every line a page shows in a code block,
//! written in the page or included from a file, must fit the box without scrolling,
//! and no exercise's `//>` hint line may show.
//!
//! The box fits 86 columns of mdBook's default theme at desktop width (measured in
//! headless Chromium, see [`BOOK_COLUMNS`]); lines may have 84, and 5 fewer for
//! each list the block stands in (a list indents it by 40 px: in one, the box was
//! measured to fit 82 columns, in two 77). A program's output
//! included from a snapshot is shown as the program printed it, however wide: it
//! must stand in a ```` ```text,output ```` block, which the book's theme wraps
//! like a terminal would (book/theme/output.js), so that it does not scroll either.

use crate::workshop::exercise::{BOOK_COLUMNS, hint_line};
use anyhow::{Context, Result};
use std::path::Path;

/// The comment lines of the learner's files (`*.rs` in `dir`, chapters/) wider
/// than a code box: the learner reads them in their editor and the book shows
/// them in its boxes, and rustfmt, which keeps the code to the box, leaves comments
/// as they are written.
pub fn wide_comments(dir: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let text = std::fs::read_to_string(file)?;
        for (n, line) in text.lines().enumerate() {
            let width = line.chars().count();
            if line.trim_start().starts_with("//") && width > BOOK_COLUMNS {
                problems.push(format!(
                    "{}:{}: a comment of {width} columns: wrap it in solutions/ at {}",
                    file.display(),
                    n + 1,
                    BOOK_COLUMNS
                ));
            }
        }
    }
    Ok(problems)
}

/// The lines of every code block in the pages of `src` that are too wide or hints,
/// and how many code lines were looked at.
pub fn check(src: &Path) -> Result<(usize, Vec<String>)> {
    let mut problems = Vec::new();
    let mut count = 0;
    let mut pages: Vec<_> = std::fs::read_dir(src)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    pages.sort();
    for page in pages {
        if page.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let name = page.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(&page)?;
        let lines: Vec<&str> = text.lines().collect();
        let mut fence: Option<Fence> = None;
        for (n, line) in lines.iter().enumerate() {
            let at = format!("{name}:{}", n + 1);
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                let indent = line.len() - trimmed.len();
                fence = match fence {
                    None => Some(Fence::new(info, indent, list_depth(&lines[..n], indent))),
                    Some(_) => None,
                };
                continue;
            }
            let Some(fence) = &fence else { continue };
            // A block in a list item is indented as a whole; the box shows it without.
            let line = strip_indent(line, fence.indent);
            let shown = match include_in(line) {
                None => vec![(line.to_string(), None)],
                Some((before, target, after)) => {
                    let (from, lines) = included(src, target)
                        .with_context(|| format!("{at}: {{{{#include {target}}}}}"))?;
                    if from.contains("/snapshots/") && !fence.output {
                        problems.push(format!(
                            "{at}: {from} is a program's output: show it in a \
                             ```text,output block, which wraps instead of scrolling"
                        ));
                    }
                    let last = lines.len().saturating_sub(1);
                    lines
                        .into_iter()
                        .enumerate()
                        .map(|(i, l)| {
                            let l = match i {
                                0 if last == 0 => format!("{before}{l}{after}"),
                                0 => format!("{before}{l}"),
                                i if i == last => format!("{l}{after}"),
                                _ => l,
                            };
                            (l, Some(from.clone()))
                        })
                        .collect()
                }
            };
            for (line, from) in shown {
                if fence.rust && is_hidden_rust_line(&line) {
                    continue;
                }
                count += 1;
                let source = from.map(|f| format!(" (from {f})")).unwrap_or_default();
                if hint_line(&line).is_some() {
                    problems.push(format!(
                        "{at}: shows an exercise's `//>` hint line{source}: the hints stand \
                         above the anchor, outside what a page includes \
                         (src/workshop/exercise.rs)\n    {}",
                        line.trim()
                    ));
                }
                let width = columns(&line);
                let fits = BOOK_COLUMNS - LIST_COLUMNS * fence.lists;
                if width > fits && !fence.output {
                    let inside = match fence.lists {
                        0 => String::new(),
                        1 => " in a list".into(),
                        n => format!(" in {n} lists"),
                    };
                    problems.push(format!(
                        "{at}: a code line of {width} columns{source} scrolls: the book's \
                         code box{inside} fits {fits}\n    {}",
                        line.trim()
                    ));
                }
            }
        }
    }
    Ok((count, problems))
}

/// The columns a list takes from the code box: it indents its items by 40 px, 4.8
/// columns.
const LIST_COLUMNS: usize = 5;

/// An open code fence: how far it is indented, in how many lists it stands, and
/// what its info string says.
struct Fence {
    indent: usize,
    lists: usize,
    rust: bool,
    output: bool,
}

impl Fence {
    fn new(info: &str, indent: usize, lists: usize) -> Fence {
        let mut words = info.split(',').map(str::trim);
        let rust = words.next() == Some("rust");
        Fence {
            indent,
            lists,
            rust,
            output: words.any(|w| w == "output"),
        }
    }
}

/// In how many lists a block indented by `indent` stands, going by the list items
/// above it (`before`): an item whose text starts at `indent` holds it, and that
/// item stands in the lists that hold its own marker.
fn list_depth(before: &[&str], indent: usize) -> usize {
    if indent == 0 {
        return 0;
    }
    for line in before.iter().rev() {
        let trimmed = line.trim_start();
        let at = line.len() - trimmed.len();
        let marker = ["- ", "* ", "+ "]
            .iter()
            .find(|m| trimmed.starts_with(**m))
            .map(|m| m.len())
            .or_else(|| {
                let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
                let dot =
                    trimmed[digits..].starts_with(". ") || trimmed[digits..].starts_with(") ");
                (digits > 0 && dot).then_some(digits + 2)
            });
        match marker {
            Some(len) if at < indent && at + len == indent => {
                return 1 + list_depth(before, at);
            }
            // Text at the left margin ends every list.
            _ if at == 0 && !trimmed.is_empty() && marker.is_none() => break,
            _ => {}
        }
    }
    // Indented, but under no item we can see: count it as one list, to be safe.
    1
}

fn strip_indent(line: &str, indent: usize) -> &str {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    &line[spaces.min(indent)..]
}

/// mdBook hides a Rust line that starts with `# ` (or is `#` alone) until the reader
/// asks for it.
fn is_hidden_rust_line(line: &str) -> bool {
    let t = line.trim_start();
    t == "#" || t.starts_with("# ")
}

/// The columns a line takes in the box: one a character, tabs to the next 8.
fn columns(line: &str) -> usize {
    line.chars().fold(
        0,
        |col, c| if c == '\t' { col / 8 * 8 + 8 } else { col + 1 },
    )
}

/// An include on this line: the text before it, its target, the text after it.
fn include_in(line: &str) -> Option<(&str, &str, &str)> {
    let start = line.find("{{#")?;
    let body_end = start + line[start..].find("}}")?;
    let body = &line[start + 3..body_end];
    let target = body
        .strip_prefix("include ")
        .or_else(|| body.strip_prefix("rustdoc_include "))?;
    Some((&line[..start], target.trim(), &line[body_end + 2..]))
}

/// The lines an include shows, as mdBook takes them, and the file they come from
/// (relative to the repository).
fn included(src: &Path, target: &str) -> Result<(String, Vec<String>)> {
    let (file, selector) = match target.split_once(':') {
        Some((f, s)) => (f, Some(s)),
        None => (target, None),
    };
    let path = src.join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let shown: Vec<&str> = match selector {
        None => lines,
        Some(s) if s.chars().all(|c| c.is_ascii_digit() || c == ':') => {
            // `N` is line N; `N:` from line N on; `:M` up to line M; `N:M` between.
            let (from, to) = match s.split_once(':') {
                None => (s, s),
                Some(range) => range,
            };
            let from = from.parse::<usize>().map_or(0, |n| n.saturating_sub(1));
            let to = to.parse::<usize>().unwrap_or(lines.len()).min(lines.len());
            lines.get(from..to).unwrap_or_default().to_vec()
        }
        Some(anchor) => anchored(&lines, anchor),
    };
    let from = file.trim_start_matches("../").to_string();
    let from = match selector {
        Some(s) => format!("{from}:{s}"),
        None => from,
    };
    Ok((from, shown.into_iter().map(String::from).collect()))
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name`, without the lines of
/// other anchors: mdBook's rule.
fn anchored<'a>(lines: &[&'a str], name: &str) -> Vec<&'a str> {
    let mut shown = Vec::new();
    let mut inside = false;
    for line in lines {
        if !inside {
            inside = anchor_named(line, "ANCHOR:") == Some(name);
        } else if anchor_named(line, "ANCHOR_END:") == Some(name) {
            break;
        } else if anchor_named(line, "ANCHOR:").is_none()
            && anchor_named(line, "ANCHOR_END:").is_none()
        {
            shown.push(*line);
        }
    }
    shown
}

/// The name after `marker` on this line, as mdBook's pattern `MARKER\s*([\w_-]+)`
/// finds it.
fn anchor_named<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line[line.find(marker)? + marker.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_an_anchor_as_mdbook_does() {
        let file = [
            "// ANCHOR: outer",
            "a",
            "// ANCHOR: inner",
            "b",
            "// ANCHOR_END: inner",
            "// ANCHOR: outer_rest",
            "c",
            "// ANCHOR_END: outer",
        ];
        assert_eq!(anchored(&file, "outer"), ["a", "b", "c"]);
        assert_eq!(anchored(&file, "inner"), ["b"]);
        assert_eq!(anchored(&file, "outer_rest"), ["c"]);
    }

    #[test]
    fn finds_the_lists_a_block_stands_in() {
        let page = ["Text.", "", "1. item", "   - nested", "", "     more", ""];
        assert_eq!(list_depth(&page, 0), 0);
        assert_eq!(list_depth(&page[..3], 3), 1);
        assert_eq!(list_depth(&page, 5), 2);
        assert_eq!(list_depth(&["- item", "  text"], 2), 1);
    }

    #[test]
    fn counts_columns_and_hidden_lines() {
        assert_eq!(columns("├── bin"), 7);
        assert_eq!(columns("\tx"), 9);
        assert!(is_hidden_rust_line("    # use std::fs;"));
        assert!(!is_hidden_rust_line("#[derive(Debug)]"));
    }
}
