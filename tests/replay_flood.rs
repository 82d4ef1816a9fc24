//! Regression test for a hostile-load finding: the DPoP replay cache was one
//! LRU shared by every agent and evicted ids that were still live when full.
//! A client with its own DPoP-bound token could flush it with
//! `dpop.replay_cache` fresh proofs, after which a proof captured from
//! *another* agent replayed inside its window. A full cache of live ids now
//! refuses new proofs (`replay_cache_full`, 503 + `Retry-After`) instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::keys::{parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{b64, Engine, ReasonCode, Request};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_767_225_600;
const CAPACITY: usize = 100;

struct Client {
    key: SigningKey,
    jwk: Value,
    token: String,
}

fn client(issuer: &SigningKey, seed: u8, agent: &str) -> Client {
    let key = SigningKey::from_random(Alg::EdDSA, &[seed; 32]).unwrap();
    let mut jwk = key.public_jwk("c");
    jwk.as_object_mut().unwrap().retain(|k, _| ["kty", "crv", "x"].contains(&k.as_str()));
    let jkt = parse_jwk(&jwk).unwrap().unwrap().thumbprint;
    let claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": agent, "iat": NOW - 10,
        "exp": NOW + 290, "jti": agent, "cnf": {"jkt": jkt}});
    let token = mint::sign(issuer, Some("k"), "at+jwt", claims.as_object().unwrap());
    Client { key, jwk, token }
}

fn request(c: &Client, jti: &str) -> Request<'static> {
    let mut header = Map::new();
    header.insert("typ".into(), "dpop+jwt".into());
    header.insert("alg".into(), "EdDSA".into());
    header.insert("jwk".into(), c.jwk.clone());
    let claims = json!({"jti": jti, "htm": "GET", "htu": "https://api.test/x", "iat": NOW,
        "ath": b64::encode(&Sha256::digest(c.token.as_bytes()))});
    let proof = mint::sign_with_header(&c.key, &header, claims.as_object().unwrap());
    Request::builder("GET", "/x", NOW)
        .host("api.test")
        .header("authorization", &format!("DPoP {}", c.token))
        .header("dpop", &proof)
        .build()
        .unwrap()
}

#[test]
fn another_agent_cannot_flush_a_live_proof_out_of_the_replay_cache() {
    let issuer = SigningKey::from_random(Alg::EdDSA, &[1; 32]).unwrap();
    let policy = json!({
        "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                     "jwks": {"keys": [issuer.public_jwk("k")]}, "algorithms": ["EdDSA"], "binding": "dpop"}],
        "routes": [{"id": "any", "methods": ["*"], "path": "/**"}],
        "dpop": {"replay_cache": CAPACITY}
    });
    let engine = Engine::from_json(&policy.to_string()).unwrap();
    let victim = client(&issuer, 2, "victim");
    let attacker = client(&issuer, 3, "attacker");

    let captured = request(&victim, "victim-proof");
    assert!(engine.decide(&captured).is_allowed());
    assert_eq!(engine.decide(&captured).codes(), [ReasonCode::DpopProofReplayed]);

    // The attacker sends its own valid proofs, one per free cache slot.
    for i in 0..CAPACITY - 1 {
        assert!(engine.decide(&request(&attacker, &format!("a{i}"))).is_allowed());
    }
    // Same second, the victim's proof is still inside its window: a replay.
    let replay = engine.decide(&captured);
    assert_eq!(
        replay.codes(),
        [ReasonCode::DpopProofReplayed],
        "the victim's captured DPoP proof must stay refused after another agent filled the cache"
    );
    // The cache is full of live ids: the attacker's next proof is refused, not recorded by forgetting one.
    let flood = engine.decide(&request(&attacker, "one-more"));
    assert_eq!(flood.codes(), [ReasonCode::ReplayCacheFull]);
    assert_eq!(flood.status, 503);
    let retry: u64 = flood.response.as_ref().unwrap().headers["retry-after"].parse().unwrap();
    assert!((1..=70).contains(&retry), "retry-after {retry}");
}
