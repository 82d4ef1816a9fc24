//! `Decision::to_json` (the hand-written writer every frontend sends) must be
//! byte for byte what `serde_json::to_string` gives for the same decision:
//! over every shared vector, and for a decision with every optional field
//! set and strings that need every kind of escape.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use agentguard::decision::{
    ApprovalChallenge, Decision, DecisionEvent, EventAgent, EventAttestation, EventBreaker, HttpResponse,
    Identity, Outcome, Reason, StageResult, TraceStep,
};
use agentguard::mint::{self, SigningKey};
use agentguard::reason::ReasonCode;
use agentguard::request::{HeaderValue, RequestInput};
use agentguard::Engine;
use serde_json::{Map, Value};

const NOW: i64 = 1_767_225_600;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn token(spec: &Value, keys: &Value, serial: usize) -> String {
    let key_jwk = &keys[spec["key"].as_str().unwrap()];
    let key = SigningKey::from_jwk(key_jwk).unwrap();
    let mut claims: Map<String, Value> = spec["claims"].as_object().unwrap().clone();
    claims.insert("iat".into(), (NOW + spec["iat"].as_i64().unwrap()).into());
    claims.insert("exp".into(), (NOW + spec["exp"].as_i64().unwrap()).into());
    claims.entry("jti").or_insert(format!("jti-{serial}").into());
    let typ = spec.get("typ").and_then(Value::as_str).unwrap_or("at+jwt");
    mint::sign(&key, key_jwk["kid"].as_str(), typ, &claims)
}

fn assert_same(d: &Decision) {
    let serde = serde_json::to_string(d).unwrap();
    assert_eq!(d.to_json(), serde);
    assert_eq!(d.event.to_json(), serde_json::to_string(&d.event).unwrap());
}

#[test]
fn every_shared_vector_serialises_like_serde() {
    let doc = load("cases.json");
    let keys = load("keys.json");
    let policy =
        std::fs::read_to_string(format!("{}/tests/vectors/policy.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let engine = Engine::from_json(&policy).unwrap();
    let mut outcomes = std::collections::BTreeSet::new();
    for (i, case) in doc["cases"].as_array().unwrap().iter().enumerate() {
        let mut request = case["request"].clone();
        request["now"] = NOW.into();
        let mut input: RequestInput = serde_json::from_value(request).unwrap();
        if !case["token"].is_null() {
            let t = token(&case["token"], &keys, i);
            input.headers.insert("authorization".into(), HeaderValue::One(format!("Bearer {t}")));
        }
        for _ in 0..2 {
            // The second decision of a token is a cache hit.
            let d = engine.decide_input(&input);
            outcomes.insert(d.decision.as_str());
            assert_same(&d);
        }
    }
    assert!(outcomes.len() >= 3, "{outcomes:?}");
    // A request that does not parse.
    assert_same(&agentguard::api::decide(&engine, "{\"method\": 1}"));
}

#[test]
fn every_field_and_escape_serialises_like_serde() {
    let nasty = "q\"b\\s/ \u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f} é ✓ 😀 </script>";
    let s = |x: &str| format!("{x}{nasty}");
    let map =
        |n: usize| -> BTreeMap<String, String> { (0..n).map(|i| (s(&format!("k{i}")), s("v"))).collect() };
    let mut claims = BTreeMap::new();
    claims.insert("n".to_owned(), serde_json::json!({"a": [1, 2.5, null, true], "b": nasty}));
    for (breaker, optional) in [(true, true), (false, false)] {
        let some = |x: &str| optional.then(|| s(x));
        let d = Decision {
            decision: Outcome::ApprovalRequired,
            status: 403,
            reasons: vec![
                Reason { code: ReasonCode::ApprovalRequired, message: s("m") },
                Reason { code: ReasonCode::TokenExpired, message: String::new() },
            ],
            route: Some("r".into()),
            params: map(if optional { 2 } else { 0 }),
            identity: Some(std::sync::Arc::new(Identity {
                issuer: s("i"),
                subject: some("sub"),
                agent: s("a"),
                client_id: some("c"),
                actors: vec![s("x"), s("y")],
                scopes: Vec::new(),
                jti: some("j"),
                expires_at: -42,
            })),
            forward_headers: map(3).into_iter().collect(),
            strip_header_prefix: "x-".into(),
            approval: Some(ApprovalChallenge {
                action_digest: s("d"),
                binding_message: s("b"),
                agent: s("a"),
                approval_endpoint: some("e"),
            }),
            response: Some(HttpResponse { status: 401, headers: map(2), body: s("{}") }),
            trace: vec![
                TraceStep { stage: "route", result: StageResult::Pass, detail: s("p") },
                TraceStep { stage: "token", result: StageResult::Fail, detail: s("f") },
                TraceStep { stage: "risk", result: StageResult::Skip, detail: String::new() },
            ],
            event: DecisionEvent {
                v: 1,
                time_ms: i64::MAX,
                decision: Outcome::Revoked,
                status: u16::MAX,
                reasons: vec![ReasonCode::BreakerBurst, ReasonCode::RateLimited],
                route: Some("r".into()),
                method: s("GET"),
                host: s("h"),
                path: s("/p"),
                source_ip: some("ip"),
                agent: Some(std::sync::Arc::new(EventAgent {
                    issuer: s("i"),
                    subject: some("s"),
                    agent: s("a"),
                    actors: vec![],
                    client_id: some("c"),
                    token_hash: s("t"),
                })),
                cache_hit: optional,
                limit: some("l"),
                attestation: optional
                    .then(|| EventAttestation { workload: s("spiffe://t/w\u{1}"), issuer: s("i\"") }),
                breaker: breaker.then(|| EventBreaker {
                    kind: agentguard::state::TripKind::DenyRatio,
                    detail: s("d"),
                    until_ms: i64::MIN,
                }),
                approval_digest: some("a"),
                claims: if optional { claims.clone() } else { BTreeMap::new() },
                headers: map(if optional { 1 } else { 0 }),
                duration_us: optional.then_some(u64::MAX),
            },
            log: optional,
        };
        assert_same(&d);
        let no_identity = Decision { identity: None, approval: None, response: None, reasons: vec![], ..d };
        assert_same(&no_identity);
    }
    for n in [0u64, 7, 10, 99, 100, 1_000_000, u64::MAX] {
        let mut d = agentguard::api::decide(&Engine::from_json(&minimal()).unwrap(), "{}");
        d.event.duration_us = Some(n);
        d.event.time_ms = n as i64;
        assert_same(&d);
    }
}

fn minimal() -> String {
    std::fs::read_to_string(format!("{}/tests/vectors/policy.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
}
