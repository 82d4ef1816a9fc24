//! The published JSON Schemas and reference docs agree with the code.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::{Engine, Policy, ReasonCode, Request};
use serde_json::{json, Value};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn json_file(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap()
}

fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path)).collect()
}

#[test]
fn example_policies_match_the_policy_schema() {
    let schema = json_file("schema/policy.schema.json");
    for path in ["examples/policy.json", "tests/vectors/policy.json"] {
        let policy = json_file(path);
        assert_eq!(errors(&schema, &policy), Vec::<String>::new(), "{path}");
        Engine::from_json(&read(path)).unwrap();
    }
    // The broken example is broken for the schema too.
    assert!(!errors(&schema, &json_file("examples/broken-policy.json")).is_empty());
}

#[test]
fn every_policy_field_is_in_the_schema() {
    // A policy using every field, round-tripped through the Rust types: a field
    // the schema lacks fails `additionalProperties: false`.
    let full = json_file("tests/fixtures/every-field-policy.json");
    let policy = Policy::from_json(&full.to_string()).unwrap();
    let round_trip = serde_json::to_value(&policy).unwrap();
    let schema = json_file("schema/policy.schema.json");
    assert_eq!(errors(&schema, &round_trip), Vec::<String>::new());
    assert_eq!(errors(&schema, &full), Vec::<String>::new());
    // And the schema refuses what the parser refuses.
    for bad in [
        json!({"issuers": [], "routes": []}),
        json!({"issuers": [{"iss": "x", "audiences": ["a"], "algorithms": ["HS256"], "jwks_uri": "https://x"}], "routes": []}),
        json!({"issuers": [{"iss": "x", "audiences": ["a"], "algorithms": ["EdDSA"], "jwks_uri": "https://x", "max_lifetime": "5 minutes"}], "routes": []}),
        json!({"issuers": [{"iss": "x", "audiences": ["a"], "algorithms": ["EdDSA"], "jwks_uri": "https://x"}], "routes": [], "extra": 1}),
    ] {
        assert!(!errors(&schema, &bad).is_empty(), "schema accepted {bad}");
        assert!(Engine::from_json(&bad.to_string()).is_err(), "engine accepted {bad}");
    }
}

#[test]
fn decision_events_match_the_event_schema() {
    let schema = json_file("schema/decision-event.schema.json");
    let engine = Engine::from_json(&read("examples/policy.json")).unwrap();
    let tests = json_file("examples/policy.tests.json");
    let mut seen = std::collections::HashSet::new();
    for case in tests["cases"].as_array().unwrap() {
        let d = agentguard::api::decide(&engine, &case["request"].to_string());
        let event = serde_json::to_value(&d.event).unwrap();
        assert_eq!(errors(&schema, &event), Vec::<String>::new(), "{}", case["name"]);
        seen.insert(d.decision.as_str());
    }
    assert_eq!(seen.len(), 4, "the examples cover all four outcomes: {seen:?}");
    // Refusals before any token (and unparsable requests) validate too.
    let d = engine.decide(&Request::builder("GET", "/nope", 1).build().unwrap());
    assert_eq!(errors(&schema, &serde_json::to_value(&d.event).unwrap()), Vec::<String>::new());
    let d = agentguard::api::decide(&engine, "{}");
    assert_eq!(errors(&schema, &serde_json::to_value(&d.event).unwrap()), Vec::<String>::new());
}

#[test]
fn every_reason_code_is_documented() {
    let doc = read("docs/reason-codes.md");
    for code in ReasonCode::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.status());
        assert!(doc.contains(&row), "docs/reason-codes.md lacks the row starting `{row}`");
    }
}

#[test]
fn every_limit_is_documented() {
    use agentguard::limits::*;
    let doc = read("docs/limits.md");
    for (name, value) in [
        ("MAX_TOKEN_BYTES", MAX_TOKEN_BYTES),
        ("MAX_JSON_DEPTH", MAX_JSON_DEPTH),
        ("MAX_JSON_MEMBERS", MAX_JSON_MEMBERS),
        ("MAX_PATH_BYTES", MAX_PATH_BYTES),
        ("MAX_HEADERS", MAX_HEADERS),
        ("MAX_HEADER_BYTES", MAX_HEADER_BYTES),
        ("MAX_POLICY_BYTES", MAX_POLICY_BYTES),
        ("MAX_JWKS_KEYS", MAX_JWKS_KEYS),
        ("MAX_JWKS_BYTES", MAX_JWKS_BYTES),
        ("MAX_REVOCATION_LIST_BYTES", MAX_REVOCATION_LIST_BYTES),
        ("MAX_ACT_DEPTH", MAX_ACT_DEPTH),
        ("DEFAULT_TOKEN_CACHE_ENTRIES", DEFAULT_TOKEN_CACHE_ENTRIES),
        ("MAX_TOKEN_CACHE_ENTRIES", MAX_TOKEN_CACHE_ENTRIES),
        ("DEFAULT_REPLAY_ENTRIES", DEFAULT_REPLAY_ENTRIES),
        ("MAX_REPLAY_ENTRIES", MAX_REPLAY_ENTRIES),
        ("DEFAULT_STATE_KEYS", DEFAULT_STATE_KEYS),
        ("MAX_STATE_KEYS", MAX_STATE_KEYS),
        ("MAX_PREPARED_TOKENS", MAX_PREPARED_TOKENS),
        ("MIN_RSA_BITS", MIN_RSA_BITS),
        ("MAX_RSA_BITS", MAX_RSA_BITS),
    ] {
        let row = format!("| `{name}` | {value} |");
        assert!(doc.contains(&row), "docs/limits.md lacks `{row}`");
    }
}
