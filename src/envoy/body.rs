//! Which request bodies the filter reads before deciding, and how it reads them.
//!
//! The engine says what a request's route needs ([`crate::Engine::body_use`], the
//! one source of truth, matched on the core's normalised method and path):
//!
//! - [`BodyUse::Digest`] (a `high`/`critical` route): the approval's action
//!   digest covers the body's SHA-256. Unless the request declares it in
//!   `Content-Digest` (checked against the body later, before it goes
//!   upstream), the filter holds the headers, buffers the body and hashes it.
//! - [`BodyUse::Text`] (a route with `approval_when`): the conditions read
//!   the JSON body itself, so the body is always read, `Content-Digest` or
//!   not (a declared digest must then match what was read). The core gets the
//!   text when it is at most [`MAX_BODY_BYTES`] of UTF-8; otherwise it gets
//!   only the digest, and then requires an approval (fail closed), still bound
//!   to the whole body.
//! - [`BodyUse::None`]: decided on the headers; the body is never buffered.
//!
//! Envoy buffers the whole body (up to its per-request buffer limit; beyond
//! it Envoy answers 413) and forwards it unchanged once the request is
//! allowed. The filter reads Envoy's buffer in chunks of [`CHUNK`] bytes and
//! keeps at most [`MAX_BODY_BYTES`] + one chunk of it in the VM, whatever
//! the body's size.

use sha2::{Digest, Sha256};

use crate::engine::BodyUse;
use crate::limits::MAX_BODY_BYTES;

/// How much of Envoy's body buffer one host call copies into the VM.
pub const CHUNK: usize = 64 * 1024;

/// What the filter does at a request's headers when more (a body) follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Decide now; the body, if any, streams upstream untouched (or, with a
    /// declared `Content-Digest`, is checked against it before it does).
    Decide,
    /// Hold the headers, read the whole body, then decide. `text`: keep the
    /// body's text for the core (up to [`MAX_BODY_BYTES`]).
    Read { text: bool },
}

/// The plan for a request with a body: `declared`, whether it declared the
/// body's SHA-256 in `Content-Digest`.
pub fn plan(body_use: BodyUse, declared: bool) -> Plan {
    match body_use {
        BodyUse::None => Plan::Decide,
        // The declared digest is enough for the action digest.
        BodyUse::Digest if declared => Plan::Decide,
        BodyUse::Digest => Plan::Read { text: false },
        // The conditions need the values themselves.
        BodyUse::Text => Plan::Read { text: true },
    }
}

/// A body read from Envoy's buffer, chunk by chunk.
#[derive(Debug)]
pub struct BodyReader {
    hasher: Sha256,
    /// The body so far, while it may still be given to the core as text.
    kept: Option<Vec<u8>>,
    len: usize,
}

/// What was read: the SHA-256 (`None` for an empty body, which binds like
/// no body) and the text for the core, if it was kept and fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBody {
    pub digest: Option<[u8; 32]>,
    pub text: Option<String>,
}

impl BodyReader {
    /// `keep_text`: keep the body (up to [`MAX_BODY_BYTES`]) to hand it to the core.
    pub fn new(keep_text: bool) -> BodyReader {
        BodyReader { hasher: Sha256::new(), kept: keep_text.then(Vec::new), len: 0 }
    }

    /// Adds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len = self.len.saturating_add(chunk.len());
        if self.len > MAX_BODY_BYTES {
            // Too large for the conditions: only the digest goes to the core.
            self.kept = None;
        } else if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(chunk);
        }
    }

    /// Bytes read so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The digest, and the text when it was kept, fits and is UTF-8.
    pub fn finish(self) -> ReadBody {
        if self.len == 0 {
            // Like no body at all: no digest, nothing for the conditions (they then need a human).
            return ReadBody { digest: None, text: None };
        }
        let digest: [u8; 32] = self.hasher.finalize().into();
        let text = self.kept.and_then(|kept| String::from_utf8(kept).ok());
        ReadBody { digest: Some(digest), text }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use crate::engine::Engine;
    use crate::envoy::mapping::body_digest;
    use crate::request::{Request, RequestInput};

    const KEYS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
                                      "x": "3xBdjTlen6YEqELHPR3AhJwPG5XsWGa8_t1p4YSg5og"}]}"#;

    fn compiled(routes: &str) -> Engine {
        let text = format!(
            r#"{{"issuers": [{{"iss": "https://sts", "audiences": ["a"], "algorithms": ["EdDSA"], "jwks": {KEYS}}}],
                "routes": {routes},
                "approval": {{"issuer": "https://approvals", "audiences": ["a"], "algorithms": ["EdDSA"],
                              "endpoint": "https://approvals/x", "jwks": {KEYS}}}}}"#
        );
        Engine::from_json(&text).unwrap()
    }

    /// What the filter does with a body sent to `method path` (`Decide` for a request the core refuses).
    fn plan_for(engine: &Engine, method: &str, path: &str, declared: bool) -> Plan {
        let input = RequestInput {
            method: method.into(),
            path: path.into(),
            host: "h".into(),
            ..RequestInput::default()
        };
        match Request::from_input(&input) {
            Ok(request) => plan(engine.body_use(&request), declared),
            Err(_) => Plan::Decide,
        }
    }

    #[test]
    fn bodies_are_read_for_high_risk_routes_and_body_conditions_only() {
        let c = compiled(
            r#"[{"id": "read", "methods": ["GET"], "path": "/v1/**"},
                {"id": "pay", "methods": ["POST"], "path": "/v1/invoices/{id}/pay", "risk": "high"},
                {"id": "transfer", "methods": ["POST"], "path": "/v1/transfers",
                 "approval_when": [{"body": "/amount", "gt": 1000}]},
                {"id": "wipe", "methods": ["*"], "path": "/admin/**", "risk": "critical"},
                {"id": "post", "methods": ["POST"], "path": "/v1/**"}]"#,
        );
        let digest = Plan::Read { text: false };
        let text = Plan::Read { text: true };
        assert_eq!(plan_for(&c, "POST", "/v1/invoices/7/pay", false), digest);
        assert_eq!(plan_for(&c, "post", "/v1/invoices/7/pay?x=1", false), digest, "the core's normalisation");
        assert_eq!(plan_for(&c, "POST", "/v1/invoices/7/./pay", false), digest);
        assert_eq!(
            plan_for(&c, "POST", "/v1/x/../invoices/8/pay", false),
            digest,
            "dot segments cannot dodge it"
        );
        assert_eq!(plan_for(&c, "PUT", "/admin/x", false), digest);
        assert_eq!(
            plan_for(&c, "POST", "/v1/invoices/7/pay", true),
            Plan::Decide,
            "a declared digest is enough"
        );
        assert_eq!(plan_for(&c, "POST", "/v1/transfers", false), text);
        assert_eq!(
            plan_for(&c, "POST", "/v1/transfers", true),
            text,
            "conditions need the values, declared or not"
        );
        assert_eq!(plan_for(&c, "POST", "/v1/./transfers?y=2", false), text);
        assert_eq!(plan_for(&c, "POST", "/v1/drafts", false), Plan::Decide);
        assert_eq!(
            plan_for(&c, "GET", "/v1/transfers", false),
            Plan::Decide,
            "the first matching route wins"
        );
        assert_eq!(plan_for(&c, "POST", "no-slash", false), Plan::Decide, "refused on its headers anyway");
    }

    #[test]
    fn a_policy_without_such_routes_never_reads_bodies() {
        let c = compiled(r#"[{"id": "all", "methods": ["*"], "path": "/**"}]"#);
        assert!(!c.reads_bodies());
        assert_eq!(plan_for(&c, "POST", "/anything", false), Plan::Decide);
        let c = compiled(
            r#"[{"id": "t", "methods": ["POST"], "path": "/t", "approval_when": [{"body": "/a", "eq": 1}]}]"#,
        );
        assert!(c.reads_bodies(), "body conditions alone read bodies");
    }

    /// Reads `body` in chunks of `size`.
    fn read(body: &[u8], size: usize, keep_text: bool) -> ReadBody {
        let mut r = BodyReader::new(keep_text);
        for chunk in body.chunks(size) {
            r.update(chunk);
        }
        assert_eq!(r.len(), body.len());
        r.finish()
    }

    #[test]
    fn the_text_is_kept_up_to_the_limit_and_the_digest_covers_everything() {
        let small = br#"{"amount": 250, "currency": "EUR"}"#;
        for size in [1, 7, CHUNK] {
            let got = read(small, size, true);
            assert_eq!(got.digest, Some(body_digest(small)));
            assert_eq!(got.text.as_deref().map(str::as_bytes), Some(&small[..]));
        }
        assert_eq!(read(small, 5, false), ReadBody { digest: Some(body_digest(small)), text: None });

        let at_limit = vec![b'x'; MAX_BODY_BYTES];
        let got = read(&at_limit, 1000, true);
        assert_eq!(got.text.map(|t| t.len()), Some(MAX_BODY_BYTES), "exactly the limit is kept");
        let over = vec![b'x'; MAX_BODY_BYTES + 1];
        for size in [1000, CHUNK, MAX_BODY_BYTES + 1] {
            let got = read(&over, size, true);
            assert_eq!(got.text, None, "one byte over: only the digest");
            assert_eq!(got.digest, Some(body_digest(&over)), "of the whole body");
        }
        let large = vec![b'y'; 5 * CHUNK + 3];
        assert_eq!(read(&large, CHUNK, true).digest, Some(body_digest(&large)));
    }

    #[test]
    fn bodies_the_core_cannot_read_as_text_give_only_their_digest() {
        let binary = [0x7b, 0xff, 0xfe, 0x7d];
        assert_eq!(read(&binary, 2, true), ReadBody { digest: Some(body_digest(&binary)), text: None });
        // A multi-byte character split across chunks is still text.
        let euro = "{\"currency\": \"€\"}".as_bytes();
        assert_eq!(read(euro, 1, true).text.as_deref(), std::str::from_utf8(euro).ok());
        assert_eq!(read(b"", 1, true), ReadBody { digest: None, text: None }, "empty binds like no body");
    }
}
