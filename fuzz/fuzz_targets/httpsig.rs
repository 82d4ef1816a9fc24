//! Web Bot Auth: an HTTP message signature (RFC 9421) as the request's only
//! credential, through `Engine::decide`, on structured requests.
//!
//! Each input builds one request (method, target, authority from short lists
//! or fuzzed text; optional `Signature-Agent` headers, quoted, as a
//! dictionary, naming the trusted operator or another, or fuzzed; extra
//! headers) and its `Signature-Input`: fuzzed text, or built from fuzzed
//! parts — label, covered components (derived ones, header fields, fuzzed
//! names, the `req` flag), `created`/`expires` around the engine's clock,
//! `keyid` (the trusted key's thumbprint, an untrusted key's, fuzzed), `alg`,
//! `nonce`, `tag`, other members before or after it. A built input is
//! really signed: the harness writes the RFC 9421 signature base from the
//! request the engine will see and signs it with the trusted key or an
//! untrusted one, optionally over a changed base, or with one signature bit
//! flipped (before base64, so no lenient decoding can undo it); `Signature`
//! is that, or fuzzed text. The request is decided twice on a fresh engine.
//!
//! Invariants, on top of `check_decision`: an allowed request had a built
//! `Signature-Input` signed by the trusted key over exactly the base the
//! harness wrote from the request, with the `web-bot-auth` tag, the trusted
//! key's thumbprint as `keyid`, `alg` absent or `ed25519`, no `req` flag,
//! `@authority` covered, `signature-agent` covered whenever the header is
//! sent (once, naming the trusted operator), `created`/`expires` inside the
//! policy's window (`max_age` 5 m, skew 30 s) and a nonce; it is allowed as
//! the trusted operator with that operator's scopes only, on the route those
//! scopes reach; the same signature is never allowed twice (its nonce is
//! single-use).
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::OnceLock;

use agentguard::keys::{parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, Outcome, Request};
use agentguard_fuzz::{check_decision, Text};
use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const NOW: i64 = 1_767_225_600;
const OPERATOR: &str = "https://crawler.test";
const TAG: &str = "web-bot-auth";
const MAX_AGE: i64 = 300;
const SKEW: i64 = 30;

struct Fixture {
    policy: String,
    trusted: SigningKey,
    trusted_kid: String,
    untrusted: SigningKey,
    untrusted_kid: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let trusted = SigningKey::from_random(Alg::EdDSA, &[31; 32]).unwrap();
        let untrusted = SigningKey::from_random(Alg::EdDSA, &[32; 32]).unwrap();
        let kid = |k: &SigningKey| parse_jwk(&k.public_jwk("x")).unwrap().unwrap().thumbprint;
        let policy = json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                         "jwks": {"keys": [untrusted.public_jwk("issuer")]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "pages", "methods": ["GET", "POST"], "path": "/pages/**", "scopes": ["pages.read"]},
                       {"id": "admin", "methods": ["*"], "path": "/admin/**", "scopes": ["admin"]}],
            "credentials": "signature",
            "signature_agents": {"directories": [{"operator": OPERATOR,
                                                  "keys": {"keys": [trusted.public_jwk("bot-1")]},
                                                  "scopes": ["pages.read"]}]},
            "cache": {"tokens": 64},
            "state": {"max_keys": 64}
        });
        Fixture {
            policy: policy.to_string(),
            trusted_kid: kid(&trusted),
            untrusted_kid: kid(&untrusted),
            trusted,
            untrusted,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum AgentHeader {
    Operator,
    Other,
    Dictionary { label: Text, operator: bool },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Choice {
    Trusted,
    Untrusted,
    Raw(String),
}

/// A built `Signature-Input`. Every field's zero value is the valid choice,
/// so the fuzzer starts from an allowed request and works away from it.
#[derive(Arbitrary, Debug)]
struct BuiltInput {
    label: Text,
    /// Leave out `@authority` / `signature-agent` (covered by default, the
    /// latter when the header is sent).
    without_authority: bool,
    without_agent: bool,
    /// More components, each with the `req` flag or not.
    components: Vec<(Text, bool)>,
    /// `created` is this many seconds after `NOW - 5`.
    created: i16,
    /// `expires` is this many seconds after `created + 60`.
    lifetime: i16,
    keyid: Choice,
    alg: Option<Text>,
    nonce: Nonce,
    tag: Tag,
    other_members: Option<(bool, String)>,
}

#[derive(Arbitrary, Debug)]
enum Nonce {
    Fresh,
    Absent,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Tag {
    WebBotAuth,
    Absent,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum SignatureHeader {
    Signed { by_untrusted: bool, changed_base: bool, flipped_bit: Option<u16>, label: Option<String> },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Credentials {
    Built(BuiltInput, SignatureHeader),
    Raw(String, String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: Text,
    target: Text,
    authority: Text,
    agents: Vec<AgentHeader>,
    headers: Vec<(Text, String)>,
    credentials: Credentials,
}

const COMPONENTS: &[&str] = &[
    "@authority",
    "signature-agent",
    "@method",
    "@path",
    "@query",
    "@scheme",
    "@target-uri",
    "content-type",
    "x-extra",
    "@request-target",
    "@status",
];

/// A component's value in the request, as RFC 9421 §2 defines it (`None`:
/// not in the request, so no base can be written).
fn component(request: &Request, name: &str) -> Option<String> {
    Some(match name {
        "@authority" => request.host.to_string(),
        "@method" => request.method.to_string(),
        "@path" => request.path.to_string(),
        "@query" => format!("?{}", request.query.as_deref().unwrap_or("")),
        "@scheme" => request.scheme.to_string(),
        "@target-uri" => format!(
            "{}://{}{}{}",
            request.scheme,
            request.host,
            request.path,
            request.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
        ),
        name if name.starts_with('@') => return None,
        name => {
            let values: Vec<&str> = request.header_values(name).map(str::trim).collect();
            if values.is_empty() {
                return None;
            }
            values.join(", ")
        }
    })
}

/// What the built `Signature-Input` and the harness's signature say, for
/// the invariants.
struct Built {
    signed_by_trusted: bool,
    intact: bool,
    keyid_trusted: bool,
    alg_ok: bool,
    tag_ok: bool,
    req_flag: bool,
    covers_authority: bool,
    covers_agent: bool,
    created: i64,
    expires: i64,
    nonce: bool,
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let method = input.method.get(&["GET", "POST", "HEAD", "DELETE"]);
    let target = input.target.get(&["/pages/1", "/pages/a?b=c", "/admin/x", "/", "/pages/../admin/x"]);
    let authority = input.authority.get(&["api.test", "API.test", "api.test:8443", "other.test"]);
    let mut builder = Request::builder(method, target, NOW).host(authority);
    let mut agent_headers = Vec::new();
    for a in input.agents.iter().take(3) {
        let value = match a {
            AgentHeader::Operator => format!("\"{OPERATOR}\""),
            AgentHeader::Other => "\"https://other.test\"".to_owned(),
            AgentHeader::Dictionary { label, operator } => {
                let who = if *operator { OPERATOR } else { "https://other.test" };
                format!("{}=\"{who}\"", label.get(&["sig1", "sig2"]))
            }
            AgentHeader::Raw(s) => s.clone(),
        };
        builder = builder.header("signature-agent", &value);
        agent_headers.push(value);
    }
    for (name, value) in input.headers.iter().take(4) {
        builder = builder.header(name.get(&["content-type", "x-extra", "accept"]), value);
    }

    // The headers are added after the rest of the request is known: the
    // signature base is written from the request the engine will see.
    let Ok(unsigned) = builder.clone().build() else { return };
    let (signature_input, signature, built) = match &input.credentials {
        Credentials::Raw(i, s) => (i.clone(), s.clone(), None),
        Credentials::Built(b, sig) => {
            let label = b.label.get(&["sig1", "sig2"]);
            let mut names = Vec::new();
            if !b.without_authority {
                names.push(("@authority", false));
            }
            if !b.without_agent && !agent_headers.is_empty() {
                names.push(("signature-agent", false));
            }
            for (name, req) in b.components.iter().take(8) {
                names.push((name.get(COMPONENTS), *req));
            }
            let list: Vec<String> = names
                .iter()
                .map(|(name, req)| if *req { format!("\"{name}\";req") } else { format!("\"{name}\"") })
                .collect();
            let created = NOW - 5 + i64::from(b.created);
            let expires = created + 60 + i64::from(b.lifetime);
            let keyid = match &b.keyid {
                Choice::Trusted => f.trusted_kid.as_str(),
                Choice::Untrusted => f.untrusted_kid.as_str(),
                Choice::Raw(s) => s.as_str(),
            };
            let mut params =
                format!("({});created={created};expires={expires};keyid=\"{keyid}\"", list.join(" "));
            let alg = b.alg.as_ref().map(|a| a.get(&["ed25519", "rsa-pss-sha512", "ecdsa-p256-sha256"]));
            if let Some(alg) = alg {
                params.push_str(&format!(";alg=\"{alg}\""));
            }
            match &b.nonce {
                Nonce::Fresh => params.push_str(";nonce=\"n-1\""),
                Nonce::Absent => {}
                Nonce::Raw(n) => params.push_str(&format!(";nonce=\"{n}\"")),
            }
            let tag = match &b.tag {
                Tag::WebBotAuth => Some(TAG),
                Tag::Absent => None,
                Tag::Other(t) => Some(t.as_str()),
            };
            if let Some(t) = tag {
                params.push_str(&format!(";tag=\"{t}\""));
            }
            let member = format!("{label}={params}");
            let signature_input = match &b.other_members {
                None => member,
                Some((true, other)) => format!("{other}, {member}"),
                Some((false, other)) => format!("{member}, {other}"),
            };
            let mut base = String::new();
            for (name, req) in &names {
                let value = component(&unsigned, name).unwrap_or_default();
                let id = if *req { format!("\"{name}\";req") } else { format!("\"{name}\"") };
                base.push_str(&format!("{id}: {value}\n"));
            }
            base.push_str(&format!("\"@signature-params\": {params}"));
            let (signature, intact, by_trusted) = match sig {
                SignatureHeader::Raw(s) => (s.clone(), false, false),
                SignatureHeader::Signed { by_untrusted, changed_base, flipped_bit, label: sig_label } => {
                    if *changed_base {
                        base.push(' ');
                    }
                    let by_trusted = !*by_untrusted;
                    let key = if by_trusted { &f.trusted } else { &f.untrusted };
                    let mut bytes = mint::sign_bytes(key, base.as_bytes());
                    if let Some(bit) = flipped_bit {
                        agentguard_fuzz::flip_bit(&mut bytes, *bit);
                    }
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    let l = sig_label.as_deref().unwrap_or(label);
                    (format!("{l}=:{b64}:"), !*changed_base && flipped_bit.is_none(), by_trusted)
                }
            };
            let built = Built {
                signed_by_trusted: by_trusted,
                intact,
                keyid_trusted: keyid == f.trusted_kid,
                alg_ok: alg.is_none_or(|a| a == "ed25519"),
                tag_ok: tag == Some(TAG),
                req_flag: names.iter().any(|(_, req)| *req),
                covers_authority: names.iter().any(|(n, _)| *n == "@authority"),
                covers_agent: names.iter().any(|(n, _)| *n == "signature-agent"),
                created,
                expires,
                nonce: !matches!(b.nonce, Nonce::Absent),
            };
            (signature_input, signature, Some(built))
        }
    };
    let Ok(request) =
        builder.header("signature-input", &signature_input).header("signature", &signature).build()
    else {
        return;
    };

    let engine = Engine::from_json(&f.policy).unwrap();
    let first = engine.decide(&request);
    let second = engine.decide(&request);
    for d in [&first, &second] {
        check_decision(d);
        if d.decision != Outcome::Allow {
            continue;
        }
        let b = built.as_ref().expect("allowed with a fuzzed Signature-Input and Signature");
        assert!(b.signed_by_trusted && b.intact, "allowed without an intact signature by the trusted key");
        assert!(b.keyid_trusted, "allowed with a keyid that is not the trusted key's");
        assert!(
            b.alg_ok && b.tag_ok && !b.req_flag,
            "allowed with alg, tag or a req flag the policy refuses"
        );
        assert!(b.covers_authority, "allowed without @authority covered");
        if !agent_headers.is_empty() {
            assert!(b.covers_agent, "allowed with Signature-Agent sent but not covered");
            assert_eq!(
                agent_headers.len(),
                1,
                "allowed with {} Signature-Agent headers",
                agent_headers.len()
            );
            let named = agent_headers[0].trim();
            let label = signature_input.split('=').next().unwrap_or("");
            assert!(
                named == format!("\"{OPERATOR}\"") || named.contains(&format!("\"{OPERATOR}\"")),
                "allowed with Signature-Agent `{named}` (label `{label}`), not the trusted operator"
            );
        }
        assert!(b.created <= NOW + SKEW, "allowed with created {} s in the future", b.created - NOW);
        assert!(NOW < b.expires + SKEW, "allowed though expired at {}", b.expires);
        assert!(b.expires - b.created <= MAX_AGE, "allowed with a lifetime over max_age");
        assert!(NOW - b.created <= MAX_AGE + SKEW, "allowed though created too long ago");
        assert!(b.nonce, "allowed without a nonce (require_nonce is on)");
        let id = d.identity.as_ref().unwrap();
        assert_eq!(id.agent, OPERATOR);
        assert_eq!(id.scopes, ["pages.read"]);
        assert_eq!(d.route.as_deref(), Some("pages"));
    }
    assert!(!(first.is_allowed() && second.is_allowed()), "the same signature (nonce) was allowed twice");
});
