//! Project Wycheproof vectors (tests/wycheproof/, Apache-2.0, see LICENSE there)
//! through the same verification code the engine uses.
//!
//! Rules:
//! - every `invalid` case must be rejected;
//! - every `valid` case whose algorithm and key agentguard supports (EdDSA,
//!   ES256, RS256, PS256 with keys ≥ 2048 bits, compact serialisation) must be
//!   accepted; `valid` cases for algorithms agentguard refuses by design
//!   (HS256, RS384/512, PS384/512, ES521) must be rejected;
//! - `acceptable` cases (one, in the RSA file): agentguard takes the strict
//!   side and must reject them. High-`s` ECDSA signatures are `valid` in
//!   Wycheproof and accepted here: WebCrypto and most JOSE signers emit them.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::jws::UntrustedJws;
use agentguard::keys::{self, parse_jwk, Alg, KeySet, PublicKey};
use serde_json::{json, Value};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

#[derive(Default, Debug)]
struct Tally {
    accepted: usize,
    rejected: usize,
    unsupported_valid: usize,
}

#[test]
fn json_web_signature_vectors() {
    let doc = load("json_web_signature_test.json");
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        // The group's verification key, if it is one agentguard accepts.
        let keyset = group
            .get("public")
            .and_then(|jwk| KeySet::from_jwks(&json!({ "keys": [jwk] })).ok())
            .map(|(set, _)| set)
            .filter(|set| !set.is_empty());
        for case in group["tests"].as_array().unwrap() {
            let id = case["tcId"].as_u64().unwrap();
            let result = case["result"].as_str().unwrap();
            let outcome = match (case["jws"].as_str(), &keyset) {
                (Some(jws), Some(keys)) => UntrustedJws::parse(jws)
                    .and_then(|j| j.verify(keys, &Alg::ALL))
                    .map(|_| ())
                    .map_err(|e| e.message()),
                (None, _) => Err("not a compact serialisation".to_owned()),
                (_, None) => Err("no supported key".to_owned()),
            };
            let supported = keyset.is_some()
                && case["jws"].as_str().is_some_and(|jws| {
                    let header = agentguard::b64::decode(jws.split('.').next().unwrap()).ok();
                    let alg = header
                        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
                        .and_then(|h| h["alg"].as_str().map(str::to_owned));
                    alg.is_some_and(|a| Alg::parse(&a).is_ok())
                });
            match (result, &outcome) {
                ("invalid", Ok(())) => {
                    failures.push(format!("tcId {id} ({}): invalid case accepted", case["comment"]))
                }
                ("valid", Err(e)) if supported => {
                    failures.push(format!("tcId {id} ({}): valid case rejected: {e}", case["comment"]))
                }
                ("valid", Err(_)) => tally.unsupported_valid += 1,
                ("acceptable", Ok(())) => failures.push(format!("tcId {id}: acceptable case accepted")),
                _ => {}
            }
            if outcome.is_ok() {
                tally.accepted += 1;
            } else {
                tally.rejected += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The file has 401 cases; agentguard supports the ES256/RS256/PS256 ones.
    assert_eq!(tally.accepted + tally.rejected, 401);
    assert!(tally.accepted >= 15, "{tally:?}");
    eprintln!("json_web_signature: {tally:?}");
}

/// Runs a raw-signature vector file through `keys::verify_signature`, with
/// a key freshly made by `key_of` for each case.
fn signature_vectors(file: &str, alg: Alg, key_of: impl Fn(&Value) -> Option<PublicKey>) -> Tally {
    let doc = load(file);
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        for case in group["tests"].as_array().unwrap() {
            let key = key_of(group);
            let id = case["tcId"].as_u64().unwrap();
            let result = case["result"].as_str().unwrap();
            let outcome = match &key {
                Some(k) => keys::verify_signature(
                    alg,
                    k,
                    &hex(case["msg"].as_str().unwrap()),
                    &hex(case["sig"].as_str().unwrap()),
                ),
                None => Err("key refused".into()),
            };
            let flags: Vec<&str> =
                case["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
            let ok = outcome.is_ok();
            let expect_ok = match result {
                "valid" => true,
                "invalid" => false,
                // Strict by default; see the module comment.
                _ => false,
            };
            if ok != expect_ok {
                failures.push(format!(
                    "tcId {id} ({}; flags {flags:?}): {result} but {outcome:?}",
                    case["comment"]
                ));
            }
            if ok {
                tally.accepted += 1;
            } else {
                tally.rejected += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    tally
}

/// Every ECDSA P-256 case twice: verified by p256 (a key's first
/// signature) and by the key's table of multiples (`agentguard::es256`).
#[test]
fn ecdsa_p256_p1363_vectors() {
    let key_of = |g: &Value, table: bool| {
        // Not every group has a JWK; build one from the uncompressed SEC1 point.
        let point = hex(g["publicKey"]["uncompressed"].as_str()?);
        let (x, y) = point.get(1..)?.split_at(32);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": agentguard::b64::encode(x), "y": agentguard::b64::encode(y)});
        let key = parse_jwk(&jwk).ok().flatten()?.key;
        let PublicKey::P256(k) = &key else { panic!("not a P-256 key") };
        if table {
            k.build_table();
        }
        assert_eq!(k.has_table(), table);
        Some(key)
    };
    let file = "ecdsa_secp256r1_sha256_p1363_test.json";
    let p256 = signature_vectors(file, Alg::ES256, |g| key_of(g, false));
    let table = signature_vectors(file, Alg::ES256, |g| key_of(g, true));
    assert!(p256.accepted > 0 && p256.rejected > 0, "{p256:?}");
    assert_eq!((table.accepted, table.rejected), (p256.accepted, p256.rejected));
    eprintln!("ecdsa p256: {p256:?}, the same with tables");
}

/// Every Ed25519 case twice: verified by ed25519-dalek (a key's first
/// signatures) and by the key's table of multiples (`agentguard::ed25519`,
/// after `TABLE_AFTER` signatures).
#[test]
fn ed25519_vectors() {
    let key_of = |g: &Value, table: bool| {
        let key = parse_jwk(&g["publicKeyJwk"]).ok().flatten()?.key;
        let PublicKey::Ed25519(k) = &key else { panic!("not an Ed25519 key") };
        if table {
            k.build_table();
        }
        assert_eq!(k.has_table(), table);
        Some(key)
    };
    let dalek = signature_vectors("ed25519_test.json", Alg::EdDSA, |g| key_of(g, false));
    let table = signature_vectors("ed25519_test.json", Alg::EdDSA, |g| key_of(g, true));
    assert!(dalek.accepted > 0 && dalek.rejected > 0, "{dalek:?}");
    assert_eq!((table.accepted, table.rejected), (dalek.accepted, dalek.rejected));
    eprintln!("ed25519: {dalek:?}, the same with tables");
}

#[test]
fn rsa_pkcs1_2048_sha256_vectors() {
    let tally = signature_vectors("rsa_signature_2048_sha256_test.json", Alg::RS256, |g| {
        let jwk = g.get("keyJwk")?;
        let jwk = json!({"kty": "RSA", "n": jwk["n"], "e": jwk["e"]});
        parse_jwk(&jwk).ok().flatten().map(|k| k.key)
    });
    assert!(tally.accepted > 0 && tally.rejected > 0, "{tally:?}");
    eprintln!("rsa 2048: {tally:?}");
}

#[test]
fn json_web_key_vectors() {
    let doc = load("json_web_key_test.json");
    let mut failures = Vec::new();
    let mut accepted = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        // Keys a host would load from this JWKS: malformed and non-signature keys are dropped.
        let keyset = group.get("public").and_then(|jwks| KeySet::from_jwks(jwks).ok()).map(|(set, _)| set);
        for case in group["tests"].as_array().unwrap() {
            let id = case["tcId"].as_u64().unwrap();
            let jws = case["jws"].as_str().unwrap();
            let outcome = match &keyset {
                Some(keys) if !keys.is_empty() => UntrustedJws::parse(jws)
                    .and_then(|j| j.verify(keys, &Alg::ALL))
                    .map(|_| ())
                    .map_err(|e| e.message()),
                _ => Err("no usable key".into()),
            };
            let supported_alg =
                jws.starts_with("eyJhbGciOiJSUzI1Ni") || jws.starts_with("eyJhbGciOiJFUzI1Ni");
            match (case["result"].as_str().unwrap(), &outcome) {
                ("invalid", Ok(())) => failures.push(format!("tcId {id} ({}): accepted", case["comment"])),
                ("valid", Err(e)) if supported_alg => {
                    failures.push(format!("tcId {id}: valid rejected: {e}"))
                }
                _ => {}
            }
            accepted += usize::from(outcome.is_ok());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(accepted >= 1);
}
