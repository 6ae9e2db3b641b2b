//! Finding function bodies written twice: the check behind
//! `cargo run -- dev check-duplicates` (finished code exists once).

/// The text without `//` and `/* */` comments (string literals kept as they are).
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                let mut last = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Each `fn NAME ... { BODY }`: its name, its line, and its body with all
/// whitespace removed. Braces inside string and char literals do not count.
pub fn function_bodies(text: &str) -> Vec<(String, usize, String)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("fn ") {
        let start = at + offset;
        at = start + 3;
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if preceded_by_word {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body starts at the first `{` after the signature; a `;` first means a
        // declaration without a body.
        let Some(open) = text[at..].find(['{', ';']).map(|i| at + i) else {
            break;
        };
        if bytes[open] == b';' {
            continue;
        }
        let Some(close) = matching_brace(text, open) else {
            break;
        };
        let body: String = text[open + 1..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let line = text[..start].matches('\n').count() + 1;
        found.push((name, line, body));
        at = open + 1; // functions inside functions are bodies of their own
    }
    found
}

/// Where the `}` that closes the `{` at `open` is.
fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut chars = text[open..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            // A char literal such as '{' or '\''; a lifetime ('a) has no closing quote.
            '\'' => {
                let rest = &text[open + i + 1..];
                // The literal's inside: an escape (`\n`, `\'`, `\u{7}`) or one char.
                let len = match rest.strip_prefix('\\') {
                    Some(escaped) => escaped.get(1..)?.find('\'').map(|n| n + 2),
                    None => rest.chars().next().map(|c| c.len_utf8()),
                };
                if let Some(len) = len
                    && rest[len..].starts_with('\'')
                {
                    for _ in 0..=rest[..len].chars().count() {
                        chars.next();
                    }
                }
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_found_with_braces_in_strings_and_chars() {
        let text = "fn a() -> String {\n    format!(\"{{}} {}\", '{', '\\n', '\\'')\n}\nfn b(); fn c<'x>(s: &'x str) { s.len(); }\n";
        let bodies = function_bodies(&strip_comments(text));
        let names: Vec<&str> = bodies.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(bodies[0].2, "format!(\"{{}}{}\",'{','\\n','\\'')");
        assert_eq!(bodies[1].2, "s.len();");
    }

    #[test]
    fn comments_do_not_count() {
        let one = "fn x() { let a = 1; // one\n a }";
        let two = "fn y() { /* two */ let a = 1;\n\n a }";
        assert_eq!(
            function_bodies(&strip_comments(one))[0].2,
            function_bodies(&strip_comments(two))[0].2
        );
    }
}
