#!/usr/bin/env python3
"""A TLS/DTLS test peer on mbedTLS (python-mbedtls) that behaves like the device.

Like an OpenMV Cam / MicroPython board it loads DER files only, trusts ONE
anchor, and speaks TLS 1.2 / DTLS 1.2 with the device's cipher suites.

    mbedtls_peer.py client --host 127.0.0.1 --port P [--dtls]
        [--ca ca.der] [--hostname NAME] [--cert c.der --key k.der]
        [--send TEXT] [--timeout S]
    mbedtls_peer.py server --port P [--dtls] --cert s.der --key s.key.der
        [--ca client-ca.der] [--count N] [--reply TEXT] [--timeout S]
    mbedtls_peer.py suites     (the suites it offers, IANA names, JSON)

Output: one JSON line per connection on stdout,
    {"ok", "error", "code", "version", "cipher", "received", "peer_subject"}
where "code" is the negative mbedTLS error code (as the device reports it).
The server first prints {"listening": PORT} (useful with --port 0).
A file that cannot be loaded prints one JSON line with ok=false and exits 2.
Exit status: 0 all connections ok, 1 some failed, 2 bad arguments or files.
--timeout bounds the whole run (client: everything; server: waiting for and
serving all --count connections).

Note: python-mbedtls 2.10.1 wraps mbedTLS 2.28, the device runs 3.6; see the
differences listed in DIFFERENCES below. Tests that speak for the device use
tests/peers/mbedtls36 (the device's own 3.6 build, same flags and JSON);
this peer stays for older firmware.
"""

import argparse
import json
import socket
import sys
import time

from mbedtls import exceptions, tls, x509

# The device's cipher suites in its client offer order. Mirrors the
# `openmv` profile in crates/pki/src/profile.rs (MBEDTLS_SUITES); keep the two
# in step. IANA names: mbedTLS spells them with '-' instead of '_'.
DEVICE_SUITES = [
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
]

DIFFERENCES = """\
- Groups cannot be restricted: python-mbedtls has no curve setting, so mbedTLS
  2.28 offers all its compiled-in curves (x25519 included), the device only
  P-256/P-384/P-521 (2.28 also offers brainpool, secp256k1, x448...).
  It also offers SHA-224 signature algorithms, which the device does not.
- mbedTLS 2.28 does not match iPAddress SANs: --hostname 127.0.0.1 fails
  verification (-0x2700) where the device (3.6) accepts an IP SAN. Verify
  by DNS name with this peer.
- Keys with trailing bytes: 3.6.5 in the device's configuration loads PKCS#8
  and SEC1 DER keys with trailing bytes and refuses PKCS#1 ones (measured
  with tests/peers/mbedtls36, docs/device-behaviour.md).
- --ca without --hostname verifies the chain but no name (2.28 allows it);
  the device refuses to verify without server_hostname.
- The extended key usage is enforced as on the device: a server certificate
  without serverAuth fails with -0x7A00 (BAD_HS_CERTIFICATE).
- mbedTLS's pk parser reads PEM keys even via from_DER; this peer refuses a
  PEM key itself (code -0x3D00) because the device has no PEM parser.
"""

MBEDTLS_ERR_PK_KEY_INVALID_FORMAT = -0x3D00
MBEDTLS_ERR_X509_INVALID_FORMAT = -0x2180
MBEDTLS_ERR_SSL_TIMEOUT = -0x6800
MBEDTLS_ERR_SSL_CONN_EOF = -0x7280
MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY = -0x7880
MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED = -0x6A80

CHUNK = 16384 + 2048


class LoadError(Exception):
    """A file could not be loaded the way the device loads it."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class Failure(Exception):
    """A connection failed for a reason that is not an mbedTLS error."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def result(ok, error=None, code=None, ch=None, received=None):
    version = cipher = subject = None
    if ch is not None:
        buf = ch.buf
        if negotiated(buf, ch.reached):
            version = version_name(buf.negotiated_tls_version())
        try:
            c = buf.cipher()
            cipher = c[0] if isinstance(c, tuple) else c
            if isinstance(cipher, bytes):
                cipher = cipher.decode()
        except Exception:  # noqa: BLE001
            pass
        try:
            der = buf.getpeercert(binary_form=True)
            if der:
                subject = x509.CRT.from_DER(der).subject
        except Exception:  # noqa: BLE001
            pass
    return {
        "ok": ok,
        "error": error,
        "code": code,
        "version": version,
        "cipher": cipher,
        "received": received,
        "peer_subject": subject,
    }


def negotiated(buf, reached):
    """The hello messages were done, so the version is the peer's answer.

    Before that, python-mbedtls reports the configured version; after an
    error it resets the state, hence `reached`, the furthest state seen.
    """
    if isinstance(buf.context, tls.ServerContext):
        # Past reading the ClientHello.
        return reached >= tls.HandshakeStep.SERVER_HELLO.value
    # Past reading the ServerHello.
    return reached >= tls.HandshakeStep.SERVER_CERTIFICATE.value


def version_name(v):
    names = {
        tls.TLSVersion.TLSv1_2: "TLSv1.2",
        tls.TLSVersion.TLSv1_3: "TLSv1.3",
        tls.DTLSVersion.DTLSv1_2: "DTLSv1.2",
    }
    return names.get(v)


def describe(exc):
    """(message, negative mbedTLS code or None) for an exception."""
    if isinstance(exc, exceptions.TLSError):
        err = getattr(exc, "err", None)
        code = -abs(err) if err else None
        return str(exc), code
    if isinstance(exc, (Failure, LoadError)):
        return str(exc), exc.code
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out", MBEDTLS_ERR_SSL_TIMEOUT
    return "%s: %s" % (type(exc).__name__, exc), None


# --- loading files like the device: DER only, one anchor --------------------


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LoadError("%s: %s" % (path, e.strerror), None) from e


def load_cert(path):
    data = read_file(path)
    try:
        # A PEM file fails here with -0x2180, as on the device. Bytes after
        # the first certificate are ignored: one anchor per file.
        return x509.CRT.from_DER(data)
    except exceptions.TLSError as e:
        raise LoadError(
            "%s: not a DER certificate (%s)" % (path, e), -abs(e.err)
        ) from e


def load_key(path, cert):
    data = read_file(path)
    if data.lstrip().startswith(b"-----BEGIN"):
        # mbedTLS would parse PEM here; the device cannot.
        raise LoadError(
            "%s: PEM key, the device needs DER" % path,
            MBEDTLS_ERR_PK_KEY_INVALID_FORMAT,
        )
    key_class = type(cert.subject_public_key)
    try:
        return key_class.from_DER(data)
    except exceptions.TLSError as e:
        raise LoadError(
            "%s: not a DER private key for this certificate (%s)" % (path, e),
            -abs(e.err),
        ) from e


def suites():
    available = set(tls.ciphers_available())
    return tuple(
        n.replace("_", "-")
        for n in DEVICE_SUITES
        if n.replace("_", "-") in available
    )


def configuration(args, server):
    conf = {"ciphers": suites()}
    if args.cert:
        crt = load_cert(args.cert)
        conf["certificate_chain"] = ((crt,), load_key(args.key, crt))
    if args.ca:
        conf["trust_store"] = tls.TrustStore([load_cert(args.ca)])
        conf["validate_certificates"] = True
    else:
        conf["validate_certificates"] = False
    if args.dtls:
        return tls.DTLSConfiguration(
            lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
            highest_supported_version=tls.DTLSVersion.DTLSv1_2,
            **conf,
        )
    return tls.TLSConfiguration(
        lowest_supported_version=tls.TLSVersion.TLSv1_2,
        highest_supported_version=tls.TLSVersion.TLSv1_2,
        **conf,
    )


# --- driving the in-memory mbedTLS buffer over a socket ---------------------


class Channel:
    """Moves bytes between an mbedTLS buffer and a socket (stream or datagram)."""

    def __init__(self, sock, buf, deadline, peer=None):
        self.sock = sock
        self.buf = buf
        self.deadline = deadline
        self.peer = peer  # datagram server: only this address is served
        self.reached = 0  # furthest handshake state seen (for the report)

    def _timeout(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Failure("timed out", MBEDTLS_ERR_SSL_TIMEOUT)
        self.sock.settimeout(left)

    def flush(self):
        while True:
            data = self.buf.peek_outgoing(CHUNK)
            if not data:
                return
            self._timeout()
            try:
                if self.peer is None:
                    self.sock.sendall(data)
                else:
                    self.sock.sendto(data, self.peer)
            except (BrokenPipeError, ConnectionResetError):
                # The peer hung up, usually after a fatal alert: drop our
                # output and let the next read surface that alert.
                pass
            self.buf.consume_outgoing(len(data))

    def pull(self):
        self._timeout()
        if self.peer is None:
            data = self.sock.recv(CHUNK)
        else:
            while True:
                data, addr = self.sock.recvfrom(CHUNK)
                if addr == self.peer:
                    break
                self._timeout()
        if not data:
            raise Failure(
                "connection closed by the peer", MBEDTLS_ERR_SSL_CONN_EOF
            )
        self.buf.receive_from_network(data)

    def step(self, op, *args):
        """Runs a buffer operation until it stops wanting I/O."""
        while True:
            self.reached = max(self.reached, self.buf._handshake_state.value)
            try:
                out = op(*args)
            except tls.WantWriteError:
                self.flush()
                continue
            except tls.WantReadError:
                self.reached = max(self.reached, self.buf._handshake_state.value)
                self.flush()
                self.pull()
                continue
            except exceptions.TLSError:
                # Send the fatal alert mbedTLS queued, so the peer learns why
                # instead of waiting for its timeout.
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the peer may be gone
                    pass
                raise
            self.reached = max(self.reached, self.buf._handshake_state.value)
            self.flush()
            return out

    def handshake(self):
        # The buffer's do_handshake runs single steps: loop until done.
        while self.buf._handshake_state is not tls.HandshakeStep.HANDSHAKE_OVER:
            self.step(self.buf.do_handshake)

    def send(self, data):
        view = memoryview(data)
        while view:
            n = self.step(self.buf.write, bytes(view))
            view = view[n:]

    def read_line(self):
        """Reads until a newline or the peer's close ("" if it sent nothing).

        readinto, not read: python-mbedtls's read(n) keeps reading until it
        has n bytes and drops what it had when a close_notify follows, and
        read(1) loses the rest of the record. readinto is one mbedtls_ssl_read.
        """
        got = b""
        space = bytearray(CHUNK)
        while b"\n" not in got and len(got) < CHUNK:
            try:
                chunk = bytes(space[: self.buf.readinto(space, CHUNK)])
            except tls.WantReadError:
                chunk = b""
            except tls.WantWriteError:
                self.flush()
                continue
            except tls.RaggedEOF:
                break
            except exceptions.TLSError as e:
                if -abs(e.err or 0) == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
                    break
                raise
            if not chunk:
                # Nothing buffered yet: wait for bytes; the peer's close
                # ends the read, a timeout is an error.
                try:
                    self.pull()
                except Failure as e:
                    if e.code == MBEDTLS_ERR_SSL_CONN_EOF:
                        break  # the peer closed: return what it sent
                    raise
                continue
            got += chunk
        return got.decode("utf-8", "replace")

    def close(self):
        try:
            self.buf.shutdown()
            self.flush()
        except Exception:  # noqa: BLE001 - best effort close_notify
            pass


# --- client and server ------------------------------------------------------


def run_client(args, deadline):
    ctx = tls.ClientContext(configuration(args, server=False))
    kind = socket.SOCK_DGRAM if args.dtls else socket.SOCK_STREAM
    buf = ctx.wrap_buffers(args.hostname)
    sock = socket.socket(socket.AF_INET, kind)
    ch = Channel(sock, buf, deadline)
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        sock.connect((args.host, args.port))
        ch.handshake()
        ch.send(args.send.encode())
        received = ch.read_line()
        ch.close()
        return result(True, ch=ch, received=received)
    except Exception as e:  # noqa: BLE001 - reported as JSON
        msg, code = describe(e)
        return result(False, msg, code, ch=ch)
    finally:
        sock.close()


def serve_stream(lsock, ctx, args, deadline):
    lsock.settimeout(max(0.01, deadline - time.monotonic()))
    conn, _ = lsock.accept()
    ch = Channel(conn, ctx.wrap_buffers(), deadline)
    try:
        ch.handshake()
        received = ch.read_line()
        ch.send(args.reply.encode())
        ch.close()
        return result(True, ch=ch, received=received)
    except Exception as e:  # noqa: BLE001
        msg, code = describe(e)
        return result(False, msg, code, ch=ch)
    finally:
        conn.close()


def next_client_hello(lsock, deadline):
    """The address of the next datagram holding a DTLS ClientHello.

    Datagrams left over from an earlier connection (a late close_notify, a
    retransmission) are dropped, so they cannot be taken for a new client.
    """
    while True:
        lsock.settimeout(max(0.01, deadline - time.monotonic()))
        data, peer = lsock.recvfrom(CHUNK, socket.MSG_PEEK)
        # DTLS record: type 22 (handshake), 13-chunk header, then msg type 1.
        if len(data) > 13 and data[0] == 22 and data[13] == 1:
            return peer
        lsock.recvfrom(CHUNK)


def serve_datagram(lsock, ctx, args, deadline):
    """One DTLS connection with the HelloVerifyRequest cookie exchange.

    The cookie is bound to the client's address (setcookieparam). The first
    handshake on a fresh buffer answers the ClientHello with a
    HelloVerifyRequest and raises tls.HelloVerifyRequest (-0x6A80); the
    server sends that, takes a FRESH buffer with the same cookie parameter,
    and handshakes again: the client's second ClientHello carries the cookie.
    """
    peer = next_client_hello(lsock, deadline)
    client_id = ("%s:%d" % peer).encode()
    buf = ctx.wrap_buffers()
    buf.setcookieparam(client_id)
    ch = Channel(lsock, buf, deadline, peer)
    try:
        try:
            ch.handshake()
        except tls.HelloVerifyRequest:
            ch.flush()
            buf = ctx.wrap_buffers()
            buf.setcookieparam(client_id)
            ch = Channel(lsock, buf, deadline, peer)
            ch.handshake()
        received = ch.read_line()
        ch.send(args.reply.encode())
        ch.close()
        return result(True, ch=ch, received=received)
    except Exception as e:  # noqa: BLE001
        msg, code = describe(e)
        return result(False, msg, code, ch=ch)


def run_server(args, deadline):
    ctx = tls.ServerContext(configuration(args, server=True))
    kind = socket.SOCK_DGRAM if args.dtls else socket.SOCK_STREAM
    lsock = socket.socket(socket.AF_INET, kind)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    if not args.dtls:
        lsock.listen(8)
    emit({"listening": lsock.getsockname()[1]})
    serve = serve_datagram if args.dtls else serve_stream
    results = []
    try:
        for _ in range(args.count):
            try:
                r = serve(lsock, ctx, args, deadline)
            except (socket.timeout, TimeoutError, Failure):
                r = result(
                    False,
                    "timed out waiting for a connection",
                    MBEDTLS_ERR_SSL_TIMEOUT,
                )
            emit(r)
            results.append(r)
            if time.monotonic() >= deadline and len(results) < args.count:
                for _ in range(args.count - len(results)):
                    r = result(
                        False,
                        "timed out waiting for a connection",
                        MBEDTLS_ERR_SSL_TIMEOUT,
                    )
                    emit(r)
                    results.append(r)
                break
    finally:
        lsock.close()
    return results


def parse(argv):
    p = argparse.ArgumentParser(
        description="mbedTLS test peer behaving like the device "
        "(DER only, one anchor, TLS/DTLS 1.2)",
        epilog=DIFFERENCES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="role", required=True)
    sub.add_parser(
        "suites", help="print the IANA names of the suites offered, as JSON"
    )
    c = sub.add_parser("client", help="connect, send TEXT, read the reply")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--hostname", help="SNI and the name checked with --ca")
    c.add_argument("--cert")
    c.add_argument("--key")
    c.add_argument("--ca", help="the ONE trust anchor (DER); verify required")
    c.add_argument("--send", default="hello\n")
    c.add_argument("--dtls", action="store_true")
    c.add_argument("--timeout", type=float, default=10.0)
    s = sub.add_parser("server", help="answer --count clients with --reply")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--ca", help="demand and verify a client certificate")
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--reply", default="hello\n")
    s.add_argument("--dtls", action="store_true")
    s.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    if args.role == "suites":
        return args
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    if args.role == "server" and args.count < 1:
        p.error("--count must be at least 1")
    if not 0 <= args.port <= 65535:
        p.error("--port must be 0..65535")
    return args


def main(argv):
    args = parse(argv)  # argparse exits 2 on bad arguments
    if args.role == "suites":
        emit([n.replace("-", "_") for n in suites()])
        return 0
    deadline = time.monotonic() + args.timeout
    try:
        if args.role == "client":
            results = [run_client(args, deadline)]
            emit(results[0])
        else:
            results = run_server(args, deadline)
    except LoadError as e:
        emit(result(False, str(e), e.code))
        return 2
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
