//! Web Bot Auth key directories handed to the engine with their response
//! signature (`Engine::set_directory_keys`): which keys a request signature
//! may then use, under `signature_agents.directory_signatures` `required`
//! (the default) and `unchecked`.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::directory::{DirectoryResponse, TAG};
use agentguard::keys::{parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, ReasonCode, Request};
use base64::Engine as _;
use serde_json::{json, Value};

const NOW: i64 = 1_767_225_600;
const OPERATOR: &str = "https://crawler.test";
const DIRECTORY: &str = "https://crawler.test/.well-known/http-message-signatures-directory";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_random(Alg::EdDSA, &[seed; 32]).unwrap()
}
fn public(k: &SigningKey) -> Value {
    let jwk = k.public_jwk("x");
    json!({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"]})
}
fn thumbprint(k: &SigningKey) -> String {
    parse_jwk(&public(k)).unwrap().unwrap().thumbprint
}
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn engine(directory_signatures: Option<&str>) -> Engine {
    let issuer = key(40);
    let mut sa = json!({"directories": [{"operator": OPERATOR, "directory_uri": DIRECTORY, "scopes": ["pages.read"]}]});
    if let Some(mode) = directory_signatures {
        sa["directory_signatures"] = json!(mode);
    }
    Engine::from_json(
        &json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"], "jwks": {"keys": [issuer.public_jwk("i")]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "pages", "methods": ["GET"], "path": "/pages/**", "scopes": ["pages.read"]}],
            "credentials": "signature",
            "signature_agents": sa,
        })
        .to_string(),
    )
    .unwrap()
}

/// `(Signature-Input, Signature)` of a directory response signed by `signers`
/// for `authority`, as npm `http-message-sig`'s `directoryResponseHeaders` writes them.
fn directory_headers(signers: &[&SigningKey], authority: &str, expires: i64) -> (String, String) {
    let (mut inputs, mut sigs) = (Vec::new(), Vec::new());
    for (i, k) in signers.iter().enumerate() {
        let params = format!(
            "(\"@authority\";req);created={};keyid=\"{}\";alg=\"ed25519\";expires={expires};tag=\"{TAG}\"",
            NOW - 60,
            thumbprint(k)
        );
        let base = format!("\"@authority\";req: {authority}\n\"@signature-params\": {params}");
        inputs.push(format!("binding{i}={params}"));
        sigs.push(format!("binding{i}=:{}:", b64(&mint::sign_bytes(k, base.as_bytes()))));
    }
    (inputs.join(", "), sigs.join(", "))
}

/// A GET signed by `k` the way Web Bot Auth agents sign.
fn request(k: &SigningKey, nonce: &str) -> Request<'static> {
    let params = format!(
        "(\"@authority\" \"signature-agent\");created={};expires={};keyid=\"{}\";alg=\"ed25519\";nonce=\"{nonce}\";tag=\"web-bot-auth\"",
        NOW - 1,
        NOW + 59,
        thumbprint(k)
    );
    let base = format!(
        "\"@authority\": api.test\n\"signature-agent\": \"{OPERATOR}\"\n\"@signature-params\": {params}"
    );
    let sig = b64(&mint::sign_bytes(k, base.as_bytes()));
    Request::builder("GET", "/pages/1", NOW)
        .host("api.test")
        .header("signature-agent", &format!("\"{OPERATOR}\""))
        .header("signature-input", &format!("sig1={params}"))
        .header("signature", &format!("sig1=:{sig}:"))
        .build()
        .unwrap()
}

fn decide(e: &Engine, k: &SigningKey, nonce: &str) -> Option<ReasonCode> {
    let d = e.decide(&request(k, nonce));
    d.reasons.first().map(|r| r.code)
}

fn load(e: &Engine, keys: &[&SigningKey], headers: Option<&(String, String)>) -> Result<Vec<String>, String> {
    let text = json!({"keys": keys.iter().map(|k| public(k)).collect::<Vec<_>>()}).to_string();
    let response = DirectoryResponse {
        text: &text,
        signature_input: headers.map(|h| h.0.as_str()),
        signature: headers.map(|h| h.1.as_str()),
        content_digest: None,
    };
    e.set_directory_keys(OPERATOR, &response, NOW)
        .map(|problems| problems.into_iter().map(|p| format!("{}: {}", p.index, p.message)).collect())
}

#[test]
fn a_signed_directory_is_trusted_and_an_unsigned_one_refused_by_default() {
    let (a, b) = (key(1), key(2));
    let e = engine(None);
    // Unsigned: refused, no keys yet, so the agent's key is unknown.
    let err = load(&e, &[&a], None).unwrap_err();
    assert!(err.contains("not signed") && err.contains("keeping the previous keys"), "{err}");
    assert_eq!(decide(&e, &a, "n1"), Some(ReasonCode::SignatureKeyUnknown));
    // The text-only path (`set_issuer_keys`, hosts that do not pass headers) is refused too.
    let text = json!({"keys": [public(&a)]}).to_string();
    assert!(e.set_issuer_keys_json(OPERATOR, &text).unwrap_err().contains("response signature"));
    assert_eq!(decide(&e, &a, "n2"), Some(ReasonCode::SignatureKeyUnknown));
    // Signed by its key for the directory_uri's authority: trusted.
    assert_eq!(
        load(&e, &[&a], Some(&directory_headers(&[&a], "crawler.test", NOW + 3600))).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(decide(&e, &a, "n3"), None);
    // A later unsigned directory (with key b) is refused; a's key stays.
    assert!(load(&e, &[&b], None).is_err());
    assert_eq!(decide(&e, &a, "n4"), None);
    assert_eq!(decide(&e, &b, "n5"), Some(ReasonCode::SignatureKeyUnknown));
}

#[test]
fn only_keys_with_a_valid_signature_are_kept() {
    let (a, b) = (key(1), key(2));
    let e = engine(Some("required"));
    let problems = load(&e, &[&a, &b], Some(&directory_headers(&[&a], "crawler.test", NOW + 3600))).unwrap();
    assert_eq!(
        problems,
        [format!("1: key `{}` has no valid directory signature; not trusted", thumbprint(&b))]
    );
    assert_eq!(decide(&e, &a, "n1"), None);
    assert_eq!(decide(&e, &b, "n2"), Some(ReasonCode::SignatureKeyUnknown));
}

#[test]
fn bad_directory_signatures_change_no_keys() {
    let (a, b, stranger) = (key(1), key(2), key(9));
    let e = engine(None);
    load(&e, &[&a], Some(&directory_headers(&[&a], "crawler.test", NOW + 3600))).unwrap();
    for (what, headers) in [
        ("another authority", directory_headers(&[&b], "evil.test", NOW + 3600)),
        ("expired", directory_headers(&[&b], "crawler.test", NOW - 120)),
        ("a key not in the directory", directory_headers(&[&stranger], "crawler.test", NOW + 3600)),
    ] {
        assert!(load(&e, &[&b], Some(&headers)).is_err(), "{what}");
        assert_eq!(decide(&e, &b, &format!("b-{what}")), Some(ReasonCode::SignatureKeyUnknown), "{what}");
        assert_eq!(decide(&e, &a, &format!("a-{what}")), None, "{what}: the previous keys stay");
    }
    // Keys swapped after signing: the signature names a key that is no longer listed.
    let signed_for_a = directory_headers(&[&a], "crawler.test", NOW + 3600);
    assert!(load(&e, &[&b], Some(&signed_for_a)).unwrap_err().contains("is not in the directory"));
}

#[test]
fn unchecked_trusts_the_url_alone() {
    let a = key(1);
    let e = engine(Some("unchecked"));
    assert!(load(&e, &[&a], None).unwrap().is_empty());
    assert_eq!(decide(&e, &a, "n1"), None);
    let text = json!({"keys": [public(&a)]}).to_string();
    assert!(e.set_issuer_keys_json(OPERATOR, &text).is_ok());
}

#[test]
fn the_setting_is_validated_and_round_trips() {
    let err = Engine::from_json(
        &json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"], "jwks": {"keys": [key(40).public_jwk("i")]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "pages", "methods": ["GET"], "path": "/pages/**", "scopes": ["pages.read"]}],
            "credentials": "signature",
            "signature_agents": {"directories": [{"operator": OPERATOR, "directory_uri": DIRECTORY}], "directory_signatures": "optional"},
        })
        .to_string(),
    );
    assert!(err.is_err());
    let policy: agentguard::policy::Policy = serde_json::from_value(json!({
        "issuers": [], "routes": [],
        "signature_agents": {"directories": [{"operator": OPERATOR, "directory_uri": DIRECTORY}]},
    }))
    .unwrap();
    let sa = serde_json::to_value(policy.signature_agents.unwrap()).unwrap();
    assert_eq!(sa["directory_signatures"], "required", "the default is `required`");
}
