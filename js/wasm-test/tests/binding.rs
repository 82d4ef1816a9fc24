//! The wasm-bindgen binding (`src/js.rs`) tested inside Wasm under Node:
//!
//!   CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!     cargo test --manifest-path js/wasm-test/Cargo.toml --target wasm32-unknown-unknown
//!
//! (scripts/test-js.sh runs it.) The shared vectors go through `Guard`
//! exactly as the JS package calls it: JSON strings in, JSON strings out.
#![cfg(target_arch = "wasm32")]

use agentguard::js::{check, mint, verify_signature, Guard};
use serde_json::{json, Map, Value};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

const POLICY: &str = include_str!("../../../tests/vectors/policy.json");
const CASES: &str = include_str!("../../../tests/vectors/cases.json");
const KEYS: &str = include_str!("../../../tests/vectors/keys.json");
const NOW: i64 = 1_767_225_600;

fn message(err: wasm_bindgen::JsError) -> String {
    js_sys::Error::from(JsValue::from(err)).message().into()
}

fn keys() -> Value {
    serde_json::from_str(KEYS).unwrap()
}

/// Mints a case's token per the vectors' rules, with the binding's `mint`.
fn case_token(spec: &Value, serial: usize) -> String {
    let keys = keys();
    let jwk = &keys[spec["key"].as_str().unwrap()];
    let mut claims: Map<String, Value> = spec["claims"].as_object().unwrap().clone();
    for v in claims.values_mut() {
        let rel = v.as_str().and_then(|s| {
            let n: i64 = s.strip_prefix('+').or_else(|| s.strip_prefix('-'))?.parse().ok()?;
            Some(if s.starts_with('-') { -n } else { n })
        });
        if let Some(rel) = rel {
            *v = (NOW + rel).into();
        }
    }
    claims.insert("iat".into(), (NOW + spec["iat"].as_i64().unwrap()).into());
    claims.insert("exp".into(), (NOW + spec["exp"].as_i64().unwrap()).into());
    claims.entry("jti").or_insert(format!("wasm-{serial}").into());
    let typ = spec.get("typ").and_then(Value::as_str).map(str::to_owned);
    let token = mint(&jwk.to_string(), &Value::Object(claims.clone()).to_string(), typ).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    match spec.get("tamper").and_then(Value::as_str) {
        None => token,
        Some("payload") => {
            claims.insert("sub".into(), "user:mallory".into());
            let payload = agentguard::b64::encode(Value::Object(claims).to_string().as_bytes());
            format!("{}.{payload}.{}", parts[0], parts[2])
        }
        Some("signature") => {
            let first = if parts[2].starts_with('B') { "A" } else { "B" };
            format!("{}.{}.{first}{}", parts[0], parts[1], &parts[2][1..])
        }
        Some(other) => panic!("unknown tamper `{other}`"),
    }
}

fn request(case: &Value, serial: usize) -> String {
    let mut request = case["request"].clone();
    request["now"] = NOW.into();
    if !case["token"].is_null() {
        let token = case_token(&case["token"], serial);
        request["headers"]["authorization"] = format!("Bearer {token}").into();
    }
    request.to_string()
}

fn decision(json: &str) -> Value {
    serde_json::from_str(json).unwrap()
}

fn summary(d: &Value) -> Value {
    let codes: Vec<Value> = d["reasons"].as_array().unwrap().iter().map(|r| r["code"].clone()).collect();
    json!({ "decision": d["decision"], "status": d["status"], "reasons": codes })
}

#[wasm_bindgen_test]
fn shared_vectors_through_the_binding() {
    let guard = Guard::new(POLICY).unwrap();
    let doc: Value = serde_json::from_str(CASES).unwrap();
    for (i, case) in doc["cases"].as_array().unwrap().iter().enumerate() {
        let d = decision(&guard.decide(&request(case, i)));
        assert_eq!(summary(&d), case["expect"], "{}", case["name"]);
    }
}

#[wasm_bindgen_test]
fn host_verified_signatures_give_the_same_decisions() {
    let guard = Guard::new(POLICY).unwrap();
    let doc: Value = serde_json::from_str(CASES).unwrap();
    for (i, case) in doc["cases"].as_array().unwrap().iter().enumerate() {
        let req = request(case, 1000 + i);
        let first = guard.decide_or_check(&req, "EdDSA,ES256");
        let d = if first.starts_with(r#"{"checks":"#) {
            // Verify as a host would, here with the Wasm verifier itself.
            let verdicts: Vec<Value> = decision(&first)["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|check| {
                    let valid = verify_signature(
                        check["alg"].as_str().unwrap(),
                        &check["jwk"].to_string(),
                        check["signing_input"].as_str().unwrap(),
                        check["signature"].as_str().unwrap(),
                    )
                    .unwrap();
                    json!({ "token_hash": check["token_hash"], "valid": valid })
                })
                .collect();
            decision(&guard.decide_with(&req, &Value::Array(verdicts).to_string()))
        } else {
            decision(&first)
        };
        assert_eq!(summary(&d), case["expect"], "{}", case["name"]);
    }
}

/// A request JSON in the line form (`RequestParts::from_lines`), as the JS package writes it.
fn lines(request_json: &str) -> String {
    let r: Value = serde_json::from_str(request_json).unwrap();
    let field = |name: &str| r[name].as_str().unwrap_or_default().to_owned();
    let scheme = r["scheme"].as_str().unwrap_or("https").to_owned();
    let mut out = [field("method"), scheme, field("host"), field("path"), field("source_ip")].join("\n");
    out.push_str(&format!("\n{}\n{}", field("client_cert_sha256"), field("body_sha256")));
    for (name, value) in r["headers"].as_object().into_iter().flatten() {
        let values = value.as_array().cloned().unwrap_or_else(|| vec![value.clone()]);
        for v in values {
            out.push_str(&format!("\n{name}\n{}", v.as_str().unwrap()));
        }
    }
    out
}

#[wasm_bindgen_test]
fn the_line_form_decides_as_json_does() {
    let (by_json, by_lines) = (Guard::new(POLICY).unwrap(), Guard::new(POLICY).unwrap());
    let doc: Value = serde_json::from_str(CASES).unwrap();
    for (i, case) in doc["cases"].as_array().unwrap().iter().enumerate() {
        let req = request(case, 2000 + i);
        let now = NOW as f64;
        assert_eq!(by_lines.decide_lines(&lines(&req), None, now), by_json.decide(&req), "{}", case["name"]);
        // Both halves of a host-verified decision, with no verdict (checked in Wasm).
        let first = by_lines.decide_or_check_lines(&lines(&req), None, now, "EdDSA,ES256");
        assert_eq!(first, by_json.decide_or_check(&req, "EdDSA,ES256"), "{}", case["name"]);
        if first.starts_with(r#"{"checks":"#) {
            let d = decision(&by_lines.decide_with_lines(&lines(&req), None, now, "[]"));
            assert_eq!(d, decision(&by_json.decide_with(&req, "[]")), "{}", case["name"]);
            assert_eq!(summary(&d), case["expect"], "{}", case["name"]);
        }
    }
    // A malformed line form is refused, never decided.
    for bad in ["", "GET", "GET\nhttps\nh\n/\n\n\n\nauthorization"] {
        let d = decision(&by_lines.decide_lines(bad, None, 1.0));
        assert_eq!(
            (d["decision"].as_str(), d["reasons"][0]["code"].as_str()),
            (Some("deny"), Some("request_invalid"))
        );
        let d = decision(&by_lines.decide_or_check_lines(bad, None, 1.0, "ES256"));
        assert_eq!(d["reasons"][0]["code"], "request_invalid", "{bad}");
    }
}

#[wasm_bindgen_test]
fn a_verdict_decides_only_its_own_token() {
    let guard = Guard::new(POLICY).unwrap();
    let doc: Value = serde_json::from_str(CASES).unwrap();
    let case = &doc["cases"][1]; // valid ES256
    assert_eq!(case["expect"]["decision"], "allow");
    let req = request(case, 7);
    let first = guard.decide_or_check(&req, "ES256");
    let check = decision(&first)["checks"][0].clone();
    assert_eq!(check["alg"], "ES256");
    // The host says "invalid": the core refuses.
    let no = json!({ "token_hash": check["token_hash"], "valid": false });
    assert_eq!(
        decision(&guard.decide_with(&req, &no.to_string()))["reasons"][0]["code"],
        "token_signature_invalid"
    );
    // A verdict for another token is ignored: the signature is checked in Wasm.
    let other = json!({ "token_hash": "AAAA", "valid": false });
    assert_eq!(decision(&guard.decide_with(&req, &other.to_string()))["decision"], "allow");
    // Algorithms the host did not ask for are decided in one call.
    assert_eq!(decision(&guard.decide_or_check(&req, "EdDSA"))["decision"], "allow");
}

#[wasm_bindgen_test]
fn a_bad_policy_throws_with_json_paths() {
    let bad = POLICY.replace(r#""max_lifetime": "10m""#, r#""max_lifetime": "ten minutes""#);
    assert_ne!(bad, POLICY);
    let err = message(Guard::new(&bad).unwrap_err());
    assert!(err.starts_with("issuers[0].max_lifetime"), "{err}");
    let problems: Value = serde_json::from_str(&check(&bad)).unwrap();
    assert_eq!(problems[0]["path"], "issuers[0].max_lifetime");
    assert_eq!(check(POLICY), "[]");
}

#[wasm_bindgen_test]
fn deciding_never_throws() {
    let guard = Guard::new(POLICY).unwrap();
    for bad in
        ["", "null", "{", r#"{"method": "GET"}"#, r#"{"method": "GET", "path": "/", "now": 1, "x": 1}"#]
    {
        let d = decision(&guard.decide(bad));
        assert_eq!(d["decision"], "deny", "{bad}");
        assert_eq!(d["reasons"][0]["code"], "request_invalid", "{bad}");
        let d = decision(&guard.decide_or_check(bad, "ES256"));
        assert_eq!(d["reasons"][0]["code"], "request_invalid", "{bad}");
    }
}

#[wasm_bindgen_test]
fn keys_revocations_and_stats() {
    let remote = r#"{"issuers": [{"iss": "https://sts.remote", "audiences": ["a"], "algorithms": ["EdDSA"],
        "jwks_uri": "https://sts.remote/jwks"}], "routes": [{"id": "r", "methods": ["GET"], "path": "/**"}]}"#;
    let guard = Guard::new(remote).unwrap();
    let uris: Value = serde_json::from_str(&guard.jwks_uris()).unwrap();
    assert_eq!(uris, json!([{ "iss": "https://sts.remote", "jwks_uri": "https://sts.remote/jwks" }]));
    let empty = message(guard.set_issuer_keys("https://sts.remote", r#"{"keys": []}"#).unwrap_err());
    assert!(empty.contains("no usable"), "{empty}");
    let unknown = message(guard.set_issuer_keys("https://elsewhere", r#"{"keys": []}"#).unwrap_err());
    assert!(unknown.contains("not in the policy"), "{unknown}");
    let mut public = keys()["ed25519"].clone();
    public.as_object_mut().unwrap().remove("d");
    let skipped = guard
        .set_issuer_keys(
            "https://sts.remote",
            &json!({ "keys": [public, { "kty": "oct", "k": "AA" }] }).to_string(),
        )
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&skipped).unwrap().as_array().unwrap().len(), 1);

    let policy = Guard::new(POLICY).unwrap();
    assert!(message(policy.set_revocations(r#"{"jtis": []}"#).unwrap_err()).starts_with("revocations."));
    policy.set_revocations(r#"{"jti": ["x"]}"#).unwrap();
    assert_eq!(policy.cached_tokens(), 0);
    assert_eq!(policy.suspended_agents(NOW as f64), "[]");
}

#[wasm_bindgen_test]
fn mint_adds_a_random_jti_and_checks_its_input() {
    let jwk = keys()["es256"].to_string();
    let a = mint(&jwk, r#"{"sub": "x"}"#, None).unwrap();
    let b = mint(&jwk, r#"{"sub": "x"}"#, None).unwrap();
    assert_ne!(a, b, "jti comes from crypto.getRandomValues");
    assert!(message(mint(&jwk, "[]", None).unwrap_err()).contains("expected a JSON object"));
    assert!(message(mint("{}", "{}", None).unwrap_err()).contains("private JWK"));
    assert!(!agentguard::js::version().is_empty());
}

#[wasm_bindgen_test]
fn listed_revocations_set_and_confirmed() {
    let mut policy: Value = serde_json::from_str(POLICY).unwrap();
    let without = Guard::new(&policy.to_string()).unwrap();
    assert!(
        message(without.confirm_listed_revocations(1_000.0).unwrap_err()).contains("no `revocation_list`")
    );
    policy["revocation_list"] =
        json!({"uri": "https://lists.test/revoked.json", "refresh": "1m", "max_stale": "1h"});
    let guard = Guard::new(&policy.to_string()).unwrap();
    let loaded_at = |g: &Guard| -> Value {
        serde_json::from_str::<Value>(&g.revocation_list().unwrap()).unwrap()["loaded_at_ms"].clone()
    };
    // A 304 cannot vouch for a list the engine never loaded.
    let none = message(guard.confirm_listed_revocations(1_000.0).unwrap_err());
    assert!(none.contains("no revocation list from `https://lists.test/revoked.json` is loaded"), "{none}");
    assert_eq!(loaded_at(&guard), Value::Null);
    assert_eq!(guard.set_listed_revocations(r#"{"jti": ["a", "b"]}"#, 1_000.0).unwrap(), 2);
    assert_eq!(loaded_at(&guard), json!(1_000));
    // Confirmed: the same entries, a later load time, never an earlier one.
    assert_eq!(guard.confirm_listed_revocations(5_000.0).unwrap(), 2);
    assert_eq!(loaded_at(&guard), json!(5_000));
    assert_eq!(guard.confirm_listed_revocations(3_000.0).unwrap(), 2);
    assert_eq!(loaded_at(&guard), json!(5_000));
    // A refused document leaves the confirmed list in force.
    assert!(message(guard.set_listed_revocations(r#"{"jti": [4]}"#, 6_000.0).unwrap_err()).contains("jti[0]"));
    assert_eq!(guard.confirm_listed_revocations(7_000.0).unwrap(), 2);
    assert_eq!(loaded_at(&guard), json!(7_000));
}
