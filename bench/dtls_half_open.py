#!/usr/bin/env python3
"""RSS of `devtls serve --dtls` before, during and after a burst of peers
that complete the cookie exchange and then stall (issue 11 item 9).

    python3 bench/dtls_half_open.py [DEVTLS] [PEERS] [ADDRESSES]

Each peer sends a ClientHello, answers the HelloVerifyRequest with the
cookie, receives the server's flight and says nothing more. PEERS are spread
over ADDRESSES source addresses (127.0.0.1, 127.0.0.2, ...). Prints VmRSS
at start, right after the burst, and after the server's handshake timeout
(5 s) has expired them.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

DEVTLS = sys.argv[1] if len(sys.argv) > 1 else "target/debug/devtls"
PEERS = int(sys.argv[2]) if len(sys.argv) > 2 else 4300
ADDRESSES = int(sys.argv[3]) if len(sys.argv) > 3 else 1
TIMEOUT = 5


def hello(record_seq, message_seq, cookie):
    body = b"\xfe\xfd" + b"\x42" * 32 + b"\x00" + bytes([len(cookie)]) + cookie
    suites = [0xC02B, 0xC0AE, 0xC023, 0xC009]
    body += struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", s) for s in suites)
    body += b"\x01\x00"
    exts = (b"\x00\x0a\x00\x04\x00\x02\x00\x17" + b"\x00\x0b\x00\x02\x01\x00"
            + b"\x00\x0d\x00\x04\x00\x02\x04\x03" + b"\xff\x01\x00\x01\x00")
    body += struct.pack(">H", len(exts)) + exts
    n = struct.pack(">I", len(body))[1:]
    hs = b"\x01" + n + struct.pack(">H", message_seq) + b"\x00\x00\x00" + n + body
    return (b"\x16\xfe\xfd\x00\x00" + struct.pack(">Q", record_seq)[2:]
            + struct.pack(">H", len(hs)) + hs)


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    work = tempfile.mkdtemp()
    subprocess.run([DEVTLS, "new", "server", "--dns", "localhost", "--out", work],
                   check=True, stdout=subprocess.DEVNULL)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen(
        [DEVTLS, "serve", "--dtls", "--port", str(port), "--timeout", str(TIMEOUT),
         "--cert", f"{work}/server.der", "--key", f"{work}/server.key.der"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    start = rss(server.pid)
    socks = []
    answered = 0
    for i in range(PEERS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.0.{1 + i % ADDRESSES}", 0))
        s.settimeout(1.0)
        s.sendto(hello(0, 0, b""), ("127.0.0.1", port))
        try:
            hvr, _ = s.recvfrom(2048)
            s.sendto(hello(1, 1, hvr[-20:]), ("127.0.0.1", port))
            s.recvfrom(65535)
            answered += 1
        except socket.timeout:
            pass
        socks.append(s)
        if len(socks) >= 512:
            for old in socks:
                old.close()
            socks = []
    time.sleep(0.5)
    peak = rss(server.pid)
    time.sleep(TIMEOUT + 3)
    after = rss(server.pid)
    server.terminate()
    server.wait()
    print(f"{DEVTLS}: {PEERS} stalled peers from {ADDRESSES} address(es), "
          f"{answered} got the server's flight; VmRSS start {start:.1f} MB, "
          f"after the burst {peak:.1f} MB, after expiry {after:.1f} MB")


if __name__ == "__main__":
    main()
