//! Shared pieces of the fuzz targets: the test keys, token minting, and the
//! invariants every decision must satisfy.
//!
//! The invariants are asserted (a violation panics, which libFuzzer reports
//! as a crash with the input that caused it):
//!
//! - the outcome is one of the four (`allow`, `deny`, `approval_required`,
//!   `revoked`), also on the JSON wire;
//! - `allow` has status 200, a verified identity, no reasons and no response;
//! - every other outcome has at least one reason and a response whose status
//!   is the decision's status;
//! - the status is one of 200, 400, 401, 403, 429, 500;
//! - the trace names every stage once, in pipeline order.

// A fuzz harness fails by panicking: that is how libFuzzer sees a bug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::keys::{parse_jwk, KeySet};
use agentguard::mint::SigningKey;
use agentguard::{Decision, Outcome, ReasonCode};
use arbitrary::Arbitrary;
use serde_json::Value;

/// A fuzzed string field: one of the harness's choices (`Pick`, its index
/// taken modulo their number, so a zero byte is the first: the valid one),
/// or fuzzed text.
#[derive(Arbitrary, Debug)]
pub enum Text {
    /// The choice at this index, modulo their number.
    Pick(u8),
    /// Fuzzed text.
    Raw(String),
}

impl Text {
    /// The chosen text.
    pub fn get<'a>(&'a self, choices: &[&'a str]) -> &'a str {
        match self {
            Text::Pick(i) => choices[usize::from(*i) % choices.len()],
            Text::Raw(s) => s,
        }
    }
}

/// Flips bit `bit` (modulo their number) of a signature's bytes, before any
/// encoding: no lenient decoder can undo it. `bytes` must not be empty.
pub fn flip_bit(bytes: &mut [u8], bit: u16) {
    let bit = usize::from(bit) % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// Test keys (`tests/vectors/keys.json`): private JWKs for `ed25519`, `es256`, `approver`.
pub fn test_keys() -> Value {
    serde_json::from_str(include_str!("../../tests/vectors/keys.json")).unwrap()
}

/// The example issuer's private key (`examples/keys/issuer.private.jwk.json`, kid `sts-2026-01`).
pub fn example_issuer_key() -> SigningKey {
    let jwk: Value =
        serde_json::from_str(include_str!("../../examples/keys/issuer.private.jwk.json")).unwrap();
    SigningKey::from_jwk(&jwk).unwrap()
}

/// The example approval service's private key (kid `approvals-2026-01`).
pub fn example_approver_key() -> SigningKey {
    let jwk: Value =
        serde_json::from_str(include_str!("../../examples/keys/approver.private.jwk.json")).unwrap();
    SigningKey::from_jwk(&jwk).unwrap()
}

/// The example policy (`examples/policy.json`).
pub const EXAMPLE_POLICY: &str = include_str!("../../examples/policy.json");

/// A JWK without its private members.
pub fn public(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    if let Some(obj) = jwk.as_object_mut() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            obj.remove(private);
        }
    }
    jwk
}

/// The RSA 2048 public key of the Wycheproof RSA vectors, as a JWK (kid `rsa`).
pub fn wycheproof_rsa_jwk() -> Value {
    let file: Value =
        serde_json::from_str(include_str!("../../tests/wycheproof/rsa_signature_2048_sha256_test.json"))
            .unwrap();
    let mut jwk = public(&file["testGroups"][0]["keyJwk"]);
    jwk["kid"] = "rsa".into();
    jwk.as_object_mut().unwrap().remove("alg");
    jwk
}

/// A fixed key set: the Ed25519 and P-256 test keys and an RSA 2048 key.
pub fn fixed_key_set() -> KeySet {
    let keys = test_keys();
    let jwks =
        serde_json::json!({"keys": [public(&keys["ed25519"]), public(&keys["es256"]), wycheproof_rsa_jwk()]});
    let (set, problems) = KeySet::from_jwks(&jwks).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(set.len(), 3);
    set
}

/// The RFC 7638 thumbprint of a (public or private) JWK.
pub fn thumbprint(jwk: &Value) -> String {
    parse_jwk(&public(jwk)).unwrap().unwrap().thumbprint
}

/// Asserts the invariants every decision must satisfy (see the crate docs).
pub fn check_decision(d: &Decision) {
    assert!(
        matches!(d.status, 200 | 400 | 401 | 403 | 429 | 500 | 503),
        "status {} is not one of 200/400/401/403/429/500/503: {d:?}",
        d.status
    );
    if d.status == 503 {
        // Only for state the decision needs and does not have (a revocation
        // list not loaded or too old, a full replay cache), and with a hint
        // when to come back.
        let code = d.reasons.first().map(|r| r.code);
        assert!(
            matches!(code, Some(ReasonCode::StateUnavailable | ReasonCode::ReplayCacheFull)),
            "503 for {code:?}"
        );
        let response = d.response.as_ref().expect("a 503 without a response");
        assert!(response.headers.contains_key("retry-after"), "a 503 without Retry-After");
    }
    match d.decision {
        Outcome::Allow => {
            assert_eq!(d.status, 200, "allow with status {}", d.status);
            assert!(d.identity.is_some(), "allow without a verified identity: {d:?}");
            assert!(d.reasons.is_empty(), "allow with reasons: {:?}", d.reasons);
            assert!(d.response.is_none(), "allow with a refusal response");
            assert!(d.route.is_some(), "allow without a route");
        }
        Outcome::Deny | Outcome::ApprovalRequired | Outcome::Revoked => {
            assert_ne!(d.status, 200, "{:?} with status 200", d.decision);
            assert!(!d.reasons.is_empty(), "{:?} without a reason", d.decision);
            let response = d.response.as_ref().expect("a refusal without a response");
            assert_eq!(response.status, d.status, "response status differs from the decision's");
            assert!(d.forward_headers.is_empty(), "a refusal forwards identity headers");
        }
    }
    if d.decision == Outcome::ApprovalRequired {
        assert!(d.approval.is_some(), "approval_required without a challenge");
    }
    let stages: Vec<&str> = d.trace.iter().map(|t| t.stage).collect();
    assert_eq!(stages, agentguard::engine::STAGES, "trace stages out of order");
    // The wire form says the same.
    let json: Value = serde_json::from_str(&agentguard::api::to_json(d)).unwrap();
    let outcome = json["decision"].as_str().unwrap();
    assert!(matches!(outcome, "allow" | "deny" | "approval_required" | "revoked"), "{outcome}");
    assert_eq!(outcome, d.decision.as_str());
    assert_eq!(json["status"], Value::from(d.status));
}
