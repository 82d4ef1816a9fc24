//! Native decision cost, as ratios against a bare signature check measured in
//! the same run (absolute numbers move with the machine; ratios much less).
//!
//!     cargo bench --bench decide
//!
//! Each figure is the median of 15 batches; a batch runs long enough (~20 ms)
//! to dwarf timer overhead.

// A benchmark fails by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use agentguard::keys::{self, parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, Request};
use serde_json::{json, Value};

const NOW: i64 = 1_767_225_600;

/// Median nanoseconds per call of `f`.
fn measure(mut f: impl FnMut()) -> f64 {
    // Calibrate the batch size.
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed().as_millis() >= 20 {
            break;
        }
        n *= 2;
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn main() {
    let keys: Value = serde_json::from_str(include_str!("../tests/vectors/keys.json")).unwrap();
    let public = |name: &str| {
        let mut k = keys[name].clone();
        k.as_object_mut().unwrap().remove("d");
        k
    };
    let policy = |cache: usize| {
        json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                         "jwks": {"keys": [public("ed25519"), public("es256")]},
                         "algorithms": ["EdDSA", "ES256"], "max_lifetime": "10m"}],
            "delegation": {"max_depth": 2, "actors": ["spiffe://test/agents/*"]},
            "routes": [{"id": "read", "methods": ["GET"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"]}],
            "revoked": {"jti": ["r1", "r2"], "agents": ["spiffe://test/agents/rogue"]},
            "cache": {"tokens": cache}
        })
        .to_string()
    };
    let fresh = Engine::from_json(&policy(0)).unwrap();
    let cached = Engine::from_json(&policy(10_000)).unwrap();
    let claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "user:alice",
        "client_id": "crm", "act": {"sub": "spiffe://test/agents/crm"}, "scope": "crm.read",
        "iat": NOW - 10, "exp": NOW + 290, "jti": "bench"});
    let claims = claims.as_object().unwrap();
    let request = |token: &str| {
        Request::builder("GET", "/v1/contacts/42", NOW)
            .host("api.test")
            .header("authorization", &format!("Bearer {token}"))
            .header("user-agent", "bench/1.0")
            .build()
            .unwrap()
    };

    println!("agentguard native decision benchmark (median of 15 batches)\n");
    println!("{:<44} {:>10} {:>22}", "case", "µs/op", "ratio");
    let report = |name: &str, ns: f64, base: Option<(&str, f64)>| {
        let ratio = base.map(|(b, bns)| format!("{:.2}× {b}", ns / bns)).unwrap_or_default();
        println!("{name:<44} {:>10.2} {ratio:>22}", ns / 1000.0);
    };

    for (key_name, alg, kid) in [("ed25519", Alg::EdDSA, "test-ed25519"), ("es256", Alg::ES256, "test-es256")]
    {
        let key = SigningKey::from_jwk(&keys[key_name]).unwrap();
        let token = mint::sign(&key, Some(kid), "at+jwt", claims);
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = agentguard::b64::decode(sig).unwrap();
        let jwk = parse_jwk(&public(key_name)).unwrap().unwrap();
        let bare = measure(|| {
            keys::verify_signature(alg, &jwk.key, black_box(input.as_bytes()), black_box(&sig)).unwrap();
        });
        report(&format!("bare {alg} signature verification"), bare, None);
        let req = request(&token);
        assert!(fresh.decide(&req).is_allowed());
        let d = measure(|| {
            black_box(fresh.decide(black_box(&req)));
        });
        report(&format!("decide, fresh {alg} token (cache off)"), d, Some(("bare verify", bare)));
        assert!(cached.decide(&req).is_allowed());
        assert!(cached.decide(&req).event.cache_hit);
        let c = measure(|| {
            black_box(cached.decide(black_box(&req)));
        });
        report(&format!("decide, cached {alg} token"), c, Some(("bare verify", bare)));
        let json_req =
            serde_json::to_string(&json!({"method": "GET", "host": "api.test", "path": "/v1/contacts/42",
            "headers": {"authorization": format!("Bearer {token}")}, "now": NOW}))
            .unwrap();
        let j = measure(|| {
            black_box(agentguard::api::decide_json(&cached, black_box(&json_req)));
        });
        report(&format!("decide_json (JSON in/out), cached {alg}"), j, Some(("bare verify", bare)));
    }

    // DPoP: every request carries a fresh proof (ES256, the common client
    // choice), so proofs are made beforehand and each is used once.
    let client = SigningKey::from_random(Alg::ES256, &[42; 32]).unwrap();
    let jkt = parse_jwk(&client.public_jwk("c")).unwrap().unwrap().thumbprint;
    let issuer = SigningKey::from_jwk(&keys["ed25519"]).unwrap();
    let mut bound_claims = claims.clone();
    bound_claims.insert("cnf".into(), json!({ "jkt": jkt }));
    let bound = mint::sign(&issuer, Some("test-ed25519"), "at+jwt", &bound_claims);
    let plain = mint::sign(&issuer, Some("test-ed25519"), "at+jwt", claims);
    let ath = agentguard::b64::encode(&<sha2::Sha256 as sha2::Digest>::digest(bound.as_bytes()));
    let mut jwk = client.public_jwk("c");
    jwk.as_object_mut().unwrap().retain(|k, _| ["kty", "crv", "x", "y"].contains(&k.as_str()));
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    const PROOFS: usize = 1500;
    let proofs: Vec<String> = (0..PROOFS)
        .map(|i| {
            let c = json!({"jti": format!("p{i}"), "htm": "GET", "htu": "https://api.test/v1/contacts/42",
                           "iat": NOW, "ath": ath});
            mint::sign_with_header(&client, header.as_object().unwrap(), c.as_object().unwrap())
        })
        .collect();
    let requests: Vec<Request<'static>> = proofs
        .iter()
        .map(|p| {
            Request::builder("GET", "/v1/contacts/42", NOW)
                .host("api.test")
                .header("authorization", &format!("DPoP {bound}"))
                .header("dpop", p)
                .build()
                .unwrap()
        })
        .collect();
    let plain_req = request(&plain);
    let mut dpop_times = Vec::new();
    let mut plain_times = Vec::new();
    for _ in 0..7 {
        let e = Engine::from_json(&policy(10_000)).unwrap();
        assert!(e.decide(&plain_req).is_allowed());
        let t = Instant::now();
        for r in &requests {
            assert!(black_box(e.decide(black_box(r))).is_allowed());
        }
        dpop_times.push(t.elapsed().as_nanos() as f64 / PROOFS as f64);
        let t = Instant::now();
        for _ in 0..PROOFS {
            black_box(e.decide(black_box(&plain_req)));
        }
        plain_times.push(t.elapsed().as_nanos() as f64 / PROOFS as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (d, p) = (median(&mut dpop_times), median(&mut plain_times));
    println!();
    report("decide, cached bearer token (baseline)", p, None);
    report("decide, cached token + fresh ES256 DPoP proof", d, Some(("bearer", p)));
    println!("{:<44} {:>10.2}", "  DPoP check added (µs)", (d - p) / 1000.0);

    // Intent, limits and behaviour stages on a cached token.
    let full = json!({
        "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                     "jwks": {"keys": [public("ed25519")]}, "algorithms": ["EdDSA"], "max_lifetime": "10m"}],
        "routes": [{"id": "read", "methods": ["GET"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"],
                    "authorization_details": {"type": "contact", "actions": ["read"], "identifier": "{id}"}}],
        "network": {"allow": ["10.0.0.0/8", "2001:db8::/32"]},
        "limits": [{"per": "agent", "rate": "1000000/1s"}, {"per": "route", "rate": "1000000/1s"}],
        "circuit_breaker": {"window": "10s", "max_requests": 1000000000, "max_deny_ratio": 0.5},
    });
    let plain_engine = Engine::from_json(&policy(10_000)).unwrap();
    let full_engine = Engine::from_json(&full.to_string()).unwrap();
    let mut c = claims.clone();
    c.insert(
        "authorization_details".into(),
        json!([{"type": "contact", "actions": ["read"], "identifier": "42"}]),
    );
    let t = mint::sign(&issuer, Some("test-ed25519"), "at+jwt", &c);
    let mut now_ms = NOW * 1000;
    let mut req_at = |t: &str| {
        now_ms += 1;
        let mut input = agentguard::RequestInput {
            method: "GET".into(),
            scheme: "https".into(),
            host: "api.test".into(),
            path: "/v1/contacts/42".into(),
            source_ip: Some("10.1.2.3".into()),
            now: now_ms as f64 / 1000.0,
            ..Default::default()
        };
        input
            .headers
            .insert("authorization".into(), agentguard::request::HeaderValue::One(format!("Bearer {t}")));
        Request::from_input(&input).unwrap().into_owned()
    };
    let r_plain = req_at(&t);
    assert!(plain_engine.decide(&r_plain).is_allowed());
    let base = measure(|| {
        black_box(plain_engine.decide(black_box(&r_plain)));
    });
    let r_full = req_at(&t);
    assert!(full_engine.decide(&r_full).is_allowed(), "{:?}", full_engine.decide(&r_full).reasons);
    let staged = measure(|| {
        black_box(full_engine.decide(black_box(&r_full)));
    });
    println!();
    report("decide, cached token, token checks only", base, None);
    report("  + network, authz details, 2 limits, breaker", staged, Some(("token only", base)));
    println!("{:<44} {:>10.2}", "  stages added (µs)", (staged - base) / 1000.0);
}
