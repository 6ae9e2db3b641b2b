//! `key: value` lines: the format of the probe's report, of a runtime's `--stats`,
//! and of the probe's timers. A writer and its readers share the keys: each set is
//! an enum made with [`keys!`](crate::keys), so a renamed line is a compile error in
//! every reader, never a silent empty value, and a line that is missing is `None`
//! (or, in a test, a failure that says so), never a wall that stands.

use std::fmt;

/// A key of some `key: value` output.
pub trait Key: Copy + fmt::Debug {
    /// The key as it is written, before the `: `.
    fn text(self) -> &'static str;
}

/// An enum of keys, each with its text, and their order: `ALL`.
#[macro_export]
macro_rules! keys {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// Every key, in the order the writer prints them.
            pub const ALL: &[$name] = &[$($name::$variant,)*];
        }

        impl $crate::lines::Key for $name {
            fn text(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }
    };
}

/// One line, as a writer prints it: `key: value`.
pub fn line<K: Key>(key: K, value: impl fmt::Display) -> String {
    format!("{}: {value}", key.text())
}

/// Lines read back, in order. `## section` headings, and lines without `: `, are
/// not lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lines {
    pub lines: Vec<(String, String)>,
}

impl Lines {
    pub fn parse(text: &str) -> Lines {
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Lines { lines }
    }

    /// The value of `key`, if there is such a line.
    pub fn get<K: Key>(&self, key: K) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key.text())
            .map(|(_, v)| v.as_str())
    }
}

/// `lines[key]`: the value, for readers to whom a missing line is a bug (the tests).
/// Panics with the line it looked for and the lines it found.
impl<K: Key> std::ops::Index<K> for Lines {
    type Output = str;

    fn index(&self, key: K) -> &str {
        self.get(key).unwrap_or_else(|| {
            let found: Vec<&str> = self.lines.iter().map(|(k, _)| k.as_str()).collect();
            panic!("no `{}:` line; the lines were: {found:?}", key.text())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::keys! {
        enum Test {
            Pid = "pid",
            Root = "root",
        }
    }

    #[test]
    fn a_line_is_found_by_its_key_and_a_missing_one_is_none() {
        let lines = Lines::parse("## who am I\npid: 2\nnot a line\n");
        assert_eq!(lines.get(Test::Pid), Some("2"));
        assert_eq!(&lines[Test::Pid], "2");
        assert_eq!(lines.get(Test::Root), None);
        assert_eq!(line(Test::Root, "bin dev"), "root: bin dev");
        assert_eq!(Test::ALL, &[Test::Pid, Test::Root]);
    }

    #[test]
    #[should_panic(expected = "no `root:` line")]
    fn indexing_a_missing_line_says_which() {
        let _ = &Lines::parse("pid: 2\n")[Test::Root];
    }
}
