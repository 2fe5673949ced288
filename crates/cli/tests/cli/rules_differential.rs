//! The differential test of pki's device rules (issue 10 "Proof"): a seeded
//! generator of certificate chains, each judged by `devtls_pki::rules::path`
//! and by the mbedTLS 3.6 device peer's `verify` batch mode
//! (`mbedtls_x509_crt_verify_with_profile`, default profile, the device
//! clock); the anchor's load result, the chain's parse result, the skipped
//! certificates and the verify flags must agree on every chain.
//!
//! `DEVTLS_DIFF_CHAINS=N` (default 20000) sets the count and
//! `DEVTLS_DIFF_SEED=S` the seed, for a longer run:
//! `DEVTLS_DIFF_CHAINS=500000 cargo test --workspace --test cli -- rules_differential:: --nocapture`.

use crate::support;

use std::time::Instant;

use devtls_pki::profile;
use devtls_pki::rules::path::verify_der;
use support::certgen::{self as g, CertSpec, Key, KeyKind, Rng, SigAlg};
use support::device::{self, VerifyCase};

const DAY: i64 = 86_400;
const HOST: &str = "cam.example.test";

struct Pools {
    keys: Vec<Key>,
}

impl Pools {
    fn new() -> Pools {
        use KeyKind::*;
        // Mostly fast keys; RSA-4096 and P-521 are slow to sign and verify,
        // so they appear less often.
        let kinds = [
            P256, P256, P256, P256, P384, P384, P521, K256, K256, Rsa2048, Rsa4096, Rsa1024,
            Ed25519, Brainpool,
        ];
        Pools {
            keys: kinds.iter().map(|k| g::make_key(*k)).collect(),
        }
    }

    /// A key for a certificate that signs others (must have a signer):
    /// mostly P-256, the fastest to sign and verify on both sides.
    fn issuer_key(&self, rng: &mut Rng) -> usize {
        loop {
            let i = if rng.chance(75) {
                rng.below(4)
            } else {
                rng.below(self.keys.len())
            };
            if self.keys[i].signer.is_some() {
                return i;
            }
        }
    }

    /// Mostly P-256, sometimes anything.
    fn weighted(&self, rng: &mut Rng) -> usize {
        if rng.chance(55) {
            rng.below(4)
        } else {
            rng.below(self.keys.len())
        }
    }
}

/// What one generated case is, for the disagreement report.
struct Case {
    id: String,
    anchor: Vec<u8>,
    chain: Vec<Vec<u8>>,
    hostname: Option<String>,
    time: i64,
    story: Vec<String>,
}

fn validity(rng: &mut Rng, now: i64, story: &mut Vec<String>, who: &str) -> (i64, i64) {
    match rng.below(100) {
        0..=3 => {
            story.push(format!("{who} expired"));
            (now - 400 * DAY, now - DAY)
        }
        4..=7 => {
            story.push(format!("{who} not yet valid"));
            (now + DAY, now + 400 * DAY)
        }
        _ => (now - 10 * DAY, now + 300 * DAY),
    }
}

fn pick_alg(rng: &mut Rng, key: &Key, story: &mut Vec<String>, who: &str) -> SigAlg {
    let alg = *rng.pick(SigAlg::choices(key.signer.as_ref().unwrap()));
    if alg != SigAlg::EcdsaSha256 && alg != SigAlg::RsaSha256 {
        story.push(format!("{who} signed {alg:?}"));
    }
    alg
}

fn odd_extensions(rng: &mut Rng, exts: &mut Vec<g::Ext>, story: &mut Vec<String>, who: &str) {
    if rng.chance(3) {
        story.push(format!("{who} critical nameConstraints"));
        exts.push((
            "2.5.29.30".into(),
            true,
            g::seq(&[g::tlv(0xa0, &g::seq(&[g::tlv(0x82, b"example.test")]))]),
        ));
    }
    if rng.chance(3) {
        let critical = rng.chance(50);
        story.push(format!("{who} unknown extension critical={critical}"));
        exts.push(("1.3.6.1.4.1.55555.1".into(), critical, g::tlv(0x05, &[])));
    }
    if rng.chance(3) {
        let any = rng.chance(50);
        story.push(format!("{who} critical policies any={any}"));
        let p = if any { "2.5.29.32.0" } else { "1.2.3.4" };
        exts.push(("2.5.29.32".into(), true, g::policies(&[p])));
    }
}

fn generate(n: usize, rng: &mut Rng, pools: &Pools, now: i64) -> Case {
    let mut story = Vec::new();
    let tag = format!("c{n}");
    let depth = match rng.below(100) {
        0..=14 => 0,
        15..=64 => 1,
        65..=89 => 2,
        90..=97 => 3,
        _ => 9,
    };
    // The root.
    let root_key = pools.issuer_key(rng);
    let root_name = format!("Root {tag}");
    let v1_root = rng.chance(3);
    let mut exts = Vec::new();
    if !v1_root {
        let ca = !rng.chance(3);
        if !ca {
            story.push("root without CA bit".into());
        }
        exts.push(("2.5.29.19".into(), true, g::basic_constraints(ca, None)));
        if rng.chance(5) {
            story.push("root keyUsage digitalSignature only".into());
            exts.push(("2.5.29.15".into(), true, g::key_usage(&[0])));
        } else {
            exts.push(("2.5.29.15".into(), true, g::key_usage(&[5, 6])));
        }
        odd_extensions(rng, &mut exts, &mut story, "root");
    } else {
        story.push("v1 root".into());
    }
    let (nb, na) = validity(rng, now, &mut story, "root");
    let alg = pick_alg(rng, &pools.keys[root_key], &mut story, "root");
    let root = g::certificate(
        &CertSpec {
            version: if v1_root { 1 } else { 3 },
            serial: rng.next() >> 1,
            issuer: root_name.clone(),
            subject: root_name.clone(),
            not_before: nb,
            not_after: na,
            extensions: exts,
        },
        &pools.keys[root_key],
        pools.keys[root_key].signer.as_ref().unwrap(),
        alg,
        rng,
    );
    story.push(format!("root {:?}", pools.keys[root_key].kind));

    // Intermediates, top down.
    let mut issuer_key = root_key;
    let mut issuer_name = root_name.clone();
    let mut intermediates = Vec::new();
    for level in 0..depth {
        let who = format!("int{level}");
        let key = pools.issuer_key(rng);
        let subject = format!("Int {level} {tag}");
        let mut exts = Vec::new();
        let ca = !rng.chance(2);
        if !ca {
            story.push(format!("{who} without CA bit"));
        }
        let path_len = if rng.chance(15) {
            let p = rng.below(3) as u64;
            story.push(format!("{who} pathLen {p}"));
            Some(p)
        } else {
            None
        };
        exts.push(("2.5.29.19".into(), true, g::basic_constraints(ca, path_len)));
        if rng.chance(3) {
            story.push(format!("{who} keyUsage without keyCertSign"));
            exts.push(("2.5.29.15".into(), true, g::key_usage(&[0])));
        } else {
            exts.push(("2.5.29.15".into(), true, g::key_usage(&[5, 6])));
        }
        odd_extensions(rng, &mut exts, &mut story, &who);
        let (nb, na) = validity(rng, now, &mut story, &who);
        let alg = pick_alg(rng, &pools.keys[issuer_key], &mut story, &who);
        let mut der = g::certificate(
            &CertSpec {
                version: 3,
                serial: rng.next() >> 1,
                issuer: issuer_name.clone(),
                subject: subject.clone(),
                not_before: nb,
                not_after: na,
                extensions: exts,
            },
            &pools.keys[key],
            pools.keys[issuer_key].signer.as_ref().unwrap(),
            alg,
            rng,
        );
        if rng.chance(2) {
            story.push(format!("{who} signature damaged"));
            let at = der.len() - 3;
            der[at] ^= 0x55;
        }
        story.push(format!("{who} {:?}", pools.keys[key].kind));
        intermediates.push(der);
        issuer_key = key;
        issuer_name = subject;
    }

    // The leaf.
    let self_signed_leaf = depth == 0 && rng.chance(30);
    let leaf_key = if self_signed_leaf {
        pools.issuer_key(rng)
    } else {
        pools.weighted(rng)
    };
    let leaf_cn = match rng.below(10) {
        0..=5 => HOST.to_string(),
        6 => "*.example.test".to_string(),
        7 => "127.0.0.1".to_string(),
        _ => format!("leaf {tag}"),
    };
    let mut exts = Vec::new();
    let san_entries: Vec<(&str, String)> = match rng.below(10) {
        0 => vec![],
        1 => vec![("dns", "*.example.test".into())],
        2 => vec![("ip", "127.0.0.1".into())],
        3 => vec![("uri", HOST.into()), ("uri", "urn:x".into())],
        4 => vec![("dns", "other.example".into())],
        5 => vec![("dns", "CAM.Example.Test".into())],
        _ => vec![("dns", HOST.into()), ("ip", "127.0.0.1".into())],
    };
    if !san_entries.is_empty() {
        story.push(format!("SAN {san_entries:?}"));
        exts.push(("2.5.29.17".into(), false, g::san(&san_entries)));
    } else {
        story.push(format!("no SAN, CN {leaf_cn}"));
    }
    if self_signed_leaf && rng.chance(50) {
        story.push("self-signed leaf CA:TRUE".into());
        exts.push(("2.5.29.19".into(), true, g::basic_constraints(true, None)));
    }
    match rng.below(10) {
        0 => {
            story.push("leaf EKU clientAuth".into());
            exts.push(("2.5.29.37".into(), false, g::eku(&["1.3.6.1.5.5.7.3.2"])));
        }
        1..=5 => exts.push(("2.5.29.37".into(), false, g::eku(&["1.3.6.1.5.5.7.3.1"]))),
        _ => {}
    }
    if rng.chance(50) {
        exts.push(("2.5.29.15".into(), true, g::key_usage(&[0])));
    }
    odd_extensions(rng, &mut exts, &mut story, "leaf");
    let (nb, na) = validity(rng, now, &mut story, "leaf");
    let leaf_name = leaf_cn.clone();
    let (issuer_of_leaf, signer_key) = if self_signed_leaf {
        story.push("self-signed leaf".into());
        (leaf_name.clone(), leaf_key)
    } else {
        (issuer_name.clone(), issuer_key)
    };
    let alg = pick_alg(rng, &pools.keys[signer_key], &mut story, "leaf");
    let leaf = g::certificate(
        &CertSpec {
            version: if rng.chance(3) {
                story.push("v1 leaf".into());
                1
            } else {
                3
            },
            serial: rng.next() >> 1,
            issuer: issuer_of_leaf,
            subject: leaf_name,
            not_before: nb,
            not_after: na,
            extensions: exts,
        },
        &pools.keys[leaf_key],
        pools.keys[signer_key].signer.as_ref().unwrap(),
        alg,
        rng,
    );
    story.push(format!("leaf {:?}", pools.keys[leaf_key].kind));

    // What the server sends.
    let mut chain = vec![leaf.clone()];
    let mut sent: Vec<Vec<u8>> = intermediates.iter().rev().cloned().collect();
    if sent.len() > 1 && rng.chance(5) {
        story.push("intermediates reversed".into());
        sent.reverse();
    }
    if !sent.is_empty() && rng.chance(5) {
        story.push("server omits the top intermediate".into());
        sent.pop();
    }
    chain.extend(sent);
    if rng.chance(8) {
        story.push("server sends the root".into());
        chain.push(root.clone());
    }
    // The anchor.
    let anchor = match rng.below(100) {
        0..=79 => {
            if self_signed_leaf {
                story.push("anchor = the self-signed leaf".into());
                leaf.clone()
            } else {
                root.clone()
            }
        }
        80..=87 if !intermediates.is_empty() => {
            story.push("anchor = top intermediate".into());
            intermediates[0].clone()
        }
        88..=94 => {
            story.push("anchor = the leaf (pinned)".into());
            leaf.clone()
        }
        _ => {
            story.push("anchor = a root of the same name, another key".into());
            let other = pools.issuer_key(rng);
            let mut exts = vec![(
                "2.5.29.19".to_string(),
                true,
                g::basic_constraints(true, None),
            )];
            exts.push(("2.5.29.15".into(), true, g::key_usage(&[5, 6])));
            g::certificate(
                &CertSpec {
                    version: 3,
                    serial: 7,
                    issuer: root_name.clone(),
                    subject: root_name.clone(),
                    not_before: now - DAY,
                    not_after: now + 300 * DAY,
                    extensions: exts,
                },
                &pools.keys[other],
                pools.keys[other].signer.as_ref().unwrap(),
                SigAlg::choices(pools.keys[other].signer.as_ref().unwrap())[0],
                rng,
            )
        }
    };
    let hostname = match rng.below(10) {
        0 => None,
        1 => Some("127.0.0.1".to_string()),
        2 => Some("a.b.example.test".to_string()),
        _ => Some(HOST.to_string()),
    };
    story.push(format!("hostname {hostname:?}"));
    Case {
        id: tag,
        anchor,
        chain,
        hostname,
        time: now,
        story,
    }
}

#[test]
fn pki_rules_agree_with_mbedtls_36_on_generated_chains() {
    let count: usize = std::env::var("DEVTLS_DIFF_CHAINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("DEVTLS_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026);
    let started = Instant::now();
    let pools = Pools::new();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut rng = Rng::new(seed);
    let cases: Vec<Case> = (0..count)
        .map(|n| generate(n, &mut rng, &pools, now))
        .collect();
    let generated = started.elapsed();
    let requests: Vec<VerifyCase> = cases
        .iter()
        .map(|c| VerifyCase {
            id: c.id.clone(),
            anchor: c.anchor.clone(),
            chain: c.chain.clone(),
            hostname: c.hostname.clone(),
            time: c.time,
        })
        .collect();
    // The oracle in two processes while pki's rules judge the same chains here.
    let half = requests.len().div_ceil(2).max(1);
    let (answers, ours): (Vec<device::Verdict>, Vec<_>) = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .chunks(half)
            .map(|part| s.spawn(move || device::verify(part)))
            .collect();
        let ours: Vec<_> = cases
            .iter()
            .map(|case| {
                verify_der(
                    &profile::OPENMV,
                    &case.anchor,
                    &case.chain,
                    case.hostname.as_deref(),
                    time::OffsetDateTime::from_unix_timestamp(case.time).unwrap(),
                )
            })
            .collect();
        let answers = handles
            .into_iter()
            .flat_map(|h| h.join().expect("device-peer verify"))
            .collect();
        (answers, ours)
    });
    let judged = started.elapsed();
    let mut disagreements = Vec::new();
    let mut failing = 0;
    for ((case, answer), ours) in cases.iter().zip(&answers).zip(&ours) {
        let theirs_anchor = answer.anchor.as_ref().map(|a| a.code);
        let theirs_parse = answer
            .parse
            .as_ref()
            .map(|p| (p.index.unwrap_or(0), p.code));
        let ours_flags = ours.flags();
        if ours_flags.is_some_and(|f| f != 0) || theirs_anchor.is_some() || theirs_parse.is_some() {
            failing += 1;
        }
        let agree = ours.anchor_error.map(i64::from) == theirs_anchor
            && ours.parse_error.map(|(i, c)| (i, i64::from(c))) == theirs_parse
            && ours.skipped == answer.skipped
            && ours_flags == answer.flags;
        if !agree {
            disagreements.push(format!(
                "{}: ours anchor={:?} parse={:?} skipped={:?} flags={:?}; mbedTLS anchor={:?} parse={:?} skipped={:?} flags={:?} {:?}\n    {}",
                case.id,
                ours.anchor_error,
                ours.parse_error,
                ours.skipped,
                ours_flags.map(|f| format!("{f:#x}")),
                theirs_anchor,
                theirs_parse,
                answer.skipped,
                answer.flags.map(|f| format!("{f:#x}")),
                answer.texts,
                case.story.join("; ")
            ));
        }
    }
    let total = started.elapsed();
    println!(
        "differential: {count} chains (seed {seed:#x}), {failing} refused by the device; \
         generated in {:.1} s, judged by both by {:.1} s, total {:.1} s wall, {:.1} s CPU \
         (this process and the device peer); {} disagreements",
        generated.as_secs_f64(),
        judged.as_secs_f64(),
        total.as_secs_f64(),
        cpu_seconds(),
        disagreements.len()
    );
    for d in disagreements.iter().take(40) {
        println!("{d}");
    }
    assert!(
        disagreements.is_empty(),
        "{} of {count} chains judged differently (first: {})",
        disagreements.len(),
        disagreements[0]
    );
}

/// CPU seconds used by this process and its finished children (the peer):
/// the wall time depends on what else the machine runs.
#[cfg(unix)]
fn cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } == 0 {
            for t in [u.ru_utime, u.ru_stime] {
                total += t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            }
        }
    }
    total
}

/// Not measured off Unix (no `getrusage`): printed as NaN.
#[cfg(not(unix))]
fn cpu_seconds() -> f64 {
    f64::NAN
}

/// Certificate of `subject` with `key`, issued by `issuer`/`issuer_key`.
#[allow(clippy::too_many_arguments)]
fn cert(
    rng: &mut Rng,
    subject: &str,
    key: &Key,
    issuer: &str,
    issuer_key: &Key,
    alg: SigAlg,
    extensions: Vec<g::Ext>,
    now: i64,
) -> Vec<u8> {
    g::certificate(
        &CertSpec {
            version: 3,
            serial: rng.next() >> 1,
            issuer: issuer.into(),
            subject: subject.into(),
            not_before: now - DAY,
            not_after: now + 300 * DAY,
            extensions,
        },
        key,
        issuer_key.signer.as_ref().unwrap(),
        alg,
        rng,
    )
}

fn ca_exts(bc: Vec<u8>) -> Vec<g::Ext> {
    vec![
        ("2.5.29.19".into(), true, bc),
        ("2.5.29.15".into(), true, g::key_usage(&[5, 6])),
    ]
}

fn leaf_exts() -> Vec<g::Ext> {
    vec![("2.5.29.17".into(), false, g::san(&[("dns", HOST.into())]))]
}

/// The disagreements the generator found, kept as named cases: each is
/// judged by pki's rules and by the device peer, and both must give the
/// expected answer.
#[test]
fn regressions_the_generator_found() {
    let mut rng = Rng::new(7);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let p256 = g::make_key(KeyKind::P256);
    let p256b = g::make_key(KeyKind::P256);
    let p384 = g::make_key(KeyKind::P384);
    let k256 = g::make_key(KeyKind::K256);
    let ed = g::make_key(KeyKind::Ed25519);
    let leaf_key = g::make_key(KeyKind::P256);
    let root = cert(
        &mut rng,
        "R",
        &p256,
        "R",
        &p256,
        SigAlg::EcdsaSha256,
        ca_exts(g::basic_constraints(true, None)),
        now,
    );
    // (name, anchor, chain, parse error, skipped, flags)
    type Named = (
        &'static str,
        Vec<u8>,
        Vec<Vec<u8>>,
        Option<(usize, i64)>,
        Vec<usize>,
        Option<u32>,
    );
    let mut named: Vec<Named> = Vec::new();

    // basicConstraints without the cA boolean: mbedTLS reads the pathLen
    // INTEGER as cA, so { pathLen 2 } issues and { pathLen 0 } does not.
    for (len, flags) in [(2u64, 0u32), (0, 0x08)] {
        let int = cert(
            &mut rng,
            "I",
            &p256b,
            "R",
            &p256,
            SigAlg::EcdsaSha256,
            ca_exts(g::seq(&[g::tlv(0x02, &[len as u8])])),
            now,
        );
        let leaf = cert(
            &mut rng,
            HOST,
            &leaf_key,
            "I",
            &p256b,
            SigAlg::EcdsaSha256,
            leaf_exts(),
            now,
        );
        let name = if len == 2 {
            "basicConstraints {pathLen 2} without cA is a CA"
        } else {
            "basicConstraints {pathLen 0} without cA is not a CA"
        };
        named.push((
            name,
            root.clone(),
            vec![leaf, int],
            None,
            vec![],
            Some(flags),
        ));
    }
    // ECDSA with a hash other than the curve's own: checked as mbedTLS does.
    for (name, key, alg, flags) in [
        (
            "P-256 key signing with SHA-384",
            &p256b,
            SigAlg::EcdsaSha384,
            0u32,
        ),
        (
            "P-384 key signing with SHA-1",
            &p384,
            SigAlg::EcdsaSha1,
            0x4000,
        ),
        (
            "secp256k1 key signing with SHA-512",
            &k256,
            SigAlg::EcdsaSha512,
            0x10000,
        ),
    ] {
        let int = cert(
            &mut rng,
            "I",
            key,
            "R",
            &p256,
            SigAlg::EcdsaSha256,
            ca_exts(g::basic_constraints(true, None)),
            now,
        );
        let leaf = cert(&mut rng, HOST, &leaf_key, "I", key, alg, leaf_exts(), now);
        named.push((
            name,
            root.clone(),
            vec![leaf, int],
            None,
            vec![],
            Some(flags),
        ));
    }
    // An Ed25519-signed certificate in the server's chain is skipped by the
    // TLS layer (unknown signature algorithm), not fatal.
    let ed_root = cert(
        &mut rng,
        "E",
        &ed,
        "E",
        &ed,
        SigAlg::Ed25519,
        ca_exts(g::basic_constraints(true, None)),
        now,
    );
    let int = cert(
        &mut rng,
        "I",
        &p256b,
        "E",
        &ed,
        SigAlg::Ed25519,
        ca_exts(g::basic_constraints(true, None)),
        now,
    );
    let leaf = cert(
        &mut rng,
        HOST,
        &leaf_key,
        "I",
        &p256b,
        SigAlg::EcdsaSha256,
        leaf_exts(),
        now,
    );
    named.push((
        "Ed25519-signed intermediate is skipped",
        root.clone(),
        vec![leaf.clone(), int.clone(), ed_root.clone()],
        None,
        vec![1, 2],
        Some(0x08),
    ));
    // The same as the anchor does not load.
    let requests: Vec<VerifyCase> = named
        .iter()
        .map(|(id, anchor, chain, ..)| VerifyCase {
            id: id.to_string(),
            anchor: anchor.clone(),
            chain: chain.clone(),
            hostname: Some(HOST.into()),
            time: now,
        })
        .chain(std::iter::once(VerifyCase {
            id: "Ed25519-signed anchor does not load".into(),
            anchor: ed_root.clone(),
            chain: vec![leaf, int],
            hostname: Some(HOST.into()),
            time: now,
        }))
        .collect();
    let answers = device::verify(&requests);
    for (i, (id, anchor, chain, parse, skipped, flags)) in named.iter().enumerate() {
        let ours = verify_der(
            &profile::OPENMV,
            anchor,
            chain,
            Some(HOST),
            time::OffsetDateTime::from_unix_timestamp(now).unwrap(),
        );
        let theirs = &answers[i];
        assert_eq!(ours.flags(), *flags, "{id}: pki's rules");
        assert_eq!(theirs.flags, *flags, "{id}: mbedTLS {theirs:?}");
        assert_eq!(ours.parse_error.map(|(i, c)| (i, c as i64)), *parse, "{id}");
        assert_eq!(&ours.skipped, skipped, "{id}: pki's rules");
        assert_eq!(&theirs.skipped, skipped, "{id}: mbedTLS");
    }
    let last = answers.last().unwrap();
    let ours = verify_der(
        &profile::OPENMV,
        &ed_root,
        &requests.last().unwrap().chain,
        Some(HOST),
        time::OffsetDateTime::from_unix_timestamp(now).unwrap(),
    );
    assert_eq!(
        last.anchor.as_ref().map(|a| a.code),
        Some(-0x262E),
        "{last:?}"
    );
    assert_eq!(ours.anchor_error, Some(-0x262E));
}
