# devtls fleet: renews this device's certificate (docs/renewal.md).
# boot.py: import renew; renew.run(). Main loop: renew.tick() (once a day).
import os, socket, ssl, time, ntptime

HOST = @HOST@
PORT = @PORT@
HHDR = @HHDR@
C = @CERT@
K = @KEY@
CA = @CA@
ROM = @ROM@
CN = C + ".new"
KN = K + ".new"
_last = None
_ra = 0

def _ex(n):
    try:
        return bool(os.stat(n))
    except OSError:
        return False

def _rd(n):
    with open(n, "rb") as f:
        return f.read()

def _wr(n, b):
    with open(n, "wb") as f:
        f.write(b)

def _rm(n):
    if _ex(n):
        os.remove(n)

def _ctx(c, k):
    x = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    x.load_cert_chain(_rd(c), _rd(k))
    return x

def _loads(c, k):
    try:
        return bool(_ctx(c, k))
    except Exception:
        return False

def recover():
    # Commit point: the rename of C.new onto C (docs/renewal.md).
    if _ex(KN):
        if _ex(CN):
            if _ex(C) or not _loads(CN, KN):
                _rm(KN)
                _rm(CN)
                return
            os.rename(CN, C)
        os.rename(KN, K)
    else:
        _rm(CN)

def pair():
    if _ex(C) and _ex(K) and (not ROM or _loads(C, K)):
        return C, K
    return ROM + C, ROM + K

def _rx(s, n):
    if n > 4096:
        raise ValueError("renew: %d bytes is too large" % n)
    b = bytearray(n)
    m = memoryview(b)
    i = 0
    while i < n:
        r = s.readinto(m[i:])
        if not r:
            raise OSError("renew: response cut short")
        i += r
    return b

def _int(s, n):
    return int.from_bytes(_rx(s, n), "big")

def _ask(c, k):
    global _ra
    x = _ctx(c, k)
    x.verify_mode = ssl.CERT_REQUIRED
    x.load_verify_locations(cadata=_rd(CA if _ex(CA) else ROM + CA))
    s = socket.socket()
    try:
        s.settimeout(30)
        s.connect(socket.getaddrinfo(HOST, PORT)[0][-1])
        s = x.wrap_socket(s, server_hostname=HOST)
        s.write(("POST /.well-known/est/serverkeygen HTTP/1.1\r\nHost: " + HHDR +
                 "\r\nAccept: application/x-devtls-renew\r\nContent-Length: 0"
                 "\r\nConnection: close\r\n\r\n").encode())
        code = int(s.readline(256).split()[1])
        st = ""
        while True:
            h = s.readline(512)
            if len(h) < 3:
                break
            h = h.lower()
            if h.startswith(b"x-devtls-status:"):
                st = h[16:].strip().decode()
            if h.startswith(b"retry-after:"):
                _ra = int(h[12:])
        if code != 200:
            if code != 204:
                print("renew: refused (%d %s): %s" % (code, st, s.read(200)))
            return code
        if _rx(s, 4) != b"DTR1":
            raise ValueError("renew: not DTR1")
        _wr(CN, _rx(s, _int(s, 4)))
        _wr(KN, _rx(s, _int(s, 4)))
        _int(s, 8)
        return 200
    finally:
        s.close()

def _try(c, k):
    # 503 or no answer: 3 more tries after Retry-After or 2, 4, 8 s, + jitter
    global _ra
    for i in range(4):
        _ra = 0
        try:
            e = _ask(c, k)
            if e != 503:
                return e
        except OSError as x:
            e = x
        d = _ra or 2 << i
        if i > 2 or d > 120:
            raise OSError(e)
        time.sleep(d + d * os.urandom(1)[0] / 256)

def run():
    global _last
    _last = time.time()
    try:
        recover()
        ntptime.settime()
        c, k = pair()
        code = _try(c, k)
        if code != 200:
            return code
        if not _loads(CN, KN):
            recover()
            raise ValueError("renew: the new pair does not load")
        os.rename(CN, C)
        os.rename(KN, K)
        print("renew: new certificate installed")
        return _try(C, K)
    except Exception as e:
        print("renew: kept the current certificate:", e)
        return -1

def tick(every=86400):
    if _last is None or time.time() - _last >= every:
        return run()
