//! Web Bot Auth (RFC 9421 HTTP message signatures) and MCP-ready resource
//! metadata (RFC 9728).

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::keys::{parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{Decision, Engine, ReasonCode, Request};
use base64::Engine as _;
use serde_json::{json, Value};

const NOW: i64 = 1_767_225_600;
const OPERATOR: &str = "https://crawler.test";

fn bot_key() -> SigningKey {
    SigningKey::from_random(Alg::EdDSA, &[31; 32]).unwrap()
}

fn thumbprint(k: &SigningKey) -> String {
    parse_jwk(&k.public_jwk("x")).unwrap().unwrap().thumbprint
}

fn engine(credentials: &str) -> Engine {
    let keys: Value = serde_json::from_str(include_str!("vectors/keys.json")).unwrap();
    let mut jwk = keys["ed25519"].clone();
    jwk.as_object_mut().unwrap().remove("d");
    Engine::from_json(
        &json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test/mcp"], "jwks": {"keys": [jwk]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "pages", "methods": ["GET"], "path": "/pages/**", "scopes": ["pages.read"]},
                       {"id": "mcp", "methods": ["POST"], "path": "/mcp", "scopes": ["mcp.tools"]}],
            "credentials": credentials,
            "signature_agents": {"directories": [{"operator": OPERATOR, "keys": {"keys": [bot_key().public_jwk("bot-1")]}, "scopes": ["pages.read"]}]},
            "resource": {"identifier": "https://api.test/mcp", "metadata_url": "https://api.test/.well-known/oauth-protected-resource/mcp",
                         "authorization_servers": ["https://sts.test"], "name": "Test MCP server"},
            "limits": [{"per": "agent", "rate": "100/1m"}]
        })
        .to_string(),
    )
    .unwrap()
}

struct Sig {
    components: Vec<&'static str>,
    created: i64,
    expires: i64,
    keyid: String,
    nonce: Option<&'static str>,
    tag: &'static str,
    key: SigningKey,
    authority_signed: &'static str,
}

impl Sig {
    fn new(nonce: &'static str) -> Sig {
        Sig {
            components: vec!["@authority", "signature-agent"],
            created: NOW - 5,
            expires: NOW + 55,
            keyid: thumbprint(&bot_key()),
            nonce: Some(nonce),
            tag: "web-bot-auth",
            key: bot_key(),
            authority_signed: "api.test",
        }
    }
    /// `(Signature-Input, Signature)` per RFC 9421 §2.5.
    fn headers(&self) -> (String, String) {
        let list: Vec<String> = self.components.iter().map(|c| format!("\"{c}\"")).collect();
        let mut params = format!(
            "({});created={};expires={};keyid=\"{}\";alg=\"ed25519\"",
            list.join(" "),
            self.created,
            self.expires,
            self.keyid
        );
        if let Some(n) = self.nonce {
            params.push_str(&format!(";nonce=\"{n}\""));
        }
        params.push_str(&format!(";tag=\"{}\"", self.tag));
        let mut base = String::new();
        for c in &self.components {
            let v = match *c {
                "@authority" => self.authority_signed.to_owned(),
                "signature-agent" => format!("\"{OPERATOR}\""),
                "@method" => "GET".into(),
                "@path" => "/pages/1".into(),
                other => panic!("{other}"),
            };
            base.push_str(&format!("\"{c}\": {v}\n"));
        }
        base.push_str(&format!("\"@signature-params\": {params}"));
        let sig = mint::sign_bytes(&self.key, base.as_bytes());
        (
            format!("sig1={params}"),
            format!("sig1=:{}:", base64::engine::general_purpose::STANDARD.encode(sig)),
        )
    }
}

fn signed(e: &Engine, sig: &Sig, token: Option<&str>) -> Decision {
    let (input, signature) = sig.headers();
    let mut b = Request::builder("GET", "/pages/1", NOW)
        .host("api.test")
        .header("signature-agent", &format!("\"{OPERATOR}\""))
        .header("signature-input", &input)
        .header("signature", &signature);
    if let Some(t) = token {
        b = b.header("authorization", &format!("Bearer {t}"));
    }
    e.decide(&b.build().unwrap())
}

#[test]
fn a_signed_agent_is_allowed_as_its_operator() {
    let e = engine("either");
    let d = signed(&e, &Sig::new("n1"), None);
    assert!(d.is_allowed(), "{:?}", d.reasons);
    let id = d.identity.as_ref().unwrap();
    assert_eq!(id.agent, OPERATOR);
    assert_eq!(id.scopes, ["pages.read"]);
    assert_eq!(d.forward_headers.get("x-agentguard-agent"), Some(OPERATOR));
    assert!(d
        .trace
        .iter()
        .any(|t| t.stage == "binding" && t.detail.contains("from `https://crawler.test`'s directory")));
    // The operator only gets its directory's scopes.
    let (input, signature) = Sig::new("n2").headers();
    let post = Request::builder("POST", "/mcp", NOW)
        .host("api.test")
        .header("signature-agent", &format!("\"{OPERATOR}\""))
        .header("signature-input", &input)
        .header("signature", &signature)
        .build()
        .unwrap();
    assert_eq!(e.decide(&post).codes(), [ReasonCode::ScopeInsufficient]);
}

#[test]
fn each_signature_rule() {
    let e = engine("signature");
    let cases: Vec<(Sig, ReasonCode)> = vec![
        (Sig { authority_signed: "evil.test", ..Sig::new("t1") }, ReasonCode::SignatureInvalid),
        (Sig { created: NOW - 400, expires: NOW - 340, ..Sig::new("t2") }, ReasonCode::SignatureExpired),
        (Sig { expires: NOW + 3600, ..Sig::new("t3") }, ReasonCode::SignatureExpired),
        (
            Sig {
                key: SigningKey::from_random(Alg::EdDSA, &[32; 32]).unwrap(),
                keyid: thumbprint(&SigningKey::from_random(Alg::EdDSA, &[32; 32]).unwrap()),
                ..Sig::new("t4")
            },
            ReasonCode::SignatureKeyUnknown,
        ),
        (
            Sig { components: vec!["signature-agent"], ..Sig::new("t5") },
            ReasonCode::SignatureComponentMissing,
        ),
        (Sig { components: vec!["@authority"], ..Sig::new("t6") }, ReasonCode::SignatureComponentMissing),
        (Sig { tag: "other", ..Sig::new("t7") }, ReasonCode::SignatureInvalid),
        (Sig { nonce: None, ..Sig::new("t8") }, ReasonCode::SignatureInvalid),
        (
            Sig { key: SigningKey::from_random(Alg::EdDSA, &[33; 32]).unwrap(), ..Sig::new("t9") },
            ReasonCode::SignatureInvalid,
        ),
    ];
    for (i, (sig, code)) in cases.into_iter().enumerate() {
        let d = signed(&e, &sig, None);
        assert_eq!(d.codes(), [code], "case {i}: {:?}", d.reasons);
        assert_eq!(d.status, 401);
    }
    // Replayed nonce.
    assert!(signed(&e, &Sig::new("once"), None).is_allowed());
    assert_eq!(signed(&e, &Sig::new("once"), None).codes(), [ReasonCode::SignatureReplayed]);
    // No signature at all.
    let plain = Request::builder("GET", "/pages/1", NOW).host("api.test").build().unwrap();
    assert_eq!(e.decide(&plain).codes(), [ReasonCode::SignatureMissing]);
}

#[test]
fn credentials_both_needs_token_and_signature() {
    let e = engine("both");
    let keys: Value = serde_json::from_str(include_str!("vectors/keys.json")).unwrap();
    let claims = json!({"iss": "https://sts.test", "aud": "https://api.test/mcp", "sub": "user:a", "scope": "pages.read",
                        "iat": NOW, "exp": NOW + 60, "jti": "j"});
    let token = mint::sign(
        &SigningKey::from_jwk(&keys["ed25519"]).unwrap(),
        Some("test-ed25519"),
        "at+jwt",
        claims.as_object().unwrap(),
    );
    let d = signed(&e, &Sig::new("b1"), Some(&token));
    assert!(d.is_allowed(), "{:?}", d.reasons);
    assert_eq!(d.identity.as_ref().unwrap().subject.as_deref(), Some("user:a"), "identity from the token");
    let only_token = Request::builder("GET", "/pages/1", NOW)
        .host("api.test")
        .header("authorization", &format!("Bearer {token}"))
        .build()
        .unwrap();
    assert_eq!(e.decide(&only_token).codes(), [ReasonCode::SignatureMissing]);
}

#[test]
fn mcp_clients_discover_the_resource_from_every_401() {
    let e = engine("token");
    let d = e.decide(&Request::builder("POST", "/mcp", NOW).host("api.test").build().unwrap());
    assert_eq!(d.status, 401);
    let challenge = &d.response.as_ref().unwrap().headers["www-authenticate"];
    assert_eq!(
        challenge,
        r#"Bearer realm="agentguard", resource_metadata="https://api.test/.well-known/oauth-protected-resource/mcp""#
    );
    let meta = e.resource_metadata().unwrap();
    assert_eq!(meta["resource"], "https://api.test/mcp");
    assert_eq!(meta["authorization_servers"], json!(["https://sts.test"]));
    assert_eq!(meta["scopes_supported"], json!(["mcp.tools", "pages.read"]));
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));
    // A resource no issuer mints tokens for is a policy error (no token passthrough).
    let bad = json!({"issuers": [{"iss": "x", "audiences": ["other"], "jwks_uri": "https://x/k", "algorithms": ["EdDSA"]}],
                     "routes": [], "resource": {"identifier": "https://api.test/mcp", "metadata_url": "https://api.test/m",
                     "authorization_servers": ["x"]}});
    assert!(Engine::from_json(&bad.to_string())
        .unwrap_err()
        .to_string()
        .contains("resource.identifier: no issuer lists"));
}

/// `created`/`expires` are attacker-chosen: extreme values are refused, never an overflow.
#[test]
fn extreme_signature_times_are_refused_not_a_panic() {
    let e = engine("signature");
    for (created, expires) in
        [(i64::MIN, i64::MAX), (i64::MAX, i64::MIN), (i64::MIN, i64::MIN), (i64::MAX, i64::MAX)]
    {
        let d = signed(&e, &Sig { created, expires, ..Sig::new("x") }, None);
        assert_eq!(d.codes(), [ReasonCode::SignatureExpired], "{created} {expires}");
    }
}
