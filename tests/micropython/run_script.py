# Runs a generated device script (given as `src`) against stand-ins for
# socket, ssl and ntptime, and prints one line (hex of its UTF-8) per value the script handed
# them: the checker compares these with what devtls meant to write. Runs
# unchanged on CPython and MicroPython.
import sys

seen = []


class Done(Exception):
    pass


class Thing:
    def __init__(self, *a, **k):
        pass

    def connect(self, *a):
        pass

    def setsockopt(self, *a):
        pass

    def bind(self, *a):
        pass

    def listen(self, *a):
        pass

    def accept(self):
        raise Done()

    def write(self, *a):
        pass

    def read(self, *a):
        return b""

    def readline(self, *a):
        return b""

    def close(self):
        pass

    def load_cert_chain(self, cert, key):
        seen.append("cert=" + cert)
        seen.append("key=" + key)

    def load_verify_locations(self, cafile=None):
        seen.append("cafile=" + cafile)

    def wrap_socket(self, sock, server_side=False, server_hostname=None):
        if server_hostname is not None:
            seen.append("server_hostname=" + server_hostname)
        return Thing()


class Module:
    pass


def getaddrinfo(host, port):
    seen.append("host=" + host)
    return [(0, 0, 0, "", (host, port))]


socket = Module()
socket.socket = Thing
socket.getaddrinfo = getaddrinfo
socket.SOL_SOCKET = 1
socket.SO_REUSEADDR = 2
ssl = Module()
ssl.SSLContext = Thing
ssl.PROTOCOL_TLS_CLIENT = 0
ssl.PROTOCOL_TLS_SERVER = 1
ssl.CERT_REQUIRED = 2
ntptime = Module()
ntptime.settime = lambda: None
sys.modules["socket"] = socket
sys.modules["ssl"] = ssl
sys.modules["ntptime"] = ntptime

code = compile(src, "boot.py", "exec")
try:
    exec(code, {"__name__": "__main__"})
except Done:
    pass
for s in seen:
    # Hex of the UTF-8 bytes: the same text from both interpreters.
    print("seen:" + "".join("%02x" % b for b in s.encode()))
