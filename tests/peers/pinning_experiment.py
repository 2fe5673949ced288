#!/usr/bin/env python3
"""What mbedTLS does when its one trust anchor is the server's own leaf.

An experiment, not a test: it builds certificates (with `cryptography`),
serves them with `openssl s_server` on 127.0.0.1 and connects with an mbedTLS
client (python-mbedtls, DER anchor, one anchor, like the device). It prints
one line per case; docs/device-behaviour.md records the outcome and
crates/pki/src/verify.rs follows it.

    python3 tests/peers/pinning_experiment.py [--json]
"""
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import mbedtls
from mbedtls import tls, x509 as mx509

NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make(cn, key, issuer_cn, issuer_key, ca, start=NOW - DAY, end=NOW + 30 * DAY, san=True):
    b = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(d, fname, data):
    path = os.path.join(d, fname)
    with open(path, "wb") as f:
        f.write(data)
    return path


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def keypem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def handshake(d, leaf, leaf_key, chain, anchor, hostname="localhost"):
    port = free_port()
    args = ["openssl", "s_server", "-quiet", "-accept", str(port), "-naccept", "1",
            "-cert", write(d, "leaf.pem", pem(leaf)), "-key", write(d, "leaf.key", keypem(leaf_key))]
    if chain:
        args += ["-cert_chain", write(d, "chain.pem", b"".join(pem(c) for c in chain))]
    server = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    return {"ok": False, "error": "server did not start"}
                time.sleep(0.05)
        # The probe connection above consumed -naccept 1; start a fresh server.
        server.kill()
        server.wait()
        server = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        conf = tls.TLSConfiguration(
            trust_store=tls.TrustStore([mx509.CRT.from_DER(der(anchor))]),
            validate_certificates=True,
            lowest_supported_version=tls.TLSVersion.TLSv1_2,
            highest_supported_version=tls.TLSVersion.TLSv1_2,
        )
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        wrapped = tls.ClientContext(conf).wrap_socket(sock, server_hostname=hostname)
        try:
            wrapped.do_handshake()
            return {"ok": True}
        except Exception as e:  # mbedtls.exceptions.TLSError
            return {"ok": False, "error": str(e), "code": getattr(e, "err", None)}
        finally:
            sock.close()
    finally:
        server.kill()
        server.wait()


def main():
    cases = []
    k = lambda: ec.generate_private_key(ec.SECP256R1())
    root_k, int_k, leaf_k = k(), k(), k()
    root = make("Exp Root", root_k, "Exp Root", root_k, True, end=NOW + 3650 * DAY)
    inter = make("Exp Int", int_k, "Exp Root", root_k, True)
    leaf = make("localhost", leaf_k, "Exp Int", int_k, False)
    ss_k = k()
    self_leaf = make("localhost", ss_k, "localhost", ss_k, False)
    expired_self = make("localhost", ss_k, "localhost", ss_k, False, start=NOW - 60 * DAY, end=NOW - DAY)
    future_self = make("localhost", ss_k, "localhost", ss_k, False, start=NOW + DAY, end=NOW + 60 * DAY)
    with tempfile.TemporaryDirectory() as d:
        run = lambda label, *a, **kw: cases.append({"case": label, **handshake(d, *a, **kw)})
        run("self-signed leaf pinned (the guide's self-signed flow)", self_leaf, ss_k, [], self_leaf)
        run("self-signed leaf pinned, wrong host name", self_leaf, ss_k, [], self_leaf, hostname="other.example")
        run("expired self-signed leaf pinned", expired_self, ss_k, [], expired_self)
        run("not-yet-valid self-signed leaf pinned", future_self, ss_k, [], future_self)
        run("CA-issued leaf pinned, server sends leaf + intermediate", leaf, leaf_k, [inter], leaf)
        run("CA-issued leaf pinned, server sends leaf only", leaf, leaf_k, [], leaf)
        run("intermediate as anchor, server sends leaf only", leaf, leaf_k, [], inter)
        run("intermediate as anchor, server sends leaf + intermediate", leaf, leaf_k, [inter], inter)
        run("root as anchor, server sends leaf + intermediate", leaf, leaf_k, [inter], root)
        run("root as anchor, server sends leaf only", leaf, leaf_k, [], root)
    if "--json" in sys.argv:
        print(json.dumps({"mbedtls": mbedtls.version.version, "cases": cases}))
        return
    print(f"# {mbedtls.version.version}")
    for c in cases:
        verdict = "ok" if c["ok"] else f"FAIL {c.get('error')}"
        print(f"{c['case']:62} {verdict}")


if __name__ == "__main__":
    main()
