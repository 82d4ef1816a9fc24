//! The strict compact-JWS parser and verifier: `UntrustedJws::parse`, then
//! `verify` against a fixed key set (Ed25519, P-256, RSA 2048).
//!
//! Two modes, picked by the first byte:
//! - raw: the rest is the token text. A token that verifies must keep
//!   verifying under its own algorithm only, and never under another.
//! - signed: the rest is split into header and payload bytes, which are
//!   signed with a test key (Ed25519 or P-256) — so the fuzzer gets past the
//!   signature. A token whose header asks for exactly that key's algorithm
//!   (and its `kid`, or none) must verify; any other must not; and flipping a
//!   signature bit must always fail.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::OnceLock;

use agentguard::b64;
use agentguard::jws::UntrustedJws;
use agentguard::keys::{Alg, KeySet};
use agentguard::mint::{self, SigningKey};
use agentguard_fuzz::{fixed_key_set, test_keys};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Fixture {
    set: KeySet,
    signers: [(SigningKey, &'static str, Alg); 2],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = test_keys();
        Fixture {
            set: fixed_key_set(),
            signers: [
                (SigningKey::from_jwk(&keys["ed25519"]).unwrap(), "test-ed25519", Alg::EdDSA),
                (SigningKey::from_jwk(&keys["es256"]).unwrap(), "test-es256", Alg::ES256),
            ],
        }
    })
}

fn exercise(token: &str) -> Option<(Alg, Option<String>)> {
    let f = fixture();
    let jws = UntrustedJws::parse(token).ok()?;
    // Accessors never panic, whatever the header holds.
    let _ = (jws.typ(), jws.kid(), jws.algorithm(&Alg::ALL), jws.header().len(), jws.payload().len());
    let verified = jws.clone().verify(&f.set, &Alg::ALL).ok()?;
    // The algorithm comes from the allow-list: with only the one that
    // verified it still verifies, with any other it does not.
    assert!(jws.clone().verify(&f.set, &[verified.alg]).is_ok());
    let others: Vec<Alg> = Alg::ALL.iter().copied().filter(|a| *a != verified.alg).collect();
    assert!(jws.verify(&f.set, &others).is_err(), "verified under an algorithm the token did not name");
    Some((verified.alg, verified.kid))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            exercise(token);
        }
        return;
    }
    // Signed mode: header bytes, 0xff, payload bytes.
    let f = fixture();
    let (signer, kid, alg) = &f.signers[usize::from(mode >> 1) % 2];
    let split = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
    let (header, payload) = rest.split_at(split);
    let payload = payload.get(1..).unwrap_or_default();
    let signing_input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let signature = mint::sign_bytes(signer, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64::encode(&signature));
    let outcome = exercise(&token);

    // What the header asks for.
    let parsed = UntrustedJws::parse(&token).ok();
    let asks_for_this_key = parsed.as_ref().is_some_and(|jws| {
        let h = jws.header();
        h.get("alg") == Some(&Value::from(alg.name()))
            && match h.get("kid") {
                None => true,
                Some(Value::String(k)) => k == kid,
                Some(_) => false,
            }
    });
    match &outcome {
        Some((verified_alg, verified_kid)) => {
            assert_eq!(verified_alg, alg, "verified under an algorithm the signer did not use");
            assert_eq!(verified_kid.as_deref(), Some(*kid));
            assert!(asks_for_this_key);
        }
        None => assert!(
            !asks_for_this_key || parsed.is_none(),
            "a correctly signed token naming the signer's key did not verify: {token}"
        ),
    }
    // A flipped signature bit never verifies.
    let mut bad = signature.clone();
    if let Some(b) = bad.get_mut(usize::from(mode) % signature.len().max(1)) {
        *b ^= 1 << (mode % 8);
    }
    let forged = format!("{signing_input}.{}", b64::encode(&bad));
    assert!(exercise(&forged).is_none(), "a token with a flipped signature bit verified");
});
