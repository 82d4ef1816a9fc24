//! `decide()` end to end on structured random requests against the example
//! policy (`examples/policy.json`), a short sequence per input on a fresh
//! engine so rate limits, the breaker, the token cache and the replay caches
//! are in play yet every crash reproduces.
//!
//! Each request has a fuzzed method, path, host, source IP, time, extra
//! headers and body digest, and an `Authorization` that is missing, fuzzed
//! text, the example token, or a token minted from fuzzed claims (issuer,
//! audience, subject, `act` chain, scopes, times, `cnf`) and signed either
//! by the example issuer's key or by a key the policy does not trust; plus,
//! optionally, a DPoP proof and an approval token bound (or not) to the action.
//!
//! The policy's cache and state capacities are lowered to 64 entries so that
//! eviction runs too and an engine is cheap to build (everything else is the
//! example policy as shipped).
//!
//! Invariants, on top of `check_decision` (four outcomes, statuses, allow ⇒
//! verified identity and no reasons, refusal ⇒ response with the same status):
//! an allowed request carried a token signed with the trusted issuer key,
//! came from an allowed network, has a token whose scopes cover the route,
//! is not from a revoked agent, on the high-risk route carried an approval
//! signed by the approval key, and on the transfer route carried either such
//! an approval or a JSON body whose amount is at most 1000 in EUR or USD (the
//! route's `approval_when`, judged by plain serde_json); the JSON API decides as the Rust
//! API does (same outcome and status, and same reason codes whenever `now`
//! can be written in JSON), and so does the JS package's line form
//! (`RequestParts::from_lines`) for every request that fits it.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::OnceLock;

use agentguard::b64;
use agentguard::mint::{self, SigningKey};
use agentguard::request::HeaderValue;
use agentguard::{api, Engine, Outcome, Request, RequestInput, RequestParts};
use agentguard_fuzz::{
    check_decision, example_approver_key, example_issuer_key, test_keys, thumbprint, EXAMPLE_POLICY,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_767_261_600;
const AGENT: &str = "spiffe://prod.example.com/agents/crm-assistant";
const REVOKED: &str = "spiffe://prod.example.com/agents/legacy-importer";

struct Keys {
    issuer: SigningKey,
    approver: SigningKey,
    untrusted: SigningKey,
    holder: SigningKey,
    holder_jkt: String,
    holder_jwk: Value,
    policy: String,
    example_token: String,
}

/// `input` in the line form, as `requestLines` in js/src/agentguard.js
/// writes it (mirrored here on purpose: the harness checks the core's
/// reader against the writer's rules); `None` when a field does not fit.
fn lines_of(input: &RequestInput) -> Option<String> {
    let line = |v: &str| (!v.contains('\n')).then(|| v.to_owned());
    let optional = |v: &Option<String>| match v {
        None => Some(String::new()),
        Some(v) if v.is_empty() => None,
        Some(v) => line(v),
    };
    let mut out = [
        line(&input.method)?,
        line(&input.scheme)?,
        line(&input.host)?,
        line(&input.path)?,
        optional(&input.source_ip)?,
        optional(&input.client_cert_sha256)?,
        optional(&input.body_sha256)?,
    ]
    .join("\n");
    for (name, value) in &input.headers {
        let values = match value {
            HeaderValue::One(v) => std::slice::from_ref(v),
            HeaderValue::Many(vs) => vs.as_slice(),
        };
        for v in values {
            out.push('\n');
            out.push_str(&line(name)?);
            out.push('\n');
            out.push_str(&line(v)?);
        }
    }
    Some(out)
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let test = test_keys();
        let mut policy: Value = serde_json::from_str(EXAMPLE_POLICY).unwrap();
        policy["cache"] = json!({"tokens": 64});
        policy["state"] = json!({"max_keys": 64});
        policy["dpop"] = json!({"replay_cache": 64});
        policy["approval"]["replay_cache"] = json!(64);
        policy["log"] = json!({"stats_agents": 64});
        Keys {
            issuer: example_issuer_key(),
            approver: example_approver_key(),
            untrusted: SigningKey::from_jwk(&test["ed25519"]).unwrap(),
            // Ed25519 for the DPoP holder: P-256 signing is slow under AddressSanitizer.
            holder: SigningKey::from_jwk(&test["approver"]).unwrap(),
            holder_jkt: thumbprint(&test["approver"]),
            holder_jwk: agentguard_fuzz::public(&test["approver"]),
            policy: policy.to_string(),
            example_token: include_str!("../../examples/token.jwt").trim().to_owned(),
        }
    })
}

#[derive(Arbitrary, Debug, Clone)]
enum Text {
    Right,
    Missing,
    Other(String),
}

impl Text {
    fn value(&self, right: &str) -> Option<Value> {
        match self {
            Text::Right => Some(right.into()),
            Text::Missing => None,
            Text::Other(s) => Some(s.as_str().into()),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Signer {
    Issuer,
    Untrusted,
    Approver,
}

#[derive(Arbitrary, Debug, Clone)]
enum Act {
    Agent,
    Revoked,
    Chain(u8),
    Other(String),
    Missing,
}

#[derive(Arbitrary, Debug, Clone)]
enum Time {
    Offset(i16),
    Raw(f64),
    Missing,
}

#[derive(Arbitrary, Debug, Clone)]
enum Cnf {
    Holder,
    Jkt(String),
    X5t(String),
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
struct TokenSpec {
    signer: Signer,
    kid: Text,
    typ: Text,
    iss: Text,
    aud: Text,
    aud_array: bool,
    sub: Text,
    client_id: Text,
    act: Act,
    scopes: u8,
    scope_text: Option<String>,
    iat: Time,
    exp: Time,
    jti: Text,
    cnf: Option<Cnf>,
    extra: Option<(String, String)>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Auth {
    None,
    Raw(String),
    Example,
    Bearer(Box<TokenSpec>),
    Dpop(Box<TokenSpec>),
    Previous(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum Proof {
    Right,
    Replay,
    WrongMethod,
    Stale(i16),
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum Approval {
    Right,
    Replay,
    Digest(String),
    Agent(String),
    Expired,
    Untrusted,
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum Ip {
    Inside(u8, u8, u8),
    Inside6(u16),
    Mapped(u8),
    Outside(u32),
    Text(String),
    None,
}

#[derive(Arbitrary, Debug, Clone)]
enum Now {
    Offset(i16),
    Raw(f64),
}

#[derive(Arbitrary, Debug, Clone)]
struct Req {
    method: u8,
    method_text: String,
    path: u8,
    path_suffix: String,
    host: u8,
    host_text: String,
    ip: Ip,
    now: Now,
    auth: Auth,
    proof: Option<Proof>,
    approval: Option<Approval>,
    body: Option<[u8; 32]>,
    body_text: Option<Body>,
    headers: Vec<(String, String)>,
}

/// The body text given to the core (the transfer route's `approval_when` reads it).
#[derive(Arbitrary, Debug, Clone)]
enum Body {
    Transfer { amount: i32, cents: bool, currency: u8, extra: Option<(String, String)> },
    Raw(String),
}

impl Body {
    fn text(&self) -> String {
        match self {
            Body::Transfer { amount, cents, currency, extra } => {
                let amount = if *cents { format!("{amount}.5") } else { amount.to_string() };
                let currency =
                    ["EUR", "USD", "BTC", ""].get(usize::from(*currency)).copied().unwrap_or("eur");
                let extra = extra
                    .as_ref()
                    .map(|(k, v)| format!(", {}: {v}", Value::from(k.as_str())))
                    .unwrap_or_default();
                format!(r#"{{"amount": {amount}, "currency": "{currency}"{extra}}}"#)
            }
            Body::Raw(s) => s.clone(),
        }
    }
}

/// Whether the example policy's transfer conditions let `body` through
/// without a human (amount a number ≤ 1000, currency EUR or USD), judged
/// with serde_json on its own.
fn transfer_needs_no_approval(body: Option<&str>) -> bool {
    let Some(v) = body.and_then(|b| serde_json::from_str::<Value>(b).ok()) else { return false };
    v.pointer("/amount").and_then(Value::as_f64).is_some_and(|a| a <= 1000.0)
        && matches!(v.pointer("/currency").and_then(Value::as_str), Some("EUR" | "USD"))
}

#[derive(Arbitrary, Debug)]
struct Input {
    requests: Vec<Req>,
    json_api: bool,
}

/// What the harness knows about a minted token.
#[derive(Clone)]
struct Minted {
    text: String,
    trusted: bool,
    scopes: Vec<&'static str>,
    agent_revoked: bool,
}

const SCOPES: [&str; 3] = ["crm.read", "mail.draft", "payments.write"];

/// Whether `text` is an address inside the example policy's networks
/// (`10.0.0.0/8`, `2001:db8::/32`), parsed the way the core parses it.
fn in_allowed_networks(text: &str) -> bool {
    use std::net::IpAddr;
    let text = text.trim();
    let text = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.octets()[0] == 10,
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets()[0] == 10,
            None => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
        },
        Err(_) => false,
    }
}

fn time(t: &Time, now: i64) -> Option<Value> {
    match t {
        Time::Offset(o) => Some(now.saturating_add(i64::from(*o)).into()),
        Time::Raw(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        Time::Missing => None,
    }
}

fn mint_token(spec: &TokenSpec, now: i64) -> Minted {
    let k = keys();
    let mut c = Map::new();
    let mut put = |name: &str, v: Option<Value>| {
        if let Some(v) = v {
            c.insert(name.into(), v);
        }
    };
    // Extra claims first: the structured claims below win over them.
    if let Some((name, v)) = &spec.extra {
        put(name, Some(serde_json::from_str(v).unwrap_or(Value::String(v.clone()))));
    }
    put("iss", spec.iss.value("https://sts.example.com"));
    let aud = spec.aud.value("https://api.example.com");
    put("aud", if spec.aud_array { aud.map(|a| json!(["https://other.example.com", a])) } else { aud });
    put("sub", spec.sub.value("user:alice@example.com"));
    put("client_id", spec.client_id.value("crm-assistant"));
    let mut revoked = false;
    let act = match &spec.act {
        Act::Agent => Some(json!({"sub": AGENT})),
        Act::Revoked => {
            revoked = true;
            Some(json!({"sub": REVOKED}))
        }
        Act::Chain(n) => {
            let mut v = json!({"sub": "spiffe://prod.example.com/agents/root"});
            for i in 0..(n % 12) {
                v = json!({"sub": format!("spiffe://prod.example.com/agents/a{i}"), "act": v});
            }
            Some(v)
        }
        Act::Other(s) => Some(serde_json::from_str(s).unwrap_or_else(|_| json!({"sub": s}))),
        Act::Missing => None,
    };
    put("act", act);
    let mut scopes: Vec<&'static str> =
        SCOPES.iter().enumerate().filter(|(i, _)| spec.scopes & (1 << i) != 0).map(|(_, s)| *s).collect();
    let mut scope = scopes.join(" ");
    // `scp` scopes count too: with an extra `scp` claim the harness no longer knows the scopes.
    if spec.extra.as_ref().is_some_and(|(name, _)| name == "scp") {
        scopes.clear();
    }
    if let Some(extra) = &spec.scope_text {
        scope = format!("{scope} {extra}");
        scopes.clear(); // unknown: the invariant below does not rely on it
    }
    put("scope", Some(scope.into()));
    put("iat", time(&spec.iat, now));
    put("exp", time(&spec.exp, now.saturating_add(300)));
    put("jti", spec.jti.value("token-id"));
    let cnf = spec.cnf.as_ref().map(|cnf| match cnf {
        Cnf::Holder => json!({"jkt": k.holder_jkt}),
        Cnf::Jkt(s) => json!({"jkt": s}),
        Cnf::X5t(s) => json!({"x5t#S256": s}),
        Cnf::Raw(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
    });
    put("cnf", cnf);
    let mut header = Map::new();
    let key = match spec.signer {
        Signer::Issuer => &k.issuer,
        Signer::Untrusted => &k.untrusted,
        Signer::Approver => &k.approver,
    };
    header.insert("alg".into(), key.alg().name().into());
    if let Some(v) = spec.typ.value("at+jwt") {
        header.insert("typ".into(), v);
    }
    if let Some(v) = spec.kid.value("sts-2026-01") {
        header.insert("kid".into(), v);
    }
    Minted {
        text: mint::sign_with_header(key, &header, &c),
        trusted: matches!(spec.signer, Signer::Issuer),
        scopes,
        agent_revoked: revoked,
    }
}

fn approval_token(key: &SigningKey, digest: &str, agent: &str, now: i64, jti: &str) -> String {
    let claims = json!({"iss": "https://approvals.example.com", "aud": "https://api.example.com",
        "sub": "user:cfo@example.com", "agent": agent, "action_digest": digest,
        "iat": now - 10, "exp": now + 290, "jti": jti});
    mint::sign(key, Some("approvals-2026-01"), "approval+jwt", claims.as_object().unwrap())
}

fn dpop_proof(method: &str, url: &str, token: &str, iat: i64, jti: &str) -> String {
    let k = keys();
    let mut header = Map::new();
    header.insert("typ".into(), "dpop+jwt".into());
    header.insert("alg".into(), "EdDSA".into());
    header.insert("jwk".into(), k.holder_jwk.clone());
    let claims = json!({"jti": jti, "htm": method, "htu": url, "iat": iat,
        "ath": b64::encode(&Sha256::digest(token.as_bytes()))});
    mint::sign_with_header(&k.holder, &header, claims.as_object().unwrap())
}

fuzz_target!(|input: Input| {
    const METHODS: [&str; 4] = ["GET", "POST", "get", "DELETE"];
    const PATHS: [&str; 8] = [
        "/v1/contacts",
        "/v1/contacts/42",
        "/v1/drafts",
        "/v1/invoices/981/pay",
        "/v1/contacts/7/../../invoices/1/pay",
        "/",
        "/v1/contacts/%34%32/notes",
        "/v1/transfers",
    ];
    const HOSTS: [&str; 3] = ["api.example.com", "API.EXAMPLE.COM:443", ""];
    let k = keys();
    let engine = Engine::from_json(&k.policy).unwrap();
    let json_engine = input.json_api.then(|| Engine::from_json(&k.policy).unwrap());
    let lines_engine = input.json_api.then(|| Engine::from_json(&k.policy).unwrap());
    let mut tokens: Vec<Minted> = Vec::new();
    let mut last_proof: Option<String> = None;
    let mut last_approval: Option<(String, bool)> = None;

    for (n, r) in input.requests.iter().take(6).enumerate() {
        let now = match r.now {
            Now::Offset(o) => NOW as f64 + f64::from(o),
            Now::Raw(f) => f,
        };
        let now_s = now as i64;
        let method = METHODS.get(usize::from(r.method)).copied().unwrap_or(&r.method_text).to_owned();
        let mut path = PATHS[usize::from(r.path) % PATHS.len()].to_owned();
        if r.path >= 128 {
            path.push_str(&r.path_suffix);
        }
        let host = HOSTS.get(usize::from(r.host)).copied().unwrap_or(&r.host_text).to_owned();
        let source_ip = match &r.ip {
            Ip::Inside(a, b, c) => Some(format!("10.{a}.{b}.{c}")),
            Ip::Inside6(x) => Some(format!("2001:db8::{x:x}")),
            Ip::Mapped(x) => Some(format!("::ffff:10.0.0.{x}")),
            Ip::Outside(x) => Some(std::net::Ipv4Addr::from(*x).to_string()),
            Ip::Text(t) => Some(t.clone()),
            Ip::None => None,
        };
        let inside = source_ip.as_deref().is_some_and(in_allowed_networks);
        let mut input_req = RequestInput {
            method: method.clone(),
            host: host.clone(),
            path: path.clone(),
            source_ip,
            body_sha256: r.body.map(|b| b64::encode(&b)),
            body: r.body_text.as_ref().map(Body::text),
            now,
            ..RequestInput::default()
        };
        for (name, value) in r.headers.iter().take(4) {
            input_req.headers.insert(name.clone(), HeaderValue::One(value.clone()));
        }
        // The normalised request, for what proofs and approvals bind to.
        let normal = Request::from_input(&input_req).ok().map(Request::into_owned);

        let token: Option<Minted> = match &r.auth {
            Auth::None => None,
            Auth::Raw(s) => {
                // Fuzzed text is trusted only if it carries a token the harness signed.
                let trusted =
                    s.contains(&k.example_token) || tokens.iter().any(|t| t.trusted && s.contains(&t.text));
                Some(Minted { text: s.clone(), trusted, scopes: vec![], agent_revoked: false })
            }
            Auth::Example => Some(Minted {
                text: k.example_token.clone(),
                trusted: true,
                scopes: vec!["crm.read", "mail.draft"],
                agent_revoked: false,
            }),
            Auth::Bearer(spec) | Auth::Dpop(spec) => Some(mint_token(spec, now_s)),
            Auth::Previous(i) => tokens.get(usize::from(*i) % tokens.len().max(1)).cloned(),
        };
        if let Some(t) = &token {
            let scheme = if matches!(r.auth, Auth::Dpop(_)) { "DPoP" } else { "Bearer" };
            let value =
                if matches!(r.auth, Auth::Raw(_)) { t.text.clone() } else { format!("{scheme} {}", t.text) };
            input_req.headers.insert("authorization".into(), HeaderValue::One(value));
            tokens.push(t.clone());
        }
        if let (Some(proof), Some(t), Some(req)) = (&r.proof, &token, &normal) {
            let url = format!("{}://{}{}", req.scheme, req.host, req.path);
            let jti = format!("proof-{n}");
            let text = match proof {
                Proof::Right => dpop_proof(&req.method, &url, &t.text, req.now(), &jti),
                Proof::Replay => last_proof.clone().unwrap_or_default(),
                Proof::WrongMethod => dpop_proof("PUT", &url, &t.text, req.now(), &jti),
                Proof::Stale(o) => {
                    dpop_proof(&req.method, &url, &t.text, req.now() + i64::from(*o) * 10, &jti)
                }
                Proof::Raw(s) => s.clone(),
            };
            last_proof = Some(text.clone());
            input_req.headers.insert("dpop".into(), HeaderValue::One(text));
        }
        let mut approval_trusted = false;
        if let (Some(approval), Some(req)) = (&r.approval, &normal) {
            let digest = agentguard::approval::action_digest(req);
            let jti = format!("approval-{n}");
            let text = match approval {
                Approval::Right => {
                    approval_trusted = true;
                    approval_token(&k.approver, &digest, AGENT, req.now(), &jti)
                }
                Approval::Replay => {
                    let (text, trusted) = last_approval.clone().unwrap_or_default();
                    approval_trusted = trusted;
                    text
                }
                Approval::Digest(d) => {
                    approval_trusted = true;
                    approval_token(&k.approver, d, AGENT, req.now(), &jti)
                }
                Approval::Agent(a) => {
                    approval_trusted = true;
                    approval_token(&k.approver, &digest, a, req.now(), &jti)
                }
                Approval::Expired => {
                    approval_trusted = true;
                    approval_token(&k.approver, &digest, AGENT, req.now() - 4000, &jti)
                }
                Approval::Untrusted => approval_token(&k.untrusted, &digest, AGENT, req.now(), &jti),
                Approval::Raw(s) => {
                    approval_trusted =
                        last_approval.as_ref().is_some_and(|(t, trusted)| *trusted && s.contains(t.as_str()));
                    s.clone()
                }
            };
            last_approval = Some((text.clone(), approval_trusted));
            input_req.headers.insert("x-agent-approval".into(), HeaderValue::One(text));
        }

        let d = engine.decide_input(&input_req);
        check_decision(&d);
        if d.decision == Outcome::Allow {
            let t = token.as_ref().expect("allowed without a token");
            assert!(t.trusted, "allowed a token the trusted issuer did not sign: {input_req:?}");
            assert!(inside, "allowed from outside the allowed networks: {:?}", input_req.source_ip);
            assert!(!t.agent_revoked, "allowed a revoked agent");
            let id = d.identity.as_ref().unwrap();
            let route = d.route.as_deref().unwrap();
            let needed = match route {
                "list-contacts" | "read-contact" => "crm.read",
                "draft-email" => "mail.draft",
                "pay-invoice" | "transfer" => "payments.write",
                other => panic!("allowed on unknown route {other}"),
            };
            assert!(id.scopes.iter().any(|s| s == needed), "allowed without scope {needed}: {:?}", id.scopes);
            if !t.scopes.is_empty() {
                assert!(t.scopes.contains(&needed));
            }
            if route == "pay-invoice" {
                assert!(approval_trusted, "a high-risk route allowed without a real approval");
            }
            if route == "transfer" && !approval_trusted {
                let body = input_req.body.as_deref();
                assert!(transfer_needs_no_approval(body), "a transfer allowed without approval: {body:?}");
            }
        }
        if let Some(json_engine) = &json_engine {
            let text = serde_json::to_string(&input_req).unwrap();
            let other = api::decide(json_engine, &text);
            check_decision(&other);
            assert_eq!((other.decision, other.status), (d.decision, d.status), "JSON API disagrees: {text}");
            // JSON has no NaN or infinity: such a `now` fails to parse, which may be
            // reported differently from the Rust API's field check.
            if input_req.now.is_finite() {
                assert_eq!(other.codes(), d.codes(), "JSON API disagrees: {text}");
            }
        }
        // The JS package's line form decides as the Rust API does, whenever
        // the request fits it (else the package sends JSON).
        if let (Some(lines_engine), Some(text)) = (&lines_engine, lines_of(&input_req)) {
            let other = match RequestParts::from_lines(&text, input_req.body.as_deref(), input_req.now) {
                Ok(parts) => lines_engine.decide_parts(&parts),
                Err(e) => panic!("the line form did not read back ({e}): {text:?}"),
            };
            check_decision(&other);
            assert_eq!(
                (other.decision, other.status),
                (d.decision, d.status),
                "line form disagrees: {text:?}"
            );
            assert_eq!(other.codes(), d.codes(), "line form disagrees: {text:?}");
        }
    }
});
