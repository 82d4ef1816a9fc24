//! Workload attestation: JWT-SVIDs and attestation-result tokens, one test per rule.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::keys::Alg;
use agentguard::mint::{self, SigningKey};
use agentguard::{Decision, Engine, ReasonCode, Request};
use serde_json::{json, Map, Value};

const NOW: i64 = 1_767_225_600;
const AGENT: &str = "spiffe://prod.test/agents/crm";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn keys() -> Value {
    serde_json::from_str(include_str!("vectors/keys.json")).unwrap()
}

fn public(name: &str) -> Value {
    let mut jwk = keys()[name].clone();
    jwk.as_object_mut().unwrap().remove("d");
    jwk
}

fn svid_key() -> SigningKey {
    SigningKey::from_random(Alg::ES256, &[11; 32]).unwrap()
}

fn result_key() -> SigningKey {
    SigningKey::from_random(Alg::EdDSA, &[12; 32]).unwrap()
}

fn policy(attestation: Value) -> String {
    json!({
        "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                     "jwks": {"keys": [public("ed25519")]}, "algorithms": ["EdDSA"]}],
        "routes": [{"id": "read", "methods": ["GET"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"]}],
        "attestation": attestation
    })
    .to_string()
}

fn svid_policy() -> Engine {
    Engine::from_json(&policy(json!({
        "issuers": [{"iss": "spiffe://prod.test", "kind": "jwt_svid", "audiences": ["https://api.test"],
                     "jwks": {"keys": [svid_key().public_jwk("svid-1")]}, "algorithms": ["ES256"]}],
        "require": {"spiffe_id": ["spiffe://prod.test/agents/*"]}
    })))
    .unwrap()
}

fn result_policy() -> Engine {
    Engine::from_json(&policy(json!({
        "issuers": [{"iss": "https://attest.test", "kind": "attestation_result", "audiences": ["https://api.test"],
                     "jwks": {"keys": [result_key().public_jwk("att-1")]}, "algorithms": ["EdDSA"]}],
        "require": {"claims": {"image_digest": [DIGEST], "tee.type": ["sev-snp", "tdx"]}}
    })))
    .unwrap()
}

fn access_token(actor: &str, extra: Value) -> String {
    let mut claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "user:alice",
        "act": {"sub": actor}, "scope": "crm.read", "iat": NOW - 10, "exp": NOW + 290, "jti": "t1"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let issuer = SigningKey::from_jwk(&keys()["ed25519"]).unwrap();
    mint::sign(&issuer, Some("test-ed25519"), "at+jwt", claims.as_object().unwrap())
}

fn svid(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "aud": ["https://api.test"], "exp": NOW + 300, "iat": NOW - 5,
                            "iss": "spiffe://prod.test"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    mint::sign(&svid_key(), Some("svid-1"), "JWT", claims.as_object().unwrap())
}

fn attestation_result(sub: &str, extra: Value) -> String {
    let mut claims: Map<String, Value> =
        json!({"iss": "https://attest.test", "sub": sub, "aud": "https://api.test",
        "exp": NOW + 300, "iat": NOW - 5, "image_digest": DIGEST, "tee": {"type": "sev-snp"}})
        .as_object()
        .unwrap()
        .clone();
    for (k, v) in extra.as_object().unwrap() {
        claims.insert(k.clone(), v.clone());
    }
    mint::sign(&result_key(), Some("att-1"), "attestation-result+jwt", &claims)
}

fn decide(e: &Engine, token: &str, evidence: Option<&str>) -> Decision {
    let mut b =
        Request::builder("GET", "/v1/contacts/42", NOW).header("authorization", &format!("Bearer {token}"));
    if let Some(ev) = evidence {
        b = b.header("x-agent-attestation", ev);
    }
    e.decide(&b.build().unwrap())
}

#[track_caller]
fn assert_code(d: &Decision, code: ReasonCode) {
    assert_eq!(d.codes(), [code], "{:?}", d.reasons);
    assert_eq!(d.status, 403);
    let step = d.trace.iter().find(|t| t.stage == "attestation").unwrap();
    assert_eq!(step.result, agentguard::decision::StageResult::Fail);
}

#[test]
fn a_valid_svid_for_the_tokens_agent_is_allowed() {
    let d = decide(&svid_policy(), &access_token(AGENT, json!({})), Some(&svid(AGENT, json!({}))));
    assert!(d.is_allowed(), "{:?}", d.reasons);
    let step = d.trace.iter().find(|t| t.stage == "attestation").unwrap();
    assert_eq!(step.detail, format!("workload `{AGENT}` attested by `spiffe://prod.test`"));
    // The decision log records what was attested, and by whom.
    let attested = d.event.attestation.as_ref().unwrap();
    assert_eq!((attested.workload.as_str(), attested.issuer.as_str()), (AGENT, "spiffe://prod.test"));
    let json: serde_json::Value = serde_json::from_str(&d.event.to_json()).unwrap();
    assert_eq!(json["attestation"], json!({"workload": AGENT, "issuer": "spiffe://prod.test"}));
}

#[test]
fn svid_without_iss_is_matched_by_trust_domain() {
    let d = decide(&svid_policy(), &access_token(AGENT, json!({})), Some(&svid(AGENT, json!({"iss": null}))));
    assert!(d.is_allowed(), "{:?}", d.reasons);
}

#[test]
fn svid_for_another_spiffe_id() {
    let other = "spiffe://prod.test/batch/importer";
    let d = decide(&svid_policy(), &access_token(other, json!({})), Some(&svid(other, json!({}))));
    assert_code(&d, ReasonCode::AttestationSubjectNotAllowed);
}

#[test]
fn expired_svid() {
    let d = decide(
        &svid_policy(),
        &access_token(AGENT, json!({})),
        Some(&svid(AGENT, json!({"exp": NOW - 60, "iat": NOW - 120}))),
    );
    assert_code(&d, ReasonCode::AttestationExpired);
    assert!(
        d.reasons[0].message.starts_with("attestation: token expired 60 s ago"),
        "{}",
        d.reasons[0].message
    );
}

#[test]
fn svid_for_another_audience() {
    let d = decide(
        &svid_policy(),
        &access_token(AGENT, json!({})),
        Some(&svid(AGENT, json!({"aud": "https://other"}))),
    );
    assert_code(&d, ReasonCode::AttestationAudienceInvalid);
}

#[test]
fn evidence_from_another_workload_than_the_tokens_agent() {
    let other = "spiffe://prod.test/agents/mailer";
    let d = decide(&svid_policy(), &access_token(AGENT, json!({})), Some(&svid(other, json!({}))));
    assert_code(&d, ReasonCode::AttestationActorMismatch);
    assert!(d.reasons[0].message.contains("mailer"));
}

#[test]
fn missing_duplicated_or_forged_evidence() {
    let e = svid_policy();
    let token = access_token(AGENT, json!({}));
    assert_code(&decide(&e, &token, None), ReasonCode::AttestationMissing);
    // Signed by a key the policy does not trust.
    let forged = mint::sign(
        &SigningKey::from_random(Alg::ES256, &[13; 32]).unwrap(),
        Some("svid-1"),
        "JWT",
        json!({"sub": AGENT, "aud": "https://api.test", "exp": NOW + 60, "iss": "spiffe://prod.test"})
            .as_object()
            .unwrap(),
    );
    assert_code(&decide(&e, &token, Some(&forged)), ReasonCode::AttestationInvalid);
    // The access token is not evidence: its issuer is not an attestation issuer.
    assert_code(&decide(&e, &token, Some(&token)), ReasonCode::AttestationInvalid);
    // A SVID whose subject is outside the issuer's trust domain.
    let foreign = svid("spiffe://other.test/agents/crm", json!({}));
    assert_code(
        &decide(&e, &access_token("spiffe://other.test/agents/crm", json!({})), Some(&foreign)),
        ReasonCode::AttestationInvalid,
    );
    // A subject that is not a SPIFFE ID at all.
    assert_code(&decide(&e, &token, Some(&svid("crm-bot", json!({})))), ReasonCode::AttestationInvalid);
    // Two evidence headers.
    let ev = svid(AGENT, json!({}));
    let req = Request::builder("GET", "/v1/contacts/42", NOW)
        .header("authorization", &format!("Bearer {token}"))
        .header("x-agent-attestation", &ev)
        .header("x-agent-attestation", &ev)
        .build()
        .unwrap();
    assert_code(&e.decide(&req), ReasonCode::AttestationInvalid);
}

#[test]
fn attestation_result_claims_are_matched_by_path() {
    let e = result_policy();
    let token = access_token(AGENT, json!({}));
    assert!(decide(&e, &token, Some(&attestation_result(AGENT, json!({})))).is_allowed());
    let d = decide(&e, &token, Some(&attestation_result(AGENT, json!({"image_digest": "sha256:2222"}))));
    assert_code(&d, ReasonCode::AttestationClaimMismatch);
    assert!(d.reasons[0].message.contains("`image_digest`"), "{}", d.reasons[0].message);
    let d = decide(&e, &token, Some(&attestation_result(AGENT, json!({"tee": {"type": "none"}}))));
    assert_code(&d, ReasonCode::AttestationClaimMismatch);
    let d = decide(&e, &token, Some(&attestation_result(AGENT, json!({"tee": "sev-snp"}))));
    assert_code(&d, ReasonCode::AttestationClaimMismatch);
}

#[test]
fn evidence_embedded_in_the_access_token() {
    let e = Engine::from_json(&policy(json!({
        "embedded_claim": "attestation",
        "require": {"spiffe_id": ["spiffe://prod.test/agents/*"], "claims": {"image_digest": [DIGEST]}}
    })))
    .unwrap();
    let good = access_token(AGENT, json!({"attestation": {"sub": AGENT, "image_digest": DIGEST}}));
    let d = decide(&e, &good, None);
    assert!(d.is_allowed());
    assert_eq!(d.event.attestation.as_ref().map(|a| a.issuer.as_str()), Some("claim:attestation"));
    let bad = access_token(AGENT, json!({"attestation": {"sub": AGENT, "image_digest": "sha256:0"}}));
    assert_code(&decide(&e, &bad, None), ReasonCode::AttestationClaimMismatch);
    assert_code(&decide(&e, &access_token(AGENT, json!({})), None), ReasonCode::AttestationMissing);
}

#[test]
fn attestation_policy_errors_name_their_path() {
    let err = Engine::from_json(&policy(json!({
        "issuers": [{"iss": "https://not-spiffe", "kind": "jwt_svid", "audiences": [],
                     "jwks": {"keys": [result_key().public_jwk("k")]}, "algorithms": ["EdDSA"]}],
        "require": {"spiffe_id": ["prod.test/*"], "claims": {"tee..type": []}}
    })))
    .unwrap_err()
    .to_string();
    for want in [
        "attestation.issuers[0].iss: a JWT-SVID issuer is a trust domain",
        "attestation.issuers[0].audiences: expected at least one audience",
        "attestation.issuers[0].algorithms: JWT-SVIDs are signed with RS, ES or PS algorithms",
        "attestation.require.spiffe_id[0]: expected a SPIFFE ID pattern",
        "attestation.require.claims.tee..type: expected a claim path",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}
