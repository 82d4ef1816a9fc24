//! DPoP (RFC 9449): one test per rule, the RFC's own examples, and the
//! RFC 7638 thumbprint example.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::b64;
use agentguard::dpop::{self, DpopPolicy};
use agentguard::keys::{parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{Decision, Engine, ReasonCode, Request};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_767_225_600;
const URL: &str = "https://api.test/v1/contacts/42";

fn keys() -> Value {
    serde_json::from_str(include_str!("vectors/keys.json")).unwrap()
}

fn public(name: &str) -> Value {
    let mut jwk = keys()[name].clone();
    jwk.as_object_mut().unwrap().remove("d");
    jwk
}

fn engine_with(binding: &str, dpop: Value) -> Engine {
    Engine::from_json(
        &json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                         "jwks": {"keys": [public("ed25519")]}, "algorithms": ["EdDSA"], "binding": binding}],
            "routes": [{"id": "read", "methods": ["GET", "POST"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"]}],
            "dpop": dpop
        })
        .to_string(),
    )
    .unwrap()
}

fn engine() -> Engine {
    engine_with("dpop", json!({}))
}

/// The agent's DPoP key.
fn client() -> SigningKey {
    SigningKey::from_random(Alg::ES256, &[42; 32]).unwrap()
}

fn thumbprint(key: &SigningKey) -> String {
    parse_jwk(&key.public_jwk("c")).unwrap().unwrap().thumbprint
}

fn access_token(jkt: Option<&str>) -> String {
    let mut claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "user:alice",
        "client_id": "agent", "scope": "crm.read", "iat": NOW - 10, "exp": NOW + 290, "jti": "t1"});
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    let issuer = SigningKey::from_jwk(&keys()["ed25519"]).unwrap();
    mint::sign(&issuer, Some("test-ed25519"), "at+jwt", claims.as_object().unwrap())
}

struct Proof {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    key: SigningKey,
}

impl Proof {
    fn new(token: &str, jti: &str) -> Proof {
        let key = client();
        let mut jwk = key.public_jwk("ignored");
        for m in ["kid", "alg", "use"] {
            jwk.as_object_mut().unwrap().remove(m);
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).as_object().unwrap().clone();
        let claims = json!({"jti": jti, "htm": "GET", "htu": URL, "iat": NOW,
            "ath": b64::encode(&Sha256::digest(token.as_bytes()))})
        .as_object()
        .unwrap()
        .clone();
        Proof { header, claims, key }
    }
    fn claim(mut self, name: &str, value: Value) -> Proof {
        if value.is_null() {
            self.claims.remove(name);
        } else {
            self.claims.insert(name.into(), value);
        }
        self
    }
    fn header(mut self, name: &str, value: Value) -> Proof {
        self.header.insert(name.into(), value);
        self
    }
    fn sign(&self) -> String {
        mint::sign_with_header(&self.key, &self.header, &self.claims)
    }
}

fn request(method: &str, token: &str, scheme: &str, proofs: &[&str]) -> Request<'static> {
    let mut b = Request::builder(method, "/v1/contacts/42", NOW)
        .host("api.test")
        .header("authorization", &format!("{scheme} {token}"));
    for p in proofs {
        b = b.header("DPoP", p);
    }
    b.build().unwrap()
}

fn decide(e: &Engine, token: &str, proofs: &[&str]) -> Decision {
    e.decide(&request("GET", token, "DPoP", proofs))
}

#[track_caller]
fn assert_code(d: &Decision, code: ReasonCode) {
    assert_eq!(d.codes(), [code], "{:?}", d.reasons);
    assert_eq!(d.status, 401);
}

fn bound() -> String {
    access_token(Some(&thumbprint(&client())))
}

#[test]
fn fresh_proofs_are_allowed_and_a_replay_is_denied() {
    let e = engine();
    let token = bound();
    let first = Proof::new(&token, "p1").sign();
    let d = decide(&e, &token, &[&first]);
    assert!(d.is_allowed(), "{:?}", d.reasons);
    assert!(d.trace.iter().any(|t| t.stage == "binding" && t.detail.starts_with("DPoP proof by key")));
    let second = Proof::new(&token, "p2").sign();
    assert!(decide(&e, &token, &[&second]).is_allowed());
    let d = decide(&e, &token, &[&first]);
    assert_code(&d, ReasonCode::DpopProofReplayed);
    let challenge = &d.response.as_ref().unwrap().headers["www-authenticate"];
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert!(challenge.contains(r#"error="invalid_dpop_proof""#), "{challenge}");
    assert!(challenge.contains(r#"algs="EdDSA ES256""#), "{challenge}");
}

/// An agent's DPoP key is remembered once a proof by it passes for a token
/// bound to it, builds its table of multiples after a few proofs, and then
/// still refuses a proof it did not sign. Proofs that fail, or name a key
/// no token is bound to, leave nothing behind.
#[test]
fn an_agents_proof_key_is_remembered_with_its_table() {
    let e = engine();
    let token = bound();
    // A proof by another key, for the same token: refused, not remembered.
    let mut stranger = Proof::new(&token, "s1");
    stranger.key = SigningKey::from_random(Alg::ES256, &[8; 32]).unwrap();
    stranger.header.insert("jwk".into(), stranger.key.public_jwk("x"));
    stranger.header["jwk"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| ["kty", "crv", "x", "y"].contains(&k.as_str()));
    assert_code(&decide(&e, &token, &[&stranger.sign()]), ReasonCode::DpopKeyMismatch);
    assert!(e.remembered_proof_keys().is_empty());
    // The agent's own proofs: remembered after the first, a table later.
    let expected = thumbprint(&client());
    for n in 0..6 {
        let d = decide(&e, &token, &[&Proof::new(&token, &format!("p{n}")).sign()]);
        assert!(d.is_allowed(), "{:?}", d.reasons);
        let remembered = e.remembered_proof_keys();
        assert_eq!(remembered.len(), 1);
        assert_eq!(remembered[0].0, expected);
        assert_eq!(remembered[0].1, n + 1 >= agentguard::es256::TABLE_AFTER as usize, "after proof {n}");
    }
    // With the table: a proof signed by another key under the agent's `jwk`
    // is refused, and a good one still passes.
    let mut forged = Proof::new(&token, "forged");
    forged.key = SigningKey::from_random(Alg::ES256, &[9; 32]).unwrap();
    assert_code(&decide(&e, &token, &[&forged.sign()]), ReasonCode::DpopProofInvalid);
    assert!(decide(&e, &token, &[&Proof::new(&token, "p-last").sign()]).is_allowed());
}

#[test]
fn wrong_method_or_url() {
    let e = engine();
    let token = bound();
    let p = Proof::new(&token, "m").claim("htm", json!("POST")).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopMethodMismatch);
    let p = Proof::new(&token, "u").claim("htu", json!("https://api.test/v1/contacts/43")).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopUrlMismatch);
    let p = Proof::new(&token, "h").claim("htu", json!("https://evil.test/v1/contacts/42")).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopUrlMismatch);
    // Equivalent spellings of the same URL are the same URL; query and fragment are ignored.
    let p =
        Proof::new(&token, "n").claim("htu", json!("HTTPS://API.test:443/v1/x/../contacts/42?a=1#f")).sign();
    assert!(decide(&e, &token, &[&p]).is_allowed());
}

#[test]
fn old_or_future_iat() {
    let e = engine();
    let token = bound();
    let p = Proof::new(&token, "old").claim("iat", json!(NOW - 61)).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopProofStale);
    let p = Proof::new(&token, "edge").claim("iat", json!(NOW - 60)).sign();
    assert!(decide(&e, &token, &[&p]).is_allowed());
    let p = Proof::new(&token, "future").claim("iat", json!(NOW + 6)).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopProofStale);
    let p = Proof::new(&token, "s").claim("iat", json!("now")).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopProofInvalid);
}

#[test]
fn missing_or_mismatched_ath() {
    let e = engine();
    let token = bound();
    let p = Proof::new(&token, "a1").claim("ath", Value::Null).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopAthMismatch);
    let p = Proof::new(&token, "a2").claim("ath", json!(b64::encode(&Sha256::digest(b"other")))).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopAthMismatch);
}

#[test]
fn proof_key_must_be_the_bound_key() {
    let e = engine();
    let other = SigningKey::from_random(Alg::ES256, &[7; 32]).unwrap();
    let token = access_token(Some(&thumbprint(&other)));
    let p = Proof::new(&token, "k").sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopKeyMismatch);
}

#[test]
fn private_key_in_jwk_is_refused() {
    let e = engine();
    let token = bound();
    let p = Proof::new(&token, "d").header("jwk", client().private_jwk("c")).sign();
    let d = decide(&e, &token, &[&p]);
    assert_code(&d, ReasonCode::DpopProofInvalid);
    assert!(d.reasons[0].message.contains("private key member `d`"), "{}", d.reasons[0].message);
}

#[test]
fn exactly_one_proof_header() {
    let e = engine();
    let token = bound();
    let a = Proof::new(&token, "x1").sign();
    let b = Proof::new(&token, "x2").sign();
    let d = decide(&e, &token, &[&a, &b]);
    assert_code(&d, ReasonCode::DpopProofInvalid);
    assert!(d.reasons[0].message.contains("more than one"));
    assert_code(&decide(&e, &token, &[]), ReasonCode::DpopProofMissing);
}

#[test]
fn bound_token_sent_as_bearer_is_refused() {
    let e = engine();
    let token = bound();
    let p = Proof::new(&token, "b").sign();
    let d = e.decide(&request("GET", &token, "Bearer", &[&p]));
    assert_code(&d, ReasonCode::BindingDpopRequired);
    // Also for an issuer that does not demand DPoP: the token's own `cnf.jkt` binds it.
    let e = engine_with("none", json!({}));
    assert_code(&e.decide(&request("GET", &token, "Bearer", &[])), ReasonCode::BindingDpopRequired);
    // And an unbound token from a DPoP issuer is refused.
    let unbound = access_token(None);
    let p = Proof::new(&unbound, "u").sign();
    assert_code(&engine().decide(&request("GET", &unbound, "DPoP", &[&p])), ReasonCode::BindingMissing);
}

#[test]
fn proof_type_algorithm_and_signature() {
    let e = engine();
    let token = bound();
    let p = Proof::new(&token, "t").header("typ", json!("JWT")).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopProofInvalid);
    // An algorithm outside the policy's list.
    let e_ed = engine_with("dpop", json!({"algorithms": ["EdDSA"]}));
    let p = Proof::new(&token, "alg").sign();
    let d = decide(&e_ed, &token, &[&p]);
    assert_code(&d, ReasonCode::DpopProofInvalid);
    assert!(d.reasons[0].message.contains("not allowed"), "{}", d.reasons[0].message);
    // `none` and HMAC are never algorithms.
    let p = Proof::new(&token, "none").header("alg", json!("HS256")).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopProofInvalid);
    // Signed by a different key than the one in `jwk`.
    let mut p = Proof::new(&token, "sig");
    p.key = SigningKey::from_random(Alg::ES256, &[8; 32]).unwrap();
    assert_code(&decide(&e, &token, &[&p.sign()]), ReasonCode::DpopProofInvalid);
    // A proof with a `kid` pointing elsewhere still uses its embedded `jwk`.
    let p = Proof::new(&token, "kid").header("kid", json!("test-ed25519")).sign();
    assert!(decide(&e, &token, &[&p]).is_allowed());
}

#[test]
fn server_nonces() {
    let e = engine_with("dpop", json!({"nonce": true}));
    let token = bound();
    let p = Proof::new(&token, "n0").sign();
    // No secret configured: fail closed.
    assert_eq!(decide(&e, &token, &[&p]).codes(), [ReasonCode::InternalError]);
    e.set_dpop_nonce_secret(b"host-random-secret");
    let d = decide(&e, &token, &[&p]);
    assert_code(&d, ReasonCode::DpopNonceRequired);
    let response = d.response.as_ref().unwrap();
    assert!(response.headers["www-authenticate"].contains(r#"error="use_dpop_nonce""#));
    let nonce = response.headers["dpop-nonce"].clone();
    assert_eq!(Some(nonce.clone()), e.dpop_nonce(NOW));
    let p = Proof::new(&token, "n1").claim("nonce", json!(nonce)).sign();
    assert!(decide(&e, &token, &[&p]).is_allowed());
    let p = Proof::new(&token, "n2").claim("nonce", json!("made-up")).sign();
    assert_code(&decide(&e, &token, &[&p]), ReasonCode::DpopNonceRequired);
}

#[test]
fn replay_cache_is_bounded_and_never_forgets_a_live_proof() {
    let e = engine_with("dpop", json!({"replay_cache": 5}));
    let token = bound();
    for i in 0..5 {
        assert!(decide(&e, &token, &[&Proof::new(&token, &format!("r{i}")).sign()]).is_allowed());
    }
    // Full of live ids: a new proof is refused (503 + Retry-After) rather than recorded by forgetting one.
    for i in 5..20 {
        let d = decide(&e, &token, &[&Proof::new(&token, &format!("r{i}")).sign()]);
        assert_eq!(d.codes(), [ReasonCode::ReplayCacheFull]);
        assert_eq!(d.status, 503);
        let retry: u64 = d.response.as_ref().unwrap().headers["retry-after"].parse().unwrap();
        assert!(retry >= 1, "retry-after {retry}");
    }
    // Every recorded id is still remembered.
    for i in 0..5 {
        let d = decide(&e, &token, &[&Proof::new(&token, &format!("r{i}")).sign()]);
        assert_code(&d, ReasonCode::DpopProofReplayed);
    }
}

#[test]
fn dpop_policy_errors_name_their_path() {
    let bad = json!({"issuers": [{"iss": "x", "audiences": ["a"], "jwks_uri": "https://x", "algorithms": ["EdDSA"]}],
        "routes": [], "dpop": {"max_age": "2h", "replay_cache": 0, "algorithms": []}});
    let err = Engine::from_json(&bad.to_string()).unwrap_err().to_string();
    assert!(err.contains("dpop.algorithms: expected at least one algorithm"), "{err}");
    assert!(err.contains("dpop.max_age: expected a duration between `1s` and `1h`, found `2h`"), "{err}");
    assert!(err.contains("dpop.replay_cache: expected between 1 and"), "{err}");
}

// --- RFC vectors ------------------------------------------------------------

const RFC_PROOF_JWK_THUMBPRINT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
// RFC 9449 §7.1: the DPoP proof for a protected-resource request and its access token.
const RFC_RESOURCE_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
const RFC_ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

#[test]
fn rfc9449_resource_request_example_verifies() {
    let request = Request::builder("GET", "/protectedresource", 1_562_262_618)
        .host("resource.example.org")
        .header("dpop", RFC_RESOURCE_PROOF)
        .build()
        .unwrap();
    let policy = DpopPolicy::default();
    let check = |request: &Request, token: &str| {
        let remembered = dpop::ProofKeys::new();
        dpop::check(&policy, request, Some(token), Some(RFC_PROOF_JWK_THUMBPRINT), None, &[], &remembered)
    };
    let checked = check(&request, RFC_ACCESS_TOKEN).unwrap();
    assert_eq!(checked.jkt, RFC_PROOF_JWK_THUMBPRINT);
    // Any other token, method or time fails.
    assert_eq!(check(&request, "other-token").unwrap_err().0, ReasonCode::DpopAthMismatch);
    let late = Request::builder("GET", "/protectedresource", 1_562_262_618 + 61)
        .host("resource.example.org")
        .header("dpop", RFC_RESOURCE_PROOF)
        .build()
        .unwrap();
    assert_eq!(check(&late, RFC_ACCESS_TOKEN).unwrap_err().0, ReasonCode::DpopProofStale);
}

#[test]
fn rfc7638_thumbprint_of_the_rfc9449_key() {
    let jwk = json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                     "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"});
    assert_eq!(parse_jwk(&jwk).unwrap().unwrap().thumbprint, RFC_PROOF_JWK_THUMBPRINT);
}

/// Found by the `dpop` fuzz target: an `iat` far in the past made the
/// "proof is N s old" message overflow (a panic with overflow checks).
#[test]
fn absurd_iat_values_are_refused_not_a_panic() {
    let e = engine();
    let token = bound();
    for iat in [json!(i64::MIN), json!(-1e19), json!(-1e300), json!(1e300), json!(i64::MAX)] {
        let p = Proof::new(&token, "far").claim("iat", iat.clone()).sign();
        let d = decide(&e, &token, &[&p]);
        assert_eq!(d.decision, agentguard::Outcome::Deny, "{iat}");
        assert_eq!(d.codes(), [ReasonCode::DpopProofInvalid], "{iat}: {:?}", d.reasons);
    }
}

// --- Host-verified proofs (WebCrypto in the JS host) ------------------------

#[test]
fn the_proof_signature_can_be_verified_by_the_host() {
    use agentguard::token::HostVerdict;
    let e = engine();
    let token = bound();
    let verify = |c: &agentguard::token::SignatureCheck| {
        let jwk = parse_jwk(&c.jwk).unwrap().unwrap();
        let sig = b64::decode(&c.signature).unwrap();
        let alg = Alg::parse(c.alg).unwrap();
        HostVerdict {
            token_hash: c.token_hash.clone(),
            valid: agentguard::keys::verify_signature(alg, &jwk.key, c.signing_input.as_bytes(), &sig)
                .is_ok(),
        }
    };
    // A fresh token and its proof: two checks, the proof's with the proof's own key.
    let p = Proof::new(&token, "h1").sign();
    let req = request("GET", &token, "DPoP", &[&p]);
    // A host that verifies some algorithms gets only those checks (the token
    // is EdDSA, the proof ES256); the rest stays in Wasm.
    let only = |alg: &'static str| e.pending_signatures_for(&req, move |a| a == alg);
    assert_eq!(only("ES256").iter().map(|c| c.alg).collect::<Vec<_>>(), ["ES256"]);
    assert_eq!(only("ES256")[0].signing_input, p.rsplit_once('.').unwrap().0);
    assert_eq!(only("EdDSA").iter().map(|c| c.alg).collect::<Vec<_>>(), ["EdDSA"]);
    assert!(only("RS256").is_empty());
    let checks = e.pending_signatures(&req);
    assert_eq!(checks.len(), 2);
    // The host gets them as JSON: byte for byte what serde writes.
    assert_eq!(
        agentguard::token::SignatureCheck::list_json(&checks),
        json!({ "checks": checks }).to_string()
    );
    assert_eq!(checks[1].alg, "ES256");
    assert_eq!(parse_jwk(&checks[1].jwk).unwrap().unwrap().thumbprint, thumbprint(&client()));
    assert_eq!(checks[1].signing_input, p.rsplit_once('.').unwrap().0);
    let verdicts: Vec<_> = checks.iter().map(verify).collect();
    assert!(verdicts.iter().all(|v| v.valid));
    assert!(e.decide_with_verdicts(&req, &verdicts).is_allowed());
    // The token is cached now: only the proof needs checking.
    let p = Proof::new(&token, "h2").sign();
    let req = request("GET", &token, "DPoP", &[&p]);
    let checks = e.pending_signatures(&req);
    assert_eq!(checks.len(), 1);
    // A host that says the proof does not verify is believed: refused.
    let no = HostVerdict { token_hash: checks[0].token_hash.clone(), valid: false };
    let d = e.decide_with_verdicts(&req, &[no]);
    assert_eq!(d.codes(), [ReasonCode::DpopProofInvalid]);
    // The refused proof was not recorded: with a true verdict it passes.
    assert!(e.decide_with_verdicts(&req, &[verify(&checks[0])]).is_allowed());
    // A verdict names one proof and key: for another proof it is ignored, and
    // that proof's bad signature is caught in Wasm.
    let mut bad = Proof::new(&token, "h3").sign();
    bad.replace_range(bad.len() - 4.., "AAAA");
    let req = request("GET", &token, "DPoP", &[&bad]);
    let other = verify(
        &e.pending_signatures(&request("GET", &token, "DPoP", &[&Proof::new(&token, "h4").sign()]))[0],
    );
    assert!(other.valid);
    assert_eq!(e.decide_with_verdicts(&req, &[other]).codes(), [ReasonCode::DpopProofInvalid]);
    // A Bearer request has no proof to check.
    assert!(e.pending_signatures(&request("GET", &token, "Bearer", &[&p])).is_empty());
}
