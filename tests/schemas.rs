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
    let full = json!({
        "description": "d", "realm": "r",
        "issuers": [{
            "iss": "https://sts", "audiences": ["a"], "jwks_uri": "https://sts/jwks",
            "algorithms": ["EdDSA", "ES256", "RS256", "PS256"], "token_type": null, "max_lifetime": "5m",
            "clock_skew": "30s", "required_claims": ["sub"], "binding": "mtls"
        }],
        "attestation": {"header": "x-att", "issuers": [{"iss": "spiffe://prod", "kind": "jwt_svid", "audiences": ["a"],
            "jwks_uri": "https://prod/keys", "algorithms": ["ES256"], "token_type": null, "max_lifetime": "1h", "clock_skew": "30s"}],
            "require": {"spiffe_id": ["spiffe://prod/*"], "claims": {"tee.type": ["tdx"]}}, "bind_to_actor": true},
        "dpop": {"algorithms": ["ES256"], "max_age": "1m", "clock_skew": "5s", "nonce": true, "replay_cache": 10},
        "delegation": {"max_depth": 2, "actors": ["a/*"], "subjects": ["u:*"], "require_actor": true},
        "routes": [{"id": "r", "methods": ["GET"], "path": "/x/{id}/**", "scopes": ["s"], "risk": "critical",
                    "network": {"allow": ["2001:db8::/32"]},
                    "authorization_details": {"type": "t", "actions": ["read"], "identifier": "{id}", "locations": ["https://x"]},
                    "approval_when": [{"body": "/a", "gt": 1}, {"body": "/b", "in": ["x", null]}]}],
        "default": "deny",
        "revoked": {"jti": ["j"], "sub": ["s"], "agents": ["a"], "kid": ["k"]},
        "identity_headers": {"prefix": "x-agent-"},
        "network": {"allow": ["10.0.0.0/8"]},
        "limits": [{"id": "l", "per": "agent_route", "rate": "10/1m", "burst": 3, "routes": ["r"]}],
        "circuit_breaker": {"window": "10s", "max_requests": 5, "max_deny_ratio": 0.5, "min_requests": 3,
                            "profile_requests": 10, "max_unusual": 2, "cooldown": "1m"},
        "state": {"max_keys": 1000},
        "credentials": "either",
        "signature_agents": {"directories": [{"operator": "https://bot", "directory_uri": "https://bot/.well-known/http-message-signatures-directory", "scopes": ["s"]}],
                             "tag": "web-bot-auth", "max_age": "5m", "clock_skew": "30s", "require_nonce": true,
                             "directory_signatures": "unchecked"},
        "resource": {"identifier": "a", "metadata_url": "https://a/.well-known/oauth-protected-resource", "authorization_servers": ["https://sts"],
                     "name": "A", "documentation": "https://a/docs"},
        "log": {"outcomes": ["deny", "revoked"], "sample": 0.5, "claims": ["tenant"], "headers": ["user-agent"], "stats_agents": 50},
        "token_service": {"issuer": "https://edge", "signing_kid": "k", "default_lifetime": "5m", "federation": [{
            "id": "ci", "issuer": {"iss": "https://ci", "audiences": ["https://edge"], "jwks_uri": "https://ci/keys",
                                   "algorithms": ["ES256"], "token_type": null, "max_lifetime": "1h", "clock_skew": "30s"},
            "subjects": ["repo:acme/*"], "claims": {"ref": ["refs/heads/main"]}, "actors": ["spiffe://acme/*"],
            "scopes": ["s"], "audiences": ["a"], "max_lifetime": "10m", "require_dpop": true}]},
        "approval": {"issuer": "https://appr", "jwks_uri": "https://appr/keys", "algorithms": ["EdDSA"],
                     "audiences": ["a"], "endpoint": "https://appr/ciba", "token_type": "approval+jwt",
                     "header": "x-approval", "max_lifetime": "5m", "clock_skew": "10s", "replay_cache": 100},
        "cache": {"tokens": 5}
    });
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
