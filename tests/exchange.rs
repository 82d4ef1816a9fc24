//! Workload identity federation: RFC 8693 token exchange at the edge.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::exchange::ExchangeContext;
use agentguard::keys::{parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, Request};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_767_225_600;

/// The CI system's OIDC signing key (the test owns it).
fn ci_key() -> SigningKey {
    SigningKey::from_random(Alg::ES256, &[21; 32]).unwrap()
}
/// The edge's signing key (from a secret in production).
fn edge_key() -> SigningKey {
    SigningKey::from_random(Alg::EdDSA, &[22; 32]).unwrap()
}

fn policy() -> Value {
    json!({
        "issuers": [{"iss": "https://edge.test", "audiences": ["https://api.test"],
                     "jwks": {"keys": [edge_key().public_jwk("edge-1")]}, "algorithms": ["EdDSA"], "max_lifetime": "15m"}],
        "routes": [{"id": "deploy", "methods": ["POST"], "path": "/v1/deploy", "scopes": ["deploy.write"]}],
        "token_service": {
            "issuer": "https://edge.test",
            "signing_kid": "edge-1",
            "default_lifetime": "5m",
            "federation": [{
                "id": "ci-main",
                "issuer": {"iss": "https://ci.test", "audiences": ["https://edge.test"],
                           "jwks": {"keys": [ci_key().public_jwk("ci-1")]}, "algorithms": ["ES256"]},
                "subjects": ["repo:acme/*:ref:refs/heads/main"],
                "claims": {"repository_owner": ["acme"]},
                "actors": ["spiffe://acme.test/agents/*"],
                "scopes": ["deploy.write", "logs.read"],
                "audiences": ["https://api.test"],
                "max_lifetime": "10m"
            }]
        }
    })
}

fn engine() -> Engine {
    let e = Engine::from_json(&policy().to_string()).unwrap();
    let mut private = edge_key().private_jwk("edge-1");
    private["kid"] = "edge-1".into();
    assert_eq!(e.set_signing_keys(&json!({ "keys": [private] })).unwrap(), 1);
    e
}

fn ci_token(extra: Value) -> String {
    let mut claims = json!({"iss": "https://ci.test", "aud": "https://edge.test",
        "sub": "repo:acme/agents:ref:refs/heads/main", "repository_owner": "acme",
        "iat": NOW - 5, "exp": NOW + 600, "jti": "ci-run-1"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    mint::sign(&ci_key(), Some("ci-1"), "JWT", claims.as_object().unwrap())
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn exchange_with(e: &Engine, body: &str, content_type: &str, dpop: Option<&str>, jti: &str) -> (u16, Value) {
    let mut b =
        Request::builder("POST", "/token", NOW).host("edge.test").header("content-type", content_type);
    if let Some(p) = dpop {
        b = b.header("dpop", p);
    }
    let req = b.build().unwrap();
    let r = e.exchange(ExchangeContext { request: &req, body, jti });
    assert_eq!(r.headers["cache-control"], "no-store");
    (r.status, serde_json::from_str(&r.body).unwrap())
}

fn exchange(e: &Engine, pairs: &[(&str, &str)]) -> (u16, Value) {
    exchange_with(e, &form(pairs), "application/x-www-form-urlencoded", None, "edge-jti-0123456789")
}

fn base(subject: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange".into()),
        ("subject_token", subject.into()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt".into()),
    ]
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn a_ci_job_trades_its_oidc_token_for_a_short_lived_agent_token() {
    let e = engine();
    let mut req = base(&ci_token(json!({})));
    req.push(("scope", "deploy.write".into()));
    req.push(("audience", "https://api.test".into()));
    let (status, body) = exchange(&e, &pairs(&req));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(body["expires_in"], 300, "min(default 5m, rule 10m)");
    assert_eq!(body["scope"], "deploy.write");
    let token = body["access_token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&agentguard::b64::decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["sub"], "repo:acme/agents:ref:refs/heads/main");
    assert_eq!(claims["client_id"], "ci-main");
    assert_eq!(claims["jti"], "edge-jti-0123456789");
    assert_eq!(claims["exp"], NOW + 300);
    // The minted token works at the protected API.
    let call = Request::builder("POST", "/v1/deploy", NOW + 1)
        .host("api.test")
        .header("authorization", &format!("Bearer {token}"))
        .build()
        .unwrap();
    let d = e.decide(&call);
    assert!(d.is_allowed(), "{:?}", d.reasons);
    // Published keys and metadata let other verifiers check it.
    let jwks = e.token_service_jwks();
    assert_eq!(jwks["keys"][0]["kid"], "edge-1");
    assert!(jwks["keys"][0].get("d").is_none());
    let meta = e.token_service_metadata().unwrap();
    assert_eq!(meta["token_endpoint"], "https://edge.test/token");
    assert_eq!(meta["jwks_uri"], "https://edge.test/.well-known/jwks.json");
}

#[test]
fn an_actor_token_nests_the_act_chain() {
    let e = engine();
    let actor_key = ci_key();
    let actor = mint::sign(
        &actor_key,
        Some("ci-1"),
        "JWT",
        json!({"iss": "https://ci.test", "aud": "https://edge.test",
        "sub": "spiffe://acme.test/agents/deployer", "iat": NOW, "exp": NOW + 60})
        .as_object()
        .unwrap(),
    );
    let mut req = base(&ci_token(json!({"act": {"sub": "spiffe://acme.test/agents/planner"}})));
    req.push(("actor_token", actor));
    req.push(("actor_token_type", "urn:ietf:params:oauth:token-type:jwt".into()));
    let (status, body) = exchange(&e, &pairs(&req));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&agentguard::b64::decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(
        claims["act"],
        json!({"sub": "spiffe://acme.test/agents/deployer", "act": {"sub": "spiffe://acme.test/agents/planner"}})
    );
    assert_eq!(claims["scope"], "deploy.write logs.read", "no scope requested: everything the rule allows");
}

#[test]
fn the_subject_tokens_authorization_details_are_not_carried_over() {
    // A route that needs an RFC 9396 grant for the service it deploys.
    let mut p = policy();
    p["routes"].as_array_mut().unwrap().push(json!({
        "id": "deploy-service", "methods": ["POST"], "path": "/v1/services/{name}/deploy", "scopes": ["deploy.write"],
        "authorization_details": {"type": "deployment", "actions": ["deploy"], "identifier": "{name}"}}));
    let e = Engine::from_json(&p.to_string()).unwrap();
    let mut private = edge_key().private_jwk("edge-1");
    private["kid"] = "edge-1".into();
    e.set_signing_keys(&json!({ "keys": [private] })).unwrap();
    // The external issuer vouches for who the workload is; a grant in its
    // token (here: deploy `billing`) is not the federation rule's to give.
    let details = json!([{"type": "deployment", "actions": ["deploy"], "identifier": "billing"}]);
    let req = base(&ci_token(json!({ "authorization_details": details })));
    let (status, body) = exchange(&e, &pairs(&req));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&agentguard::b64::decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert!(claims.get("authorization_details").is_none(), "{claims}");
    let call = Request::builder("POST", "/v1/services/billing/deploy", NOW + 1)
        .host("api.test")
        .header("authorization", &format!("Bearer {token}"))
        .build()
        .unwrap();
    let d = e.decide(&call);
    assert_eq!(d.codes(), [agentguard::ReasonCode::AuthorizationDetailsMismatch], "{:?}", d.reasons);
    // The plain deploy route (scopes only) still works with it.
    let plain = Request::builder("POST", "/v1/deploy", NOW + 1)
        .host("api.test")
        .header("authorization", &format!("Bearer {token}"))
        .build()
        .unwrap();
    assert!(e.decide(&plain).is_allowed());
}

#[test]
fn with_dpop_the_minted_token_is_bound_to_the_agents_key() {
    let e = engine();
    let client = SigningKey::from_random(Alg::ES256, &[23; 32]).unwrap();
    let mut jwk = client.public_jwk("c");
    jwk.as_object_mut().unwrap().retain(|k, _| ["kty", "crv", "x", "y"].contains(&k.as_str()));
    let proof = |htm: &str, htu: &str, jti: &str, ath: Option<&str>| {
        let mut c = json!({"jti": jti, "htm": htm, "htu": htu, "iat": NOW});
        if let Some(ath) = ath {
            c["ath"] = ath.into();
        }
        mint::sign_with_header(
            &client,
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).as_object().unwrap(),
            c.as_object().unwrap(),
        )
    };
    let (status, body) = exchange_with(
        &e,
        &form(&pairs(&base(&ci_token(json!({}))))),
        "application/x-www-form-urlencoded",
        Some(&proof("POST", "https://edge.test/token", "p1", None)),
        "edge-jti-dpop-000001",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&agentguard::b64::decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let thumbprint = parse_jwk(&jwk).unwrap().unwrap().thumbprint;
    assert_eq!(claims["cnf"]["jkt"], thumbprint);
    // Works with a proof by the same key, not as a bearer token, not with another key.
    let ath = agentguard::b64::encode(&Sha256::digest(token.as_bytes()));
    let call = |scheme: &str, proof: Option<String>| {
        let mut b = Request::builder("POST", "/v1/deploy", NOW + 1)
            .host("api.test")
            .header("authorization", &format!("{scheme} {token}"));
        if let Some(p) = &proof {
            b = b.header("dpop", p);
        }
        e.decide(&b.build().unwrap())
    };
    assert!(call("DPoP", Some(proof("POST", "https://api.test/v1/deploy", "p2", Some(&ath)))).is_allowed());
    assert!(!call("Bearer", None).is_allowed());
    let stranger = SigningKey::from_random(Alg::ES256, &[24; 32]).unwrap();
    let mut sjwk = stranger.public_jwk("s");
    sjwk.as_object_mut().unwrap().retain(|k, _| ["kty", "crv", "x", "y"].contains(&k.as_str()));
    let stolen = mint::sign_with_header(
        &stranger,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": sjwk}).as_object().unwrap(),
        json!({"jti": "p3", "htm": "POST", "htu": "https://api.test/v1/deploy", "iat": NOW, "ath": ath})
            .as_object()
            .unwrap(),
    );
    assert_eq!(call("DPoP", Some(stolen)).codes(), [agentguard::ReasonCode::DpopKeyMismatch]);
}

#[test]
fn refusals_follow_rfc_6749_and_mint_nothing() {
    let e = engine();
    let other_idp = SigningKey::from_random(Alg::ES256, &[25; 32]).unwrap();
    let untrusted = mint::sign(
        &other_idp,
        Some("ci-1"),
        "JWT",
        json!({"iss": "https://evil.test", "aud": "https://edge.test",
        "sub": "repo:acme/agents:ref:refs/heads/main", "iat": NOW, "exp": NOW + 60})
        .as_object()
        .unwrap(),
    );
    // (form, expected error, part of the description)
    type Case = (Vec<(&'static str, String)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (base(&untrusted), "invalid_grant", "not trusted"),
        (
            base(&ci_token(json!({"sub": "repo:acme/agents:ref:refs/heads/feature"}))),
            "invalid_grant",
            "no federation rule",
        ),
        (base(&ci_token(json!({"repository_owner": "evil"}))), "invalid_grant", "no federation rule"),
        (base(&ci_token(json!({"iat": NOW - 700, "exp": NOW - 60}))), "invalid_grant", "expired"),
        (base(&ci_token(json!({"aud": "https://other.test"}))), "invalid_grant", "audience"),
        (
            [base(&ci_token(json!({}))), vec![("scope", "deploy.write admin".into())]].concat(),
            "invalid_scope",
            "`admin`",
        ),
        (
            [base(&ci_token(json!({}))), vec![("audience", "https://billing.test".into())]].concat(),
            "invalid_target",
            "billing",
        ),
        (vec![("grant_type", "client_credentials".into())], "unsupported_grant_type", "client_credentials"),
        (
            base(&ci_token(json!({}))).into_iter().filter(|(k, _)| *k != "subject_token_type").collect(),
            "invalid_request",
            "subject_token_type",
        ),
        (
            [base(&ci_token(json!({}))), vec![("actor_token", "x.y.z".into())]].concat(),
            "invalid_request",
            "actor_token_type",
        ),
    ];
    for (req, error, part) in cases {
        let (status, body) = exchange(&e, &pairs(&req));
        assert_eq!((status, body["error"].as_str().unwrap()), (400, error), "{body}");
        assert!(body["error_description"].as_str().unwrap().contains(part), "{body}");
        assert!(body.get("access_token").is_none());
    }
    // Malformed bodies and wrong content types.
    let good = form(&pairs(&base(&ci_token(json!({})))));
    for (body, ct) in [
        (format!("{good}&grant_type=x"), "application/x-www-form-urlencoded"),
        ("subject_token=%zz".to_owned(), "application/x-www-form-urlencoded"),
        (good.clone(), "application/json"),
    ] {
        let (status, b) = exchange_with(&e, &body, ct, None, "edge-jti-0123456789");
        assert_eq!((status, b["error"].as_str().unwrap()), (400, "invalid_request"), "{b}");
    }
    // No signing key loaded: fail closed with a server error.
    let unkeyed = Engine::from_json(&policy().to_string()).unwrap();
    let (status, b) = exchange(&unkeyed, &pairs(&base(&ci_token(json!({})))));
    assert_eq!((status, b["error"].as_str().unwrap()), (500, "server_error"));
}

#[test]
fn token_service_policy_errors_name_their_path() {
    let mut p = policy();
    p["token_service"]["issuer"] = "edge".into();
    p["token_service"]["federation"][0]["scopes"] = json!([]);
    p["token_service"]["federation"][0]["issuer"]["jwks"] =
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
    let err = Engine::from_json(&p.to_string()).unwrap_err().to_string();
    for want in [
        "token_service.issuer: expected the edge's `https://` URL, found `edge`",
        "token_service.federation[0].scopes: expected at least one scope",
        "token_service.federation[0].issuer.jwks.keys[0]: contains private key member `k`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    let e = Engine::from_json(&policy().to_string()).unwrap();
    let wrong = edge_key().private_jwk("edge-2");
    assert!(e.set_signing_keys(&json!({"keys": [wrong]})).unwrap_err().contains("`edge-1`"));
    // The text form every frontend loads from a secret: parsed strictly, the old keys kept on refusal.
    let mut private = edge_key().private_jwk("edge-1");
    private["kid"] = "edge-1".into();
    let text = json!({ "keys": [private] }).to_string();
    assert_eq!(e.set_signing_keys_json(&text).unwrap(), 1);
    let jwks = e.token_service_jwks();
    let padded = format!("{}{text}", " ".repeat(300_000));
    for bad in ["{", r#"{"keys": [], "keys": []}"#, &padded] {
        let err = e.set_signing_keys_json(bad).unwrap_err();
        assert!(err.starts_with("the key set is"), "{err}");
        assert_eq!(e.token_service_jwks(), jwks);
    }
}

#[test]
fn token_requests_are_rate_limited_per_client_before_any_check() {
    let mut p = policy();
    p["token_service"]["rate_limit"] = json!({"rate": "2/1m"});
    let e = Engine::from_json(&p.to_string()).unwrap();
    let mut private = edge_key().private_jwk("edge-1");
    private["kid"] = "edge-1".into();
    e.set_signing_keys(&json!({ "keys": [private] })).unwrap();
    let body = form(&pairs(&base(&ci_token(json!({})))));
    let from = |ip: &str, body: &str, now: i64| {
        let req = Request::builder("POST", "/token", now)
            .host("edge.test")
            .source_ip(ip)
            .header("content-type", "application/x-www-form-urlencoded")
            .build()
            .unwrap();
        e.exchange(ExchangeContext { request: &req, body, jti: &format!("edge-jti-{ip}-{now}") })
    };
    // Two per minute from one client: the third is refused with 429 and
    // Retry-After, even a request that is not a token request at all (the
    // bucket is taken before the body is read or a signature verified).
    assert_eq!(from("198.51.100.7", &body, NOW).status, 200);
    assert_eq!(from("198.51.100.7", "garbage", NOW).status, 400);
    let limited = from("198.51.100.7", &body, NOW);
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers["retry-after"], "30");
    assert_eq!(limited.headers["cache-control"], "no-store");
    let b: Value = serde_json::from_str(&limited.body).unwrap();
    assert_eq!(b["error"], "rate_limited");
    assert!(b["error_description"].as_str().unwrap().contains("2 per 1m"), "{b}");
    assert!(b.get("access_token").is_none());
    // Another client has its own bucket; the first gets one more after 30 s.
    assert_eq!(from("198.51.100.8", &body, NOW).status, 200);
    assert_eq!(from("198.51.100.7", &body, NOW + 30).status, 200);
    // IPv6 clients are counted by their /64 (a host usually holds all of it).
    assert_eq!(from("2001:db8:1:2::1", &body, NOW).status, 200);
    assert_eq!(from("2001:db8:1:2:ffff::9", &body, NOW).status, 200);
    assert_eq!(from("2001:db8:1:2::77", &body, NOW).status, 429);
    assert_eq!(from("2001:db8:1:3::1", &body, NOW).status, 200);
    // A retry after a key refresh (`exchange_again`) is the same request: not counted twice.
    let once = Engine::from_json(&{
        let mut q = p.clone();
        q["token_service"]["rate_limit"] = json!({"rate": "1/1m"});
        q.to_string()
    })
    .unwrap();
    let mut private = edge_key().private_jwk("edge-1");
    private["kid"] = "edge-1".into();
    once.set_signing_keys(&json!({ "keys": [private] })).unwrap();
    let req = Request::builder("POST", "/token", NOW)
        .source_ip("203.0.113.9")
        .header("content-type", "application/x-www-form-urlencoded")
        .build()
        .unwrap();
    let ctx = |jti| ExchangeContext { request: &req, body: &body, jti };
    assert_eq!(once.exchange(ctx("edge-jti-again-1")).status, 200);
    assert_eq!(once.exchange_again(ctx("edge-jti-again-2")).status, 200);
    assert_eq!(once.exchange(ctx("edge-jti-again-3")).status, 429);
    // Without the setting nothing is limited.
    let plain = engine();
    for i in 0..5 {
        let req = Request::builder("POST", "/token", NOW)
            .source_ip("198.51.100.7")
            .header("content-type", "application/x-www-form-urlencoded")
            .build()
            .unwrap();
        let r = plain.exchange(ExchangeContext {
            request: &req,
            body: &body,
            jti: &format!("edge-jti-plain-{i}"),
        });
        assert_eq!(r.status, 200);
    }
    // A burst of 0 is a policy error at its path.
    p["token_service"]["rate_limit"] = json!({"rate": "2/1m", "burst": 0});
    let err = Engine::from_json(&p.to_string()).unwrap_err().to_string();
    assert!(err.contains("token_service.rate_limit.burst: expected at least 1"), "{err}");
}

#[test]
fn a_subject_token_under_a_key_not_loaded_says_so_for_a_host_that_fetches_keys() {
    let e = engine();
    let req = Request::builder("POST", "/token", NOW)
        .header("content-type", "application/x-www-form-urlencoded")
        .build()
        .unwrap();
    let checked = |subject: &str| {
        let body = form(&pairs(&base(subject)));
        e.exchange_checked(ExchangeContext { request: &req, body: &body, jti: "edge-jti-0123456789" }, true)
    };
    // Signed with a key the issuer has not published (yet): only this one.
    let rotated = SigningKey::from_random(Alg::ES256, &[23; 32]).unwrap();
    let claims = json!({"iss": "https://ci.test", "aud": "https://edge.test",
        "sub": "repo:acme/agents:ref:refs/heads/main", "repository_owner": "acme",
        "iat": NOW - 5, "exp": NOW + 600, "jti": "ci-run-2"});
    let unknown = mint::sign(&rotated, Some("ci-2"), "JWT", claims.as_object().unwrap());
    let out = checked(&unknown);
    assert_eq!(out.response.status, 400);
    assert!(out.key_unknown);
    assert!(out.response.body.contains("invalid_grant"), "{}", out.response.body);
    // A known key with a bad signature, an expired token, a good one: not a key problem.
    let good = ci_token(json!({}));
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", unknown.rsplit_once('.').unwrap().1);
    for (token, status) in [(forged, 400), (ci_token(json!({"exp": NOW - 120})), 400), (good, 200)] {
        let out = checked(&token);
        assert_eq!(out.response.status, status, "{}", out.response.body);
        assert!(!out.key_unknown, "{}", out.response.body);
    }
}
