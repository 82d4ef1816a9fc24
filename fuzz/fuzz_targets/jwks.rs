//! JWKS parsing: `KeySet::from_jwks` and `parse_jwk` on fuzzed JSON, and the
//! host's run-time path `Engine::set_issuer_keys_json` (size cap, strict
//! JSON, key count) on the fuzzed text.
//!
//! Invariants: no panic; a parsed set has at most `MAX_JWKS_KEYS` keys, each
//! with a 43-character RFC 7638 thumbprint; a JWKS the engine refuses leaves
//! the last good keys in place (a token signed with them still verifies); a
//! JWKS it accepts replaces them (a token is allowed only if a new key verifies it).
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::OnceLock;

use agentguard::keys::{parse_jwk, KeySet};
use agentguard::limits::MAX_JWKS_KEYS;
use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, Request};
use agentguard_fuzz::{check_decision, public, test_keys};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const NOW: i64 = 1_767_225_600;
const ISS: &str = "https://sts.test";

struct Fixture {
    engine: Engine,
    good: Value,
    request: Request<'static>,
    token_kid: &'static str,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = test_keys();
        let good = json!({"keys": [public(&keys["ed25519"])]});
        let policy = json!({
            "issuers": [{"iss": ISS, "audiences": ["https://api.test"], "jwks_uri": "https://sts.test/jwks",
                         "algorithms": ["EdDSA", "ES256", "RS256", "PS256"], "max_lifetime": "1h"}],
            "routes": [{"id": "any", "methods": ["*"], "path": "/**"}]
        });
        let engine = Engine::from_json(&policy.to_string()).unwrap();
        let claims = json!({"iss": ISS, "aud": "https://api.test", "sub": "u", "iat": NOW, "exp": NOW + 600, "jti": "j"});
        let key = SigningKey::from_jwk(&keys["ed25519"]).unwrap();
        let token = mint::sign(&key, Some("test-ed25519"), "at+jwt", claims.as_object().unwrap());
        let request = Request::builder("GET", "/x", NOW + 1)
            .header("authorization", &format!("Bearer {token}"))
            .build()
            .unwrap();
        // Before the host has fetched any keys: fail closed.
        let before = engine.decide(&request);
        assert_eq!(before.codes(), [agentguard::ReasonCode::TokenKeyNotFound]);
        assert_eq!(before.status, 401);
        engine.set_issuer_keys(ISS, &good).unwrap();
        assert!(engine.decide(&request).is_allowed());
        Fixture { engine, good, request, token_kid: "test-ed25519" }
    })
}

fn check_set(set: &KeySet) {
    assert!(set.len() <= MAX_JWKS_KEYS);
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // The library path on lenient JSON.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        if let Ok((set, problems)) = KeySet::from_jwks(&value) {
            check_set(&set);
            assert!(problems.iter().all(|p| !p.message.is_empty()));
        }
        if let Ok(Some(jwk)) = parse_jwk(&value) {
            assert_eq!(jwk.thumbprint.len(), 43, "thumbprint is not base64url SHA-256");
            // The thumbprint input is the canonical public key: parsing it again gives the same key.
            let again = parse_jwk(&jwk.public_jwk).unwrap().unwrap();
            assert_eq!(again.thumbprint, jwk.thumbprint);
        }
        if let Some(keys) = value.get("keys").and_then(Value::as_array) {
            for k in keys.iter().take(MAX_JWKS_KEYS) {
                let _ = parse_jwk(k);
            }
        }
    }
    // The host's path: text as fetched.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let result = f.engine.set_issuer_keys_json(ISS, text);
    let decision = f.engine.decide(&f.request);
    check_decision(&decision);
    match result {
        Err(_) => assert!(decision.is_allowed(), "a refused JWKS dropped the last good keys: {decision:?}"),
        Ok(_) => {
            // Allowed only if the new set still holds the signing key under its kid.
            let holds = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| KeySet::from_jwks(&v).ok())
                .is_some_and(|(set, _)| set.select(Some(f.token_kid), agentguard::keys::Alg::EdDSA).is_ok());
            if decision.is_allowed() {
                assert!(holds, "allowed with keys that do not hold the token's key: {text}");
            }
            f.engine.set_issuer_keys(ISS, &f.good).unwrap();
        }
    }
});
