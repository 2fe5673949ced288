//! The token's signing bound for `bench/fleet.sh`'s PKCS#11 row: how many
//! ECDSA signatures per second the token makes (CKM_ECDSA over a SHA-256
//! digest, as devtls asks for each certificate), on THREADS threads with one
//! session each, called through cryptoki directly. A fleet whose CA key is in
//! the token cannot issue faster than this.
//!
//! Usage: softhsm_sign MODULE TOKEN-LABEL KEY-LABEL SIGNATURES THREADS
//! (the PIN from DEVTLS_PKCS11_PIN; prints signatures per second)

use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [module, token, label, n, threads] = args.as_slice() else {
        eprintln!("usage: softhsm_sign MODULE TOKEN-LABEL KEY-LABEL SIGNATURES THREADS");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("SIGNATURES is a number");
    let threads: usize = threads
        .parse::<usize>()
        .expect("THREADS is a number")
        .max(1);
    let pin = std::env::var("DEVTLS_PKCS11_PIN").expect("set DEVTLS_PKCS11_PIN");
    let ctx = Pkcs11::new(module).expect("the PKCS#11 library loads");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = ctx
        .get_slots_with_initialized_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == token)
                .unwrap_or(false)
        })
        .expect("the token");
    let login = ctx.open_ro_session(slot).expect("a session");
    login
        .login(UserType::User, Some(&AuthPin::from(pin)))
        .expect("login");
    let key = login
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .expect("find")
        .into_iter()
        .next()
        .expect("the key");
    // About the size of a device certificate's to-be-signed part.
    let tbs = vec![0x5au8; 300];
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ctx, tbs) = (&ctx, &tbs);
            s.spawn(move || {
                let session = ctx.open_ro_session(slot).expect("a session per thread");
                let mine = n / threads + usize::from(t < n % threads);
                for _ in 0..mine {
                    let digest = Sha256::digest(tbs);
                    let sig = session.sign(&Mechanism::Ecdsa, key, &digest).expect("sign");
                    std::hint::black_box(sig);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!("{:.0}", n as f64 / secs);
}
