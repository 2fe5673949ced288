//! Interactive TLS clients (`gnutls-cli`) that hang up when their stdin
//! closes, so they must be kept connected until the reply arrives. Built on
//! [`super::peers::LineServer`]; every wait is bounded.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use super::peers::LineServer;

/// Runs an interactive TLS client that closes as soon as its stdin does
/// (`gnutls-cli`): sends `text`, waits at most `timeout` for a stdout line
/// equal to `expect` (panicking with its output if none comes), then closes
/// stdin and returns everything it printed.
pub fn talk(cmd: &mut Command, text: &str, expect: &str, timeout: Duration) -> String {
    let mut client = LineServer::spawn(&format!("{cmd:?}"), cmd, 0);
    let stdin = client.peer.child.stdin.as_mut().expect("stdin is piped");
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    client.wait_line(timeout, |l| l.stdout && l.text == expect);
    drop(client.peer.child.stdin.take());
    client.finish(timeout);
    client.transcript()
}
