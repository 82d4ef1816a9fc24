//! A fetched Web Bot Auth key directory: `Engine::set_directory_keys` on a
//! structured response, then requests signed by each test key.
//!
//! The engine starts with a good directory (key A, signed by A for the
//! operator's authority). Each input then hands it one response: a body that
//! is fuzzed text or a key set from A, B, C and fuzzed JSON values; a
//! `Signature-Input`/`Signature` pair that is fuzzed text or built from
//! members, each really signed by A, B or C (for the right authority or
//! another, with fuzzed `keyid`, `alg`, `tag`, `created`/`expires`, covered
//! components, optionally a flipped bit); a `Content-Digest` that is right,
//! wrong, fuzzed or absent. Then one request signed by each key is decided.
//!
//! Invariants: no panic; **a refused directory keeps the keys in force** (A
//! is still allowed, B and C are not); an accepted one trusts a key only if
//! an intact member signed by that key named it by its thumbprint, with the
//! directory tag, `alg` absent or `ed25519`, `"@authority";req` covered for
//! the directory's own authority, `created`/`expires` around the clock (30 s
//! skew), and, when `content-digest` is covered, the right digest of the
//! body; and only if the body (when built) lists it. Fuzzed signature text
//! never makes a directory acceptable.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::OnceLock;

use agentguard::directory::{DirectoryResponse, TAG};
use agentguard::keys::{parse_jwk, Alg};
use agentguard::mint::{self, SigningKey};
use agentguard::{Engine, Request};
use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_767_225_600;
const SKEW: i64 = 30;
const OPERATOR: &str = "https://crawler.test";
const AUTHORITY: &str = "crawler.test";

struct Fixture {
    policy: String,
    keys: [SigningKey; 3],
    kids: [String; 3],
    good: (String, String, String),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One directory signature member: `(Signature-Input member, Signature member)`.
fn member(label: &str, params: &str, base: &str, key: &SigningKey, flip: Option<u16>) -> (String, String) {
    let mut sig = mint::sign_bytes(key, base.as_bytes());
    if let Some(bit) = flip {
        agentguard_fuzz::flip_bit(&mut sig, bit);
    }
    (format!("{label}={params}"), format!("{label}=:{}:", b64(&sig)))
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = [1u8, 2, 3].map(|s| SigningKey::from_random(Alg::EdDSA, &[s; 32]).unwrap());
        let kids = [0, 1, 2].map(|i: usize| parse_jwk(&keys[i].public_jwk("x")).unwrap().unwrap().thumbprint);
        let policy = json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                         "jwks": {"keys": [keys[2].public_jwk("issuer")]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "pages", "methods": ["GET"], "path": "/pages/**", "scopes": ["pages.read"]}],
            "credentials": "signature",
            "signature_agents": {"directories": [{"operator": OPERATOR,
                "directory_uri": "https://crawler.test/.well-known/http-message-signatures-directory",
                "scopes": ["pages.read"]}]},
            "state": {"max_keys": 64}
        });
        let text = json!({"keys": [keys[0].public_jwk("a")]}).to_string();
        let params = format!(
            "(\"@authority\";req);created={};expires={};keyid=\"{}\";alg=\"ed25519\";tag=\"{TAG}\"",
            NOW - 60,
            NOW + 3600,
            kids[0]
        );
        let base = format!("\"@authority\";req: {AUTHORITY}\n\"@signature-params\": {params}");
        let (input, signature) = member("binding0", &params, &base, &keys[0], None);
        Fixture { policy: policy.to_string(), keys, kids, good: (text, input, signature) }
    })
}

#[derive(Arbitrary, Debug)]
enum KeyEntry {
    Test(u8),
    Raw(String),
}

/// The body: by default (every field zero) the key set `[B]`.
#[derive(Arbitrary, Debug)]
enum Body {
    Keys { without_b: bool, with_a: bool, with_c: bool, more: Vec<KeyEntry> },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Keyid {
    Signer,
    Test(u8),
    Raw(String),
}

/// One signature member. Every field's zero value is the valid choice (a
/// signature by B for B), so the fuzzer starts from an accepted directory.
#[derive(Arbitrary, Debug)]
struct Member {
    /// 0: B, 1: C, 2: A.
    signer: u8,
    keyid: Keyid,
    wrong_authority: bool,
    authority_without_req: bool,
    content_digest: bool,
    other_component: Option<String>,
    /// `created` is this many seconds after `NOW - 60`.
    created: i32,
    /// `expires` is this many seconds after `created + 3600`.
    lifetime: i32,
    alg: Option<bool>,
    other_tag: bool,
    flip: Option<u16>,
    signed_params_differ: bool,
}

#[derive(Arbitrary, Debug)]
enum Signatures {
    Built { first: Member, more: Vec<Member> },
    Raw(String, String),
    Absent,
}

#[derive(Arbitrary, Debug)]
enum ContentDigest {
    Absent,
    Right { sha512: bool },
    Wrong,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    body: Body,
    signatures: Signatures,
    content_digest: ContentDigest,
}

/// A member's verdict as the invariants see it: would it vouch for its
/// signer's key (given the body's digest header)?
struct Vouch {
    signer: usize,
    valid: bool,
}

/// A request to `/pages/1` signed by test key `i` (nonce `n`).
fn signed_request(f: &Fixture, i: usize, n: &str) -> Request<'static> {
    let params = format!(
        "(\"@authority\" \"signature-agent\");created={};expires={};keyid=\"{}\";alg=\"ed25519\";nonce=\"{n}\";tag=\"web-bot-auth\"",
        NOW - 5,
        NOW + 55,
        f.kids[i]
    );
    let base = format!(
        "\"@authority\": api.test\n\"signature-agent\": \"{OPERATOR}\"\n\"@signature-params\": {params}"
    );
    let (input, signature) = member("sig1", &params, &base, &f.keys[i], None);
    Request::builder("GET", "/pages/1", NOW)
        .host("api.test")
        .header("signature-agent", &format!("\"{OPERATOR}\""))
        .header("signature-input", &input)
        .header("signature", &signature)
        .build()
        .unwrap()
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let engine = Engine::from_json(&f.policy).unwrap();
    let (text, si, sig) = &f.good;
    let good =
        DirectoryResponse { text, signature_input: Some(si), signature: Some(sig), content_digest: None };
    engine.set_directory_keys(OPERATOR, &good, NOW).unwrap();

    // The body.
    let mut listed = [false; 3];
    let text = match &input.body {
        Body::Raw(s) => s.clone(),
        Body::Keys { without_b, with_a, with_c, more } => {
            let mut keys = Vec::new();
            for (i, on) in [(0, *with_a), (1, !*without_b), (2, *with_c)] {
                if on {
                    keys.push(f.keys[i].public_jwk(&format!("k{i}")));
                }
            }
            for e in more.iter().take(4) {
                match e {
                    KeyEntry::Test(i) => {
                        let i = usize::from(*i) % 3;
                        keys.push(f.keys[i].public_jwk(&format!("k{i}")));
                    }
                    KeyEntry::Raw(s) => {
                        keys.push(serde_json::from_str(s).unwrap_or(Value::String(s.clone())))
                    }
                }
            }
            // Listed: any entry with the key's public point (a fuzzed entry may have it too).
            for (i, key) in f.keys.iter().enumerate() {
                let x = key.public_jwk("x")["x"].clone();
                listed[i] = keys.iter().any(|k| k.get("x") == Some(&x));
            }
            json!({ "keys": keys }).to_string()
        }
    };
    let built_body = matches!(input.body, Body::Keys { .. });
    let sha256 = format!("sha-256=:{}:", b64(&Sha256::digest(text.as_bytes())));
    let (digest, digest_right) = match &input.content_digest {
        ContentDigest::Right { sha512: false } => (Some(sha256), true),
        ContentDigest::Right { sha512: true } => {
            (Some(format!("sha-512=:{}:", b64(&sha2::Sha512::digest(text.as_bytes())))), true)
        }
        ContentDigest::Wrong => (Some(format!("sha-256=:{}:", b64(&Sha256::digest(b"other")))), false),
        ContentDigest::Raw(s) => (Some(s.clone()), false),
        ContentDigest::Absent => (None, false),
    };

    // The signatures.
    let mut vouches = Vec::new();
    let (si, sig) = match &input.signatures {
        Signatures::Absent => (None, None),
        Signatures::Raw(a, b) => (Some(a.clone()), Some(b.clone())),
        Signatures::Built { first, more } => {
            let (mut inputs, mut sigs) = (Vec::new(), Vec::new());
            for (n, m) in std::iter::once(first).chain(more.iter().take(3)).enumerate() {
                let signer = (usize::from(m.signer) + 1) % 3;
                let keyid = match &m.keyid {
                    Keyid::Signer => f.kids[signer].clone(),
                    Keyid::Test(i) => f.kids[usize::from(*i) % 3].clone(),
                    Keyid::Raw(s) => s.clone(),
                };
                let mut components =
                    vec![if m.authority_without_req { "\"@authority\"" } else { "\"@authority\";req" }];
                if m.content_digest {
                    components.push("\"content-digest\"");
                }
                if let Some(other) = &m.other_component {
                    components.push(other);
                }
                let created = NOW - 60 + i64::from(m.created);
                let expires = created + 3600 + i64::from(m.lifetime);
                let mut params = format!(
                    "({});created={created};expires={expires};keyid=\"{keyid}\"",
                    components.join(" ")
                );
                match m.alg {
                    Some(true) => params.push_str(";alg=\"ed25519\""),
                    Some(false) => params.push_str(";alg=\"rsa-pss-sha512\""),
                    None => {}
                }
                params.push_str(&format!(";tag=\"{}\"", if m.other_tag { "web-bot-auth" } else { TAG }));
                let authority = if m.wrong_authority { "evil.test" } else { AUTHORITY };
                let mut base = String::new();
                for c in &components {
                    let value = match *c {
                        "\"@authority\";req" | "\"@authority\"" => authority.to_owned(),
                        "\"content-digest\"" => digest.clone().unwrap_or_default(),
                        _ => String::new(),
                    };
                    base.push_str(&format!("{c}: {value}\n"));
                }
                let signed_params =
                    if m.signed_params_differ { format!("{params};x") } else { params.clone() };
                base.push_str(&format!("\"@signature-params\": {signed_params}"));
                let (i, s) = member(&format!("binding{n}"), &params, &base, &f.keys[signer], m.flip);
                inputs.push(i);
                sigs.push(s);
                let in_window = created <= NOW + SKEW && NOW < expires + SKEW;
                vouches.push(Vouch {
                    signer,
                    valid: keyid == f.kids[signer]
                        && !m.wrong_authority
                        && !m.authority_without_req
                        && !m.other_tag
                        && m.alg != Some(false)
                        && in_window
                        && m.flip.is_none()
                        && !m.signed_params_differ
                        && (!m.content_digest || digest_right),
                });
            }
            (Some(inputs.join(", ")), Some(sigs.join(", ")))
        }
    };
    let response = DirectoryResponse {
        text: &text,
        signature_input: si.as_deref(),
        signature: sig.as_deref(),
        content_digest: digest.as_deref(),
    };
    let result = engine.set_directory_keys(OPERATOR, &response, NOW);

    let allowed: Vec<bool> =
        (0..3).map(|i| engine.decide(&signed_request(f, i, &format!("n{i}"))).is_allowed()).collect();
    match result {
        Err(e) => {
            assert!(!e.is_empty());
            assert_eq!(allowed, [true, false, false], "a refused directory ({e}) changed the keys in force");
        }
        Ok(_) => {
            assert!(
                matches!(input.signatures, Signatures::Built { .. }),
                "a directory with fuzzed or no signatures was accepted"
            );
            assert!(allowed.iter().any(|a| *a), "an accepted directory trusts no key");
            for (i, a) in allowed.iter().enumerate() {
                if !a {
                    continue;
                }
                assert!(
                    vouches.iter().any(|v| v.signer == i && v.valid),
                    "key {i} trusted without a valid directory signature of its own"
                );
                if built_body {
                    assert!(listed[i], "key {i} trusted but not in the directory");
                }
            }
        }
    }
});
