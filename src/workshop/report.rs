//! Reading a probe report back: `key: value` lines, `## section` headings ignored.

/// A probe report as ordered `(key, value)` pairs.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub lines: Vec<(String, String)>,
}

impl Report {
    pub fn parse(text: &str) -> Report {
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Report { lines }
    }

    /// The value for `key`, or "" when the report has no such line.
    pub fn get(&self, key: &str) -> &str {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}
