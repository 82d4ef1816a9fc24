//! A fetched revocation list: `Engine::set_listed_revocations` on fuzzed text,
//! as a host hands over what `revocation_list.uri` returned.
//!
//! Invariants: no panic; a refused document leaves the last good list in
//! force and its load time unchanged (the token stays allowed); an accepted
//! one replaces it, reports its number of entries, and the token is revoked
//! exactly when the document (read by plain serde_json) lists its `jti`,
//! `sub`, agent or `kid`.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::OnceLock;

use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, Outcome, Request};
use agentguard_fuzz::{check_decision, public, test_keys};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const NOW: i64 = 1_767_225_600;
const GOOD: &str = r#"{"jti": ["another-token"]}"#;

struct Fixture {
    engine: Engine,
    request: Request<'static>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = test_keys();
        let policy = json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                         "jwks": {"keys": [public(&keys["ed25519"])]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "any", "methods": ["*"], "path": "/**"}],
            "revocation_list": {"uri": "https://revocations.test/list.json", "refresh": "1m", "max_stale": "1h"},
            "cache": {"tokens": 0}
        });
        let engine = Engine::from_json(&policy.to_string()).unwrap();
        let claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "u", "client_id": "agent-1",
                            "iat": NOW, "exp": NOW + 600, "jti": "j"});
        let key = SigningKey::from_jwk(&keys["ed25519"]).unwrap();
        let token = mint::sign(&key, Some("test-ed25519"), "at+jwt", claims.as_object().unwrap());
        let request = Request::builder("GET", "/x", NOW + 1)
            .header("authorization", &format!("Bearer {token}"))
            .build()
            .unwrap();
        // Before any list: fail closed.
        assert_eq!(engine.decide(&request).codes(), [agentguard::ReasonCode::StateUnavailable]);
        engine.set_listed_revocations(GOOD, NOW * 1000).unwrap();
        assert!(engine.decide(&request).is_allowed());
        Fixture { engine, request }
    })
}

/// Whether `list[field]` is an array holding the string `value`.
fn lists(doc: &Value, field: &str, value: &str) -> bool {
    doc.get(field).and_then(Value::as_array).is_some_and(|l| l.iter().any(|v| v == value))
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let loaded_before = f.engine.revocation_list().unwrap().loaded_at_ms();
    let result = f.engine.set_listed_revocations(text, NOW * 1000 + 1);
    let decision = f.engine.decide(&f.request);
    check_decision(&decision);
    match result {
        Err(message) => {
            assert!(!message.is_empty());
            assert!(decision.is_allowed(), "a refused list replaced the last good one: {decision:?}");
            assert_eq!(f.engine.revocation_list().unwrap().loaded_at_ms(), loaded_before, "a refused list counted as a load");
        }
        Ok(entries) => {
            let doc: Value = serde_json::from_str(text).expect("accepted a list serde_json cannot read");
            let count: usize = ["jti", "sub", "agents", "kid"]
                .iter()
                .map(|k| doc.get(*k).and_then(Value::as_array).map_or(0, Vec::len))
                .sum();
            assert_eq!(entries, count, "entry count");
            let revoked = lists(&doc, "jti", "j")
                || lists(&doc, "sub", "u")
                || lists(&doc, "agents", "agent-1")
                || lists(&doc, "kid", "test-ed25519");
            assert_eq!(decision.decision == Outcome::Revoked, revoked, "{text} → {decision:?}");
            assert_eq!(decision.is_allowed(), !revoked, "{text} → {decision:?}");
            f.engine.set_listed_revocations(GOOD, NOW * 1000).unwrap();
        }
    }
});
