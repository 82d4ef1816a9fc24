//! Every limit in docs/limits.md, exceeded: a clear refusal or policy error,
//! never a crash; and the clock jumping around never helps a token.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::limits::*;
use agentguard::mint::{self, SigningKey};
use agentguard::request::HeaderValue;
use agentguard::{Engine, ReasonCode, Request, RequestInput};
use serde_json::{json, Value};

const T0: i64 = 1_767_225_600;

fn keys() -> Value {
    serde_json::from_str(include_str!("vectors/keys.json")).unwrap()
}

fn public() -> Value {
    let mut jwk = keys()["ed25519"].clone();
    jwk.as_object_mut().unwrap().remove("d");
    jwk
}

fn policy() -> Value {
    json!({
        "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"], "jwks": {"keys": [public()]},
                     "algorithms": ["EdDSA"], "max_lifetime": "1h"}],
        "routes": [{"id": "any", "methods": ["*"], "path": "/**"}]
    })
}

fn token() -> String {
    let claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "u", "iat": T0, "exp": T0 + 600, "jti": "j"});
    mint::sign(
        &SigningKey::from_jwk(&keys()["ed25519"]).unwrap(),
        Some("test-ed25519"),
        "at+jwt",
        claims.as_object().unwrap(),
    )
}

fn input(path: &str) -> RequestInput {
    RequestInput { method: "GET".into(), path: path.into(), now: T0 as f64, ..Default::default() }
}

#[test]
fn path_length() {
    let e = Engine::from_json(&policy().to_string()).unwrap();
    let ok = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
    assert_ne!(e.decide_input(&input(&ok)).codes(), [ReasonCode::PathInvalid]);
    let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    let d = e.decide_input(&input(&long));
    assert_eq!(d.codes(), [ReasonCode::PathInvalid]);
    assert!(d.reasons[0].message.contains("longer than 4096 bytes"));
}

#[test]
fn header_count_and_size() {
    let e = Engine::from_json(&policy().to_string()).unwrap();
    let mut many = input("/");
    for i in 0..=MAX_HEADERS {
        many.headers.insert(format!("x-h-{i}"), HeaderValue::One("v".into()));
    }
    let d = e.decide_input(&many);
    assert_eq!(d.codes(), [ReasonCode::RequestInvalid]);
    assert!(d.reasons[0].message.contains("more than 128 headers"));
    let mut big = input("/");
    big.headers.insert("x-big".into(), HeaderValue::One("v".repeat(MAX_HEADER_BYTES + 1)));
    assert!(e.decide_input(&big).reasons[0].message.contains("longer than 16384 bytes"));
}

#[test]
fn token_size_is_capped_at_the_credential() {
    let e = Engine::from_json(&policy().to_string()).unwrap();
    let mut i = input("/");
    i.headers.insert(
        "authorization".into(),
        HeaderValue::One(format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1))),
    );
    let d = e.decide_input(&i);
    assert_eq!(d.codes(), [ReasonCode::TokenMalformed]);
    assert!(d.reasons[0].message.contains("8192-byte limit"));
}

#[test]
fn policy_size_jwks_key_count_and_cache_capacities() {
    let huge = format!(r#"{{"description":"{}","issuers":[],"routes":[]}}"#, "x".repeat(MAX_POLICY_BYTES));
    assert!(Engine::from_json(&huge).unwrap_err().to_string().contains("more than the 1048576-byte limit"));
    let mut p = policy();
    p["issuers"][0]["jwks"]["keys"] = Value::Array(vec![public(); MAX_JWKS_KEYS + 1]);
    assert!(Engine::from_json(&p.to_string()).unwrap_err().to_string().contains("expected at most 64 keys"));
    let mut p = policy();
    p["cache"] = json!({"tokens": MAX_TOKEN_CACHE_ENTRIES + 1});
    p["dpop"] = json!({"replay_cache": MAX_REPLAY_ENTRIES + 1});
    p["state"] = json!({"max_keys": MAX_STATE_KEYS + 1});
    let err = Engine::from_json(&p.to_string()).unwrap_err().to_string();
    assert!(err.contains("cache.tokens: expected at most 1000000"), "{err}");
    assert!(err.contains("dpop.replay_cache: expected between 1 and 1000000"), "{err}");
    assert!(err.contains("state.max_keys: expected between 1 and 10000000"), "{err}");
    let mut p = policy();
    p["delegation"] = json!({"max_depth": MAX_ACT_DEPTH + 1});
    assert!(Engine::from_json(&p.to_string())
        .unwrap_err()
        .to_string()
        .contains("delegation.max_depth: expected at most 8"));
}

#[test]
fn rsa_key_size_bounds() {
    // A 9000-bit modulus (top bit set), refused before any RSA work.
    let mut n = vec![0xffu8; 1125];
    n[1124] = 0xfd;
    let jwk = json!({"kty": "RSA", "n": agentguard::b64::encode(&n), "e": "AQAB"});
    let mut p = policy();
    p["issuers"][0]["algorithms"] = json!(["RS256"]);
    p["issuers"][0]["jwks"]["keys"] = json!([jwk]);
    let err = Engine::from_json(&p.to_string()).unwrap_err().to_string();
    assert!(err.contains("issuers[0].jwks.keys[0]: invalid RSA key"), "{err}");
}

#[test]
fn clock_jumps_never_revive_a_token() {
    let e = Engine::from_json(&policy().to_string()).unwrap();
    let t = token();
    let at = |now: i64| {
        e.decide(
            &Request::builder("GET", "/", now)
                .header("authorization", &format!("Bearer {t}"))
                .build()
                .unwrap(),
        )
    };
    assert!(at(T0 + 10).is_allowed());
    // Forward past expiry (the cached entry must not help).
    assert_eq!(at(T0 + 10_000).codes(), [ReasonCode::TokenExpired]);
    // Backwards before issue time: refused as issued in the future.
    assert_eq!(at(T0 - 10_000).codes(), [ReasonCode::TokenIssuedInFuture]);
    // And back to normal.
    assert!(at(T0 + 20).is_allowed());
}
