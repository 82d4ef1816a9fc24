//! Envoy's view of a request → the core's [`RequestParts`] (borrowing
//! Envoy's header bytes), and the core's
//! decision → the header edits Envoy makes. Pure functions over plain data,
//! so they are tested natively; the host calls live in `envoy.rs`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::policy::{Binding, Policy};
use std::borrow::Cow;

use crate::request::RequestParts;

/// Maps the request headers Envoy hands the filter (pseudo-headers
/// included), the downstream address and the peer-certificate digest into
/// the core's request.
///
/// - `:method`, `:scheme`, `:authority` (else `host`) and `:path` become the
///   request line; other pseudo-headers (`:protocol`) are not headers.
/// - Repeated headers stay separate values, as the core needs to see them
///   (two `Authorization` headers are refused, not merged). Envoy joins
///   repeated `Authorization` lines into one value with `,` (RFC 9110 §5.3
///   allows a proxy that); a comma can never occur in a `Bearer` or `DPoP`
///   credential, so the value is split back into its lines.
/// - Header bytes that are not UTF-8 are replaced (U+FFFD): such a value can
///   never be a valid credential, and the core then says so.
pub fn request_parts<'a>(
    headers: &'a [(String, Vec<u8>)],
    source_address: Option<&[u8]>,
    peer_cert_sha256: Option<&[u8]>,
    body_sha256: Option<String>,
    now: f64,
) -> RequestParts<'a> {
    let mut parts = RequestParts {
        scheme: "https".into(),
        now,
        headers: Vec::with_capacity(headers.len()),
        ..RequestParts::default()
    };
    let mut host_header = None;
    for (name, value) in headers {
        let value = text(value);
        match name.as_str() {
            ":method" => parts.method = value,
            ":scheme" => parts.scheme = value,
            ":authority" => parts.host = value,
            ":path" => parts.path = value,
            n if n.starts_with(':') => {}
            "host" => host_header = Some(value),
            "authorization" if value.contains(',') => {
                let lines: Vec<Cow<'a, str>> = match value {
                    Cow::Borrowed(v) => v.split(',').map(|l| Cow::Borrowed(l.trim_matches(' '))).collect(),
                    Cow::Owned(v) => {
                        v.split(',').map(|l| Cow::Owned(l.trim_matches(' ').to_owned())).collect()
                    }
                };
                parts.headers.extend(lines.into_iter().map(|l| (Cow::Borrowed(name.as_str()), l)));
            }
            n => parts.headers.push((Cow::Borrowed(n), value)),
        }
    }
    if parts.host.is_empty() {
        parts.host = host_header.unwrap_or_default();
    }
    parts.source_ip = source_address.and_then(|a| ip_of(&String::from_utf8_lossy(a))).map(Cow::Owned);
    parts.body_sha256 = body_sha256.map(Cow::Owned);
    parts.client_cert_sha256 = peer_cert_sha256
        .map(|d| String::from_utf8_lossy(d).trim().to_owned())
        .filter(|d| !d.is_empty())
        .map(Cow::Owned);
    parts
}

/// Header bytes as text, borrowed when they are UTF-8 (the usual case).
/// `str::from_utf8` checks ASCII a word at a time; `String::from_utf8_lossy`
/// goes a byte at a time even when there is nothing to replace, which was
/// ~7% of a cached decision with a ~0.6 KiB token (V8 profile).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The IP part of Envoy's `source.address` (`10.1.2.3:5678`, `[2001:db8::1]:5678`);
/// `None` for a pipe or anything else that is not an IP address.
pub fn ip_of(address: &str) -> Option<String> {
    let host = if let Some(rest) = address.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if address.matches(':').count() == 1 {
        address.split(':').next().unwrap_or("")
    } else {
        address
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// SHA-256 of a request body.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// A digest as hex, the form the core's `body_sha256` takes.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The body's SHA-256 as the client declared it in `Content-Digest` (RFC 9530:
/// `sha-256=:<base64>:`, possibly next to other algorithms); `None` when the
/// header is absent or declares no `sha-256`. A malformed `sha-256` member,
/// or two different ones, is an error.
pub fn declared_body_sha256(headers: &[(String, Vec<u8>)]) -> Result<Option<[u8; 32]>, String> {
    let mut found: Option<[u8; 32]> = None;
    for (_, value) in headers.iter().filter(|(name, _)| name == "content-digest") {
        let value = String::from_utf8_lossy(value);
        for member in value.split(',') {
            let Some(encoded) = member.trim().strip_prefix("sha-256=") else { continue };
            let digest = encoded
                .strip_prefix(':')
                .and_then(|e| e.strip_suffix(':'))
                .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or("`Content-Digest` has a malformed `sha-256` member: expected `sha-256=:<base64 of 32 bytes>:`")?;
            if found.is_some_and(|f| f != digest) {
                return Err("`Content-Digest` declares two different `sha-256` digests".into());
            }
            found = Some(digest);
        }
    }
    Ok(found)
}

/// Names of the inbound headers that must go before forwarding: every one
/// that starts with the identity-header prefix (a client must not be able to
/// pose as a verified agent), reading `_` as `-` (CGI-style origins see
/// `x_agentguard_agent` as `x-agentguard-agent`), each name once.
pub fn headers_to_strip<'a>(headers: &'a [(String, Vec<u8>)], prefix: &str) -> Vec<&'a str> {
    let dash = |b: &u8| if *b == b'_' { b'-' } else { *b };
    let starts = |name: &str| {
        name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(n, p)| dash(&n) == dash(&p))
    };
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in headers {
        if starts(name) && !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names
}

/// Which connection properties the filter must read before deciding: each
/// `get_property` is a host call, so one the policy can never use is not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// `source.address`: the policy (or one of its routes) restricts networks.
    /// Otherwise the address is only read for a decision-log event.
    pub source_address: bool,
    /// The client certificate's SHA-256: an issuer requires mTLS-bound
    /// tokens. Otherwise it is read only for a token that may carry
    /// `cnf.x5t#S256` ([`may_be_certificate_bound`]).
    pub peer_certificate: bool,
}

impl Needs {
    /// What `policy` needs.
    pub fn new(policy: &Policy) -> Needs {
        Needs {
            source_address: policy.network.is_some() || policy.routes.iter().any(|r| r.network.is_some()),
            peer_certificate: policy.issuers.iter().any(|i| i.binding == Binding::Mtls),
        }
    }
}

/// Whether a token in `Authorization` may be bound to a client certificate
/// (RFC 8705 `cnf.x5t#S256`, which the core enforces whatever the issuer's
/// `binding`), so the filter must read the connection's certificate digest.
/// Conservative: `false` only when every credential is a JWS whose payload
/// decodes and contains neither `x5t` nor a `\` (a JSON member name can spell
/// `x5t#S256` only literally or with an escape). Anything else — no payload,
/// bad base64url — reads the certificate, and the core decides as before.
/// `cached` answers first for a token the engine has verified
/// ([`crate::Engine::cached_token_wants_certificate`]): exact, and cheaper
/// than decoding the payload on every request.
pub fn may_be_certificate_bound(
    headers: &[(String, Vec<u8>)],
    cached: impl Fn(&str) -> Option<bool>,
) -> bool {
    let lines =
        headers.iter().filter(|(n, _)| n == "authorization").flat_map(|(_, v)| v.split(|b| *b == b','));
    for line in lines {
        let credential = line.split(|b| *b == b' ').rfind(|w| !w.is_empty()).unwrap_or_default();
        match std::str::from_utf8(credential).ok().and_then(&cached) {
            Some(true) => return true,
            Some(false) => continue,
            None => {}
        }
        let Some(payload) = credential.split(|b| *b == b'.').nth(1) else { return true };
        let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else { return true };
        if json.contains(&b'\\') || json.windows(3).any(|w| w == b"x5t") {
            return true;
        }
    }
    false
}

/// The first value of query parameter `name` in a raw `:path`, percent-decoded
/// (`+` is a space, as in forms); `None` when absent or not UTF-8 once decoded.
pub fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name).then(|| percent_decode(value)).flatten()
    })
}

pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `(name, value)` list for `send_http_response`, from the core's response headers.
pub fn response_headers(headers: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::reason::ReasonCode;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn pseudo_headers_become_the_request_line() {
        let headers = h(&[
            (":authority", "api.test"),
            (":path", "/v1/contacts/42?x=1"),
            (":method", "GET"),
            (":scheme", "http"),
            (":protocol", "websocket"),
            ("x-request-id", "abc"),
            ("accept", "a"),
            ("accept", "b"),
            ("accept", "c"),
        ]);
        let input = request_parts(&headers, Some(b"10.1.2.3:5555"), None, None, 12.5);
        assert_eq!(
            (&*input.method, &*input.scheme, &*input.host, &*input.path),
            ("GET", "http", "api.test", "/v1/contacts/42?x=1")
        );
        assert_eq!(input.now, 12.5);
        assert_eq!(input.source_ip.as_deref(), Some("10.1.2.3"));
        let values = |name: &str| {
            input.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| &**v).collect::<Vec<_>>()
        };
        assert_eq!(values("x-request-id"), ["abc"]);
        assert_eq!(values("accept"), ["a", "b", "c"]);
        assert!(!input.headers.iter().any(|(k, _)| k.starts_with(':')));
        let request = crate::Request::from_parts(&input).unwrap();
        assert_eq!(request.header_values("accept").collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn header_text_is_borrowed_unless_bytes_need_replacing() {
        let headers = vec![
            ("accept".to_owned(), b"text/plain".to_vec()),
            ("x-bytes".to_owned(), b"a\xffb".to_vec()),
            ("x-utf8".to_owned(), "caf\u{e9}".as_bytes().to_vec()),
        ];
        let input = request_parts(&headers, None, None, None, 0.0);
        assert!(matches!(input.headers[0].1, Cow::Borrowed("text/plain")));
        assert_eq!(input.headers[1].1, "a\u{fffd}b");
        assert!(matches!(input.headers[2].1, Cow::Borrowed("caf\u{e9}")));
    }

    #[test]
    fn host_header_is_the_fallback_authority() {
        let headers = h(&[(":method", "GET"), (":path", "/"), ("host", "h.test")]);
        let input = request_parts(&headers, None, None, None, 0.0);
        assert_eq!(input.host, "h.test");
        assert!(!input.headers.iter().any(|(n, _)| n == "host"));
    }

    #[test]
    fn source_addresses_lose_their_port() {
        assert_eq!(ip_of("127.0.0.1:4000").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip_of("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip_of("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip_of("/tmp/envoy.sock"), None);
        assert_eq!(ip_of("@abstract"), None);
        assert_eq!(ip_of(""), None);
    }

    #[test]
    fn the_certificate_digest_is_passed_through() {
        let digest = "ab".repeat(32);
        let input = request_parts(&[], None, Some(digest.as_bytes()), None, 0.0);
        assert_eq!(input.client_cert_sha256.as_deref(), Some(digest.as_str()));
        assert_eq!(request_parts(&[], None, Some(b""), None, 0.0).client_cert_sha256, None);
    }

    #[test]
    fn bodies_are_hashed_as_hex() {
        assert_eq!(
            hex(&body_digest(b"test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let input = request_parts(&[], None, None, Some(hex(&body_digest(b""))), 0.0);
        assert_eq!(
            input.body_sha256.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn content_digest_declares_the_body_sha256() {
        // RFC 9530 §B.1: the body `{"hello": "world"}`.
        let example = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
        let declared = declared_body_sha256(&h(&[("content-digest", example)])).unwrap().unwrap();
        assert_eq!(declared, body_digest(b"{\"hello\": \"world\"}"));
        let several = format!("sha-512=:YWJj:, {example}");
        assert_eq!(declared_body_sha256(&h(&[("content-digest", &several)])).unwrap(), Some(declared));
        assert_eq!(declared_body_sha256(&h(&[("content-digest", "sha-512=:YWJj:")])).unwrap(), None);
        assert_eq!(declared_body_sha256(&h(&[("x-other", example)])).unwrap(), None);
        for bad in ["sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=", "sha-256=:YWJj:", "sha-256=:!!:"]
        {
            assert!(declared_body_sha256(&h(&[("content-digest", bad)])).is_err(), "{bad}");
        }
        let other = format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        let twice = h(&[("content-digest", example), ("content-digest", &other)]);
        assert!(declared_body_sha256(&twice).unwrap_err().contains("two different"));
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        let path = "/_agentguard/suspensions/lift?x=1&agent=spiffe%3A%2F%2Ftest%2Fagents%2Fbot&agent=second";
        assert_eq!(query_param(path, "agent").as_deref(), Some("spiffe://test/agents/bot"));
        assert_eq!(query_param("/p?a+b=c+d", "a b").as_deref(), Some("c d"));
        assert_eq!(query_param("/p?agent", "agent").as_deref(), Some(""));
        assert_eq!(query_param("/p", "agent"), None);
        assert_eq!(query_param("/p?agent=%zz", "agent"), None);
        assert_eq!(query_param("/p?agent=%ff", "agent"), None, "not UTF-8");
        assert_eq!(query_param("/p?agent=%4", "agent"), None);
    }

    #[test]
    fn only_prefixed_headers_are_stripped_once_each() {
        let headers = h(&[
            ("x-agentguard-subject", "user:mallory"),
            ("x-agentguard-subject", "again"),
            ("x-agentguard-scopes", "admin"),
            ("x-agent", "kept"),
            // Underscores: one name to a CGI-style origin (`HTTP_X_AGENTGUARD_ACTORS`).
            ("x_agentguard_actors", "spiffe://admin-bot"),
            ("x-agentguard_agent", "mallory"),
            ("x_agentguardian", "kept"),
        ]);
        assert_eq!(
            headers_to_strip(&headers, "x-agentguard-"),
            ["x-agentguard-subject", "x-agentguard-scopes", "x_agentguard_actors", "x-agentguard_agent"]
        );
    }

    #[test]
    fn only_tokens_that_may_be_certificate_bound_need_the_certificate() {
        let jwt = |payload: &str| {
            let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
            format!("{}.{}.c2ln", b64(r#"{"alg":"ES256"}"#), b64(payload))
        };
        let plain = jwt(r#"{"sub":"alice","cnf":{"jkt":"abc"}}"#);
        let bound = jwt(r#"{"sub":"alice","cnf":{"x5t#S256":"abc"}}"#);
        let escaped = jwt(r#"{"sub":"alice","cnf":{"\u00785t#S256":"abc"}}"#);
        let auth = |v: &str| h(&[(":path", "/"), ("authorization", v)]);
        let may = |headers: &[(String, Vec<u8>)]| may_be_certificate_bound(headers, |_| None);
        assert!(!may(&h(&[(":path", "/")])), "no credential");
        assert!(!may(&auth(&format!("Bearer {plain}"))));
        assert!(!may(&auth(&format!("DPoP {plain}"))));
        assert!(may(&auth(&format!("Bearer {bound}"))));
        assert!(may(&auth(&format!("Bearer {escaped}"))), "escaped member name");
        assert!(may(&auth(&format!("Bearer {plain},Bearer {bound}"))), "second line");
        assert!(may(&auth("Bearer opaque")), "not a JWS");
        assert!(may(&auth("Bearer a.!!.c")), "bad base64url");
        assert!(may(&auth(&format!("Bearer {}", plain.replacen('.', ".=", 1)))));
        // The engine's answer for a token it verified comes first, per credential.
        let known = |answer: Option<bool>, token: &str| {
            let token = token.to_owned();
            move |t: &str| if t == token { answer } else { None }
        };
        assert!(!may_be_certificate_bound(&auth("Bearer opaque"), known(Some(false), "opaque")));
        assert!(may_be_certificate_bound(&auth(&format!("Bearer {plain}")), known(Some(true), &plain)));
        assert!(may_be_certificate_bound(
            &auth(&format!("Bearer opaque,Bearer {bound}")),
            known(Some(false), "opaque")
        ));
        assert!(!may_be_certificate_bound(
            &auth(&format!("Bearer opaque,Bearer {plain}")),
            known(Some(false), "opaque")
        ));
    }

    #[test]
    fn properties_are_read_when_the_policy_can_use_them() {
        let policy = |extra: &str| {
            Policy::from_json(&format!(
                r#"{{"issuers": [{{"iss": "https://sts", "audiences": ["a"], "algorithms": ["EdDSA"],
                    "jwks": {{"keys": [{{"kty": "OKP", "crv": "Ed25519", "kid": "k",
                                       "x": "4VxtOFbJsthZFwHZEML1JpzrdFdOzSHQfUikZB_YPU4"}}]}}{extra}}}],
                    "routes": [{{"id": "r", "methods": ["GET"], "path": "/**"}}]}}"#
            ))
            .unwrap()
        };
        assert_eq!(Needs::new(&policy("")), Needs { source_address: false, peer_certificate: false });
        assert!(Needs::new(&policy(r#", "binding": "mtls""#)).peer_certificate);
        let mut networked = policy("");
        networked.routes[0].network = policy_network();
        assert!(Needs::new(&networked).source_address);
        let mut everywhere = policy("");
        everywhere.network = policy_network();
        assert!(Needs::new(&everywhere).source_address);
    }

    fn policy_network() -> Option<crate::policy::NetworkPolicy> {
        serde_json::from_str(r#"{"allow": ["10.0.0.0/8"]}"#).unwrap()
    }

    #[test]
    fn repeated_authorization_headers_reach_the_core_as_two() {
        let policy = r#"{"issuers": [{"iss": "https://sts", "audiences": ["a"], "algorithms": ["EdDSA"],
            "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
                               "x": "4VxtOFbJsthZFwHZEML1JpzrdFdOzSHQfUikZB_YPU4"}]}}],
            "routes": [{"id": "r", "methods": ["GET"], "path": "/**"}]}"#;
        let engine = Engine::from_json(policy).unwrap();
        let headers = h(&[
            (":method", "GET"),
            (":path", "/x"),
            (":authority", "h"),
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        let d = engine.decide_parts(&request_parts(&headers, None, None, None, 1_700_000_000.0));
        assert_eq!(d.codes(), [ReasonCode::CredentialMalformed]);
        // What Envoy actually hands over: the two lines joined with a comma.
        let joined = h(&[
            (":method", "GET"),
            (":path", "/x"),
            (":authority", "h"),
            ("authorization", "Bearer a.b.c,Bearer d.e.f"),
        ]);
        let input = request_parts(&joined, None, None, None, 1_700_000_000.0);
        let lines: Vec<&str> =
            input.headers.iter().filter(|(n, _)| n == "authorization").map(|(_, v)| &**v).collect();
        assert_eq!(lines, ["Bearer a.b.c", "Bearer d.e.f"]);
        assert_eq!(engine.decide_parts(&input).codes(), [ReasonCode::CredentialMalformed]);
        let bad_utf8 = vec![
            (":method".to_owned(), b"GET".to_vec()),
            (":path".to_owned(), b"/x".to_vec()),
            ("authorization".to_owned(), b"Bearer \xff".to_vec()),
        ];
        let d = engine.decide_parts(&request_parts(&bad_utf8, None, None, None, 1_700_000_000.0));
        assert_eq!(d.codes(), [ReasonCode::TokenMalformed]);
    }
}
