//! The token service: `Engine::exchange` (RFC 8693 token exchange) on
//! structured token requests.
//!
//! Each input builds one `POST /token` (method and content type from short
//! lists or fuzzed) whose body is fuzzed text or a form built from fuzzed
//! parts: `grant_type`, a subject token that is fuzzed text or really signed
//! (by the federated CI issuer's key or an untrusted one) over claims built
//! from fuzzed parts (`iss`, `aud`, `sub`, `repository_owner`, times, `act`,
//! `authorization_details`, extra claims), `subject_token_type`, an optional
//! actor token built the same way, `scope`, `audience`/`resource`,
//! `requested_token_type`, extra and repeated parameters, and an optional
//! fuzzed `DPoP` header. Every field's zero value is the valid choice, so
//! the fuzzer starts from a request that mints.
//!
//! Invariants: no panic; every answer has `Cache-Control: no-store` and a
//! JSON body, an RFC 6749 `error` unless it is a 200; **a token is minted
//! only** for a form-encoded `POST` whose subject token was signed by the CI
//! issuer's key for the edge, with a `sub` the rule's pattern matches, the
//! rule's `repository_owner`, and times that hold, and whose actor token (if
//! any) was signed by that key for an allowed actor; the minted token
//! verifies with the edge key and carries exactly `iss`, `aud` (an allowed
//! audience), `sub` (the subject token's), `client_id` (the rule), `scope`
//! (allowed, and the requested one when asked), `iat`, `exp` (the 5-minute
//! default), the host's `jti` and `act` (the actor's `sub` when an actor
//! token was sent), never `authorization_details`; and it is allowed at the
//! API only where its scope reaches.
#![no_main]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::large_enum_variant
)]

use std::sync::OnceLock;

use agentguard::exchange::ExchangeContext;
use agentguard::jws::UntrustedJws;
use agentguard::keys::{Alg, KeySet};
use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, Request};
use agentguard_fuzz::Text;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const NOW: i64 = 1_767_225_600;
const CI: &str = "https://ci.test";
const EDGE: &str = "https://edge.test";
const SUBJECT: &str = "repo:acme/agents:ref:refs/heads/main";
const ACTOR: &str = "spiffe://acme.test/agents/deployer";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SCOPES: [&str; 2] = ["deploy.write", "logs.read"];
const JTI: &str = "edge-jti-0123456789";

struct Fixture {
    engine_policy: String,
    signing_keys: Value,
    edge_keys: KeySet,
    ci: SigningKey,
    untrusted: SigningKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Ed25519 everywhere: P-256 signing is slow under AddressSanitizer.
        let ci = SigningKey::from_random(Alg::EdDSA, &[21; 32]).unwrap();
        let edge = SigningKey::from_random(Alg::EdDSA, &[22; 32]).unwrap();
        let untrusted = SigningKey::from_random(Alg::EdDSA, &[23; 32]).unwrap();
        let policy = json!({
            "issuers": [{"iss": EDGE, "audiences": ["https://api.test"],
                         "jwks": {"keys": [edge.public_jwk("edge-1")]}, "algorithms": ["EdDSA"], "max_lifetime": "15m"}],
            "routes": [{"id": "deploy", "methods": ["POST"], "path": "/v1/deploy", "scopes": ["deploy.write"]},
                       {"id": "logs", "methods": ["GET"], "path": "/v1/logs", "scopes": ["logs.read"]}],
            "delegation": {"max_depth": 4, "actors": ["spiffe://acme.test/agents/*"]},
            "state": {"max_keys": 64},
            "token_service": {
                "issuer": EDGE,
                "signing_kid": "edge-1",
                "default_lifetime": "5m",
                "federation": [{
                    "id": "ci-main",
                    "issuer": {"iss": CI, "audiences": [EDGE], "jwks": {"keys": [ci.public_jwk("ci-1")]},
                               "algorithms": ["EdDSA"]},
                    "subjects": ["repo:acme/*:ref:refs/heads/main"],
                    "claims": {"repository_owner": ["acme"]},
                    "actors": ["spiffe://acme.test/agents/*"],
                    "scopes": SCOPES,
                    "audiences": ["https://api.test"],
                    "max_lifetime": "10m"
                }]
            }
        });
        let mut private = edge.private_jwk("edge-1");
        private["kid"] = "edge-1".into();
        let (edge_keys, _) = KeySet::from_jwks(&json!({ "keys": [edge.public_jwk("edge-1")] })).unwrap();
        Fixture {
            engine_policy: policy.to_string(),
            signing_keys: json!({ "keys": [private] }),
            edge_keys,
            ci,
            untrusted,
        }
    })
}

/// Claims of a signed token; every zero value is the valid choice.
#[derive(Arbitrary, Debug)]
struct Claims {
    iss: Text,
    aud: Text,
    sub: Text,
    owner: Text,
    without_owner: bool,
    /// `iat` is this many seconds after `NOW - 5`.
    iat: i16,
    /// `exp` is this many seconds after `iat + 600`.
    exp: i16,
    without_jti: bool,
    act: Option<String>,
    authorization_details: bool,
    extra: Option<(String, String)>,
}

#[derive(Arbitrary, Debug)]
enum Token {
    Signed { by_untrusted: bool, claims: Claims },
    Raw(String),
}

/// What the invariants need to know about a token the harness signed.
struct Signed {
    trusted: bool,
    iss: String,
    aud: String,
    sub: String,
    owner: Option<String>,
    iat: i64,
    exp: i64,
}

impl Token {
    fn build(&self, f: &Fixture, subjects: &[&str]) -> (String, Option<Signed>) {
        let (by_untrusted, c) = match self {
            Token::Raw(s) => return (s.clone(), None),
            Token::Signed { by_untrusted, claims } => (*by_untrusted, claims),
        };
        let iss = c.iss.get(&[CI, EDGE]).to_owned();
        let aud = c.aud.get(&[EDGE, "https://api.test"]).to_owned();
        let sub = c.sub.get(subjects).to_owned();
        let owner = (!c.without_owner).then(|| c.owner.get(&["acme", "evil"]).to_owned());
        let iat = NOW - 5 + i64::from(c.iat);
        let exp = iat + 600 + i64::from(c.exp);
        let mut claims = Map::new();
        claims.insert("iss".into(), iss.clone().into());
        claims.insert("aud".into(), aud.clone().into());
        claims.insert("sub".into(), sub.clone().into());
        if let Some(o) = &owner {
            claims.insert("repository_owner".into(), o.clone().into());
        }
        claims.insert("iat".into(), iat.into());
        claims.insert("exp".into(), exp.into());
        if !c.without_jti {
            claims.insert("jti".into(), "ci-run-1".into());
        }
        if let Some(a) = &c.act {
            claims.insert("act".into(), json!({ "sub": a }));
        }
        if c.authorization_details {
            claims.insert(
                "authorization_details".into(),
                json!([{"type": "deployment", "actions": ["deploy"], "identifier": "billing"}]),
            );
        }
        if let Some((k, v)) = &c.extra {
            claims
                .entry(k.clone())
                .or_insert_with(|| serde_json::from_str(v).unwrap_or(Value::String(v.clone())));
        }
        let key = if by_untrusted { &f.untrusted } else { &f.ci };
        let token = mint::sign(key, Some("ci-1"), "JWT", &claims);
        let signed = Signed { trusted: !by_untrusted, iss, aud, sub, owner, iat, exp };
        (token, Some(signed))
    }
}

#[derive(Arbitrary, Debug)]
enum Param {
    Right,
    Absent,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Form {
    grant_type: Param,
    subject: Token,
    subject_token_type: Param,
    actor: Option<(Token, Param)>,
    scope: Option<Text>,
    audience: Option<(bool, Text)>,
    requested_token_type: Option<Text>,
    extra: Vec<(String, String)>,
    repeat_first: bool,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Form(Form),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: Text,
    content_type: Text,
    body: Body,
    dpop: Option<String>,
}

/// `application/x-www-form-urlencoded` with every byte but unreserved ones escaped.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether `s` matches `prefix*suffix` with `*` anything (a superset of the
/// engine's glob: the engine may refuse more, never less).
fn loosely_matches(s: &str, prefix: &str, suffix: &str) -> bool {
    s.len() >= prefix.len() + suffix.len() && s.starts_with(prefix) && s.ends_with(suffix)
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a minted token has a payload");
    serde_json::from_slice(&agentguard::b64::decode(part).unwrap()).unwrap()
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let method = input.method.get(&["POST", "GET", "PUT"]);
    let content_type = input.content_type.get(&[
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/json",
    ]);
    let mut subject = None;
    let mut actor = None;
    let mut requested_scope = None;
    let (body, form_ok) = match &input.body {
        Body::Raw(s) => (s.clone(), false),
        Body::Form(form) => {
            let mut pairs: Vec<(String, String)> = Vec::new();
            let mut push = |k: &str, v: &str| pairs.push((k.to_owned(), v.to_owned()));
            match &form.grant_type {
                Param::Right => push("grant_type", GRANT),
                Param::Absent => {}
                Param::Raw(s) => push("grant_type", s),
            }
            let (token, signed) = form.subject.build(
                f,
                &[SUBJECT, "repo:acme/agents:ref:refs/heads/feature", "repo:evil/x:ref:refs/heads/main"],
            );
            push("subject_token", &token);
            subject = signed;
            match &form.subject_token_type {
                Param::Right => push("subject_token_type", JWT_TYPE),
                Param::Absent => {}
                Param::Raw(s) => push("subject_token_type", s),
            }
            if let Some((token, kind)) = &form.actor {
                let (token, signed) = token.build(f, &[ACTOR, "spiffe://evil.test/agents/x"]);
                push("actor_token", &token);
                actor = Some(signed);
                match kind {
                    Param::Right => push("actor_token_type", JWT_TYPE),
                    Param::Absent => {}
                    Param::Raw(s) => push("actor_token_type", s),
                }
            }
            if let Some(s) = &form.scope {
                let s = s.get(&["deploy.write", "logs.read", "deploy.write logs.read", "admin", ""]);
                requested_scope = Some(s.to_owned());
                push("scope", s);
            }
            if let Some((resource, a)) = &form.audience {
                push(
                    if *resource { "resource" } else { "audience" },
                    a.get(&["https://api.test", "https://evil.test"]),
                );
            }
            if let Some(t) = &form.requested_token_type {
                push(
                    "requested_token_type",
                    t.get(&["urn:ietf:params:oauth:token-type:access_token", JWT_TYPE, "urn:x"]),
                );
            }
            for (k, v) in form.extra.iter().take(3) {
                push(k, v);
            }
            if form.repeat_first {
                if let Some(first) = pairs.first().cloned() {
                    pairs.push(first);
                }
            }
            let body: Vec<String> =
                pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
            (body.join("&"), true)
        }
    };

    let mut builder =
        Request::builder(method, "/token", NOW).host("edge.test").header("content-type", content_type);
    if let Some(d) = &input.dpop {
        builder = builder.header("dpop", d);
    }
    let Ok(request) = builder.build() else { return };
    let engine = Engine::from_json(&f.engine_policy).unwrap();
    engine.set_signing_keys(&f.signing_keys).unwrap();
    let response = engine.exchange(ExchangeContext { request: &request, body: &body, jti: JTI });

    assert_eq!(response.headers.get("cache-control").map(String::as_str), Some("no-store"));
    let answer: Value = serde_json::from_str(&response.body).expect("the token endpoint answers JSON");
    if response.status != 200 {
        assert!(matches!(response.status, 400 | 401 | 429 | 500), "status {}", response.status);
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
        assert!(answer.get("access_token").is_none());
        return;
    }

    // Minted: everything it took must have held.
    assert_eq!(method, "POST");
    let media = content_type.split(';').next().unwrap_or("").trim();
    assert!(media.eq_ignore_ascii_case("application/x-www-form-urlencoded"), "minted for `{content_type}`");
    assert!(form_ok, "minted from a fuzzed body");
    let s = subject.as_ref().expect("minted for a fuzzed subject token");
    assert!(s.trusted, "minted for a subject token the CI issuer did not sign");
    assert_eq!(s.iss, CI);
    assert_eq!(s.aud, EDGE);
    assert!(loosely_matches(&s.sub, "repo:acme/", ":ref:refs/heads/main"), "minted for subject `{}`", s.sub);
    assert_eq!(s.owner.as_deref(), Some("acme"));
    assert!(s.iat <= NOW + 30 && NOW <= s.exp + 30, "minted for a subject token outside its times");
    let actor_sub = match &actor {
        None => None,
        Some(a) => {
            let a = a.as_ref().expect("minted for a fuzzed actor token");
            assert!(
                a.trusted && a.iss == CI && a.aud == EDGE,
                "minted for an actor token not from the CI issuer"
            );
            assert!(
                loosely_matches(&a.sub, "spiffe://acme.test/agents/", ""),
                "minted for actor `{}`",
                a.sub
            );
            Some(a.sub.clone())
        }
    };

    let token = answer["access_token"].as_str().expect("a 200 without access_token");
    let jws = UntrustedJws::parse(token).expect("the minted token parses");
    assert!(
        jws.verify(&f.edge_keys, &[Alg::EdDSA]).is_ok(),
        "the minted token does not verify with the edge key"
    );
    let claims = payload(token);
    let keys: Vec<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
    for k in &keys {
        assert!(
            ["iss", "aud", "sub", "client_id", "scope", "iat", "exp", "jti", "act", "cnf"].contains(k),
            "minted claim `{k}`"
        );
    }
    assert_eq!(claims["iss"], EDGE);
    assert_eq!(claims["aud"], "https://api.test");
    assert_eq!(claims["sub"], s.sub.as_str());
    assert_eq!(claims["client_id"], "ci-main");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 300);
    assert_eq!(claims["jti"], JTI);
    let scope = claims["scope"].as_str().unwrap();
    assert!(!scope.is_empty() && scope.split(' ').all(|s| SCOPES.contains(&s)), "minted scope `{scope}`");
    if let Some(r) = &requested_scope {
        assert_eq!(scope, r.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" "));
    }
    if let Some(a) = &actor_sub {
        assert_eq!(claims["act"]["sub"], a.as_str());
    }
    assert_eq!(answer["scope"], scope);
    assert_eq!(answer["expires_in"], 300);

    // At the API: only where the minted scope reaches.
    let call = Request::builder("POST", "/v1/deploy", NOW + 1)
        .host("api.test")
        .header("authorization", &format!("Bearer {token}"))
        .build()
        .unwrap();
    let d = engine.decide(&call);
    agentguard_fuzz::check_decision(&d);
    if d.is_allowed() {
        assert!(scope.split(' ').any(|s| s == "deploy.write"), "deploy allowed with scope `{scope}`");
    }
});
