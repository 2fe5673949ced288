//! Output conventions shared by every command.
//!
//! Exit status: 0 success, 1 the thing checked failed (lint errors, a failed
//! handshake), 2 devtls could not do its job (unusable input or arguments).

use std::io::Write;

use anstream::{eprintln, println};
use anstyle::{AnsiColor, Style};
use serde::Serialize;

/// An error that carries its own exit status (default for other errors: 2).
#[derive(Debug)]
pub struct Exit {
    /// The exit status.
    pub code: u8,
    /// What to print (empty: nothing more, the command already reported).
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit status for an error returned by a command.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<Exit>().map_or(2, |e| e.code)
}

/// Prints an error as `error: ...` on stderr, with its causes on one line.
pub fn error(err: &anyhow::Error) {
    if err
        .downcast_ref::<Exit>()
        .is_some_and(|e| e.message.is_empty())
    {
        return;
    }
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    eprintln!("{red}error:{red:#} {}", chain_text(err));
}

/// An error and its causes on one line, a cause left out when the text
/// before it already ends with it (errors that print their source, as
/// `path: source` does, would otherwise say it twice).
fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain().map(|c| c.to_string()) {
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Prints a warning on stderr.
pub fn warn(message: &str) {
    let yellow = Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold();
    eprintln!("{yellow}warning:{yellow:#} {message}");
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints a heading line in bold.
pub fn heading(text: &str) {
    let bold = Style::new().bold();
    println!("{bold}{text}{bold:#}");
}

/// A green check mark line.
pub fn ok(text: &str) {
    let green = Style::new().fg_color(Some(AnsiColor::Green.into()));
    println!("{green}✓{green:#} {text}");
}

/// Prints a library's text report, styling each kind of line.
pub fn lines(lines: &[devtls_net::doctor::Line]) {
    use devtls_net::doctor::Line;
    for line in lines {
        match line {
            Line::Heading(t) => heading(t),
            Line::Text(t) => println!("{t}"),
            Line::Warn(t) => warn(t),
            Line::Ok(t) => ok(t),
            Line::Blank => println!(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let fleet = devtls_fleet::Error::io(std::path::Path::new("fleet/x.lock"), io);
        let err = anyhow::Error::new(fleet).context("issuing");
        assert_eq!(chain_text(&err), "issuing: fleet/x.lock: gone");
    }
}
