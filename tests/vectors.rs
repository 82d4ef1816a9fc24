//! The shared request/decision vectors (`tests/vectors/cases.json`) through the
//! native core. The JS and Envoy suites run the same file against the built
//! Wasm in workerd and Envoy and must reach the same decisions.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::mint::{self, SigningKey};
use agentguard::request::{HeaderValue, RequestInput};
use agentguard::Engine;
use serde_json::{Map, Value};

const NOW: i64 = 1_767_225_600;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Mints a token per the rules in the vectors' `_comment`.
pub fn mint_case_token(spec: &Value, keys: &Value, now: i64, serial: usize) -> String {
    let key_jwk = &keys[spec["key"].as_str().unwrap()];
    let key = SigningKey::from_jwk(key_jwk).unwrap();
    let kid = key_jwk["kid"].as_str();
    let mut claims: Map<String, Value> = spec["claims"].as_object().unwrap().clone();
    for v in claims.values_mut() {
        if let Some(rel) = v.as_str().and_then(|s| {
            let digits = s.strip_prefix('+').or_else(|| s.strip_prefix('-'))?;
            let n: i64 = digits.parse().ok()?;
            Some(if s.starts_with('-') { -n } else { n })
        }) {
            *v = Value::from(now + rel);
        }
    }
    claims.insert("iat".into(), (now + spec["iat"].as_i64().unwrap()).into());
    claims.insert("exp".into(), (now + spec["exp"].as_i64().unwrap()).into());
    claims.entry("jti").or_insert(format!("jti-{serial}").into());
    let typ = spec.get("typ").and_then(Value::as_str).unwrap_or("at+jwt");
    let token = mint::sign(&key, kid, typ, &claims);
    match spec.get("tamper").and_then(Value::as_str) {
        None => token,
        Some("payload") => {
            let parts: Vec<&str> = token.split('.').collect();
            claims.insert("sub".into(), "user:mallory".into());
            let payload = agentguard::b64::encode(Value::Object(claims).to_string().as_bytes());
            format!("{}.{payload}.{}", parts[0], parts[2])
        }
        Some("signature") => {
            let parts: Vec<&str> = token.split('.').collect();
            let sig = parts[2];
            let first = if sig.starts_with('B') { "A" } else { "B" };
            format!("{}.{}.{first}{}", parts[0], parts[1], &sig[1..])
        }
        Some(other) => panic!("unknown tamper `{other}`"),
    }
}

#[test]
fn shared_vectors_give_the_expected_decisions() {
    let doc = load("cases.json");
    let keys = load("keys.json");
    let policy =
        std::fs::read_to_string(format!("{}/tests/vectors/policy.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let engine = Engine::from_json(&policy).unwrap();
    // The same decisions without the per-stage trace (what gateways run).
    let mut untraced = Engine::from_json(&policy).unwrap();
    untraced.set_trace(false);
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut request = case["request"].clone();
        request["now"] = NOW.into();
        let mut input: RequestInput = serde_json::from_value(request).unwrap();
        if !case["token"].is_null() {
            let token = mint_case_token(&case["token"], &keys, NOW, i);
            input.headers.insert("authorization".into(), HeaderValue::One(format!("Bearer {token}")));
        }
        let d = engine.decide_input(&input);
        let lean = untraced.decide_input(&input);
        assert_eq!(d.trace.len(), agentguard::engine::STAGES.len(), "{}", case["name"]);
        assert!(lean.trace.is_empty(), "{}", case["name"]);
        let mut with_trace: Value = serde_json::from_str(&d.to_json()).unwrap();
        with_trace["trace"] = serde_json::json!([]);
        assert_eq!(serde_json::from_str::<Value>(&lean.to_json()).unwrap(), with_trace, "{}", case["name"]);
        let codes: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
        let expect = &case["expect"];
        let want_codes: Vec<&str> =
            expect["reasons"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        if d.decision.as_str() != expect["decision"] || d.status != expect["status"] || codes != want_codes {
            failures.push(format!(
                "{}: got {} {} {codes:?} ({:?}), expected {}",
                case["name"],
                d.decision.as_str(),
                d.status,
                d.reasons.first().map(|r| &r.message),
                expect
            ));
        }
        // Every refusal carries a ready response with the same status.
        if let Some(resp) = &d.response {
            assert_eq!(resp.status, d.status);
        } else {
            assert!(d.is_allowed());
            assert!(d.forward_headers.contains_key("x-agentguard-agent"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
