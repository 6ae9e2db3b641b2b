//! `cargo run -- dev check-duplicates`: finished code exists once. Every function
//! body in solutions/, src/ and bench/ is compared with every other, as tokens
//! without comments or layout; a body of some size found twice fails the check.
//! chapters/ is left out: it is generated from solutions/, its one allowed twin.

use crate::cargo::repo;
use anyhow::{Context, Result, bail};
use isolab::workshop::duplicates::{function_bodies, strip_comments};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Bodies shorter than this (in characters, without spaces and comments) are too
/// small to count: `Ok(())`, a getter, a one-line delegation.
const SMALLEST: usize = 120;

pub fn check_duplicates() -> Result<ExitCode> {
    let root = repo();
    let mut files = Vec::new();
    for dir in ["solutions", "src", "bench"] {
        collect(&root.join(dir), &mut files)?;
    }
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut count = 0;
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (name, line, body) in function_bodies(&strip_comments(&text)) {
            count += 1;
            if body.len() >= SMALLEST {
                seen.entry(body)
                    .or_default()
                    .push(format!("{rel}:{line} fn {name}"));
            }
        }
    }
    let twins: Vec<String> = seen
        .values()
        .filter(|places| places.len() > 1)
        .map(|places| places.join(" = "))
        .collect();
    if !twins.is_empty() {
        bail!(
            "{} function bodies are written twice (use the earlier step's own function, \
             through its module, instead):\n{}",
            twins.len(),
            twins.join("\n")
        );
    }
    println!("no function body of the {count} in solutions/, src/ and bench/ is written twice");
    Ok(ExitCode::SUCCESS)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}
