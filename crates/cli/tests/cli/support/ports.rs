//! Ports for peers that must be told their port before they bind it
//! (Pebble's validation ports, `openssl s_server -accept`, a service's
//! `--port`). The CLI's and the net crate's test binaries share this file.
//!
//! Asking the kernel (bind port 0, read the port, close) is a race: the
//! port comes from the ephemeral range, where any later bind to port 0 or
//! outgoing connection on the machine may take it before the peer binds
//! it, and nothing stops this process from handing the same port to two
//! tests, since a released port is free again. With hundreds of tests in
//! one binary that happened (two acme tests failed together in CI).
//!
//! So ports come from below the ephemeral range (`ip_local_port_range`),
//! where the kernel never picks one on its own. That range is cut into
//! blocks; a test process takes a block by locking its file in the temp
//! folder (the lock goes with the process), so the test processes
//! `scripts/test.sh` runs side by side never share a port. Within its
//! block a process hands ports out in turn, so a port comes back only
//! after every other one of the block has been used, and each is checked
//! free for TCP and UDP before it is handed out.

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::sync::{Mutex, OnceLock};

/// The lowest port handed out: above the well-known and common fixed ports.
const FLOOR: u16 = 10_000;
/// How many blocks the range is cut into: more than the test processes
/// that ever run at once.
const BLOCKS: u16 = 8;

struct Block {
    /// The lock that makes the block this process's, held until it exits.
    _lock: Option<File>,
    first: u16,
    len: u16,
    next: u16,
}

fn block() -> &'static Mutex<Block> {
    static BLOCK: OnceLock<Mutex<Block>> = OnceLock::new();
    BLOCK.get_or_init(|| Mutex::new(take_block()))
}

/// The first port of the kernel's ephemeral range (Linux), or the IANA
/// one where it cannot be read.
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(49_152)
}

fn take_block() -> Block {
    let top = ephemeral_floor().max(FLOOR + BLOCKS * 64);
    let len = (top - FLOOR) / BLOCKS;
    for n in 0..BLOCKS {
        let path = std::env::temp_dir().join(format!("devtls-test-ports-{n}.lock"));
        let Ok(file) = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if file.try_lock().is_ok() {
            return Block {
                _lock: Some(file),
                first: FLOOR + n * len,
                len,
                next: 0,
            };
        }
    }
    // Every block taken (or no temp folder): share the last one; the
    // bind check below still keeps a port from being handed out in use.
    Block {
        _lock: None,
        first: FLOOR + (BLOCKS - 1) * len,
        len,
        next: (std::process::id() % u32::from(len)) as u16,
    }
}

/// Whether nothing holds `port` on 127.0.0.1, for TCP or for UDP.
fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// A port on 127.0.0.1 that no other test of any running test process is
/// given, free for TCP and UDP now.
pub fn port() -> u16 {
    let mut block = block().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..block.len {
        let port = block.first + block.next;
        block.next = (block.next + 1) % block.len;
        if free(port) {
            return port;
        }
    }
    panic!(
        "no free port in 127.0.0.1:{}..{}: every one is in use",
        block.first,
        block.first + block.len
    );
}

#[test]
fn ports_are_handed_out_once_and_free() {
    let ports: Vec<u16> = (0..200).map(|_| port()).collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len(), "a port handed out twice");
    let floor = ephemeral_floor();
    assert!(
        ports.iter().all(|&p| (FLOOR..floor).contains(&p)),
        "outside {FLOOR}..{floor}: {ports:?}"
    );
}
