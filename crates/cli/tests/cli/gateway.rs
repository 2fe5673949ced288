//! `devtls gateway` on 127.0.0.1 with real peers: public-side clients
//! (OpenSSL, GnuTLS, rustls) that hold only the root of a public-style chain,
//! device-side servers (the mbedTLS 3.6 device peer with a self-signed DER
//! certificate, `devtls serve` with `--ca` for mTLS), SNI routing, the
//! outbound direction, certificate reload under load, a device that is down.
//! Every wait is bounded.

use crate::gateway_support as gw;
use crate::support;

use std::path::Path;

use gw::{need, public_chain, tls_connect, tls_exchange, Gateway};
use serde_json::Value;
use support::peers::{gnutls_client, openssl_client, LineServer, WAIT};
use support::{device, devtls, ok_in};

/// A device with its self-signed certificate for `name` (devtls new: DER for
/// the device), in `dir/{name}/`.
fn device_files(dir: &Path, name: &str) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    ok_in(&d, &["new", "server", "--dns", name]);
}

/// `devtls serve` for a device in `dir/{name}` answering `reply`; extra args appended.
fn devtls_device(dir: &Path, name: &str, reply: &str, extra: &[&str]) -> LineServer {
    let mut cmd = devtls();
    cmd.args(["serve", "--cert", "server.der", "--key", "server.key.der"])
        .args(["--port", "0", "--reply", reply, "--json"])
        .args(extra)
        .current_dir(dir.join(name));
    let mut s = LineServer::spawn("devtls serve", &mut cmd, 0);
    let first = s.wait_line(WAIT, |l| l.stdout);
    let v: Value = serde_json::from_str(&first.text).unwrap();
    s.port = v["port"].as_u64().unwrap() as u16;
    s
}

fn one_route(device_port: u16, device: &str) -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "gw-fullchain.pem",
        "--key",
        "gw-key.pem",
        "--to",
        &format!("127.0.0.1:{device_port}"),
        "--device-ca",
        &format!("{device}/server.der"),
        "--device-name",
        device,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn public_clients_with_only_the_root_reach_the_mbedtls_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    need("gnutls-cli", "gnutls-bin");
    public_chain(d, "gw", &["gw.test"]);
    device_files(d, "openmv");
    let device = device::server(
        &d.join("openmv"),
        &[
            "--cert",
            "server.der",
            "--key",
            "server.key.der",
            "--count",
            "4",
            "--reply",
            "from-device\n",
        ],
    );
    let args = one_route(device.port, "openmv");
    let mut gateway = Gateway::start(d, &strs(&args), 1);
    let port = gateway.port();

    let common = [
        "-servername",
        "gw.test",
        "-CAfile",
        "root.pem",
        "-verify_return_error",
        "-ign_eof",
    ];
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let mut args = common.to_vec();
        args.push(flag);
        let run = openssl_client(d, port, &args, &format!("ping openssl {version}\n"));
        assert!(run.success(), "{}", run.text);
        assert!(run.text.contains("from-device"), "{}", run.text);
        assert!(
            run.text.contains("Verify return code: 0 (ok)"),
            "{}",
            run.text
        );
        assert!(
            run.text.contains(&format!("Protocol: {version}")) || run.text.contains(version),
            "{}",
            run.text
        );
    }
    let run = gnutls_client(
        d,
        port,
        &[
            "--x509cafile",
            "root.pem",
            "--sni-hostname",
            "gw.test",
            "--verify-hostname",
            "gw.test",
        ],
        "ping gnutls\n",
    );
    assert!(run.success(), "{}", run.text);
    assert!(run.text.contains("from-device"), "{}", run.text);

    let config = gw::client_config(&d.join("root.pem"));
    let reply = tls_exchange(&config, port, "gw.test", b"ping rustls\n").unwrap();
    assert_eq!(reply, b"from-device\n");

    // The device saw four TLS 1.2 clients (the gateway, as the device expects)
    // and every message as sent.
    let run = device::server_results(device, WAIT);
    assert_eq!(run.conns.len(), 4, "{}", run.transcript);
    for c in &run.conns {
        assert!(c.ok, "{}", run.transcript);
        assert_eq!(c.version.as_deref(), Some("TLSv1.2"), "{}", run.transcript);
    }
    let mut received: Vec<String> = run
        .conns
        .iter()
        .filter_map(|c| c.received.clone())
        .collect();
    received.sort();
    assert_eq!(
        received,
        [
            "ping gnutls\n",
            "ping openssl TLSv1.2\n",
            "ping openssl TLSv1.3\n",
            "ping rustls\n"
        ]
    );

    let lines = gateway.connections(4);
    for l in &lines {
        assert_eq!(l["outcome"], "relayed", "{l}");
        assert_eq!(l["sni"], "gw.test", "{l}");
        assert!(l["bytes_up"].as_u64().unwrap() >= 11, "{l}");
        assert_eq!(l["bytes_down"], 12, "{l}");
    }
}

#[test]
fn a_device_that_is_down_gives_a_clean_close_and_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_chain(d, "gw", &["gw.test"]);
    device_files(d, "openmv");
    let nobody = support::free_tcp_port();
    let args = one_route(nobody, "openmv");
    let mut gateway = Gateway::start(d, &strs(&args), 1);
    let config = gw::client_config(&d.join("root.pem"));
    let mut tls = tls_connect(&config, gateway.port(), "gw.test").unwrap();
    // read_to_end is Ok only after close_notify: a reset or a bare FIN is an error.
    let reply = gw::exchange(&mut tls, b"anyone there?\n").expect("a clean close");
    assert!(reply.is_empty());
    let line = gateway.wait_json(|v| v.get("client").is_some());
    assert_eq!(line["outcome"], "upstream_failed", "{line}");
    assert_eq!(line["diagnosis"]["reason"], "connect_failed", "{line}");
    assert!(
        line["diagnosis"]["what"]
            .as_str()
            .unwrap()
            .contains("could not open a TCP connection"),
        "{line}"
    );
    assert_eq!(line["upstream"], format!("127.0.0.1:{nobody}"), "{line}");
}

/// A `[[route]]` table for device `name` behind SNI `name.gw.test`.
fn route_toml(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[route]]\nlisten = \"127.0.0.1:0\"\nsni = \"{name}.gw.test\"\ncert = \"{name}-fullchain.pem\"\n\
         key = \"{name}-key.pem\"\nto = \"127.0.0.1:{port}\"\ndevice_ca = \"{name}/server.der\"\n\
         device_name = \"{name}\"\n{extra}\n"
    )
}

#[test]
fn sni_routes_reach_three_devices_and_an_mtls_device_without_our_certificate_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("gwclient")).unwrap();
    ok_in(&d.join("gwclient"), &["new", "client", "--cn", "gateway"]);
    let names = ["cam1", "cam2", "cam3", "cam4"];
    let mut devices = Vec::new();
    let mut toml = String::from("reload_interval_secs = 1\n");
    for name in names {
        public_chain(d, name, &[&format!("{name}.gw.test")]);
        device_files(d, name);
        // cam3 and cam4 demand a client certificate; only cam3's route has one.
        let mtls: &[&str] = if name == "cam3" || name == "cam4" {
            &["--ca", "../gwclient/client.der"]
        } else {
            &[]
        };
        let device = devtls_device(d, name, &format!("I am {name}\n"), mtls);
        let extra = if name == "cam3" {
            "client_cert = \"gwclient/client.der\"\nclient_key = \"gwclient/client.key.der\""
        } else {
            ""
        };
        toml.push_str(&route_toml(name, device.port, extra));
        devices.push(device);
    }
    std::fs::write(d.join("gateway.toml"), &toml).unwrap();
    let mut gateway = Gateway::start(d, &["--config", "gateway.toml"], 1);
    let port = gateway.port();
    let config = gw::client_config(&d.join("root.pem"));
    // Each name gets its own certificate (the client checks the name) and its own device.
    for name in ["cam1", "cam2", "cam3"] {
        let reply = tls_exchange(&config, port, &format!("{name}.gw.test"), b"who?\n")
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", gateway.server.transcript()));
        assert_eq!(String::from_utf8_lossy(&reply), format!("I am {name}\n"));
    }
    // A name no route answers: the handshake fails, the log says why.
    assert!(tls_exchange(&config, port, "other.gw.test", b"x").is_err());
    let line = gateway.wait_json(|v| v["outcome"] == "no_route");
    assert_eq!(line["sni"], "other.gw.test", "{line}");

    // cam4 demands mTLS and its route has no client certificate: the
    // client gets a clean close and the log carries net's diagnosis.
    let reply = tls_exchange(&config, port, "cam4.gw.test", b"who?\n").expect("clean close");
    assert!(reply.is_empty());
    let line = gateway.wait_json(|v| v["outcome"] == "upstream_failed");
    assert_eq!(line["route"], "cam4.gw.test", "{line}");
    assert_eq!(line["diagnosis"]["reason"], "client_cert_missing", "{line}");

    let lines = gateway.connections(5);
    let relayed: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "relayed").collect();
    assert_eq!(relayed.len(), 3, "{lines:?}");
    // The devices each saw one client, and cam3 saw the gateway's certificate.
    for (i, device) in devices.iter_mut().take(3).enumerate() {
        let line = device.wait_line(WAIT, |l| l.stdout && l.text.contains("\"served\""));
        assert!(line.text.contains("who?"), "{}: {}", names[i], line.text);
        if names[i] == "cam3" {
            assert!(line.text.contains("CN=gateway"), "{}", line.text);
        }
    }
}

#[test]
fn outbound_devices_trust_the_gateway_and_the_gateway_verifies_the_public_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The "public" server: a chain from a root the device does not carry.
    let (mut public, public_port) = public_server(d, "public says hi\n");
    let public_port = public_port.to_string();
    // The anchor the devices carry: the gateway's own certificate; and a
    // device certificate the gateway demands.
    device_files(d, "gateway");
    std::fs::create_dir_all(d.join("cam")).unwrap();
    ok_in(&d.join("cam"), &["new", "client", "--cn", "cam-1"]);
    let to = format!("127.0.0.1:{public_port}");
    let base = [
        "--outbound",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "gateway/server.der",
        "--key",
        "gateway/server.key.der",
        "--to",
        &to,
        "--public-name",
        "public.test",
        "--client-ca",
        "cam/client.der",
    ];
    let mut args = base.to_vec();
    args.extend(["--public-ca", "root.pem"]);
    let mut gateway = Gateway::start(d, &args, 1);
    let device_args = [
        "--ca",
        "gateway/server.der",
        "--hostname",
        "gateway",
        "--cert",
        "cam/client.der",
        "--key",
        "cam/client.key.der",
        "--send",
        "device here\n",
    ];
    let run = device::client(d, gateway.port(), &device_args);
    let conn = run.single();
    assert!(conn.ok, "{}", run.transcript);
    assert_eq!(
        conn.received.as_deref(),
        Some("public says hi\n"),
        "{}",
        run.transcript
    );
    let served = public.wait_line(WAIT, |l| l.stdout && l.text.contains("\"served\""));
    assert!(served.text.contains("device here"), "{}", served.text);
    let line = gateway.wait_json(|v| v.get("client").is_some());
    assert_eq!(line["outcome"], "relayed", "{line}");

    // A device without its certificate is refused by the gateway.
    let run = device::client(d, gateway.port(), &device_args[..4]);
    assert!(!run.single().ok, "{}", run.transcript);

    // Trusting the Mozilla roots instead, the gateway refuses the test root.
    let mut gateway = Gateway::start(d, &base, 1);
    let run = device::client(d, gateway.port(), &device_args);
    assert!(
        run.single().received.as_deref().unwrap_or("").is_empty(),
        "{}",
        run.transcript
    );
    let line = gateway.wait_json(|v| v["outcome"] == "upstream_failed");
    assert_eq!(line["diagnosis"]["reason"], "unknown_ca", "{line}");
}

/// Replaces `dest` atomically (write beside it, then rename), as certbot
/// and `devtls acme renew` do.
fn replace(dir: &Path, from: &str, dest: &str) {
    let tmp = dir.join(format!("{dest}.tmp"));
    std::fs::copy(dir.join(from), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(dest)).unwrap();
}

fn leaf_der(dir: &Path, pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(dir.join(pem))
        .unwrap()
        .to_vec()
}

#[test]
fn certificates_reload_under_load_without_a_failed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_chain(d, "old", &["gw.test"]);
    public_chain(d, "new", &["gw.test"]);
    std::fs::write(
        d.join("bad.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    replace(d, "old-fullchain.pem", "fullchain.pem");
    replace(d, "old-key.pem", "privkey.pem");
    device_files(d, "openmv");
    let device = devtls_device(d, "openmv", "ok\n", &[]);
    let toml = format!(
        "reload_interval_secs = 0.2\n[[route]]\nlisten = \"127.0.0.1:0\"\nacme = \".\"\n\
         to = \"127.0.0.1:{}\"\ndevice_ca = \"openmv/server.der\"\ndevice_name = \"openmv\"\n",
        device.port
    );
    std::fs::write(d.join("gateway.toml"), toml).unwrap();
    let mut gateway = Gateway::start(d, &["--config", "gateway.toml"], 1);
    let port = gateway.port();
    let config = gw::client_config(&d.join("root.pem"));
    let (old, new) = (leaf_der(d, "old.pem"), leaf_der(d, "new.pem"));

    // A connection opened before the reload, used after it.
    let mut early = tls_connect(&config, port, "gw.test").unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut tls = tls_connect(&config, port, "gw.test").expect("handshake");
                    let leaf = tls.conn.peer_certificates().unwrap()[0].to_vec();
                    let reply = gw::exchange(&mut tls, b"ping\n").expect("exchange");
                    assert_eq!(reply, b"ok\n");
                    seen.lock().unwrap().push(leaf);
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        // Renewal: the key first, then the chain (a reader may see them mismatched
        // for a moment; the gateway refuses that pair and takes the next).
        replace(d, "new-key.pem", "privkey.pem");
        replace(d, "new-fullchain.pem", "fullchain.pem");
        gateway.wait_json(|v| v["event"] == "reloaded");
        std::thread::sleep(std::time::Duration::from_millis(300));
        // A broken file: refused, the new certificate stays in use.
        replace(d, "bad.pem", "fullchain.pem");
        let refused = gateway.wait_json(|v| v["event"] == "reload_refused");
        assert!(
            refused["error"].as_str().unwrap().contains("fullchain.pem"),
            "{refused}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let seen = seen.into_inner().unwrap();
    assert!(seen.contains(&old), "no connection saw the old certificate");
    assert!(
        seen.last() == Some(&new),
        "the last connections saw the old certificate:\n{}",
        gateway
            .server
            .transcript()
            .lines()
            .filter(|l| l.contains("event"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(seen.iter().all(|l| *l == old || *l == new));
    assert_eq!(gw::exchange(&mut early, b"late\n").unwrap(), b"ok\n");
    let _ = gateway.server.finish(std::time::Duration::from_secs(1));
    let lines = gateway.conn_lines();
    assert_eq!(lines.len(), seen.len() + 1);
    assert!(lines.iter().all(|l| l["outcome"] == "relayed"), "{lines:?}");
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`.
fn connect_from(from: std::net::Ipv4Addr, port: u16) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let tcp = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
    });
    let tcp = tcp.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp
}

#[test]
fn a_thousand_connections_with_stalls_and_garbage_and_memory_returns_to_baseline() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_chain(d, "gw", &["gw.test"]);
    device_files(d, "openmv");
    let device = devtls_device(d, "openmv", "ok\n", &[]);
    let mut args = one_route(device.port, "openmv");
    args.extend(["--connect-timeout", "3"].map(String::from));
    let mut gateway = Gateway::start(d, &strs(&args), 1);
    let port = gateway.port();
    let config = gw::client_config(&d.join("root.pem"));
    for _ in 0..50 {
        assert_eq!(
            tls_exchange(&config, port, "gw.test", b"warm\n").unwrap(),
            b"ok\n"
        );
    }
    gateway.connections(50);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let baseline = gateway.rss_kib();

    let (good, stall, garbage) = (700, 200, 100);
    let barrier = std::sync::Barrier::new(good + stall + garbage);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..good + stall + garbage {
            let (barrier, config, failures) = (&barrier, &config, &failures);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    barrier.wait();
                    if i < good {
                        match tls_exchange(config, port, "gw.test", format!("n{i}\n").as_bytes()) {
                            Ok(r) if r == b"ok\n" => {}
                            other => failures.lock().unwrap().push(format!("{i}: {other:?}")),
                        }
                    } else {
                        // From other addresses than the good clients (the
                        // gateway's failure budget is per address):
                        // stalls from 127.0.0.2, garbage from 127.0.0.3.
                        let from = if i < good + stall {
                            [127, 0, 0, 2]
                        } else {
                            [127, 0, 0, 3]
                        };
                        let mut tcp = connect_from(from.into(), port);
                        tcp.set_read_timeout(Some(WAIT)).unwrap();
                        // A slowloris sends the start of a ClientHello and stalls;
                        // garbage is a plain-text request. Either way the gateway
                        // closes it; the read ends at that close.
                        let bytes: &[u8] = if i < good + stall {
                            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]
                        } else {
                            b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n"
                        };
                        tcp.write_all(bytes).unwrap();
                        let mut sink = Vec::new();
                        let _ = tcp.read_to_end(&mut sink);
                    }
                })
                .unwrap();
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} well-behaved connections failed: {failures:?}",
        failures.len()
    );
    // 50 warm-up + 700 relayed + 300 bad ones, each logged once.
    let lines = gateway.connections(50 + good + stall + garbage);
    let count = |outcome: &str| lines.iter().filter(|l| l["outcome"] == outcome).count();
    assert_eq!(count("relayed"), 50 + good);
    assert_eq!(count("client_failed"), stall + garbage);
    let stalled = lines
        .iter()
        .filter(|l| {
            l["detail"]
                .as_str()
                .is_some_and(|d| d.contains("no ClientHello within"))
        })
        .count();
    assert_eq!(
        stalled, stall,
        "the slowloris connections end at the time limit"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = gateway.rss_kib();
    // Back to the baseline, give or take 4 MiB (allocator and runtime noise).
    assert!(
        after <= baseline + 4096,
        "resident memory {after} KiB after the burst, {baseline} KiB before"
    );
    eprintln!("gateway RSS: {baseline} KiB before, {after} KiB after 1,000 connections");
}

/// A log reader that stops reading does not stop the gateway: its
/// standard output is a pipe nobody reads, and a thousand relayed
/// connections (each a `--json` line, several times what the pipe holds)
/// all get their answer. Before, the gateway's tasks waited on the full
/// pipe, and every client with them (`devtls_net::log_out`).
#[test]
fn a_log_nobody_reads_does_not_stop_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_chain(d, "gw", &["gw.test"]);
    device_files(d, "openmv");
    let device = devtls_device(d, "openmv", "ok\n", &[]);
    let port = support::free_tcp_port();
    let mut args = one_route(device.port, "openmv");
    args[1] = format!("127.0.0.1:{port}");
    let mut cmd = devtls();
    cmd.arg("gateway").arg("--json").args(&args).current_dir(d);
    let _gateway = support::Peer::spawn("devtls gateway", &mut cmd);
    support::wait_for_tcp(port, WAIT);
    let config = gw::client_config(&d.join("root.pem"));
    for i in 0..1000 {
        let answer = tls_exchange(&config, port, "gw.test", b"hi\n");
        assert_eq!(answer.ok().as_deref(), Some(&b"ok\n"[..]), "connection {i}");
    }
}

#[test]
fn print_config_nginx_is_accepted_by_nginx() {
    need("nginx", "nginx libnginx-mod-stream");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["cam1", "cam2"] {
        public_chain(d, name, &[&format!("{name}.gw.test")]);
        device_files(d, name);
    }
    let mut toml = route_toml("cam1", 8443, "");
    toml.push_str(&route_toml("cam2", 8444, ""));
    // nginx reads PEM: the PEM twins devtls new wrote beside the DER files.
    let toml = toml
        .replace("/server.der", "/server.crt")
        .replace("127.0.0.1:0", "127.0.0.1:18443");
    std::fs::write(d.join("gateway.toml"), toml).unwrap();
    let out = ok_in(
        d,
        &[
            "gateway",
            "--config",
            "gateway.toml",
            "--print-config",
            "nginx",
        ],
    );
    std::fs::write(d.join("stream.conf"), &out.stdout).unwrap();
    let module = [
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "/usr/share/nginx/modules/ngx_stream_module.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .map_or(String::new(), |p| format!("load_module {p};\n"));
    let built = std::process::Command::new("nginx")
        .arg("-V")
        .output()
        .unwrap();
    assert!(
        !module.is_empty()
            || !String::from_utf8_lossy(&built.stderr).contains("--with-stream=dynamic"),
        "nginx's stream module is not installed: apt-get install libnginx-mod-stream (or run scripts/test.sh)"
    );
    let conf = format!(
        "{module}pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\ninclude {0}/stream.conf;\n",
        d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let t = std::process::Command::new("nginx")
        .args(["-t", "-p"])
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-e")
        .arg(d.join("error.log"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&t.stderr);
    assert!(
        t.status.success() && said.contains("syntax is ok"),
        "nginx -t refused the generated configuration:\n{said}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A TLS 1.2 device stand-in whose certificate can be switched while it
/// runs (a device re-provisioned in place): each connection reads a line and
/// answers with the name of the certificate it was served with.
struct SwitchableDevice {
    port: u16,
    serving: std::sync::Arc<std::sync::Mutex<(String, std::sync::Arc<rustls::sign::CertifiedKey>)>>,
    /// Full and resumed handshakes so far.
    handshakes: std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]>,
}

#[derive(Debug)]
struct Current(
    std::sync::Arc<std::sync::Mutex<(String, std::sync::Arc<rustls::sign::CertifiedKey>)>>,
);

impl rustls::server::ResolvesServerCert for Current {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.lock().unwrap().1.clone())
    }
}

fn device_key(dir: &Path, name: &str) -> std::sync::Arc<rustls::sign::CertifiedKey> {
    let cert = std::fs::read(dir.join(name).join("server.der")).unwrap();
    let key = std::fs::read(dir.join(name).join("server.key.der")).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(key).unwrap();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    std::sync::Arc::new(
        rustls::sign::CertifiedKey::from_der(vec![cert.into()], key, &provider).unwrap(),
    )
}

impl SwitchableDevice {
    fn start(dir: &Path, name: &str) -> SwitchableDevice {
        Self::start_with(dir, name, false)
    }

    /// `keep_sessions`: the device lets clients resume (a TLS 1.2 session
    /// cache); otherwise every handshake is a full one.
    fn start_with(dir: &Path, name: &str, keep_sessions: bool) -> SwitchableDevice {
        use std::io::{BufRead, Write};
        let serving = std::sync::Arc::new(std::sync::Mutex::new((
            name.to_string(),
            device_key(dir, name),
        )));
        let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(std::sync::Arc::new(Current(serving.clone())));
        // No sessions kept: a re-provisioned device restarts with none, so
        // after a switch every handshake shows the certificate now served
        // (the gateway resumes device sessions when a device allows it).
        if !keep_sessions {
            config.session_storage = std::sync::Arc::new(rustls::server::NoServerSessionStorage {});
        }
        let config = std::sync::Arc::new(config);
        let handshakes = std::sync::Arc::new([
            std::sync::atomic::AtomicUsize::new(0),
            std::sync::atomic::AtomicUsize::new(0),
        ]);
        let counts = handshakes.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let current = serving.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                let current = current.clone();
                let counts = counts.clone();
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(WAIT));
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    while tls.conn.is_handshaking() {
                        if tls.conn.complete_io(&mut tls.sock).is_err() {
                            return;
                        }
                    }
                    let resumed = tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    counts[usize::from(resumed)].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // The certificate this connection was served with.
                    let served = current.lock().unwrap().0.clone();
                    let mut line = String::new();
                    let mut reader = std::io::BufReader::new(&mut tls);
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    drop(reader);
                    let _ = tls.write_all(format!("{served}\n").as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        SwitchableDevice {
            port,
            serving,
            handshakes,
        }
    }

    /// (full, resumed) handshakes so far.
    fn handshakes(&self) -> (usize, usize) {
        let n = |i: usize| self.handshakes[i].load(std::sync::atomic::Ordering::SeqCst);
        (n(0), n(1))
    }

    fn switch(&self, dir: &Path, name: &str) {
        *self.serving.lock().unwrap() = (name.to_string(), device_key(dir, name));
    }
}

/// PEM of the device certificates `names` (dir/NAME/server.der), for an anchor file.
fn anchors_pem(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            let out = support::openssl_ok(
                dir,
                &["x509", "-inform", "DER", "-in", &format!("{n}/server.der")],
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect()
}

#[test]
fn device_sessions_are_resumed_but_not_across_a_reload_of_the_device_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_chain(d, "gw", &["gw.test"]);
    for dir in ["dev", "other"] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
        ok_in(&d.join(dir), &["new", "server", "--dns", "openmv"]);
    }
    let device = SwitchableDevice::start_with(d, "dev", true);
    std::fs::write(d.join("anchor.pem"), anchors_pem(d, &["dev"])).unwrap();
    let toml = format!(
        "reload_interval_secs = 0.2\n[[route]]\nlisten = \"127.0.0.1:0\"\ncert = \"gw-fullchain.pem\"\n\
         key = \"gw-key.pem\"\nto = \"127.0.0.1:{}\"\ndevice_ca = \"anchor.pem\"\ndevice_name = \"openmv\"\n",
        device.port
    );
    std::fs::write(d.join("gateway.toml"), toml).unwrap();
    let mut gateway = Gateway::start(d, &["--config", "gateway.toml"], 1);
    let port = gateway.port();
    let config = gw::client_config(&d.join("root.pem"));
    let exchange = || {
        let reply = tls_exchange(&config, port, "gw.test", b"ping\n").unwrap();
        assert_eq!(reply, b"dev\n");
    };
    // One full handshake with the device, then its session is reused (as
    // nginx's proxy_ssl_session_reuse does).
    for _ in 0..3 {
        exchange();
    }
    assert_eq!(device.handshakes(), (1, 2));
    // A new anchor file: the device side is rebuilt, and sessions verified
    // under the old anchor are not resumed.
    let tmp = d.join("anchor.tmp");
    std::fs::write(&tmp, anchors_pem(d, &["dev", "other"])).unwrap();
    std::fs::rename(&tmp, d.join("anchor.pem")).unwrap();
    let reloaded = gateway.wait_json(|v| v["event"] == "reloaded");
    assert_eq!(reloaded["what"], "device_side", "{reloaded}");
    exchange();
    exchange();
    assert_eq!(device.handshakes(), (2, 3));
}

#[test]
fn the_device_anchor_reloads_under_load_without_a_failed_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_chain(d, "gw", &["gw.test"]);
    // The device before and after re-provisioning: two self-signed
    // certificates for the same name.
    for dir in ["old", "new"] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
        ok_in(&d.join(dir), &["new", "server", "--dns", "openmv"]);
    }
    let device = SwitchableDevice::start(d, "old");
    let write_anchor = |pem: &str| {
        std::fs::write(d.join("anchor.tmp"), pem).unwrap();
        std::fs::rename(d.join("anchor.tmp"), d.join("anchor.pem")).unwrap();
    };
    write_anchor(&anchors_pem(d, &["old"]));
    let toml = format!(
        "reload_interval_secs = 0.2\n[[route]]\nlisten = \"127.0.0.1:0\"\ncert = \"gw-fullchain.pem\"\n\
         key = \"gw-key.pem\"\nto = \"127.0.0.1:{}\"\ndevice_ca = \"anchor.pem\"\ndevice_name = \"openmv\"\n",
        device.port
    );
    std::fs::write(d.join("gateway.toml"), toml).unwrap();
    let mut gateway = Gateway::start(d, &["--config", "gateway.toml"], 1);
    let port = gateway.port();
    let config = gw::client_config(&d.join("root.pem"));
    let pause = || std::thread::sleep(std::time::Duration::from_millis(400));

    // Opened before any change; its device connection is made now.
    let mut early = tls_connect(&config, port, "gw.test").unwrap();
    let stop = AtomicBool::new(false);
    let answers = std::sync::Mutex::new(Vec::<String>::new());
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match tls_exchange(&config, port, "gw.test", b"ping\n") {
                        Ok(reply) => answers
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&reply).trim().to_string()),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
        pause();
        // A broken anchor file: refused, the old anchor stays.
        write_anchor("-----BEGIN CERTIFICATE-----\nnot base64\n");
        let refused = gateway.wait_json(|v| v["event"] == "reload_refused");
        assert_eq!(refused["what"], "device_side", "{refused}");
        assert!(
            refused["error"].as_str().unwrap().contains("anchor.pem"),
            "{refused}"
        );
        pause();
        // The rotation: both certificates, then the device changes, then only the new one.
        write_anchor(&anchors_pem(d, &["old", "new"]));
        let reloaded = gateway.wait_json(|v| v["event"] == "reloaded");
        assert_eq!(reloaded["what"], "device_side", "{reloaded}");
        pause();
        device.switch(d, "new");
        pause();
        write_anchor(&anchors_pem(d, &["new"]));
        gateway.wait_json(|v| v["event"] == "reloaded");
        pause();
        stop.store(true, Ordering::Relaxed);
    });
    let failures = failures.into_inner().unwrap();
    let answers = answers.into_inner().unwrap();
    assert!(failures.is_empty(), "failed exchanges: {failures:?}");
    assert!(answers.contains(&"old".to_string()), "{answers:?}");
    assert_eq!(
        answers.last().map(String::as_str),
        Some("new"),
        "{answers:?}"
    );
    // The connection opened before every change still works (its device
    // connection was verified with the old anchor and kept).
    assert_eq!(gw::exchange(&mut early, b"late\n").unwrap(), b"old\n");
    // The old device certificate is no longer trusted for new connections.
    device.switch(d, "old");
    let refused = tls_exchange(&config, port, "gw.test", b"ping\n");
    assert!(
        refused.as_ref().map_or(true, |r| r.is_empty()),
        "{refused:?}"
    );
    let line = gateway.wait_json(|v| v["outcome"] == "upstream_failed");
    assert_eq!(line["diagnosis"]["reason"], "unknown_ca", "{line}");
}

/// `devtls serve` as the "public" server of an outbound route, with a chain
/// from a root the devices do not carry; returns it and its port.
fn public_server(d: &Path, reply: &str) -> (LineServer, u16) {
    public_chain(d, "public", &["public.test"]);
    let mut cmd = devtls();
    cmd.args([
        "serve",
        "--cert",
        "public-fullchain.pem",
        "--key",
        "public-key.pem",
    ])
    .args([
        "--profile",
        "modern",
        "--port",
        "0",
        "--reply",
        reply,
        "--json",
    ])
    .current_dir(d);
    let mut public = LineServer::spawn("devtls serve (public)", &mut cmd, 0);
    let first = public.wait_line(WAIT, |l| l.stdout);
    let port = serde_json::from_str::<Value>(&first.text).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    (public, port)
}

#[test]
fn outbound_devices_on_the_fleet_crl_are_refused_naming_serial_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_public, public_port) = public_server(d, "public says hi\n");
    device_files(d, "gateway");
    ok_in(d, &["fleet", "init", "--name", "Gateway test fleet"]);
    ok_in(d, &["fleet", "issue", "cam-1", "cam-2"]);
    let revoked = ok_in(
        d,
        &[
            "fleet",
            "revoke",
            "cam-2",
            "--reason",
            "keyCompromise",
            "--json",
        ],
    );
    let revoked: Value = serde_json::from_slice(&revoked.stdout).unwrap();
    let serial = revoked["revoked"][0]["serial"]
        .as_str()
        .unwrap()
        .to_uppercase();
    ok_in(d, &["fleet", "crl"]);
    let to = format!("127.0.0.1:{public_port}");
    let args = [
        "--outbound",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "gateway/server.der",
        "--key",
        "gateway/server.key.der",
        "--to",
        &to,
        "--public-name",
        "public.test",
        "--public-ca",
        "root.pem",
        "--client-ca",
        "fleet/ca.der",
        "--client-crl",
        "fleet/crl.der",
    ];
    let mut gateway = Gateway::start(d, &args, 1);
    let device_args = |cam: &str| {
        [
            "--ca".to_string(),
            "gateway/server.der".into(),
            "--hostname".into(),
            "gateway".into(),
            "--cert".into(),
            format!("fleet/devices/{cam}/client.der"),
            "--key".into(),
            format!("fleet/devices/{cam}/client.key.der"),
            "--send".into(),
            "device here\n".into(),
        ]
    };
    let run = device::client(d, gateway.port(), &strs(&device_args("cam-1")));
    assert_eq!(
        run.single().received.as_deref(),
        Some("public says hi\n"),
        "{}",
        run.transcript
    );
    assert_eq!(
        gateway.wait_json(|v| v.get("client").is_some())["outcome"],
        "relayed"
    );

    // The revoked device: refused, and the line says which certificate and why.
    let run = device::client(d, gateway.port(), &strs(&device_args("cam-2")));
    assert!(
        run.single().received.as_deref().unwrap_or("").is_empty(),
        "{}",
        run.transcript
    );
    let line = gateway.wait_json(|v| v.get("client").is_some());
    assert_eq!(line["outcome"], "client_revoked", "{line}");
    assert_eq!(
        line["revoked"]["serial"].as_str().unwrap(),
        serial,
        "{line}"
    );
    assert_eq!(line["revoked"]["reason"], "keyCompromise", "{line}");
    assert!(
        line["revoked"]["crl"]
            .as_str()
            .unwrap()
            .ends_with("crl.der"),
        "{line}"
    );

    // A new CRL (cam-1 revoked too) is picked up without a restart; a broken
    // one is refused and the CRL in use kept.
    std::fs::write(d.join("broken.der"), b"\x30\x03\x02\x01").unwrap();
    std::fs::rename(d.join("broken.der"), d.join("fleet/crl.der")).unwrap();
    let refused = gateway.wait_json(|v| v["event"] == "reload_refused");
    assert_eq!(refused["what"], "client_ca", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("crl.der"),
        "{refused}"
    );
    let run = device::client(d, gateway.port(), &strs(&device_args("cam-1")));
    assert_eq!(
        run.single().received.as_deref(),
        Some("public says hi\n"),
        "{}",
        run.transcript
    );
    ok_in(d, &["fleet", "revoke", "cam-1", "--reason", "superseded"]);
    ok_in(d, &["fleet", "crl"]);
    gateway.wait_json(|v| v["event"] == "reloaded" && v["what"] == "client_ca");
    let run = device::client(d, gateway.port(), &strs(&device_args("cam-1")));
    assert!(
        run.single().received.as_deref().unwrap_or("").is_empty(),
        "{}",
        run.transcript
    );
    let line = gateway
        .wait_json(|v| v["outcome"] == "client_revoked" && v["revoked"]["reason"] == "superseded");
    assert_ne!(
        line["revoked"]["serial"].as_str().unwrap(),
        serial,
        "{line}"
    );
}

#[test]
fn max_connections_refuses_the_extra_ones_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_chain(d, "gw", &["gw.test"]);
    device_files(d, "openmv");
    let device = devtls_device(d, "openmv", "ok\n", &[]);
    let (n, k) = (3, 2);
    let mut args = one_route(device.port, "openmv");
    args.extend(["--max-connections", "3", "--idle-timeout", "30"].map(String::from));
    let mut gateway = Gateway::start(d, &strs(&args), 1);
    let port = gateway.port();
    let config = gw::client_config(&d.join("root.pem"));
    // N connections hold their slots (handshake done, nothing sent yet).
    let mut held: Vec<_> = (0..n)
        .map(|_| tls_connect(&config, port, "gw.test").expect("one of the first N"))
        .collect();
    // K more: each closed at once, with a line saying so.
    for _ in 0..k {
        let extra = tls_exchange(&config, port, "gw.test", b"ping\n");
        assert!(extra.is_err(), "an extra connection was served: {extra:?}");
    }
    let lines = gateway.connections(k);
    assert_eq!(lines.len(), k, "{lines:?}");
    for line in &lines {
        assert_eq!(line["outcome"], "limit", "{line}");
        assert_eq!(line["max_connections"], 3, "{line}");
    }
    // The N complete.
    for tls in &mut held {
        assert_eq!(gw::exchange(tls, b"ping\n").unwrap(), b"ok\n");
    }
    let lines = gateway.connections(n + k);
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "relayed").count(),
        n,
        "{lines:?}"
    );
    drop(gateway);

    // Per-route idle timeout: a connection that sends nothing is closed
    // (close_notify) by the gateway, not by the client's read timeout.
    let mut args = one_route(device.port, "openmv");
    args.extend(["--idle-timeout", "1"].map(String::from));
    let mut gateway = Gateway::start(d, &strs(&args), 1);
    let mut idle = tls_connect(&config, gateway.port(), "gw.test").unwrap();
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut idle, &mut rest);
    assert!(
        read.is_ok(),
        "the gateway did not close the idle connection within {WAIT:?}: {read:?}"
    );
    let line = gateway.wait_json(|v| v.get("client").is_some());
    assert_eq!(line["outcome"], "idle", "{line}");
}
