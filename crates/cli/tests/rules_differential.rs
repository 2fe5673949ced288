//! The differential test of pki's device rules (issue 10 "Proof"): a seeded
//! generator of certificate chains, each judged by `devtls_pki::rules::path`
//! and by the mbedTLS 3.6 device peer's `verify` batch mode
//! (`mbedtls_x509_crt_verify_with_profile`, default profile, the device
//! clock); the anchor's load result, the chain's parse result, the skipped
//! certificates and the verify flags must agree on every chain.
//!
//! `DEVTLS_DIFF_CHAINS=N` (default 20000) sets the count and
//! `DEVTLS_DIFF_SEED=S` the seed, for a longer run:
//! `DEVTLS_DIFF_CHAINS=500000 cargo test -p devtls --test rules_differential -- --nocapture`.

mod support;

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

    /// A key for a certificate that signs others (must have a signer).
    fn issuer_key(&self, rng: &mut Rng) -> usize {
        loop {
            let i = self.weighted(rng);
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
    let leaf_name = if self_signed_leaf {
        leaf_cn.clone()
    } else {
        leaf_cn.clone()
    };
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
    // The oracle in two processes at once (the machine has two cores).
    let half = requests.len().div_ceil(2).max(1);
    let answers: Vec<device::Verdict> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .chunks(half)
            .map(|part| s.spawn(move || device::verify(part)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("device-peer verify"))
            .collect()
    });
    let oracle_done = started.elapsed();
    let mut disagreements = Vec::new();
    let mut failing = 0;
    for (case, answer) in cases.iter().zip(&answers) {
        let ours = verify_der(
            &profile::OPENMV,
            &case.anchor,
            &case.chain,
            case.hostname.as_deref(),
            time::OffsetDateTime::from_unix_timestamp(case.time).unwrap(),
        );
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
         generated in {:.1} s, mbedTLS verified by {:.1} s, total {:.1} s; {} disagreements",
        generated.as_secs_f64(),
        oracle_done.as_secs_f64(),
        total.as_secs_f64(),
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
