"""A stand-in for MicroPython's `ssl` module, over CPython's, offering only
what MicroPython's offers (v1.27: extmod/ssl.py over modtls_mbedtls.c):

- SSLContext(PROTOCOL_TLS_CLIENT); verify_mode starts as CERT_NONE (the
  MicroPython wrapper forces it) until the script sets CERT_REQUIRED;
- load_cert_chain(cert, key): DER bytes (or a file name, which the wrapper
  reads); PEM is refused, as the device's mbedTLS has no PEM parser;
- load_verify_locations(cafile=None, cadata=None): ONE DER certificate;
- wrap_socket(sock, server_hostname=...): CERT_REQUIRED without a
  server_hostname is refused before a byte is sent; TLS 1.2 only, the
  device's cipher suites; the socket offers read, readinto, readline,
  write and close, as MicroPython's does.

Differences it cannot hide (docs/renewal.md): CPython's load_cert_chain also
checks that the key belongs to the certificate (MicroPython's does not), and
CPython offers its own groups and signature algorithms.
"""
import base64
import os
import ssl as _ssl
import tempfile

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2

# The device's suites (docs/device-behaviour.md), in OpenSSL's names.
_SUITES = ":".join([
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
    "AES256-GCM-SHA384", "AES256-SHA256", "AES256-SHA",
    "AES128-GCM-SHA256", "AES128-SHA256", "AES128-SHA",
])


def _bytes(x):
    if isinstance(x, str):
        with open(x, "rb") as f:
            return f.read()
    return bytes(x)


def _der(b, what):
    if b.lstrip().startswith(b"-----BEGIN"):
        raise ValueError("invalid " + what)  # no PEM parser on the device
    return b


def _pem(der, label):
    body = base64.encodebytes(der).decode()
    return "-----BEGIN %s-----\n%s-----END %s-----\n" % (label, body, label)


class SSLContext:
    def __init__(self, protocol):
        if protocol != PROTOCOL_TLS_CLIENT:
            raise ValueError("the stand-in is a client only")
        self.verify_mode = CERT_NONE
        c = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname = False
        c.verify_mode = _ssl.CERT_NONE
        c.minimum_version = _ssl.TLSVersion.TLSv1_2
        c.maximum_version = _ssl.TLSVersion.TLSv1_2
        c.set_ciphers(_SUITES)
        self._c = c
        self._anchor = False

    def load_cert_chain(self, certfile, keyfile):
        cert = _der(_bytes(certfile), "cert")
        key = _der(_bytes(keyfile), "key")
        with tempfile.TemporaryDirectory() as d:
            cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            with open(cp, "w") as f:
                f.write(_pem(cert, "CERTIFICATE"))
            with open(kp, "w") as f:
                f.write(_pem(key, "PRIVATE KEY"))
            try:
                self._c.load_cert_chain(cp, kp)
            except _ssl.SSLError as e:
                raise ValueError("invalid cert or key: %s" % e)

    def load_verify_locations(self, cafile=None, cadata=None):
        der = _der(_bytes(cafile) if cafile else bytes(cadata), "cert")
        self._c.load_verify_locations(cadata=der)
        self._anchor = True

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        if server_side:
            raise ValueError("the stand-in is a client only")
        if self.verify_mode == CERT_REQUIRED:
            if server_hostname is None:
                raise ValueError("CERT_REQUIRED requires server_hostname")
            self._c.verify_mode = _ssl.CERT_REQUIRED
            self._c.check_hostname = True
        return _Socket(self._c.wrap_socket(sock, server_hostname=server_hostname))


_connections = [0]


class _Socket:
    """A TLS socket with MicroPython's stream methods only. With
    MPY_SSL_RECORD=DIR, what each connection received is kept in DIR/0,
    DIR/1, ... (for run_renew.mjs to replay to real MicroPython)."""

    def __init__(self, s):
        self._s = s
        self._record = None
        folder = os.environ.get("MPY_SSL_RECORD")
        if folder:
            self._record = os.path.join(folder, str(_connections[0]))
            _connections[0] += 1
            open(self._record, "wb").close()

    def _got(self, b):
        if self._record and b:
            with open(self._record, "ab") as f:
                f.write(b)
        return b

    def write(self, b):
        self._s.sendall(b)
        return len(b)

    def readinto(self, buf):
        n = self._s.recv_into(buf)
        self._got(bytes(buf[:n]))
        return n

    def read(self, n=-1):
        out = b""
        while n < 0 or len(out) < n:
            chunk = self._got(self._s.recv(4096 if n < 0 else n - len(out)))
            if not chunk:
                break
            out += chunk
        return out

    def readline(self, limit=-1):
        out = b""
        while limit < 0 or len(out) < limit:
            c = self._got(self._s.recv(1))
            if not c:
                break
            out += c
            if c == b"\n":
                break
        return out

    def close(self):
        self._s.close()
