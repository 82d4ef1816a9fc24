//! When to fetch issuers' JWKS, and what to make of the answer.
//!
//! The core never fetches: for each issuer with a `jwks_uri` the filter asks
//! Envoy to fetch it (`dispatch_http_call` to the configured cluster) and
//! hands the document to [`crate::Engine::set_issuer_keys`]. A Web Bot Auth
//! key directory (a `signature_agents` operator with a `directory_uri`) is
//! fetched the same way and goes, with its response signature headers
//! ([`directory_headers`]), to [`crate::Engine::set_directory_keys`]. This module is
//! the schedule, kept free of host calls so it is tested natively:
//!
//! - **periodic**: after a good fetch, again every `jwks_refresh`; after a
//!   failed one, again after `jwks_cooldown`; the first fetch right away;
//! - **on demand**: a token whose key is not known (a rotated-in `kid`, or
//!   keys not fetched yet) triggers a fetch, at most once per `jwks_cooldown`
//!   per issuer, so unknown-`kid` floods cannot turn into fetch floods;
//! - **last good keys win**: a failed fetch (status, size, JSON, no usable
//!   key) leaves the previous keys in place;
//! - **bounded**: a fetch that never answers (Envoy cancels callouts of a
//!   finished stream) counts as failed once `jwks_timeout` plus a grace
//!   period has passed, so nothing waits on it forever.
//!
//! The policy's `revocation_list` is one more source on the same schedule
//! ([`Fetched::RevocationList`]), handed to
//! [`crate::Engine::set_listed_revocations`]: fetched at once, then every
//! `revocation_list.refresh`; after a failure again after `jwks_cooldown` or
//! `refresh`, whichever is shorter (so never later than the next refresh);
//! never on demand (no request can tell that the list changed).
//!
//! **Conditional fetches.** The schedule remembers, per source, the `ETag`
//! of the document in force: set by the filter only once the engine has
//! accepted a document ([`Schedule::remember_etag`]; a document without a
//! usable `ETag` clears it), left alone when a fetch fails or the engine
//! refuses the document, so it always names the document the engine holds.
//! The next fetch of that source sends it as `If-None-Match`
//! ([`request_headers`]); a `304 Not Modified` answer to such a request
//! ([`is_not_modified`]) means that document is still current. A `304` to a
//! request without `If-None-Match` is a failed fetch, as any other status
//! but 200. Key directories are never fetched conditionally: each of their
//! answers carries a response signature the core checks at the time of the
//! fetch, and a `304` has no body for it to cover.

use super::config::{Fetched, JwksSource, Settings};

/// Extra time, beyond the fetch timeout, before an unanswered fetch is written off.
const GRACE_MS: i64 = 2_000;

/// The longest `ETag` remembered (bytes); a longer one is ignored, and the
/// next fetch of that document is not conditional.
pub const MAX_ETAG_BYTES: usize = 256;

/// A fetch under way.
#[derive(Debug, Clone, Copy)]
struct Flight {
    /// The callout token.
    token: u32,
    /// When it started.
    since_ms: i64,
    /// Whether the request carried `If-None-Match`.
    conditional: bool,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// The fetch under way.
    in_flight: Option<Flight>,
    /// When the last fetch started.
    last_attempt_ms: Option<i64>,
    /// Whether the last finished fetch gave usable keys.
    last_ok: bool,
    /// The `ETag` of the document in force, from the answer the engine accepted.
    etag: Option<String>,
}

/// The fetch schedule of every document fetched by URL (issuers with a
/// `jwks_uri`, key directories, the revocation list).
#[derive(Debug, Clone)]
pub struct Schedule {
    sources: Vec<(JwksSource, State)>,
    refresh_ms: i64,
    cooldown_ms: i64,
    timeout_ms: i64,
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl Schedule {
    /// A schedule for the configured sources; nothing fetched yet.
    pub fn new(settings: &Settings) -> Schedule {
        Schedule {
            sources: settings.jwks.iter().map(|s| (s.clone(), State::default())).collect(),
            refresh_ms: ms(settings.jwks_refresh_secs),
            cooldown_ms: ms(settings.jwks_cooldown_secs),
            timeout_ms: ms(settings.jwks_timeout_secs),
        }
    }

    /// Whether any keys (JWKS, key directories) come from a URL.
    pub fn fetches_keys(&self) -> bool {
        self.sources.iter().any(|(s, _)| s.kind == Fetched::Keys)
    }

    /// Whether the revocation list is being fetched.
    pub fn list_in_flight(&self) -> bool {
        self.sources
            .iter()
            .any(|(s, state)| matches!(s.kind, Fetched::RevocationList { .. }) && state.in_flight.is_some())
    }

    /// The `ETag` of the document of `index` in force, to send as `If-None-Match`.
    pub fn etag(&self, index: usize) -> Option<&str> {
        self.sources.get(index).and_then(|(_, s)| s.etag.as_deref())
    }

    /// The engine accepted (or confirmed) a document of `index` whose answer
    /// had `etag` (`None`: none usable, so the next fetch is a plain one).
    /// Only ever called for a document the engine holds: a `304` to
    /// `If-None-Match: <etag>` vouches for it.
    pub fn remember_etag(&mut self, index: usize, etag: Option<String>) {
        if let Some((_, s)) = self.sources.get_mut(index) {
            s.etag = etag;
        }
    }

    /// Whether the fetch of `index` under way sent `If-None-Match`.
    pub fn conditional(&self, index: usize) -> bool {
        self.sources.get(index).and_then(|(_, s)| s.in_flight).is_some_and(|f| f.conditional)
    }

    /// Whether the last finished fetch of `index` was a good one.
    pub fn last_ok(&self, index: usize) -> bool {
        self.sources.get(index).is_some_and(|(_, s)| s.last_ok)
    }

    /// Time between two fetches of `source` after a good one, and after a failed one.
    fn intervals(&self, source: &JwksSource) -> (i64, i64) {
        match source.kind {
            Fetched::Keys => (self.refresh_ms, self.cooldown_ms),
            Fetched::RevocationList { refresh_secs } => {
                let refresh = ms(refresh_secs);
                (refresh, refresh.min(self.cooldown_ms))
            }
        }
    }

    /// The source at `index`.
    pub fn source(&self, index: usize) -> Option<&JwksSource> {
        self.sources.get(index).map(|(s, _)| s)
    }

    /// Whether a fetch is under way.
    pub fn in_flight(&self) -> bool {
        self.sources.iter().any(|(_, s)| s.in_flight.is_some())
    }

    /// Sources the periodic refresh should fetch now.
    pub fn due(&self, now_ms: i64) -> Vec<usize> {
        self.pick(|source, s| match s.last_attempt_ms {
            None => true,
            Some(at) => {
                let (refresh, retry) = self.intervals(source);
                now_ms.saturating_sub(at) >= if s.last_ok { refresh } else { retry }
            }
        })
    }

    /// Key sources to fetch because a token's key was not found (cooldown
    /// permitting). The revocation list is never fetched on demand.
    pub fn on_demand(&self, now_ms: i64) -> Vec<usize> {
        self.pick(|source, s| {
            source.kind == Fetched::Keys
                && s.last_attempt_ms.is_none_or(|at| now_ms.saturating_sub(at) >= self.cooldown_ms)
        })
    }

    fn pick(&self, wanted: impl Fn(&JwksSource, &State) -> bool) -> Vec<usize> {
        (0..self.sources.len())
            .filter(|&i| {
                self.sources.get(i).is_some_and(|(source, s)| s.in_flight.is_none() && wanted(source, s))
            })
            .collect()
    }

    /// Records that the fetch for `index` started as callout `token`;
    /// `conditional`: the request carried `If-None-Match`.
    pub fn started(&mut self, index: usize, token: u32, now_ms: i64, conditional: bool) {
        if let Some((_, s)) = self.sources.get_mut(index) {
            s.in_flight = Some(Flight { token, since_ms: now_ms, conditional });
            s.last_attempt_ms = Some(now_ms);
        }
    }

    /// Records that the fetch for `index` could not even be dispatched.
    pub fn refused(&mut self, index: usize, now_ms: i64) {
        if let Some((_, s)) = self.sources.get_mut(index) {
            s.in_flight = None;
            s.last_attempt_ms = Some(now_ms);
            s.last_ok = false;
        }
    }

    /// The source callout `token` is fetching, if it is one of ours and still expected.
    pub fn pending(&self, token: u32) -> Option<usize> {
        self.sources.iter().position(|(_, s)| s.in_flight.is_some_and(|f| f.token == token))
    }

    /// Records the end of callout `token`; the source it fetched, if it is one of ours.
    pub fn finished(&mut self, token: u32, ok: bool) -> Option<usize> {
        let index = self.pending(token)?;
        if let Some((_, s)) = self.sources.get_mut(index) {
            s.in_flight = None;
            s.last_ok = ok;
        }
        Some(index)
    }

    /// Writes off fetches that have been in flight too long; returns their sources.
    pub fn expire(&mut self, now_ms: i64) -> Vec<usize> {
        let limit = self.timeout_ms.saturating_add(GRACE_MS);
        let mut expired = Vec::new();
        for (i, (_, s)) in self.sources.iter_mut().enumerate() {
            if s.in_flight.is_some_and(|f| now_ms.saturating_sub(f.since_ms) > limit) {
                s.in_flight = None;
                s.last_ok = false;
                expired.push(i);
            }
        }
        expired
    }
}

/// The request headers of a fetch of `source`: `directory` when it is a
/// Web Bot Auth key directory (its own media type), `etag` the `ETag` of
/// the document in force (sent as `If-None-Match`). The revocation list is
/// asked for with `Cache-Control: no-cache`: its answer (a `304` too)
/// restarts a plain list's age, so it must come from the origin, not from a
/// cache along the way.
pub fn request_headers<'a>(
    source: &'a JwksSource,
    directory: bool,
    etag: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let accept = match source.kind {
        Fetched::RevocationList { .. } => "application/json",
        Fetched::Keys if directory => "application/http-message-signatures-directory+json, application/json",
        Fetched::Keys => "application/jwk-set+json, application/json",
    };
    let mut headers = vec![
        (":method", "GET"),
        (":path", source.path.as_str()),
        (":authority", source.authority.as_str()),
        ("accept", accept),
        ("user-agent", "agentguard-envoy"),
    ];
    if let Fetched::RevocationList { .. } = source.kind {
        headers.push(("cache-control", "no-cache"));
    }
    if let Some(etag) = etag {
        headers.push(("if-none-match", etag));
    }
    headers
}

/// The `ETag` of an answer, if it may be remembered: present, at most
/// [`MAX_ETAG_BYTES`], printable ASCII (spaces inside only). Anything else
/// is ignored (the next fetch is a plain one), never sent back.
pub fn usable_etag(value: Option<&[u8]>) -> Option<String> {
    let value = value?;
    let printable = value.iter().all(|b| (0x20..=0x7e).contains(b));
    let trimmed = value.first().is_some_and(|b| *b != b' ') && value.last().is_some_and(|b| *b != b' ');
    if value.len() > MAX_ETAG_BYTES || !printable || !trimmed {
        return None;
    }
    String::from_utf8(value.to_vec()).ok()
}

/// Whether an answer is `304 Not Modified` to a request that carried
/// `If-None-Match` (`conditional`): the document in force is current. A
/// `304` to a plain request is no answer at all (a failed fetch).
pub fn is_not_modified(status: Option<&str>, conditional: bool) -> bool {
    conditional && status == Some("304")
}

/// Checks a fetched JWKS response: status 200 and a UTF-8 body, returned as
/// text for [`crate::Engine::set_issuer_keys_json`] (which caps its size and
/// parses it strictly).
pub fn response_text<'a>(status: Option<&str>, body: Option<&'a [u8]>) -> Result<&'a str, String> {
    check_status(status)?;
    std::str::from_utf8(body.unwrap_or_default()).map_err(|_| "the document is not UTF-8 text".into())
}

/// Checks a fetch's `:status`: only 200 is a document.
pub fn check_status(status: Option<&str>) -> Result<(), String> {
    match status {
        Some("200") => Ok(()),
        Some(other) => Err(format!("status {}, expected 200", crate::keys::clip(other))),
        None => Err("no response (connection failure or timeout)".into()),
    }
}

/// The response headers a key directory's signature is checked with, each
/// repeated field joined with `, ` (RFC 9110 field combination).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryHeaders {
    /// `Signature-Input`.
    pub signature_input: Option<String>,
    /// `Signature`.
    pub signature: Option<String>,
    /// `Content-Digest`.
    pub content_digest: Option<String>,
}

/// Picks the signature headers out of a fetched key directory's response
/// headers (names compared case-insensitively). A value that is not UTF-8
/// refuses the whole response: a signature cannot be checked over bytes the
/// core never sees.
pub fn directory_headers(headers: &[(String, Vec<u8>)]) -> Result<DirectoryHeaders, String> {
    let mut out = DirectoryHeaders::default();
    for (name, value) in headers {
        let slot = if name.eq_ignore_ascii_case("signature-input") {
            &mut out.signature_input
        } else if name.eq_ignore_ascii_case("signature") {
            &mut out.signature
        } else if name.eq_ignore_ascii_case("content-digest") {
            &mut out.content_digest
        } else {
            continue;
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| format!("the `{}` response header is not UTF-8 text", crate::keys::clip(name)))?;
        match slot {
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => *slot = Some(value.to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        let source = |iss: &str| JwksSource {
            kind: Fetched::Keys,
            iss: iss.into(),
            uri: format!("{iss}/jwks"),
            cluster: "sts".into(),
            authority: "sts".into(),
            path: "/jwks".into(),
        };
        Schedule::new(&Settings {
            jwks: vec![source("https://a"), source("https://b")],
            jwks_refresh_secs: 300,
            jwks_cooldown_secs: 30,
            jwks_timeout_secs: 5,
            ..Settings::default()
        })
    }

    #[test]
    fn everything_is_due_at_first_then_after_the_refresh_period() {
        let mut s = schedule();
        assert_eq!(s.due(0), [0, 1]);
        s.started(0, 7, 0, false);
        s.started(1, 8, 0, false);
        assert!(s.in_flight());
        assert!(s.due(1_000_000).is_empty(), "nothing twice in flight");
        assert_eq!(s.finished(7, true), Some(0));
        assert_eq!(s.finished(8, false), Some(1));
        assert!(!s.in_flight());
        assert_eq!(s.due(29_999), Vec::<usize>::new());
        assert_eq!(s.due(30_000), [1], "a failed fetch is retried after the cooldown");
        assert_eq!(s.due(300_000), [0, 1]);
        assert_eq!(s.finished(99, true), None, "not our callout");
    }

    /// Two issuers' keys and a revocation list refreshed every `refresh_secs`.
    fn with_list(refresh_secs: u64) -> Schedule {
        let mut settings = Settings { jwks_cooldown_secs: 30, ..Settings::default() };
        settings.jwks.push(JwksSource {
            kind: Fetched::Keys,
            iss: "https://a".into(),
            uri: "https://a/jwks".into(),
            cluster: "sts".into(),
            authority: "a".into(),
            path: "/jwks".into(),
        });
        settings.jwks.push(JwksSource {
            kind: Fetched::RevocationList { refresh_secs },
            iss: "revocation_list".into(),
            uri: "https://r/list.json".into(),
            cluster: "sts".into(),
            authority: "r".into(),
            path: "/list.json".into(),
        });
        Schedule::new(&settings)
    }

    #[test]
    fn the_revocation_list_has_its_own_refresh_and_is_never_fetched_on_demand() {
        let mut s = with_list(60);
        assert!(s.fetches_keys());
        assert_eq!(s.due(0), [0, 1], "both at start");
        s.started(1, 5, 0, false);
        assert!(s.list_in_flight() && s.in_flight());
        assert_eq!(s.on_demand(0), [0], "an unknown kid fetches keys, not the list");
        s.finished(5, true);
        assert!(!s.list_in_flight());
        assert_eq!(s.due(59_999), [0], "the keys never started; the list not due yet");
        assert_eq!(s.due(60_000), [0, 1], "every `refresh`, not `jwks_refresh` (5m)");
        assert!(s.on_demand(1_000_000).iter().all(|&i| i == 0));
        // A failure is retried after the cooldown (30 s), shorter than the refresh.
        s.started(1, 6, 60_000, false);
        s.finished(6, false);
        assert!(!s.due(89_999).contains(&1));
        assert!(s.due(90_000).contains(&1));
        // With a refresh shorter than the cooldown, a failure is retried at the next refresh.
        let mut s = with_list(1);
        s.started(1, 7, 0, false);
        s.finished(7, false);
        assert!(!s.due(999).contains(&1));
        assert!(s.due(1_000).contains(&1));
        s.started(1, 8, 1_000, false);
        s.finished(8, true);
        assert!(s.due(2_000).contains(&1));
        // Without keys by URL nothing waits for keys.
        let only_list = Schedule::new(&Settings {
            jwks: vec![with_list(1).source(1).cloned().unwrap()],
            ..Settings::default()
        });
        assert!(!only_list.fetches_keys());
        assert!(only_list.on_demand(0).is_empty());
    }

    #[test]
    fn on_demand_fetches_respect_the_cooldown() {
        let mut s = schedule();
        assert_eq!(s.on_demand(0), [0, 1]);
        s.started(0, 1, 1_000, false);
        s.finished(1, true);
        s.refused(1, 1_000);
        assert!(s.on_demand(30_999).is_empty());
        assert_eq!(s.on_demand(31_000), [0, 1]);
    }

    #[test]
    fn unanswered_fetches_are_written_off() {
        let mut s = schedule();
        s.started(0, 3, 0, false);
        assert!(s.expire(7_000).is_empty());
        assert_eq!(s.expire(7_001), [0]);
        assert!(!s.in_flight());
        assert_eq!(s.pending(3), None, "a late answer is ignored");
        assert_eq!(s.finished(3, true), None);
        assert_eq!(s.due(37_001), [0, 1]);
    }

    #[test]
    fn the_etag_of_the_document_in_force_makes_the_next_fetch_conditional() {
        let mut s = with_list(1);
        assert_eq!((s.etag(0), s.etag(1)), (None, None), "nothing accepted yet");
        s.started(1, 5, 0, false);
        assert!(!s.conditional(1));
        s.finished(5, true);
        s.remember_etag(1, Some("\"v1\"".into()));
        assert_eq!(s.etag(1), Some("\"v1\""));
        assert_eq!(s.etag(0), None, "per source");
        s.started(1, 6, 1_000, true);
        assert!(s.conditional(1) && !s.conditional(0));
        // A failed or refused fetch leaves the ETag of the document in force.
        s.finished(6, false);
        assert!(!s.conditional(1), "nothing in flight");
        assert!(!s.last_ok(1));
        assert_eq!(s.etag(1), Some("\"v1\""));
        s.started(1, 7, 2_000, true);
        assert!(s.expire(10_000).contains(&1));
        assert_eq!(s.etag(1), Some("\"v1\""), "a fetch written off changes nothing in force");
        // An accepted document without a usable ETag clears it.
        s.started(1, 8, 11_000, true);
        s.finished(8, true);
        assert!(s.last_ok(1));
        s.remember_etag(1, None);
        assert_eq!(s.etag(1), None);
        s.remember_etag(9, Some("x".into()));
        assert_eq!(s.etag(9), None, "no such source");
    }

    fn list_source() -> JwksSource {
        with_list(1).source(1).cloned().unwrap()
    }

    #[test]
    fn the_fetch_asks_for_the_document_type_and_sends_the_etag_in_force() {
        let list = list_source();
        assert_eq!(
            request_headers(&list, false, None),
            [
                (":method", "GET"),
                (":path", "/list.json"),
                (":authority", "r"),
                ("accept", "application/json"),
                ("user-agent", "agentguard-envoy"),
                ("cache-control", "no-cache"),
            ]
        );
        let conditional = request_headers(&list, false, Some("W/\"v1\""));
        assert_eq!(conditional.last(), Some(&("if-none-match", "W/\"v1\"")));
        assert_eq!(conditional.len(), 7);
        let keys = schedule().source(0).cloned().unwrap();
        let plain = request_headers(&keys, false, None);
        assert!(plain.contains(&("accept", "application/jwk-set+json, application/json")));
        assert!(plain.iter().all(|(n, _)| *n != "cache-control" && *n != "if-none-match"), "{plain:?}");
        assert_eq!(request_headers(&keys, false, Some("\"k\"")).last(), Some(&("if-none-match", "\"k\"")));
        let directory = request_headers(&keys, true, None);
        assert!(directory
            .contains(&("accept", "application/http-message-signatures-directory+json, application/json")));
    }

    #[test]
    fn only_a_short_printable_etag_is_remembered() {
        let etag = |v: &[u8]| usable_etag(Some(v));
        assert_eq!(etag(b"\"v1\""), Some("\"v1\"".into()));
        assert_eq!(etag(b"W/\"a b\""), Some("W/\"a b\"".into()), "weak, with an inner space");
        assert_eq!(etag(b"abc"), Some("abc".into()), "unquoted (not RFC 9110, but what the host sent)");
        assert_eq!(usable_etag(None), None);
        assert_eq!(etag(b""), None);
        assert_eq!(etag(b" \"v\""), None);
        assert_eq!(etag(b"\"v\" "), None);
        assert_eq!(etag(b"\"a\r\nx-injected: 1\""), None, "control characters");
        assert_eq!(etag(b"\"a\tb\""), None);
        assert_eq!(etag(b"\"a\x7fb\""), None);
        assert_eq!(etag("\"é\"".as_bytes()), None, "not ASCII");
        let longest = format!("\"{}\"", "x".repeat(MAX_ETAG_BYTES - 2));
        assert_eq!(etag(longest.as_bytes()), Some(longest.clone()));
        let longer = format!("\"{}\"", "x".repeat(MAX_ETAG_BYTES - 1));
        assert_eq!(etag(longer.as_bytes()), None, "over {MAX_ETAG_BYTES} bytes");
    }

    #[test]
    fn a_304_counts_only_as_the_answer_to_a_conditional_request() {
        assert!(is_not_modified(Some("304"), true));
        assert!(!is_not_modified(Some("304"), false), "a 304 to a plain request is a failure");
        assert!(!is_not_modified(Some("200"), true));
        assert!(!is_not_modified(None, true));
        assert_eq!(check_status(Some("304")).unwrap_err(), "status 304, expected 200");
    }

    #[test]
    fn only_a_200_with_text_is_a_jwks() {
        let jwks = br#"{"keys": []}"#;
        assert_eq!(response_text(Some("200"), Some(jwks)), Ok(r#"{"keys": []}"#));
        assert_eq!(response_text(Some("503"), Some(jwks)).unwrap_err(), "status 503, expected 200");
        assert!(response_text(None, None).unwrap_err().contains("no response"));
        assert!(response_text(Some("200"), Some(b"\xff")).is_err());
        assert_eq!(response_text(Some("200"), None), Ok(""));
    }

    #[test]
    fn directory_signature_headers_are_joined_per_field() {
        let h = |n: &str, v: &[u8]| (n.to_owned(), v.to_vec());
        let headers = [
            h(":status", b"200"),
            h("signature-input", br#"a=("@authority";req)"#),
            h("content-type", b"application/http-message-signatures-directory+json"),
            h("Signature", b"a=:AAAA:"),
            h("signature-input", br#"b=("@authority";req)"#),
            h("signature", b"b=:BBBB:"),
            h("content-digest", b"sha-256=:x:"),
        ];
        assert_eq!(
            directory_headers(&headers),
            Ok(DirectoryHeaders {
                signature_input: Some(r#"a=("@authority";req), b=("@authority";req)"#.into()),
                signature: Some("a=:AAAA:, b=:BBBB:".into()),
                content_digest: Some("sha-256=:x:".into()),
            })
        );
        assert_eq!(directory_headers(&[h(":status", b"200")]), Ok(DirectoryHeaders::default()));
        let err = directory_headers(&[h("signature", b"a=:\xff:"), h("signature", b"\xff")]).unwrap_err();
        assert!(err.contains("`signature`") && err.contains("UTF-8"), "{err}");
    }
}
