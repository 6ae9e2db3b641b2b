//! Output for a person at a terminal.

/// Colour for a terminal, plain text for a pipe.
pub fn paint(text: &str, colour: &str) -> String {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        let code = match colour {
            "green" => "32",
            "red" => "31",
            "yellow" => "33",
            _ => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}
