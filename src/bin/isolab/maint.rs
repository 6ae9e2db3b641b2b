//! Maintainer tasks: keep chapters/ in step with solutions/, the book's includes
//! pointing at code that exists, and the Korean book in step with the English.

use crate::cargo::repo;
use anyhow::{Context, Result, bail};
use isolab::workshop::steps::STEPS;
use std::process::ExitCode;

/// Regenerate the skeletons from solutions/: the learner's copies in chapters/, and
/// the book's in book/skeletons/, which the pages include (so that a page shows
/// the untouched exercise, never a learner's half-written code).
pub fn sync_chapters(check: bool) -> Result<ExitCode> {
    let mut stale = Vec::new();
    for step in STEPS {
        let skeleton =
            isolab::workshop::exercise::skeleton(step.number, &step.file(), step.solution)?;
        for dir in ["chapters", "book/skeletons"] {
            let path = repo().join(dir).join(step.file());
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current == skeleton {
                continue;
            }
            if check {
                stale.push(format!("{dir}/{}", step.file()));
            } else {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, &skeleton)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {dir}/{}", step.file());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "the skeletons are stale ({}): run `cargo run -- dev sync-chapters`",
            stale.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn check_book() -> Result<ExitCode> {
    let src = repo().join("book/src");
    let mut problems = Vec::new();
    let mut count = 0;
    // Every (file, anchor) an include names, to find the anchors nothing shows.
    let mut included: Vec<(std::path::PathBuf, String)> = Vec::new();
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let page = entry?.path();
        if page.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&page)?;
        // The Korean book translates Markdown, and mdbook-xgettext skips HTML: a
        // <summary>'s text must be a paragraph of its own, between blank lines.
        for (at, _) in text.match_indices("<summary>") {
            if !text[at..].starts_with("<summary>\n\n") {
                let line = text[..at].lines().count() + 1;
                problems.push(format!(
                    "{}:{line}: put a blank line after <summary> (and before \
                     </summary>), so that its text can be translated",
                    page.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
        for include in text.split("{{#").skip(1) {
            let Some(body) = include.split("}}").next() else {
                continue;
            };
            let Some(target) = body
                .strip_prefix("include ")
                .or_else(|| body.strip_prefix("rustdoc_include "))
            else {
                continue;
            };
            count += 1;
            let (file, anchor) = match target.trim().split_once(':') {
                Some((f, a)) if !a.chars().all(|c| c.is_ascii_digit() || c == ':') => (f, Some(a)),
                Some((f, _)) => (f, None),
                None => (target.trim(), None),
            };
            let path = page.parent().unwrap_or(&src).join(file);
            if let (Some(anchor), Ok(canonical)) = (anchor, path.canonicalize()) {
                included.push((canonical, anchor.to_string()));
            }
            let where_ = format!(
                "{}: {{{{#{body}}}}}",
                page.file_name().unwrap_or_default().to_string_lossy()
            );
            match std::fs::read_to_string(&path) {
                Err(_) => problems.push(format!("{where_}: no file {}", path.display())),
                Ok(content) => {
                    if let Some(anchor) = anchor {
                        let start = format!("ANCHOR: {anchor}");
                        if !content.lines().any(|l| l.trim_end().ends_with(&start)) {
                            problems.push(format!("{where_}: no anchor `{anchor}` in {file}"));
                        }
                        // An exercise shows only its TODO: the page must give the
                        // function's signature before it, or the learner cannot
                        // tell what goes in and what comes out.
                        if let Some(name) = exercise_function(&content, anchor) {
                            let at = text.find(&format!("{{{{#{body}}}}}")).unwrap_or(0);
                            let before = &text[..at];
                            let window = &before[before.len().saturating_sub(1500)..];
                            if !window.contains(&format!("`{name}("))
                                && !window.contains(&format!(" {name}("))
                                && !window.contains(&format!("::{name}("))
                            {
                                problems.push(format!(
                                    "{where_}: an exercise in `{name}`: give its signature \
                                     (`{name}(...) -> ...`) in the text before it"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    problems.extend(unshown_anchors(&included)?);
    let (links, mut broken) = check_links(&src)?;
    problems.append(&mut broken);
    let (images, mut broken) = check_svgs(&src.join("images"))?;
    problems.append(&mut broken);
    problems.extend(check_translation_links(&src)?);
    let (code_lines, mut too_wide) = isolab::workshop::codebox::check(&src)?;
    problems.append(&mut too_wide);
    problems.extend(isolab::workshop::codebox::wide_comments(
        &repo().join("chapters"),
    )?);
    if !problems.is_empty() {
        bail!(
            "{} problem(s) in the book:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    println!(
        "all {count} includes and {links} links in book/src resolve, its {images} SVG diagrams are well formed, \
         and its {code_lines} code lines fit the code box"
    );
    Ok(ExitCode::SUCCESS)
}

/// The function an exercise `anchor` of a skeleton sits in, if it is an exercise (a
/// TODO follows the anchor line): the nearest `fn NAME` above it.
fn exercise_function(content: &str, anchor: &str) -> Option<String> {
    let lines: Vec<&str> = content.lines().collect();
    let start = format!("// ANCHOR: {anchor}");
    let at = lines.iter().position(|l| l.trim() == start)?;
    if !lines.get(at + 1)?.trim_start().starts_with("// TODO") {
        return None;
    }
    lines[..at].iter().rev().find_map(|l| {
        let rest = l.split_once("fn ")?.1;
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty() && !l.trim_start().starts_with("//")).then_some(name)
    })
}

/// Anchors in the code that no page includes: a region marked for the book that the
/// book never shows. An exercise's anchor counts as shown when either twin is (the
/// skeleton in chapters/ or the reference in solutions/).
fn unshown_anchors(included: &[(std::path::PathBuf, String)]) -> Result<Vec<String>> {
    let root = repo().canonicalize()?;
    let twin = |path: &std::path::Path| -> std::path::PathBuf {
        let rel = path.strip_prefix(&root).unwrap_or(path);
        let mut parts = rel.components();
        match parts
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
        {
            Some(d) if d == "chapters" => root.join("solutions").join(parts.as_path()),
            Some(d) if d == "book" && rel.starts_with("book/skeletons") => root
                .join("solutions")
                .join(rel.strip_prefix("book/skeletons").unwrap_or(rel)),
            Some(d) if d == "solutions" => root.join("chapters").join(parts.as_path()),
            _ => path.to_path_buf(),
        }
    };
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in ["solutions", "src"] {
        collect_rust_files(&root.join(dir), &mut files)?;
    }
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for line in text.lines() {
            let Some(anchor) = line.trim().strip_prefix("// ANCHOR: ") else {
                continue;
            };
            let anchor = anchor.trim();
            let shown = included
                .iter()
                .any(|(f, a)| a == anchor && (*f == file || twin(f) == file));
            if !shown {
                let rel = file.strip_prefix(&root).unwrap_or(&file);
                problems.push(format!(
                    "{}: anchor `{anchor}` is not included by any page (show it, or remove the anchor)",
                    rel.display()
                ));
            }
        }
    }
    Ok(problems)
}

fn collect_rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.canonicalize()?);
        }
    }
    Ok(())
}

/// Every link from a page to another page or an image, and every page SUMMARY.md
/// lists, must exist; and every page must be in SUMMARY.md. Links to other sites
/// are not fetched (the workshop runs offline).
fn check_links(src: &std::path::Path) -> Result<(usize, Vec<String>)> {
    let mut problems = Vec::new();
    let mut count = 0;
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).context("reading SUMMARY.md")?;
    for entry in std::fs::read_dir(src)? {
        let page = entry?.path();
        let name = page
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if page.extension().is_none_or(|e| e != "md") {
            continue;
        }
        if name != "SUMMARY.md" && !summary.contains(&format!("({name})")) {
            problems.push(format!("{name}: not listed in SUMMARY.md"));
        }
        let text = std::fs::read_to_string(&page)?;
        for piece in text.split("](").skip(1) {
            let Some(target) = piece.split(')').next() else {
                continue;
            };
            let target = target.split_whitespace().next().unwrap_or("");
            if target.is_empty()
                || target.starts_with('#')
                || target.contains("://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            count += 1;
            let file = target.split('#').next().unwrap_or(target);
            if !src.join(file).exists() {
                problems.push(format!("{name}: link to {target}, which does not exist"));
            }
        }
    }
    Ok((count, problems))
}

/// Every SVG diagram must be well formed, or browsers show nothing: each tag closed
/// in order, and a `<title>` for screen readers. And it must paint its own opaque
/// background first: a page shows it as an image, on whatever the reader's theme
/// puts behind it, and black lines on a transparent ground vanish on coal, navy or
/// ayu.
/// Every diagram in `dir` and its subdirectories (images/ko/ holds the Korean
/// book's): well formed, and painting its own background.
fn check_svgs(dir: &std::path::Path) -> Result<(usize, Vec<String>)> {
    let mut problems = Vec::new();
    let mut count = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            let (n, mut more) = check_svgs(&path)?;
            count += n;
            problems.append(&mut more);
            continue;
        }
        if path.extension().is_none_or(|e| e != "svg") {
            continue;
        }
        count += 1;
        let name = path
            .strip_prefix(
                dir.ancestors()
                    .find(|a| a.ends_with("images"))
                    .unwrap_or(dir),
            )
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path)?;
        if let Err(why) = svg_well_formed(&text).and_then(|()| svg_has_panel(&text)) {
            problems.push(format!("images/{name}: {why}"));
        }
    }
    Ok((count, problems))
}

/// The Korean book's pages are book/po/ko.po's translations: every image or page a
/// translation links to must exist too (a Korean diagram under images/ko/).
fn check_translation_links(src: &std::path::Path) -> Result<Vec<String>> {
    let po = src.parent().unwrap_or(src).join("po/ko.po");
    let Ok(text) = std::fs::read_to_string(&po) else {
        return Ok(Vec::new());
    };
    let mut problems = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        if !(line.starts_with("msgstr") || line.starts_with('"')) {
            continue;
        }
        for part in line.split("](").skip(1) {
            let target = part.split([')', ' ', '#', '"']).next().unwrap_or("");
            if target.is_empty()
                || target.contains("://")
                || !target.ends_with(".svg") && !target.ends_with(".md")
            {
                continue;
            }
            if !src.join(target).exists() {
                problems.push(format!(
                    "po/ko.po:{}: links to {target}, which does not exist",
                    line_no + 1
                ));
            }
        }
    }
    Ok(problems)
}

fn svg_well_formed(text: &str) -> std::result::Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("a comment is never closed")?;
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or("a tag is never closed")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        if tag.starts_with('/') {
            match open.pop() {
                Some(expected) if expected == name => {}
                Some(expected) => return Err(format!("</{name}> closes <{expected}>")),
                None => return Err(format!("</{name}> closes nothing")),
            }
        } else if !tag.ends_with('/') {
            open.push(name);
        }
    }
    if let Some(unclosed) = open.pop() {
        return Err(format!("<{unclosed}> is never closed"));
    }
    if !text.contains("<svg") || !text.contains("<title>") {
        return Err("not an <svg> with a <title>".into());
    }
    Ok(())
}

/// The first shape an SVG draws is a rectangle over all of it, filled: the panel
/// its own colours stand on, in every theme.
fn svg_has_panel(text: &str) -> std::result::Result<(), String> {
    const WANTED: &str = "its first shape must be a panel over the whole picture, such as \
                          <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>";
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[at..].split('"').next()?.to_string())
    };
    let mut rest = text;
    let mut hidden = 0; // inside <defs>, <style>, <title>, ...: not drawn where it stands
    let mut view_box = None;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.split_once("-->").map_or("", |(_, r)| r);
            continue;
        }
        let end = rest.find('>').ok_or("a tag is never closed")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        let not_drawn = matches!(name, "defs" | "style" | "title" | "desc" | "metadata");
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        } else if tag.starts_with('/') {
            hidden -= i32::from(not_drawn);
            continue;
        } else if name == "svg" {
            view_box = attr(tag, "viewBox");
            continue;
        } else if not_drawn || hidden > 0 {
            hidden += i32::from(not_drawn && !tag.ends_with('/'));
            continue;
        }
        // The first shape drawn.
        let size: Vec<String> = view_box
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        let covers = |name: &str, index: usize| {
            attr(tag, name).is_some_and(|v| v == "100%" || size.get(index) == Some(&v))
        };
        let at_origin = |name: &str| attr(tag, name).is_none_or(|v| v == "0");
        let filled = attr(tag, "fill").is_some_and(|f| f != "none" && f != "transparent");
        return if name == "rect"
            && at_origin("x")
            && at_origin("y")
            && covers("width", 2)
            && covers("height", 3)
            && filled
        {
            Ok(())
        } else {
            Err(WANTED.into())
        };
    }
    Err(WANTED.into())
}

/// The Korean book is the English one translated message by message (gettext, with
/// mdbook-i18n-helpers): extract the English text into a template, merge it into
/// book/po/ko.po, and count what is left to do. `check` works on a copy and fails
/// unless every message is translated and none is fuzzy (changed in English since).
pub fn translation(check: bool) -> Result<ExitCode> {
    use std::process::Command;
    let book = repo().join("book");
    let scratch = tempfile::Builder::new().prefix("isolab-po-").tempdir()?;
    let out = Command::new("mdbook")
        .arg("build")
        .arg(&book)
        .arg("-d")
        .arg(scratch.path())
        .env(
            "MDBOOK_OUTPUT",
            r#"{"xgettext": {"pot-file": "messages.pot", "granularity": 0}}"#,
        )
        .output()
        .context("running mdbook (cargo install mdbook@0.5.4 mdbook-i18n-helpers@0.4.0)")?;
    if !out.status.success() {
        bail!(
            "mdbook could not extract the book's text ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let template = scratch.path().join("messages.pot");
    let po = book.join("po/ko.po");
    let merged = if check {
        scratch.path().join("ko.po")
    } else {
        std::fs::copy(&template, book.join("po/messages.pot"))?;
        po.clone()
    };
    // msgmerge wraps at a width in characters under a UTF-8 locale and in bytes
    // under the C one: fix the locale, so that every machine wraps ko.po alike.
    let status = Command::new("msgmerge")
        .env("LC_ALL", "C.UTF-8")
        .args(["--quiet", "--width=80", "--output-file"])
        .arg(&merged)
        .arg(&po)
        .arg(&template)
        .status()
        .context("running msgmerge (apt-get install gettext)")?;
    if !status.success() {
        bail!("msgmerge could not merge {} ({status})", po.display());
    }
    let out = Command::new("msgfmt")
        .args(["--check-format", "--statistics", "-o", "/dev/null"])
        .arg(&merged)
        .output()
        .context("running msgfmt")?;
    let stats = String::from_utf8_lossy(&out.stderr)
        .trim()
        .trim_end_matches('.')
        .to_string();
    if !out.status.success() {
        bail!("msgfmt finds {} broken: {stats}", po.display());
    }
    let count = |what: &str| -> u64 {
        stats
            .split([',', '.'])
            .find(|part| part.contains(what))
            .and_then(|part| part.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let (untranslated, fuzzy) = (count("untranslated"), count("fuzzy"));
    if check && untranslated + fuzzy > 0 {
        bail!(
            "the Korean book is behind the English one: {stats}. Run `cargo run -- dev \
             translation`, then translate the new and fuzzy messages in book/po/ko.po \
             (see book/po/README.md)"
        );
    }
    println!("book/po/ko.po: {stats}");
    Ok(ExitCode::SUCCESS)
}

/// The Korean book's title: book.toml's is English, and mdbook-gettext translates
/// pages, not the title.
const KOREAN_TITLE: &str = "isolab: 격리를 한 겹씩";

/// `isolab book`: both books, the English one into book/book and the Korean one
/// into book/book/ko (in that order: an mdbook build empties its directory).
pub fn build_books() -> Result<ExitCode> {
    use std::process::Command;
    let book = repo().join("book");
    let out = book.join("book");
    for (language, dir) in [("en", out.clone()), ("ko", out.join("ko"))] {
        let mut cmd = Command::new("mdbook");
        cmd.arg("build").arg(&book).arg("-d").arg(&dir);
        if language == "ko" {
            if which("mdbook-gettext").is_none() {
                bail!(
                    "the Korean book needs mdbook-gettext: cargo install \
                     mdbook-i18n-helpers@0.4.0"
                );
            }
            cmd.env("MDBOOK_BOOK__LANGUAGE", "ko")
                .env("MDBOOK_BOOK__TITLE", KOREAN_TITLE);
        }
        let status = cmd
            .status()
            .context("running mdbook (cargo install mdbook@0.5.4)")?;
        if !status.success() {
            bail!("mdbook build ({language}) failed ({status})");
        }
    }
    println!(
        "the books: {} and {}",
        out.join("index.html").display(),
        out.join("ko/index.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    isolab::vm::linux::kernel::which(program)
}
