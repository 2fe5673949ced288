# MicroPython-side stand-in for `ssl` (run_renew.mjs): the WebAssembly port
# has no sockets and no mbedTLS, so connections replay the bytes a real
# `devtls fleet serve` sent (recorded by cpython/mpy_ssl.py), one file per
# connection in /replay. load_cert_chain accepts only complete DER: one
# SEQUENCE whose length is exactly the buffer's, as a cut-short file fails
# to parse on the device.
import io

PROTOCOL_TLS_CLIENT = 0
CERT_NONE = 0
CERT_REQUIRED = 2
_n = [0]


def _der(b, what):
    b = bytes(b)
    if len(b) < 2 or b[0] != 0x30:
        raise ValueError("invalid " + what)
    n, i = b[1], 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[2:2 + k], "big")
        i = 2 + k
    if i + n != len(b):
        raise ValueError("invalid " + what)


class SSLContext:
    def __init__(self, protocol):
        if protocol != PROTOCOL_TLS_CLIENT:
            raise ValueError("client only")
        self.verify_mode = CERT_NONE
        self._anchor = False

    def load_cert_chain(self, cert, key):
        _der(cert, "cert")
        _der(key, "key")

    def load_verify_locations(self, cafile=None, cadata=None):
        _der(cadata, "cert")
        self._anchor = True

    def wrap_socket(self, sock, server_side=False, server_hostname=None):
        if self.verify_mode != CERT_REQUIRED or not self._anchor or not server_hostname:
            raise ValueError("the script must verify the service by name")
        with open("/replay/%d" % _n[0], "rb") as f:
            data = f.read()
        _n[0] += 1
        return _Stream(data)


class _Stream:
    def __init__(self, data):
        self._b = io.BytesIO(data)

    def write(self, b):
        return len(b)

    def readinto(self, buf):
        return self._b.readinto(buf)

    def read(self, n=-1):
        return self._b.read(n)

    def readline(self, n=-1):
        return self._b.readline(n)

    def close(self):
        pass
