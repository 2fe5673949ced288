//! Debian's Pebble and pebble-challtestsrv on 127.0.0.1, started and stopped
//! by the test: a throwaway HTTPS certificate for Pebble's own listener
//! (trusted only by the test, through `--server-ca`), free ports for
//! everything, challtestsrv as Pebble's DNS resolver answering 127.0.0.1.
#![allow(dead_code)]

pub mod ari;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use devtls_pki::issue::{self, Authority, CertSpec, Role};
use devtls_pki::keys::{KeyType, PrivateKey};

use crate::support::{free_tcp_port, wait_for_tcp, Peer};

/// Pebble's knobs (its environment variables and config).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// PEBBLE_WFE_NONCEREJECT: percentage of valid nonces refused.
    pub nonce_reject: u32,
    /// PEBBLE_ALTERNATE_ROOTS: extra root hierarchies (alternate chains).
    pub alternate_roots: u32,
    /// certificateValidityPeriod in seconds (None: Pebble's default).
    pub validity_secs: Option<u64>,
    /// Require External Account Binding with [`EAB_KID`] / [`EAB_HMAC`].
    pub eab: bool,
}

/// The EAB key id Pebble is given when [`Options::eab`] is set.
pub const EAB_KID: &str = "kid-1";
/// Its HMAC key (base64url), from Pebble's example configuration.
pub const EAB_HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// A running Pebble with its challenge test server.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT/dir`.
    pub url: String,
    /// The PEM file that makes Pebble's HTTPS trusted (`--server-ca`).
    pub server_ca: PathBuf,
    /// Pebble's management port (roots, intermediates).
    pub management: u16,
    /// The port Pebble validates http-01 on.
    pub http_port: u16,
    /// The port Pebble validates tls-alpn-01 on.
    pub tls_port: u16,
    /// challtestsrv's management (HTTP) port.
    pub challtest: u16,
    _pebble: Peer,
    _challtest: Peer,
}

/// Fails the test in one line when a peer is not installed (the
/// workspace's one peer table, support::require).
pub fn require(binary: &str, _package: &str) {
    crate::support::require(binary);
}

impl Pebble {
    pub fn start(options: Options) -> Pebble {
        require("pebble", "pebble");
        require("pebble-challtestsrv", "pebble");
        require("curl", "curl");
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS: a test root and a leaf for 127.0.0.1 / localhost.
        let root_key = PrivateKey::generate(KeyType::P256).unwrap();
        let root =
            issue::self_signed_root(&CertSpec::new("pebble test root", Role::Ca, 30), &root_key)
                .unwrap();
        let leaf_key = PrivateKey::generate(KeyType::P256).unwrap();
        let mut spec = CertSpec::new("localhost", Role::Server, 30);
        spec.dns = vec!["localhost".into()];
        spec.ips = vec!["127.0.0.1".parse().unwrap()];
        let leaf = Authority::load(&root.der, root_key)
            .unwrap()
            .sign(&spec, &leaf_key)
            .unwrap();
        let p = dir.path();
        std::fs::write(p.join("server-ca.pem"), root.pem()).unwrap();
        std::fs::write(p.join("pebble.crt"), leaf.pem()).unwrap();
        std::fs::write(p.join("pebble.key"), leaf_key.pkcs8_pem()).unwrap();

        let (listen, management, http_port, tls_port) = (
            free_tcp_port(),
            free_tcp_port(),
            free_tcp_port(),
            free_tcp_port(),
        );
        let (dns, challtest) = (free_tcp_port(), free_tcp_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": p.join("pebble.crt"),
            "privateKey": p.join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if options.eab {
            config["pebble"]["externalAccountBindingRequired"] = true.into();
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ EAB_KID: EAB_HMAC });
        }
        if let Some(secs) = options.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        std::fs::write(p.join("pebble.json"), config.to_string()).unwrap();

        let challtest_peer = Peer::spawn(
            "pebble-challtestsrv",
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-management", &format!("127.0.0.1:{challtest}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .current_dir(p),
        );
        wait_for_tcp(challtest, Duration::from_secs(20));
        let pebble = Peer::spawn(
            "pebble",
            Command::new("pebble")
                .arg("-config")
                .arg(p.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_WFE_NONCEREJECT", options.nonce_reject.to_string())
                .env(
                    "PEBBLE_ALTERNATE_ROOTS",
                    options.alternate_roots.to_string(),
                )
                .current_dir(p),
        );
        wait_for_tcp(listen, Duration::from_secs(20));
        wait_for_tcp(management, Duration::from_secs(20));
        Pebble {
            url: format!("https://127.0.0.1:{listen}/dir"),
            server_ca: p.join("server-ca.pem"),
            management,
            http_port,
            tls_port,
            challtest,
            dir,
            _pebble: pebble,
            _challtest: challtest_peer,
        }
    }

    /// `--server URL --server-ca FILE`.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--server".into(),
            self.url.clone(),
            "--server-ca".into(),
            self.server_ca.display().to_string(),
        ]
    }

    /// A root or intermediate from Pebble's management interface
    /// (`roots/N`, `intermediates/N`), PEM, fetched over its HTTPS with curl.
    pub fn management_get(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&self.server_ca)
            .arg(format!("https://127.0.0.1:{}/{path}", self.management))
            .output()
            .expect("curl is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The PEM of the test root behind Pebble's own HTTPS (a root no ACME chain ends at).
    pub fn server_ca_pem(&self) -> String {
        std::fs::read_to_string(&self.server_ca).unwrap()
    }

    /// A dns-01 hook script that publishes the TXT record in challtestsrv
    /// through its management API, as a real DNS provider's API would.
    pub fn dns_hook(&self, dir: &Path) -> PathBuf {
        let script = dir.join("dns-hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# $1 = add|remove, $2 = record name, $3 = TXT value\n\
                 set -e\n\
                 case \"$1\" in add) api=set-txt; body=\"{{\\\"host\\\":\\\"$2.\\\",\\\"value\\\":\\\"$3\\\"}}\";;\n\
                 remove) api=clear-txt; body=\"{{\\\"host\\\":\\\"$2.\\\"}}\";;\n\
                 *) exit 2;; esac\n\
                 echo \"$1 $2\" >> \"{log}\"\n\
                 curl -sS --fail --max-time 10 -X POST -d \"$body\" http://127.0.0.1:{port}/$api\n",
                log = dir.join("dns-hook.log").display(),
                port = self.challtest
            ),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        script
    }
}

/// Runs `devtls acme ARGS` in `dir` with a time limit.
pub fn acme(dir: &Path, args: &[String]) -> Output {
    let mut cmd = crate::support::devtls();
    cmd.arg("acme").args(args).current_dir(dir);
    let peer = Peer::spawn("devtls acme", &mut cmd);
    peer.finish(Duration::from_secs(240))
}

/// Strings from string slices.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
