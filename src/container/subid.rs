//! The ranges of subordinate IDs a user may map: `/etc/subuid` and `/etc/subgid`,
//! one `NAME:START:COUNT` (or `UID:START:COUNT`) per line, as `useradd` writes them
//! and `newuidmap`/`newgidmap` check them.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// A range of host IDs handed to one user: `count` IDs from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The first range `file` gives the user `name` (or `uid`), if any.
pub fn find_in(text: &str, name: &str, uid: u32) -> Option<Range> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if who != name && who != uid.to_string() {
            return None;
        }
        Some(Range {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    })
}

/// The range `file` (/etc/subuid or /etc/subgid) gives this user, with at least
/// `needed` IDs in it; otherwise one line that says how to get one.
pub fn range_for(file: &Path, name: &str, uid: u32, needed: u32) -> Result<Range> {
    let remedy =
        format!("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}");
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist, so no user has a range of IDs to map: `{remedy}` gives {name} one",
            file.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let Some(range) = find_in(&text, name, uid) else {
        bail!(
            "{} gives {name} (uid {uid}) no range of IDs to map: `{remedy}` gives it one",
            file.display()
        );
    };
    if range.count < needed {
        bail!(
            "{} gives {name} only {} IDs, and mapping 0-65535 takes {needed}: `{remedy}` gives it enough",
            file.display(),
            range.count
        );
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_found_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:65536\n";
        assert_eq!(
            find_in(text, "alice", 1000),
            Some(Range {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(find_in(text, "bob", 1001).map(|r| r.start), Some(200000));
        assert_eq!(find_in(text, "carol", 1002), None);
    }

    #[test]
    fn a_missing_or_short_range_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        std::fs::write(&file, "alice:100000:1000\n").unwrap();
        let short = range_for(&file, "alice", 1000, 65535)
            .unwrap_err()
            .to_string();
        assert!(short.contains("only 1000 IDs"), "{short}");
        let none = range_for(&file, "bob", 1001, 65535)
            .unwrap_err()
            .to_string();
        assert!(none.contains("no range of IDs"), "{none}");
        assert!(none.contains("usermod --add-subuids"), "{none}");
        let missing = range_for(&dir.path().join("nope"), "bob", 1001, 1).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    }
}
