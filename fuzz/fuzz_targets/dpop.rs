//! The DPoP proof check (`dpop::check`) on structured requests: the `DPoP`
//! header is either fuzzed text or a proof built from fuzzed parts (header
//! `typ`/`alg`/`jwk`/`kid`, claims `jti`/`htm`/`htu`/`iat`/`ath`/`nonce`) and
//! really signed with a test key, so the fuzzer reaches every check after
//! the signature.
//!
//! Invariants: no panic; the check is deterministic; when it passes, the
//! proof key is the signer's key and the token's `cnf.jkt`, `htm` is the
//! request method, `htu` names this request's URL, `iat` is inside the
//! window, `ath` hashes the token, the nonce (when required) is current, and
//! the replay entry outlives the window.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::OnceLock;

use agentguard::b64;
use agentguard::dpop::{self, DpopPolicy};
use agentguard::mint::{self, SigningKey};
use agentguard::Request;
use agentguard_fuzz::{public, test_keys, thumbprint};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_767_225_600;
const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
const SECRET: &[u8] = b"fuzz nonce secret";

struct Signer {
    key: SigningKey,
    jwk: Value,
    private_jwk: Value,
    thumbprint: String,
}

fn signers() -> &'static [Signer; 2] {
    static S: OnceLock<[Signer; 2]> = OnceLock::new();
    S.get_or_init(|| {
        let keys = test_keys();
        let make = |name: &str| Signer {
            key: SigningKey::from_jwk(&keys[name]).unwrap(),
            jwk: public(&keys[name]),
            private_jwk: keys[name].clone(),
            thumbprint: thumbprint(&keys[name]),
        };
        [make("ed25519"), make("es256")]
    })
}

#[derive(Arbitrary, Debug)]
enum Text {
    Right,
    Missing,
    Other(String),
    Number(i64),
}

#[derive(Arbitrary, Debug)]
enum Htu {
    Right,
    Variant(u8),
    Missing,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Iat {
    Offset(i16),
    Seconds(i64),
    Float(f64),
    Missing,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum JwkChoice {
    Signer,
    Other,
    Private,
    Missing,
    Json(String),
}

#[derive(Arbitrary, Debug)]
struct Proof {
    signer: bool,
    typ: Text,
    alg: Text,
    jwk: JwkChoice,
    kid: Option<String>,
    jti: Text,
    htm: Text,
    htu: Htu,
    iat: Iat,
    ath: Text,
    nonce: Text,
    extra: Option<(String, String)>,
}

#[derive(Arbitrary, Debug)]
enum ProofHeader {
    Raw(String),
    Built(Box<Proof>),
    Two(Box<Proof>, String),
    None,
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    method_text: String,
    host: u8,
    path: u8,
    path_text: String,
    now_offset: i32,
    token: Option<Option<String>>,
    jkt: Text,
    nonce: bool,
    proof: ProofHeader,
}

fn text(choice: &Text, right: &str) -> Option<Value> {
    match choice {
        Text::Right => Some(right.into()),
        Text::Missing => None,
        Text::Other(s) => Some(s.as_str().into()),
        Text::Number(n) => Some((*n).into()),
    }
}

fn build(
    p: &Proof,
    request: &Request,
    token: Option<&str>,
    now: i64,
    max_age: i64,
) -> (String, Map<String, Value>, usize) {
    let s = &signers()[usize::from(p.signer)];
    let mut header = Map::new();
    let alg = s.key.alg().name();
    if let Some(v) = text(&p.typ, "dpop+jwt") {
        header.insert("typ".into(), v);
    }
    if let Some(v) = text(&p.alg, alg) {
        header.insert("alg".into(), v);
    }
    let jwk = match &p.jwk {
        JwkChoice::Signer => Some(s.jwk.clone()),
        JwkChoice::Other => Some(signers()[usize::from(!p.signer)].jwk.clone()),
        JwkChoice::Private => Some(s.private_jwk.clone()),
        JwkChoice::Missing => None,
        JwkChoice::Json(t) => Some(serde_json::from_str(t).unwrap_or(Value::String(t.clone()))),
    };
    if let Some(jwk) = jwk {
        header.insert("jwk".into(), jwk);
    }
    if let Some(kid) = &p.kid {
        header.insert("kid".into(), kid.as_str().into());
    }
    let mut claims = Map::new();
    if let Some(v) = text(&p.jti, "a-unique-id") {
        claims.insert("jti".into(), v);
    }
    if let Some(v) = text(&p.htm, &request.method) {
        claims.insert("htm".into(), v);
    }
    let url = format!("{}://{}{}", request.scheme, request.host, request.path);
    let htu: Option<Value> = match &p.htu {
        Htu::Right => Some(url.clone().into()),
        Htu::Variant(n) => Some(
            match n % 6 {
                0 => format!("{url}?q=1#frag"),
                1 => {
                    format!("{}://{}:443{}", request.scheme, request.host.to_ascii_uppercase(), request.path)
                }
                2 => {
                    format!("{}://{}/x/..{}", request.scheme.to_ascii_uppercase(), request.host, request.path)
                }
                3 => format!("{}://user@{}{}", request.scheme, request.host, request.path),
                4 => format!("{}://{}{}", request.scheme, request.host, request.path.replace('/', "//")),
                _ => format!("ftp://{}{}", request.host, request.path),
            }
            .into(),
        ),
        Htu::Missing => None,
        Htu::Other(s) => Some(s.as_str().into()),
    };
    if let Some(v) = htu {
        claims.insert("htu".into(), v);
    }
    let iat: Option<Value> = match &p.iat {
        Iat::Offset(o) => Some((now + i64::from(*o)).into()),
        Iat::Seconds(n) => Some((*n).into()),
        Iat::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        Iat::Missing => None,
        Iat::Text(t) => Some(t.as_str().into()),
    };
    if let Some(v) = iat {
        claims.insert("iat".into(), v);
    }
    let ath = token.map(|t| b64::encode(&Sha256::digest(t.as_bytes()))).unwrap_or_default();
    if let Some(v) = text(&p.ath, &ath) {
        claims.insert("ath".into(), v);
    }
    if let Some(v) =
        text(&p.nonce, &dpop::nonce(SECRET, now, agentguard::duration::Duration::from_secs(max_age as u64)))
    {
        claims.insert("nonce".into(), v);
    }
    if let Some((k, v)) = &p.extra {
        claims.insert(k.clone(), serde_json::from_str(v).unwrap_or(Value::String(v.clone())));
    }
    (mint::sign_with_header(&s.key, &header, &claims), claims, usize::from(p.signer))
}

fuzz_target!(|input: Input| {
    const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "PATCH", "get"];
    const HOSTS: [&str; 4] = ["api.example.com", "API.example.com:443", "", "127.0.0.1:8080"];
    const PATHS: [&str; 4] = ["/v1/contacts/42", "/a/../v1/x?y=1", "/", "/%7Euser/x/"];
    let method = METHODS.get(usize::from(input.method)).copied().unwrap_or(&input.method_text);
    let path = PATHS.get(usize::from(input.path)).copied().unwrap_or(&input.path_text);
    let host = HOSTS[usize::from(input.host) % HOSTS.len()];
    let now = NOW + i64::from(input.now_offset);
    let Ok(base) = Request::builder(method, path, now).host(host).build() else { return };
    let token: Option<String> = match &input.token {
        None => None,
        Some(None) => Some(TOKEN.to_owned()),
        Some(Some(t)) => Some(t.clone()),
    };
    let policy = DpopPolicy { nonce: input.nonce, ..DpopPolicy::default() };
    let max_age = policy.max_age.as_secs_i64();
    let mut built = None;
    let mut request = base.clone();
    match &input.proof {
        ProofHeader::Raw(s) => request.headers.push(("dpop".into(), s.clone().into())),
        ProofHeader::Built(p) | ProofHeader::Two(p, _) => {
            let (proof, claims, signer) = build(p, &base, token.as_deref(), now, max_age);
            request.headers.push(("dpop".into(), proof.into()));
            if let ProofHeader::Two(_, second) = &input.proof {
                request.headers.push(("dpop".into(), second.clone().into()));
            }
            built = Some((claims, signer));
        }
        ProofHeader::None => {}
    }
    let jkt_right = built.as_ref().map_or("", |(_, s)| signers()[*s].thumbprint.as_str()).to_owned();
    let jkt = match &input.jkt {
        Text::Right => Some(jkt_right.clone()),
        Text::Missing => None,
        Text::Other(s) => Some(s.clone()),
        Text::Number(n) => Some(n.to_string()),
    };
    let secret = input.nonce.then_some(SECRET);
    // Once with no remembered keys (ed25519-dalek, p256), then with the keys
    // remembered over the whole run, which by then verify by their tables
    // of multiples: the same outcome.
    static REMEMBERED: std::sync::OnceLock<dpop::ProofKeys> = std::sync::OnceLock::new();
    let remembered = REMEMBERED.get_or_init(dpop::ProofKeys::new);
    let fresh = dpop::ProofKeys::new();
    let result = dpop::check(&policy, &request, token.as_deref(), jkt.as_deref(), secret, &[], &fresh);
    let again = dpop::check(&policy, &request, token.as_deref(), jkt.as_deref(), secret, &[], remembered);
    assert_eq!(result, again, "the check is not deterministic, or a remembered key decides differently");

    let Ok(proof) = result else { return };
    // A proof passed: check every rule against what went into it.
    let (claims, signer) = built.expect("a fuzzed DPoP header passed without a real signature");
    assert_eq!(request.header_values("dpop").count(), 1);
    assert_eq!(proof.jkt, signers()[signer].thumbprint, "proof key is not the signer's");
    if token.is_some() {
        assert_eq!(jkt.as_deref(), Some(proof.jkt.as_str()), "proof key is not the token's cnf.jkt");
        let ath = b64::encode(&Sha256::digest(token.as_deref().unwrap().as_bytes()));
        assert_eq!(claims.get("ath").and_then(Value::as_str), Some(ath.as_str()));
    }
    assert_eq!(claims.get("htm").and_then(Value::as_str), Some(&*request.method));
    let htu = claims.get("htu").and_then(Value::as_str).unwrap();
    // No user info in the authority (`@` may appear in the path).
    let authority = htu.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or("")).unwrap_or("");
    assert!(!authority.contains('@') && htu.to_ascii_lowercase().starts_with("http"), "htu {htu}");
    let iat = claims.get("iat").and_then(Value::as_f64).expect("iat is a number").floor();
    assert!(
        iat >= (now - max_age) as f64 && iat <= (now + policy.clock_skew.as_secs_i64()) as f64,
        "iat {iat} now {now}"
    );
    assert!(proof.expires_at >= now + max_age, "replay entry forgotten before the window closes");
    let jti = claims.get("jti").and_then(Value::as_str).unwrap();
    assert!(!jti.is_empty() && jti.len() <= 256);
    if input.nonce {
        let window = agentguard::duration::Duration::from_secs(max_age as u64);
        let nonce = claims.get("nonce").and_then(Value::as_str).unwrap();
        assert!(
            nonce == dpop::nonce(SECRET, now, window) || nonce == dpop::nonce(SECRET, now - max_age, window)
        );
    }
});
