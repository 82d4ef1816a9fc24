//! One test (at least) per verification rule, through the engine as users run it.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::b64;
use agentguard::mint::{self, SigningKey};
use agentguard::policy::RevocationLists;
use agentguard::{Decision, Engine, Outcome, ReasonCode, Request};
use serde_json::{json, Map, Value};

const NOW: i64 = 1_767_225_600;

fn keys() -> Value {
    let path = format!("{}/tests/vectors/keys.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn key(name: &str) -> SigningKey {
    SigningKey::from_jwk(&keys()[name]).unwrap()
}

fn public(name: &str) -> Value {
    let mut jwk = keys()[name].clone();
    jwk.as_object_mut().unwrap().remove("d");
    jwk
}

fn policy_with(issuer_extra: Value, extra: Value) -> Value {
    let mut issuer = json!({
        "iss": "https://sts.test",
        "audiences": ["https://api.test"],
        "jwks": {"keys": [public("ed25519"), public("es256")]},
        "algorithms": ["EdDSA", "ES256"],
        "max_lifetime": "10m",
        "clock_skew": "30s"
    });
    for (k, v) in issuer_extra.as_object().unwrap() {
        issuer[k] = v.clone();
    }
    let mut policy = json!({
        "issuers": [issuer],
        "routes": [
            {"id": "read", "methods": ["GET"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"]},
            {"id": "pay", "methods": ["POST"], "path": "/v1/payments", "scopes": ["payments.write"], "risk": "high"}
        ],
        "approval": {"issuer": "https://approvals.test", "jwks": {"keys": [public("approver")]}, "algorithms": ["EdDSA"],
                     "audiences": ["https://api.test"], "endpoint": "https://approvals.test/bc-authorize"}
    });
    for (k, v) in extra.as_object().unwrap() {
        policy[k] = v.clone();
    }
    policy
}

fn engine_with(issuer_extra: Value, extra: Value) -> Engine {
    Engine::from_json(&policy_with(issuer_extra, extra).to_string()).unwrap()
}

fn engine() -> Engine {
    engine_with(json!({}), json!({}))
}

fn claims() -> Map<String, Value> {
    json!({
        "iss": "https://sts.test", "aud": "https://api.test", "sub": "user:alice",
        "client_id": "crm-agent", "scope": "crm.read", "iat": NOW - 10, "exp": NOW + 290, "jti": "j1"
    })
    .as_object()
    .unwrap()
    .clone()
}

fn header(alg: &str, kid: &str) -> Map<String, Value> {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid}).as_object().unwrap().clone()
}

fn token_with(header: Map<String, Value>, claims: Map<String, Value>) -> String {
    let signer = if header["alg"] == "ES256" { key("es256") } else { key("ed25519") };
    mint::sign_with_header(&signer, &header, &claims)
}

fn good_token() -> String {
    token_with(header("EdDSA", "test-ed25519"), claims())
}

fn decide_at(engine: &Engine, token: &str, now: i64) -> Decision {
    let req = Request::builder("GET", "/v1/contacts/42", now)
        .host("api.test")
        .header("authorization", &format!("Bearer {token}"))
        .build()
        .unwrap();
    engine.decide(&req)
}

fn decide(engine: &Engine, token: &str) -> Decision {
    decide_at(engine, token, NOW)
}

#[track_caller]
fn assert_denied(d: &Decision, code: ReasonCode, message_part: &str) {
    assert_eq!(d.codes(), [code], "{:?}", d.reasons);
    assert!(
        d.reasons[0].message.contains(message_part),
        "message `{}` lacks `{message_part}`",
        d.reasons[0].message
    );
    assert_ne!(d.decision, Outcome::Allow);
}

/// Raw compact JWS from arbitrary header/payload bytes with a real signature.
fn raw_token(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()));
    let sig = mint::sign_bytes(&key("ed25519"), input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

#[test]
fn a_good_token_is_allowed_with_identity_headers() {
    let d = decide(&engine(), &good_token());
    assert_eq!(d.decision, Outcome::Allow, "{:?}", d.reasons);
    assert_eq!(d.forward_headers.get("x-agentguard-subject"), Some("user:alice"));
    assert_eq!(d.forward_headers.get("x-agentguard-agent"), Some("crm-agent"));
    assert_eq!(d.params["id"], "42");
    let es = token_with(header("ES256", "test-es256"), claims());
    assert_eq!(decide(&engine(), &es).decision, Outcome::Allow);
}

#[test]
fn the_policy_chooses_which_identity_headers_go_upstream() {
    let all = decide(&engine(), &good_token());
    let names = |d: &agentguard::Decision| d.forward_headers.keys().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        names(&all),
        [
            "x-agentguard-agent",
            "x-agentguard-client-id",
            "x-agentguard-issuer",
            "x-agentguard-route",
            "x-agentguard-scopes",
            "x-agentguard-subject"
        ]
    );
    let some = engine_with(json!({}), json!({"identity_headers": {"include": ["agent", "scopes"]}}));
    let d = decide(&some, &good_token());
    assert_eq!(d.decision, Outcome::Allow);
    assert_eq!(names(&d), ["x-agentguard-agent", "x-agentguard-scopes"]);
    assert_eq!(
        d.forward_headers,
        all.forward_headers.iter().filter(|(k, _)| names(&d).iter().any(|n| n == k)).collect()
    );
    // Inbound copies of every identity header are still stripped.
    assert_eq!(&*d.strip_header_prefix, "x-agentguard-");
    let none = engine_with(json!({}), json!({"identity_headers": {"include": []}}));
    assert!(decide(&none, &good_token()).forward_headers.is_empty());
    // An unknown name is a policy error at its path, listing the valid ones.
    let bad = policy_with(json!({}), json!({"identity_headers": {"include": ["agent", "email"]}}));
    let errors = Engine::from_json(&bad.to_string()).unwrap_err().to_string();
    assert!(errors.contains("identity_headers.include[1]"), "{errors}");
    assert!(errors.contains("`client-id`") && errors.contains("`email`"), "{errors}");
}

// --- compact serialisation and encoding ---------------------------------

#[test]
fn jwe_and_nested_tokens_are_refused() {
    assert_denied(&decide(&engine(), "a.b.c.d.e"), ReasonCode::TokenMalformed, "JWE");
    let mut h = header("EdDSA", "test-ed25519");
    h.insert("cty".into(), "JWT".into());
    assert_denied(&decide(&engine(), &token_with(h, claims())), ReasonCode::TokenHeaderUnsupported, "nested");
}

#[test]
fn base64url_must_be_strict() {
    let t = good_token();
    let (h, rest) = t.split_once('.').unwrap();
    // Padding, standard alphabet and whitespace never reach the decoder as valid.
    for bad in [format!("{h}=.{rest}"), t.replacen("e", "+", 1), format!("{h} .{rest}")] {
        let d = decide(&engine(), &bad);
        assert!(
            matches!(d.codes()[..], [ReasonCode::TokenMalformed] | [ReasonCode::CredentialMalformed]),
            "{bad}: {:?}",
            d.reasons
        );
    }
    // Non-canonical trailing bits in the signature.
    let mut chars: Vec<char> = t.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = if *last == 'A' { 'B' } else { 'A' };
    let d = decide(&engine(), &chars.into_iter().collect::<String>());
    assert!(
        matches!(d.codes()[..], [ReasonCode::TokenMalformed] | [ReasonCode::TokenSignatureInvalid]),
        "{:?}",
        d.reasons
    );
}

#[test]
fn duplicate_json_keys_are_refused_in_header_and_claims() {
    let t =
        raw_token(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"test-ed25519","alg":"EdDSA"}"#, r#"{"iss":"x"}"#);
    assert_denied(&decide(&engine(), &t), ReasonCode::TokenJsonInvalid, "duplicate key `alg`");
    let t = raw_token(
        r#"{"alg":"EdDSA","typ":"at+jwt","kid":"test-ed25519"}"#,
        r#"{"iss":"https://sts.test","sub":"user:alice","sub":"admin"}"#,
    );
    assert_denied(&decide(&engine(), &t), ReasonCode::TokenJsonInvalid, "duplicate key `sub`");
}

#[test]
fn size_and_depth_are_capped() {
    let mut c = claims();
    c.insert("pad".into(), "x".repeat(9000).into());
    assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenMalformed, "limit");
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!([deep]);
    }
    let mut c = claims();
    c.insert("deep".into(), deep);
    assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenJsonInvalid, "nested too deeply");
}

fn good_token_with(c: Map<String, Value>) -> String {
    token_with(header("EdDSA", "test-ed25519"), c)
}

// --- algorithm and key ----------------------------------------------------

#[test]
fn algorithm_must_be_on_the_issuers_list() {
    let e = engine_with(json!({"algorithms": ["ES256"]}), json!({}));
    assert_denied(
        &decide(&e, &good_token()),
        ReasonCode::TokenAlgorithmNotAllowed,
        "not allowed for this issuer",
    );
}

#[test]
fn algorithm_is_tied_to_the_key_type() {
    // An EdDSA header naming the P-256 key.
    let t = token_with(header("EdDSA", "test-es256"), claims());
    assert_denied(&decide(&engine(), &t), ReasonCode::TokenKeyNotFound, "cannot verify `EdDSA`");
}

#[test]
fn none_and_hmac_are_never_accepted() {
    let t = format!(
        "{}.{}.",
        b64::encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        b64::encode(Value::Object(claims()).to_string().as_bytes())
    );
    assert_denied(&decide(&engine(), &t), ReasonCode::TokenAlgorithmNotAllowed, "never accepted");
    // HS256 "signed" with the public key bytes (the classic confusion attack).
    let t = raw_token(
        r#"{"alg":"HS256","typ":"at+jwt","kid":"test-ed25519"}"#,
        &Value::Object(claims()).to_string(),
    );
    assert_denied(&decide(&engine(), &t), ReasonCode::TokenAlgorithmNotAllowed, "HMAC");
}

#[test]
fn embedded_keys_and_key_urls_are_never_trusted() {
    // The attacker signs with their own key and ships it in the header.
    let attacker = SigningKey::from_random(agentguard::keys::Alg::EdDSA, &[9; 32]).unwrap();
    for member in ["jwk", "jku", "x5u", "x5c"] {
        let mut h = header("EdDSA", "test-ed25519");
        let value = match member {
            "jwk" => attacker.public_jwk("evil"),
            "x5c" => json!(["MIIB"]),
            _ => json!("https://evil.test/keys"),
        };
        h.insert(member.into(), value);
        let t = mint::sign_with_header(&attacker, &h, &claims());
        assert_denied(&decide(&engine(), &t), ReasonCode::TokenSignatureInvalid, "does not verify");
    }
}

#[test]
fn unknown_crit_is_refused() {
    let mut h = header("EdDSA", "test-ed25519");
    h.insert("crit".into(), json!(["urn:example:must-understand"]));
    h.insert("urn:example:must-understand".into(), json!(true));
    assert_denied(&decide(&engine(), &token_with(h, claims())), ReasonCode::TokenHeaderUnsupported, "crit");
}

#[test]
fn typ_is_checked_per_issuer() {
    let mut h = header("EdDSA", "test-ed25519");
    h.insert("typ".into(), "JWT".into());
    assert_denied(
        &decide(&engine(), &token_with(h.clone(), claims())),
        ReasonCode::TokenTypeInvalid,
        "`JWT`",
    );
    h.remove("typ");
    assert_denied(
        &decide(&engine(), &token_with(h.clone(), claims())),
        ReasonCode::TokenTypeInvalid,
        "no `typ`",
    );
    // `application/at+jwt` is the same media type.
    h.insert("typ".into(), "application/at+jwt".into());
    assert_eq!(decide(&engine(), &token_with(h.clone(), claims())).decision, Outcome::Allow);
    // An issuer with `token_type: null` accepts any.
    h.insert("typ".into(), "JWT".into());
    let e = engine_with(json!({"token_type": null}), json!({}));
    assert_eq!(decide(&e, &token_with(h, claims())).decision, Outcome::Allow);
}

#[test]
fn key_is_chosen_by_kid() {
    let t = token_with(header("EdDSA", "rotated-away"), claims());
    assert_denied(&decide(&engine(), &t), ReasonCode::TokenKeyNotFound, "no key with kid `rotated-away`");
    // Without a kid: fine when exactly one key fits the algorithm.
    let mut h = header("EdDSA", "x");
    h.remove("kid");
    assert_eq!(decide(&engine(), &token_with(h.clone(), claims())).decision, Outcome::Allow);
    // ... and refused when two keys fit.
    let mut second = public("ed25519");
    second["kid"] = "other".into();
    let e = engine_with(json!({"jwks": {"keys": [public("ed25519"), second]}}), json!({}));
    assert_denied(&decide(&e, &token_with(h, claims())), ReasonCode::TokenKeyNotFound, "several keys");
}

#[test]
fn keys_not_for_verification_are_ignored() {
    let mut enc = public("ed25519");
    enc["use"] = "enc".into();
    let e = engine_with(json!({"jwks": {"keys": [enc, public("es256")]}}), json!({}));
    assert_denied(&decide(&e, &good_token()), ReasonCode::TokenKeyNotFound, "no key with kid");
}

#[test]
fn weak_rsa_keys_are_a_policy_error() {
    // A 1024-bit modulus (Wycheproof's `keysize_too_small`).
    let n = "rJBIp6T1YK-RtPyvYqFFlcucqewSAA_IReSFchE8qyiQrbARqRlXWkB2DR8j_pJQnIpYELbQWZC5Cd0PTGAU8rMbar2AW6zpmBbi7aQf17lUBdt8XI9M9rq7FPVQ1dDdUXm1SVH_9qqPIHQvd3C0Wq8r9u1jYGlFHfT0VkxYCis";
    let text = policy_with(
        json!({"algorithms": ["RS256"], "jwks": {"keys": [{"kty": "RSA", "n": n, "e": "AQAB"}]}}),
        json!({}),
    )
    .to_string();
    let err = Engine::from_json(&text).unwrap_err();
    assert!(
        err.to_string().contains("issuers[0].jwks.keys[0]: RSA key has 1024 bits, expected at least 2048"),
        "{err}"
    );
}

#[test]
fn ecdsa_signatures_must_be_raw_r_s_and_in_range() {
    let t = token_with(header("ES256", "test-es256"), claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = b64::decode(sig).unwrap();
    // DER encoding of the same (r, s).
    let der = {
        fn int(bytes: &[u8]) -> Vec<u8> {
            let mut b: Vec<u8> = bytes.iter().copied().skip_while(|x| *x == 0).collect();
            if b.first().is_some_and(|x| x & 0x80 != 0) {
                b.insert(0, 0);
            }
            let mut out = vec![0x02, b.len() as u8];
            out.extend(b);
            out
        }
        let body: Vec<u8> = [int(&sig[..32]), int(&sig[32..])].concat();
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    };
    let d = decide(&engine(), &format!("{input}.{}", b64::encode(&der)));
    assert_denied(&d, ReasonCode::TokenSignatureInvalid, "expected 64");
    // r = s = 0 (CVE-2022-21449).
    let d = decide(&engine(), &format!("{input}.{}", b64::encode(&[0u8; 64])));
    assert_denied(&d, ReasonCode::TokenSignatureInvalid, "not a valid `ES256` signature");
}

#[test]
fn high_s_ecdsa_signatures_are_accepted() {
    // n − s is an equally valid signature; WebCrypto emits either.
    let t = token_with(header("ES256", "test-es256"), claims());
    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = b64::decode(sig).unwrap();
    let n: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
        0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];
    let mut flipped = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let v = n[i] as i16 - sig[32 + i] as i16 - borrow;
        flipped[i] = v.rem_euclid(256) as u8;
        borrow = i16::from(v < 0);
    }
    let mut other = sig[..32].to_vec();
    other.extend(flipped);
    assert_ne!(other, sig);
    let d = decide(&engine(), &format!("{input}.{}", b64::encode(&other)));
    assert_eq!(d.decision, Outcome::Allow, "{:?}", d.reasons);
}

// --- claims ---------------------------------------------------------------

#[test]
fn issuer_must_match_exactly() {
    let mut c = claims();
    c.insert("iss".into(), "https://sts.test/".into());
    assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenIssuerUnknown, "not trusted");
    let mut c = claims();
    c.remove("iss");
    assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenClaimMissing, "`iss`");
}

#[test]
fn audience_may_be_a_string_or_array_and_must_match() {
    let mut c = claims();
    c.insert("aud".into(), json!(["https://other.test", "https://api.test"]));
    assert_eq!(decide(&engine(), &good_token_with(c.clone())).decision, Outcome::Allow);
    c.insert("aud".into(), json!(["https://other.test"]));
    assert_denied(
        &decide(&engine(), &good_token_with(c.clone())),
        ReasonCode::TokenAudienceInvalid,
        "other.test",
    );
    c.remove("aud");
    assert_denied(&decide(&engine(), &good_token_with(c.clone())), ReasonCode::TokenClaimMissing, "`aud`");
    c.insert("aud".into(), json!(42));
    assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenClaimInvalid, "`aud`");
}

#[test]
fn exp_is_required_and_checked_with_skew_boundaries() {
    let mut c = claims();
    c.remove("exp");
    assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenClaimMissing, "`exp`");
    let mut c = claims();
    c.insert("exp".into(), (NOW - 100).into());
    c.insert("iat".into(), (NOW - 200).into());
    let t = good_token_with(c);
    // Skew is 30 s: valid strictly before exp + 30.
    assert_eq!(decide_at(&engine(), &t, NOW - 100 + 29).decision, Outcome::Allow);
    assert_denied(
        &decide_at(&engine(), &t, NOW - 100 + 30),
        ReasonCode::TokenExpired,
        "token expired 30 s ago",
    );
    assert_denied(&decide_at(&engine(), &t, NOW - 58), ReasonCode::TokenExpired, "token expired 42 s ago");
}

#[test]
fn nbf_boundary_at_exactly_the_skew() {
    let mut c = claims();
    c.insert("nbf".into(), (NOW + 30).into());
    let t = good_token_with(c);
    assert_eq!(decide_at(&engine(), &t, NOW).decision, Outcome::Allow);
    assert_denied(
        &decide_at(&engine(), &t, NOW - 1),
        ReasonCode::TokenNotYetValid,
        "not valid for another 31 s",
    );
}

#[test]
fn iat_boundary_at_exactly_the_skew() {
    let mut c = claims();
    c.insert("iat".into(), (NOW + 30).into());
    c.insert("exp".into(), (NOW + 300).into());
    let t = good_token_with(c);
    assert_eq!(decide_at(&engine(), &t, NOW).decision, Outcome::Allow);
    assert_denied(&decide_at(&engine(), &t, NOW - 1), ReasonCode::TokenIssuedInFuture, "31 s in the future");
}

#[test]
fn lifetime_is_capped() {
    let mut c = claims();
    c.insert("exp".into(), (NOW - 10 + 600).into());
    assert_eq!(decide(&engine(), &good_token_with(c.clone())).decision, Outcome::Allow);
    c.insert("exp".into(), (NOW - 10 + 601).into());
    assert_denied(
        &decide(&engine(), &good_token_with(c)),
        ReasonCode::TokenLifetimeTooLong,
        "maximum of 10m",
    );
}

#[test]
fn required_claims_must_be_present() {
    for claim in ["sub", "iat", "jti"] {
        let mut c = claims();
        c.remove(claim);
        assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenClaimMissing, claim);
    }
    let e = engine_with(json!({"required_claims": ["client_id", "tenant"]}), json!({}));
    assert_denied(&decide(&e, &good_token()), ReasonCode::TokenClaimMissing, "`tenant`");
}

#[test]
fn numeric_dates_must_be_numbers_in_range() {
    for bad in [json!("1767225900"), json!(-5), json!(1e20), json!({"t": 1})] {
        let mut c = claims();
        c.insert("exp".into(), bad.clone());
        assert_denied(&decide(&engine(), &good_token_with(c)), ReasonCode::TokenClaimInvalid, "`exp`");
    }
}

// --- the cache never makes an invalid token valid -------------------------

/// A cached token is decided at any later time as a fresh engine decides
/// it: what a hit does not check again (required claims, lifetime) cannot
/// have changed, and time (also a clock that went back) and audience are
/// checked on every hit.
#[test]
fn a_cache_hit_decides_as_a_fresh_verification_at_any_later_time() {
    let with = |changes: Value| {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    };
    let variants = [
        json!({}),
        json!({"iat": null}),
        json!({"iat": null, "exp": NOW + 590}),
        json!({"nbf": NOW - 5}),
        json!({"iat": NOW + 20}),
        json!({"aud": ["https://other.test", "https://api.test"]}),
        json!({"exp": NOW + 5}),
    ];
    let mut compared = 0;
    for changes in variants {
        let token = good_token_with(with(changes.clone()));
        // `iat` not required, so a token without one (whose lifetime counts
        // from `now`) is cached too.
        let engine = || engine_with(json!({"required_claims": ["exp", "jti"]}), json!({}));
        let cached = engine();
        assert!(decide_at(&cached, &token, NOW).is_allowed(), "{changes}");
        for later in [
            NOW - 100,
            NOW - 40,
            NOW,
            NOW + 1,
            NOW + 5,
            NOW + 34,
            NOW + 35,
            NOW + 289,
            NOW + 300,
            NOW + 319,
            NOW + 320,
            NOW + 900,
        ] {
            let hit = decide_at(&cached, &token, later);
            let fresh = decide_at(&engine(), &token, later);
            assert_eq!(hit.codes(), fresh.codes(), "{changes} at NOW + {}", later - NOW);
            if later == NOW + 1 {
                assert!(hit.event.cache_hit, "{changes}");
            }
            assert_eq!(hit.is_allowed(), fresh.is_allowed());
            compared += usize::from(hit.event.cache_hit);
        }
    }
    assert!(compared >= 40, "{compared} cache hits compared");
}

#[test]
fn cache_hits_skip_crypto_but_not_time_or_revocation() {
    let e = engine();
    let t = good_token();
    let first = decide(&e, &t);
    assert!(first.is_allowed() && !first.event.cache_hit);
    let second = decide(&e, &t);
    assert!(second.is_allowed() && second.event.cache_hit);
    assert_eq!(e.cached_tokens(), 1);
    // Time moves past exp: the cached token is refused.
    assert_denied(&decide_at(&e, &t, NOW + 290 + 30), ReasonCode::TokenExpired, "expired");
    // Revocation pushed at run time applies to cached tokens.
    let t2 = good_token_with({
        let mut c = claims();
        c.insert("jti".into(), "j2".into());
        c
    });
    assert!(decide(&e, &t2).is_allowed());
    e.set_revocations(&RevocationLists { jti: vec!["j2".into()], ..Default::default() });
    let d = decide(&e, &t2);
    assert_eq!(d.decision, Outcome::Revoked);
    assert_eq!(d.codes(), [ReasonCode::RevokedToken]);
}

#[test]
fn pushed_revocations_keep_the_policys_own() {
    // The policy revokes `j1`; a host pushes `j2` on top (Envoy's operator endpoint).
    let e = engine_with(json!({}), json!({"revoked": {"jti": ["j1"]}}));
    let with_jti = |jti: &str| {
        let mut c = claims();
        c.insert("jti".into(), jti.into());
        good_token_with(c)
    };
    let (t1, t2, t3) = (with_jti("j1"), with_jti("j2"), with_jti("j3"));
    assert_eq!(decide(&e, &t1).codes(), [ReasonCode::RevokedToken]);
    assert!(decide(&e, &t2).is_allowed());
    e.set_pushed_revocations(&RevocationLists { jti: vec!["j2".into()], ..Default::default() });
    assert_eq!(decide(&e, &t1).codes(), [ReasonCode::RevokedToken], "the policy's list stays");
    assert_eq!(decide(&e, &t2).codes(), [ReasonCode::RevokedToken], "the pushed one applies, cached or not");
    assert!(decide(&e, &t3).is_allowed());
}

/// A policy whose revocation list is fetched from a URL (refresh 10s, max_stale 2m: tokens live 5m).
fn listed_engine(extra: Value) -> Engine {
    let mut policy = json!({"revocation_list": {"uri": "https://revocations.test/list.json", "refresh": "10s", "max_stale": "2m"}});
    for (k, v) in extra.as_object().unwrap() {
        policy[k] = v.clone();
    }
    engine_with(json!({}), policy)
}

fn token_with_jti(jti: &str) -> String {
    let mut c = claims();
    c.insert("jti".into(), jti.into());
    good_token_with(c)
}

#[test]
fn a_fetched_revocation_list_must_be_loaded_and_fresh() {
    let e = listed_engine(json!({}));
    let list = e.revocation_list().unwrap();
    assert_eq!(
        (list.uri.as_str(), list.refresh_secs, list.max_stale_secs),
        ("https://revocations.test/list.json", 10, 120)
    );
    let (t1, t2) = (token_with_jti("j1"), token_with_jti("j2"));

    // Before the first list arrives, a token is not decided on: 503, retry after `refresh`.
    let d = decide(&e, &t1);
    assert_denied(
        &d,
        ReasonCode::StateUnavailable,
        "revocation list from `https://revocations.test/list.json` has not been loaded yet",
    );
    assert_eq!(d.status, 503);
    assert_eq!(d.response.as_ref().unwrap().headers["retry-after"], "10");
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), None);

    // A list arrives: its entries are revoked, the rest allowed (cached tokens too).
    assert_eq!(e.set_listed_revocations(r#"{"jti": ["j2"], "agents": ["rogue"]}"#, NOW * 1000), Ok(2));
    assert!(decide(&e, &t1).is_allowed());
    assert!(decide(&e, &t1).event.cache_hit);
    let d = decide(&e, &t2);
    assert_eq!((d.decision, d.codes()), (Outcome::Revoked, vec![ReasonCode::RevokedToken]));

    // Within max_stale the list holds; one second past it, nothing is decided.
    assert!(decide_at(&e, &t1, NOW + 120).is_allowed());
    let d = decide_at(&e, &t1, NOW + 121);
    assert_denied(
        &d,
        ReasonCode::StateUnavailable,
        "was loaded 121 s ago, longer than `revocation_list.max_stale` (120 s) allows",
    );
    assert_eq!(d.status, 503);

    // A fresh load replaces the fetched list (j2 is back in) and the clock restarts.
    assert_eq!(e.set_listed_revocations(r#"{"sub": ["user:bob"]}"#, (NOW + 121) * 1000), Ok(1));
    assert!(decide_at(&e, &t2, NOW + 122).is_allowed());
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), Some((NOW + 121) * 1000));
}

#[test]
fn a_bad_revocation_list_is_refused_and_the_last_good_one_stays() {
    let e = listed_engine(json!({}));
    e.set_listed_revocations(r#"{"jti": ["j2"]}"#, NOW * 1000).unwrap();
    let t2 = token_with_jti("j2");
    for (text, expected) in [
        (r#"{"jti": ["j3", 4]}"#, "the revocation list from `https://revocations.test/list.json`: jti[1]: invalid type: integer `4`, expected a string"),
        (r#"{"jti": [], "users": []}"#, "users: unknown field `users`"),
        (r#"{"jti": [], "jti": []}"#, "jti: duplicate field `jti`"),
        ("not json", ".: expected a JSON object"),
        // serde would read the struct from a positional array: refused.
        (r#"[["j3"], [], [], []]"#, ".: expected a JSON object like"),
        (" \n [[\"\"]]\t", ".: expected a JSON object like"),
    ] {
        let err = e.set_listed_revocations(text, (NOW + 60) * 1000).unwrap_err();
        assert!(err.contains(expected), "`{err}` lacks `{expected}`");
        assert_eq!(decide(&e, &t2).codes(), [ReasonCode::RevokedToken], "the last good list stays");
    }
    // A refused document does not count as a load: the list ages from the good one.
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), Some(NOW * 1000));
    assert_denied(
        &decide_at(&e, &token_with_jti("j1"), NOW + 121),
        ReasonCode::StateUnavailable,
        "121 s ago",
    );
    // Too large is refused before it is read.
    let huge = format!(r#"{{"jti": ["{}"]}}"#, "x".repeat(agentguard::limits::MAX_REVOCATION_LIST_BYTES));
    assert!(e
        .set_listed_revocations(&huge, NOW * 1000)
        .unwrap_err()
        .contains("more than the 4194304 allowed"));
    // Without a `revocation_list` there is nothing to load.
    assert!(engine().set_listed_revocations("{}", NOW * 1000).unwrap_err().contains("no `revocation_list`"));
}

#[test]
fn a_304_confirms_the_list_in_force_without_reading_it_again() {
    let e = listed_engine(json!({}));
    // Nothing loaded: nothing to confirm, and token requests still get 503.
    let err = e.confirm_listed_revocations(NOW * 1000).unwrap_err();
    assert!(err.contains("no revocation list from `https://revocations.test/list.json` is loaded"), "{err}");
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), None);
    assert_eq!(decide(&e, &token_with_jti("j1")).status, 503);

    e.set_listed_revocations(r#"{"jti": ["j2"], "sub": ["user:bob"]}"#, NOW * 1000).unwrap();
    // 100 s later the host says "not modified": the same entries, and the list's age restarts.
    assert_eq!(e.confirm_listed_revocations((NOW + 100) * 1000), Ok(2));
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), Some((NOW + 100) * 1000));
    let d = decide_at(&e, &token_with_jti("j2"), NOW + 200);
    assert_eq!((d.decision, d.codes()), (Outcome::Revoked, vec![ReasonCode::RevokedToken]));
    assert!(decide_at(&e, &token_with_jti("j1"), NOW + 220).is_allowed(), "fresh for max_stale from the 304");
    assert_eq!(decide_at(&e, &token_with_jti("j1"), NOW + 221).status, 503);
    // A confirmation from an earlier clock reading does not make the list older.
    assert_eq!(e.confirm_listed_revocations(NOW * 1000), Ok(2));
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), Some((NOW + 100) * 1000));
    // Without a `revocation_list` there is nothing to confirm.
    assert!(engine().confirm_listed_revocations(NOW * 1000).unwrap_err().contains("no `revocation_list`"));
}

fn list_signer() -> SigningKey {
    SigningKey::from_random(agentguard::keys::Alg::EdDSA, &[7; 32]).unwrap()
}

/// An engine whose `revocation_list` must be signed by `list_signer()` (kid `lists-1`).
fn signed_list_engine() -> Engine {
    let jwks = json!({"keys": [list_signer().public_jwk("lists-1")]});
    let list = json!({"uri": "https://revocations.test/list.jws", "refresh": "10s", "max_stale": "2m", "jwks": jwks});
    engine_with(json!({}), json!({ "revocation_list": list }))
}

fn signed_list(key: &SigningKey, kid: &str, typ: &str, payload: Value) -> String {
    mint::sign(key, Some(kid), typ, payload.as_object().unwrap())
}

#[test]
fn a_signed_revocation_list_verifies_and_ages_from_its_iat() {
    let e = signed_list_engine();
    assert!(e.revocation_list().unwrap().is_signed());
    let list = signed_list(
        &list_signer(),
        "lists-1",
        "revocation-list+jwt",
        json!({"jti": ["j2"], "iat": NOW - 30}),
    );
    // Served with a trailing newline, as files are.
    assert_eq!(e.set_listed_revocations(&format!("{list}\n"), NOW * 1000), Ok(1));
    assert_eq!(decide(&e, &token_with_jti("j2")).codes(), [ReasonCode::RevokedToken]);
    assert!(decide(&e, &token_with_jti("j1")).is_allowed());
    // Its age counts from `iat`, not from the fetch: max_stale (2 min) ends 120 s after NOW - 30.
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), Some((NOW - 30) * 1000));
    assert!(decide_at(&e, &token_with_jti("j1"), NOW + 90).is_allowed());
    // Fetched again, or confirmed by a 304, it is no fresher: only the signer can make it so.
    assert_eq!(e.set_listed_revocations(&list, (NOW + 80) * 1000), Ok(1));
    assert_eq!(e.confirm_listed_revocations((NOW + 85) * 1000), Ok(1));
    assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), Some((NOW - 30) * 1000));
    let d = decide_at(&e, &token_with_jti("j1"), NOW + 91);
    assert_denied(
        &d,
        ReasonCode::StateUnavailable,
        "was signed 121 s ago, longer than `revocation_list.max_stale`",
    );
    // A newer signed list brings it back; ES256 or EdDSA, any key of the set.
    let newer = signed_list(
        &list_signer(),
        "lists-1",
        "revocation-list+jwt",
        json!({"sub": ["user:bob"], "iat": NOW + 90}),
    );
    assert_eq!(e.set_listed_revocations(&newer, (NOW + 91) * 1000), Ok(1));
    assert!(decide_at(&e, &token_with_jti("j2"), NOW + 92).is_allowed(), "j2 is no longer listed");
}

#[test]
fn a_signed_list_that_does_not_verify_is_refused_and_the_last_good_one_stays() {
    let e = signed_list_engine();
    let good = signed_list(
        &list_signer(),
        "lists-1",
        "revocation-list+jwt",
        json!({"jti": ["j2"], "iat": NOW - 10}),
    );
    e.set_listed_revocations(&good, NOW * 1000).unwrap();
    let sign = |payload: Value| signed_list(&list_signer(), "lists-1", "revocation-list+jwt", payload);
    let forger = SigningKey::from_random(agentguard::keys::Alg::EdDSA, &[8; 32]).unwrap();
    // The good list's header and signature around another payload.
    let parts: Vec<&str> = good.split('.').collect();
    let swapped = format!("{}.{}.{}", parts[0], b64::encode(br#"{"jti":[],"iat":1767225599}"#), parts[2]);
    for (text, expected) in [
        (
            r#"{"jti": []}"#.to_owned(),
            "expected a signed list (a compact JWS, `revocation_list.jwks` is set)",
        ),
        (swapped, "signature: "),
        (
            signed_list(&forger, "lists-1", "revocation-list+jwt", json!({"jti": [], "iat": NOW})),
            "signature: ",
        ),
        (
            signed_list(&forger, "lists-9", "revocation-list+jwt", json!({"jti": [], "iat": NOW})),
            "signature: ",
        ),
        (
            signed_list(&list_signer(), "lists-1", "at+jwt", json!({"jti": [], "iat": NOW})),
            "expected the JWS header `typ` `revocation-list+jwt`, found `at+jwt`",
        ),
        (
            sign(json!({"jti": [], "iat": NOW - 20})),
            "signed at 1767225580 (`iat`), before the list in force (signed at 1767225590)",
        ),
        (sign(json!({"jti": [], "iat": NOW + 61})), "signed 61 s in the future"),
        (sign(json!({"jti": [], "users": [], "iat": NOW})), "payload users: unknown field `users`"),
        (sign(json!({"jti": []})), "payload .: missing field `iat`"),
        (sign(json!({"jti": [7], "iat": NOW})), "payload jti[0]: invalid type: integer `7`"),
    ] {
        let err = e.set_listed_revocations(&text, NOW * 1000).unwrap_err();
        assert!(err.starts_with("the revocation list from `https://revocations.test/list.jws`: "), "{err}");
        assert!(err.contains(expected), "`{err}` lacks `{expected}`");
        assert_eq!(
            decide(&e, &token_with_jti("j2")).codes(),
            [ReasonCode::RevokedToken],
            "the last good list stays"
        );
        assert_eq!(e.revocation_list().unwrap().loaded_at_ms(), Some((NOW - 10) * 1000));
    }
    // Signed longer than max_stale ago: refused however recently it was fetched.
    let fresh = signed_list_engine();
    let old = sign(json!({"jti": [], "iat": NOW - 121}));
    let err = fresh.set_listed_revocations(&old, NOW * 1000).unwrap_err();
    assert!(
        err.contains("signed 121 s ago, longer than `revocation_list.max_stale` (120 s) allows"),
        "{err}"
    );
    assert_eq!(fresh.revocation_list().unwrap().loaded_at_ms(), None);
}

#[test]
fn a_signed_list_policy_needs_usable_keys() {
    let errors = |jwks: Value| {
        let list = json!({"uri": "https://revocations.test/list.jws", "jwks": jwks});
        Engine::from_json(&policy_with(json!({}), json!({ "revocation_list": list })).to_string())
            .unwrap_err()
            .to_string()
    };
    let err = errors(json!({"keys": []}));
    assert!(
        err.contains("revocation_list.jwks.keys: expected at least one signature verification key"),
        "{err}"
    );
    let err = errors(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "short"}]}));
    assert!(err.contains("revocation_list.jwks.keys[0]"), "{err}");
}

#[test]
fn fetched_pushed_and_policy_revocations_all_stay_in_force() {
    let e = listed_engine(json!({"revoked": {"jti": ["j1"]}}));
    e.set_listed_revocations(r#"{"jti": ["j2"]}"#, NOW * 1000).unwrap();
    e.set_pushed_revocations(&RevocationLists { jti: vec!["j3".into()], ..Default::default() });
    let revoked = |e: &Engine, jti: &str| decide(e, &token_with_jti(jti)).decision == Outcome::Revoked;
    assert!(["j1", "j2", "j3"].iter().all(|j| revoked(&e, j)));
    assert!(!revoked(&e, "j4"));
    // Replacing the policy's lists keeps what was pushed and fetched.
    e.set_revocations(&RevocationLists { jti: vec!["j4".into()], ..Default::default() });
    assert_eq!(["j1", "j2", "j3", "j4"].map(|j| revoked(&e, j)), [false, true, true, true]);
    // A new fetched list replaces only the fetched one.
    e.set_listed_revocations("{}", NOW * 1000).unwrap();
    assert_eq!(["j2", "j3", "j4"].map(|j| revoked(&e, j)), [false, true, true]);
}

#[test]
fn a_revocation_list_policy_is_checked() {
    let errors = |list: Value| {
        Engine::from_json(&policy_with(json!({}), json!({ "revocation_list": list })).to_string())
            .unwrap_err()
            .to_string()
    };
    let err = errors(json!({"uri": "revocations.test/list.json"}));
    assert!(
        err.contains("revocation_list.uri: expected an `https://` URL, found `revocations.test/list.json`"),
        "{err}"
    );
    let err = errors(json!({"uri": "https://r.test/l", "refresh": "0s"}));
    assert!(err.contains("revocation_list.refresh: expected a positive duration"), "{err}");
    let err = errors(json!({"uri": "https://r.test/l", "refresh": "10m", "max_stale": "5m"}));
    assert!(
        err.contains("revocation_list.max_stale: expected at least `refresh` (`10m`), found `5m`"),
        "{err}"
    );
    let err = errors(json!({"uri": "https://r.test/l", "every": "1m"}));
    assert!(err.contains("revocation_list.every: unknown field `every`"), "{err}");
    // Defaults: refresh 1 minute, max_stale 1 hour.
    let e = engine_with(json!({}), json!({"revocation_list": {"uri": "https://r.test/l"}}));
    let list = e.revocation_list().unwrap();
    assert_eq!((list.refresh_secs, list.max_stale_secs), (60, 3600));
}

#[test]
fn key_rotation_invalidates_cached_tokens() {
    let e = engine();
    let t = good_token();
    assert!(decide(&e, &t).is_allowed());
    assert!(decide(&e, &t).event.cache_hit);
    // The issuer drops the Ed25519 key.
    e.set_issuer_keys("https://sts.test", &json!({"keys": [public("es256")]})).unwrap();
    assert_denied(&decide(&e, &t), ReasonCode::TokenKeyNotFound, "no key with kid");
    // A JWKS without usable keys is refused and the last good keys stay.
    assert!(e.set_issuer_keys("https://sts.test", &json!({"keys": []})).is_err());
    let es = token_with(header("ES256", "test-es256"), claims());
    assert!(decide(&e, &es).is_allowed());
}

#[test]
fn cache_is_bounded() {
    let e = engine_with(json!({}), json!({"cache": {"tokens": 3}}));
    for i in 0..10 {
        let mut c = claims();
        c.insert("jti".into(), format!("j{i}").into());
        assert!(decide(&e, &good_token_with(c)).is_allowed());
    }
    assert_eq!(e.cached_tokens(), 3);
}

// --- credential, binding, delegation, revocation, scope, risk ------------

#[test]
fn certificate_bound_tokens_need_the_same_certificate() {
    let thumb = [7u8; 32];
    let mut c = claims();
    c.insert("cnf".into(), json!({"x5t#S256": b64::encode(&thumb)}));
    let t = good_token_with(c);
    let req = |cert: Option<&str>| {
        let mut b =
            Request::builder("GET", "/v1/contacts/1", NOW).header("authorization", &format!("Bearer {t}"));
        if let Some(cert) = cert {
            b = b.client_cert_sha256(cert);
        }
        b.build().unwrap()
    };
    let e = engine();
    // Envoy asks the cache whether to read the certificate: unknown before.
    assert_eq!(e.cached_token_wants_certificate(&t), None);
    assert!(e.decide(&req(Some(&"07".repeat(32)))).is_allowed());
    assert_eq!(e.decide(&req(Some(&"08".repeat(32)))).codes(), [ReasonCode::BindingCertificateMismatch]);
    assert_eq!(e.decide(&req(None)).codes(), [ReasonCode::BindingCertificateMissing]);
    let mtls = engine_with(json!({"binding": "mtls"}), json!({}));
    assert_eq!(decide(&mtls, &good_token()).codes(), [ReasonCode::BindingMissing]);
    // Once verified, the cache answers exactly, for this token and no other.
    assert_eq!(e.cached_token_wants_certificate(&t), Some(true));
    let plain = good_token();
    assert!(decide(&e, &plain).is_allowed());
    assert_eq!(e.cached_token_wants_certificate(&plain), Some(false));
    assert_eq!(e.cached_token_wants_certificate(&format!("{t}x")), None);
}

#[test]
fn delegation_rules() {
    let e = engine_with(
        json!({}),
        json!({"delegation": {"max_depth": 1, "actors": ["spiffe://test/agents/*"], "subjects": ["user:*"], "require_actor": true}}),
    );
    assert_denied(&decide(&e, &good_token()), ReasonCode::DelegationRequired, "no `act`");
    let with_act = |act: Value, sub: &str| {
        let mut c = claims();
        c.insert("act".into(), act);
        c.insert("sub".into(), sub.into());
        good_token_with(c)
    };
    let ok = decide(&e, &with_act(json!({"sub": "spiffe://test/agents/crm"}), "user:alice"));
    assert!(ok.is_allowed(), "{:?}", ok.reasons);
    assert_eq!(ok.identity.as_ref().unwrap().agent, "spiffe://test/agents/crm");
    assert_eq!(ok.forward_headers.get("x-agentguard-actors"), Some("spiffe://test/agents/crm"));
    assert_denied(
        &decide(&e, &with_act(json!({"sub": "spiffe://evil/agents/x"}), "user:alice")),
        ReasonCode::DelegationActorNotAllowed,
        "not an allowed actor",
    );
    assert_denied(
        &decide(
            &e,
            &with_act(
                json!({"sub": "spiffe://test/agents/a", "act": {"sub": "spiffe://test/agents/b"}}),
                "user:alice",
            ),
        ),
        ReasonCode::DelegationTooDeep,
        "2 actors",
    );
    assert_denied(
        &decide(&e, &with_act(json!({"sub": "spiffe://test/agents/crm"}), "service:batch")),
        ReasonCode::DelegationSubjectNotAllowed,
        "service:batch",
    );
    assert_denied(
        &decide(&e, &with_act(json!("agent"), "user:alice")),
        ReasonCode::DelegationInvalid,
        "`act`",
    );
}

#[test]
fn each_revocation_list_revokes() {
    let cases = [
        (json!({"jti": ["j1"]}), ReasonCode::RevokedToken),
        (json!({"sub": ["user:alice"]}), ReasonCode::RevokedSubject),
        (json!({"agents": ["crm-agent"]}), ReasonCode::RevokedAgent),
        (json!({"kid": ["test-ed25519"]}), ReasonCode::RevokedKey),
    ];
    for (lists, code) in cases {
        let d = decide(&engine_with(json!({}), json!({ "revoked": lists })), &good_token());
        assert_eq!(d.decision, Outcome::Revoked);
        assert_eq!(d.codes(), [code]);
        assert_eq!(d.status, 401);
    }
}

#[test]
fn scopes_route_and_risk() {
    let e = engine();
    let post = |path: &str, token: &str| {
        e.decide(
            &Request::builder("POST", path, NOW)
                .host("api.test")
                .header("authorization", &format!("Bearer {token}"))
                .build()
                .unwrap(),
        )
    };
    let d = post("/v1/payments", &good_token());
    assert_denied(&d, ReasonCode::ScopeInsufficient, "lacks scope `payments.write` (has `crm.read`)");
    assert!(d.response.as_ref().unwrap().headers["www-authenticate"].contains(r#"scope="payments.write""#));
    let mut c = claims();
    c.insert("scope".into(), "payments.write".into());
    let d = post("/v1/payments?amount=10", &good_token_with(c));
    assert_eq!(d.decision, Outcome::ApprovalRequired);
    let challenge = d.approval.as_ref().unwrap();
    assert_eq!(challenge.action_digest.len(), 43);
    assert!(d.response.as_ref().unwrap().body.contains(&challenge.action_digest));
    assert_denied(&post("/v1/other", &good_token()), ReasonCode::RouteNotMatched, "no route");
}

#[test]
fn malformed_requests_are_denials_not_errors() {
    let e = engine();
    let d = agentguard::api::decide(&e, r#"{"method":"GET","path":"/v1/a%2Fb","now":1}"#);
    assert_eq!(d.codes(), [ReasonCode::PathInvalid]);
    let d = agentguard::api::decide(&e, r#"{"method":"GET","path":"/","now":"soon"}"#);
    assert_eq!(d.codes(), [ReasonCode::RequestInvalid]);
    assert!(d.reasons[0].message.starts_with("request.now:"), "{}", d.reasons[0].message);
    let d = agentguard::api::decide(&e, "not json");
    assert_eq!(d.decision, Outcome::Deny);
    assert_eq!(d.status, 400);
    // A header value is a string or a list of strings; the error names the header.
    let d = agentguard::api::decide(&e, r#"{"method":"GET","path":"/","headers":{"x-a":5},"now":1}"#);
    assert_eq!(d.codes(), [ReasonCode::RequestInvalid]);
    assert_eq!(
        d.reasons[0].message,
        "request.headers.x-a: invalid type: integer `5`, expected a string or a list of strings"
    );
    let d = agentguard::api::decide(&e, r#"{"method":"GET","path":"/","headers":{"x-a":["1",2]},"now":1}"#);
    assert!(
        d.reasons[0].message.starts_with("request.headers.x-a[1]: invalid type: integer `2`"),
        "{}",
        d.reasons[0].message
    );
    let input: agentguard::RequestInput =
        serde_json::from_str(r#"{"method":"GET","path":"/","headers":{"a":"1","b":["2","3"]},"now":1}"#)
            .unwrap();
    let r = agentguard::Request::from_input(&input).unwrap();
    assert_eq!(r.header_values("a").collect::<Vec<_>>(), ["1"]);
    assert_eq!(r.header_values("b").collect::<Vec<_>>(), ["2", "3"]);
}

#[test]
fn trace_lists_every_stage_in_order() {
    let d = decide(&engine(), &good_token());
    let stages: Vec<&str> = d.trace.iter().map(|t| t.stage).collect();
    assert_eq!(
        stages,
        [
            "request",
            "route",
            "network",
            "credential",
            "token",
            "binding",
            "delegation",
            "attestation",
            "revocation",
            "behaviour",
            "scope",
            "limits",
            "risk"
        ]
    );
    let d = decide(&engine(), "x.y.z");
    assert_eq!(d.trace.len(), 13);
    assert_eq!(d.trace[4].stage, "token");
    assert_eq!(d.trace[4].result, agentguard::decision::StageResult::Fail);
    assert_eq!(d.trace[5].result, agentguard::decision::StageResult::Skip);
    assert_eq!(d.trace[12].stage, "risk");
}

#[test]
fn decision_events_never_contain_the_token() {
    let t = good_token();
    let d = decide(&engine(), &t);
    let event = serde_json::to_string(&d.event).unwrap();
    let sig = t.rsplit('.').next().unwrap();
    assert!(!event.contains(sig) && !event.contains(&t[..20]));
    assert_eq!(d.event.agent.as_ref().unwrap().token_hash.len(), 16);
}

// --- host-verified signatures (WebCrypto in JS hosts) ----------------------

#[test]
fn host_signature_checks_round_trip() {
    use agentguard::token::HostVerdict;
    let e = engine();
    let t = token_with(header("ES256", "test-es256"), claims());
    let req = Request::builder("GET", "/v1/contacts/42", NOW)
        .header("authorization", &format!("Bearer {t}"))
        .build()
        .unwrap();
    let check = e.pending_signature(&req).expect("a fresh token needs a check");
    assert_eq!(check.alg, "ES256");
    assert_eq!(format!("{}.{}", check.signing_input, check.signature), t);
    // The check is complete: its JWK and bytes verify.
    let key = agentguard::keys::parse_jwk(&check.jwk).unwrap().unwrap();
    agentguard::keys::verify_signature(
        agentguard::keys::Alg::ES256,
        &key.key,
        check.signing_input.as_bytes(),
        &b64::decode(&check.signature).unwrap(),
    )
    .unwrap();
    // A negative verdict denies even though the signature is fine.
    let no = HostVerdict { token_hash: check.token_hash.clone(), valid: false };
    assert_eq!(e.decide_with(&req, Some(&no)).codes(), [ReasonCode::TokenSignatureInvalid]);
    // A verdict about another token is ignored: the tampered token is checked in Wasm.
    let tampered = format!("{}A", &t[..t.len() - 1]);
    let treq = Request::builder("GET", "/v1/contacts/42", NOW)
        .header("authorization", &format!("Bearer {tampered}"))
        .build()
        .unwrap();
    let yes_for_other = HostVerdict { token_hash: check.token_hash.clone(), valid: true };
    assert_ne!(e.decide_with(&treq, Some(&yes_for_other)).decision, Outcome::Allow);
    // A positive verdict allows and fills the cache; then no check is pending.
    let yes = HostVerdict { token_hash: check.token_hash, valid: true };
    assert!(e.decide_with(&req, Some(&yes)).is_allowed());
    assert!(e.pending_signature(&req).is_none());
    assert!(e.decide(&req).event.cache_hit);
    // Tokens refused before the signature matters need no check.
    let anon = Request::builder("GET", "/v1/contacts/42", NOW).build().unwrap();
    assert!(e.pending_signature(&anon).is_none());
}

#[test]
fn fetched_jwks_text_is_capped_and_strict() {
    let e = engine();
    let big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(agentguard::limits::MAX_JWKS_BYTES));
    assert!(e.set_issuer_keys_json("https://sts.test", &big).unwrap_err().contains("limit"));
    let dup = r#"{"keys":[],"keys":[]}"#;
    assert!(e.set_issuer_keys_json("https://sts.test", dup).unwrap_err().contains("duplicate key"));
    let ok = json!({"keys": [public("es256"), {"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    let problems = e.set_issuer_keys_json("https://sts.test", &ok).unwrap();
    assert_eq!(problems.len(), 1, "the symmetric key is reported and skipped");
    assert!(e.set_issuer_keys_json("https://unknown", &ok).unwrap_err().contains("not in the policy"));
}

#[test]
fn a_token_parsed_for_a_host_check_is_used_only_for_its_own_text_and_verdict() {
    use agentguard::token::HostVerdict;
    let e = engine();
    let t = token_with(header("ES256", "test-es256"), claims());
    let request = |token: &str| {
        Request::builder("GET", "/v1/contacts/42", NOW)
            .header("authorization", &format!("Bearer {token}"))
            .build()
            .unwrap()
    };
    let yes = |id: String| HostVerdict { token_hash: id, valid: true };
    // The verdict on `t`'s check, presented with another token's text: that
    // token is parsed and verified in Wasm, and its bad signature refused.
    let check = e.pending_signature(&request(&t)).unwrap();
    let tampered = format!("{}A", &t[..t.len() - 1]);
    let d = e.decide_with(&request(&tampered), Some(&yes(check.token_hash)));
    assert_eq!(d.codes(), [ReasonCode::TokenSignatureInvalid]);
    // With its own text, the prepared token finishes the decision: the same
    // identity and headers as a decision verified entirely in Wasm.
    let check = e.pending_signature(&request(&t)).unwrap();
    let d = e.decide_with(&request(&t), Some(&yes(check.token_hash)));
    assert!(d.is_allowed(), "{:?}", d.reasons);
    let wasm = engine().decide(&request(&t));
    assert_eq!(d.identity, wasm.identity);
    assert_eq!(d.forward_headers, wasm.forward_headers);
    assert!(e.decide(&request(&t)).event.cache_hit);
}

#[test]
fn a_host_verdict_does_not_survive_a_key_rotation() {
    use agentguard::token::HostVerdict;
    let e = engine();
    let t = token_with(header("ES256", "test-es256"), claims());
    let req = Request::builder("GET", "/v1/contacts/42", NOW)
        .header("authorization", &format!("Bearer {t}"))
        .build()
        .unwrap();
    let check = e.pending_signature(&req).unwrap();
    // The issuer rotates: same kid, a different key, while the host verifies.
    let other = SigningKey::from_random(agentguard::keys::Alg::ES256, &[5; 32]).unwrap();
    e.set_issuer_keys(
        "https://sts.test",
        &json!({"keys": [other.public_jwk("test-es256"), public("ed25519")]}),
    )
    .unwrap();
    let yes = HostVerdict { token_hash: check.token_hash, valid: true };
    let d = e.decide_with(&req, Some(&yes));
    assert_eq!(
        d.codes(),
        [ReasonCode::TokenSignatureInvalid],
        "the stale verdict is ignored; Wasm re-checks"
    );
}
