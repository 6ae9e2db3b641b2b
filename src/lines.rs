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

/// Text someone else chose (a guest's, a jailed VMM's), on one line: newlines and
/// every character a terminal would act on instead of showing
/// ([`acts_on_display`]) escaped as Rust writes them (`\n`, `\u{1b}`), so the
/// report stays one `key: value` line and the text cannot move the cursor, retitle
/// the window or reverse what follows it.
pub fn printable(text: &str) -> String {
    text.trim_end_matches('\n')
        .chars()
        .flat_map(|c| {
            if acts_on_display(c) {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Does a terminal or a text viewer do something with `c` other than show it? The
/// control characters (C0 with ESC, DEL, and C1 with its one-byte CSI), and the
/// invisible format characters that change how the text around them is shown: the
/// bidirectional overrides, embeddings and isolates that make a line read other
/// than its bytes ("Trojan Source", CVE-2021-42574), the zero-width characters,
/// the line and paragraph separators, the byte-order mark, and the characters a
/// terminal draws as nothing at all (the soft hyphen, the Hangul fillers, the tag
/// characters, the interlinear annotation marks), which hide text or make one name
/// look like another. The variation selectors pass: emoji need them.
pub fn acts_on_display(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{feff}'
                | '\u{e0000}'..='\u{e007f}'
        )
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
    fn printable_keeps_one_line() {
        assert_eq!(printable("Hello\n"), "Hello");
        assert_eq!(printable("a\nb\x07"), "a\\nb\\u{7}");
        assert_eq!(
            printable("\x1b]0;title\x07 \u{9b}2J"),
            "\\u{1b}]0;title\\u{7} \\u{9b}2J"
        );
    }

    /// A right-to-left override would show what follows it reversed; a zero-width
    /// space would hide a difference. Both are escaped, and ordinary text is not.
    #[test]
    fn printable_escapes_what_changes_how_text_is_shown() {
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(
            printable("x\u{200b}y\u{2066}z\u{feff}"),
            "x\\u{200b}y\\u{2066}z\\u{feff}"
        );
        assert_eq!(printable("héllo, 세계 ✓"), "héllo, 세계 ✓");
        // Characters drawn as nothing: a soft hyphen, a Hangul filler, a tag.
        assert_eq!(
            printable("H\u{ad}I\u{3164}N\u{e0041}"),
            "H\\u{ad}I\\u{3164}N\\u{e0041}"
        );
        // An emoji's variation selector is part of the picture, and passes.
        assert_eq!(printable("\u{2764}\u{fe0f}"), "\u{2764}\u{fe0f}");
    }

    #[test]
    #[should_panic(expected = "no `root:` line")]
    fn indexing_a_missing_line_says_which() {
        let _ = &Lines::parse("pid: 2\n")[Test::Root];
    }
}
