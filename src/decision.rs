//! The decision: outcome, reasons, identity, headers, trace, and the log event —
//! and the one place HTTP responses for it are formatted, so every frontend
//! answers the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::reason::ReasonCode;

/// One of four outcomes; never an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Forward the request upstream with the identity headers.
    Allow,
    /// Refuse the request.
    Deny,
    /// A high-risk action without a valid approval: ask a human, then retry.
    ApprovalRequired,
    /// Refuse, and the agent is revoked (revocation list or circuit breaker).
    Revoked,
}

impl Outcome {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::ApprovalRequired => "approval_required",
            Outcome::Revoked => "revoked",
        }
    }
}

/// A reason: stable code plus a human message (lowercase, concrete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// The stable code.
    pub code: ReasonCode,
    /// What happened, e.g. "token expired 42 s ago".
    pub message: String,
}

/// Who is calling, as established by the verified token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Token issuer.
    pub issuer: String,
    /// `sub`: the principal (often the human) the token is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The acting agent: the outermost `act.sub`, else `client_id`, else `sub`.
    pub agent: String,
    /// `client_id`, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The `act` chain, current actor first.
    pub actors: Vec<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The token's `jti`, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Unix time the token expires.
    pub expires_at: i64,
}

/// The identity headers to add upstream, sorted by name (as a JSON object).
/// Names and values are shared with the engine and the verified-token cache,
/// so a cached token's decision copies pointers, not strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardHeaders(Vec<(Arc<str>, Arc<str>)>);

impl ForwardHeaders {
    /// Headers from `(name, value)` pairs, in any order (a later name replaces an earlier one).
    pub fn new(pairs: Vec<(Arc<str>, Arc<str>)>) -> ForwardHeaders {
        let mut pairs = pairs;
        pairs.reverse();
        ForwardHeaders::sort_by_name(&mut pairs);
        pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        ForwardHeaders(pairs)
    }

    /// Sorts pairs by name, keeping the order of equal names. Every caller
    /// shares this one sort: each instance of a sort is ~3 KB of Wasm.
    pub(crate) fn sort_by_name(pairs: &mut [(Arc<str>, Arc<str>)]) {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// `(name, value)` pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(name)).ok().and_then(|i| self.0.get(i)).map(|(_, v)| &**v)
    }

    /// Whether header `name` is there.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The header names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| &**k)
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `pairs` (sorted by name, names unique) plus one more header, kept sorted.
    pub(crate) fn with(
        pairs: &[(Arc<str>, Arc<str>)],
        extra: Option<(&Arc<str>, &Arc<str>)>,
    ) -> ForwardHeaders {
        let mut out = Vec::with_capacity(pairs.len() + 1);
        out.extend(pairs.iter().cloned());
        if let Some((name, value)) = extra {
            match out.binary_search_by(|(k, _)| k.cmp(name)) {
                Ok(i) => {
                    if let Some(slot) = out.get_mut(i) {
                        slot.1 = Arc::clone(value);
                    }
                }
                Err(i) => out.insert(i, (Arc::clone(name), Arc::clone(value))),
            }
        }
        ForwardHeaders(out)
    }
}

impl<K: Into<Arc<str>>, V: Into<Arc<str>>> FromIterator<(K, V)> for ForwardHeaders {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> ForwardHeaders {
        ForwardHeaders::new(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<'a> IntoIterator for &'a ForwardHeaders {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Arc<str>, Arc<str>)>,
        fn(&'a (Arc<str>, Arc<str>)) -> (&'a str, &'a str),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl Serialize for ForwardHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// Result of one pipeline stage, for the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageResult {
    /// The stage's checks passed.
    Pass,
    /// The stage decided against the request.
    Fail,
    /// The stage did not apply.
    Skip,
}

/// One stage in the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    /// Stage name: `request`, `route`, `credential`, `token`, `binding`,
    /// `delegation`, `revocation`, `scope`, `risk`.
    pub stage: &'static str,
    /// What the stage concluded.
    pub result: StageResult,
    /// A short explanation.
    pub detail: String,
}

/// An HTTP response for a non-allow decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: BTreeMap<String, String>,
    /// Body (`application/problem+json`, RFC 9457).
    pub body: String,
}

/// The challenge for `approval_required`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalChallenge {
    /// base64url SHA-256 of the canonical action (see `approval`).
    pub action_digest: String,
    /// A short human-readable description of the action.
    pub binding_message: String,
    /// The agent the approval must name.
    pub agent: String,
    /// Where to ask a human (the policy's approval endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_endpoint: Option<String>,
}

/// The decision-log event (schema `schema/decision-event.schema.json`, version 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionEvent {
    /// Schema version.
    pub v: u8,
    /// Decision time, Unix milliseconds (the request's `now`).
    pub time_ms: i64,
    /// Outcome.
    pub decision: Outcome,
    /// HTTP status.
    pub status: u16,
    /// Reason codes.
    pub reasons: Vec<ReasonCode>,
    /// Matched route id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Arc<str>>,
    /// Request method.
    pub method: String,
    /// Request host.
    pub host: String,
    /// Normalised path (no query).
    pub path: String,
    /// Source IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The verified agent, if the token verified (shared, as `Decision::identity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<EventAgent>>,
    /// Whether the token came from the verified-token cache.
    pub cache_hit: bool,
    /// The rate limit that refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// The workload attestation that passed, if the policy requires one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<EventAttestation>,
    /// The circuit-breaker state behind a revocation (or tripped by this request's outcome).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<EventBreaker>,
    /// The action digest of a high-risk request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_digest: Option<String>,
    /// Token claims the policy's `log.claims` names.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Request headers the policy's `log.headers` names.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Time the host spent deciding, in µs (the core has no clock: hosts fill it in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
}

/// What the attestation stage verified, in an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventAttestation {
    /// The attested workload: the evidence's `sub` (a SPIFFE ID for a JWT-SVID).
    pub workload: String,
    /// Who vouched for it: the attestation issuer, or `claim:<name>` for
    /// evidence embedded in the access token.
    pub issuer: String,
}

/// Breaker state in an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventBreaker {
    /// What tripped it.
    pub kind: crate::state::TripKind,
    /// The numbers behind it.
    pub detail: String,
    /// Unix milliseconds the suspension ends.
    pub until_ms: i64,
}

/// The agent part of an event. Never the raw token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventAgent {
    /// Issuer.
    pub issuer: String,
    /// Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Agent id.
    pub agent: String,
    /// Actor chain.
    pub actors: Vec<String>,
    /// `client_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// base64url SHA-256 of the token, first 16 characters: correlates without revealing.
    pub token_hash: String,
}

/// A complete decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The outcome.
    pub decision: Outcome,
    /// HTTP status: 200 for allow.
    pub status: u16,
    /// Reasons; empty on allow.
    pub reasons: Vec<Reason>,
    /// The matched route id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Arc<str>>,
    /// `{param}` captures of the matched route.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The verified identity, when the token verified (shared with the
    /// verified-token cache: a cached token's decisions copy no strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Arc<Identity>>,
    /// Headers to add upstream (allow only).
    pub forward_headers: ForwardHeaders,
    /// Inbound headers starting with this prefix must be removed before forwarding.
    pub strip_header_prefix: Arc<str>,
    /// The approval challenge (approval_required only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalChallenge>,
    /// The response to send instead of forwarding (every outcome but allow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
    /// Every stage evaluated, in order.
    pub trace: Vec<TraceStep>,
    /// The decision-log event.
    pub event: DecisionEvent,
    /// Whether the policy's `log` settings (outcome filter, sampling) want
    /// this event written.
    pub log: bool,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.decision == Outcome::Allow
    }

    /// The reason codes, in order.
    pub fn codes(&self) -> Vec<ReasonCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }

    /// The decision as JSON: byte for byte what `serde_json::to_string`
    /// gives (tests/decision_json.rs checks it), written directly. Every
    /// decision crosses the host boundary as this text, and serde's generic
    /// serializer with its per-byte escaping was a third of a cached
    /// decision's time in Wasm. The structs are destructured without `..`, so
    /// a new field does not compile until it is written here too.
    pub fn to_json(&self) -> String {
        let Decision {
            decision,
            status,
            reasons,
            route,
            params,
            identity,
            forward_headers,
            strip_header_prefix,
            approval,
            response,
            trace,
            event,
            log,
        } = self;
        let mut out = String::with_capacity(2048);
        let o = &mut out;
        o.push_str("{\"decision\":\"");
        o.push_str(decision.as_str());
        o.push_str("\",\"status\":");
        push_u64(o, u64::from(*status));
        o.push_str(",\"reasons\":[");
        for (i, Reason { code, message }) in reasons.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"code\":\"");
            o.push_str(code.as_str());
            o.push_str("\",\"message\":");
            push_str(o, message);
            o.push('}');
        }
        o.push(']');
        push_opt_str(o, ",\"route\":", route.as_deref());
        if !params.is_empty() {
            o.push_str(",\"params\":");
            push_map(o, params);
        }
        if let Some(Identity { issuer, subject, agent, client_id, actors, scopes, jti, expires_at }) =
            identity.as_deref()
        {
            o.push_str(",\"identity\":{\"issuer\":");
            push_str(o, issuer);
            push_opt_str(o, ",\"subject\":", subject.as_deref());
            o.push_str(",\"agent\":");
            push_str(o, agent);
            push_opt_str(o, ",\"client_id\":", client_id.as_deref());
            o.push_str(",\"actors\":");
            push_list(o, actors);
            o.push_str(",\"scopes\":");
            push_list(o, scopes);
            push_opt_str(o, ",\"jti\":", jti.as_deref());
            o.push_str(",\"expires_at\":");
            push_i64(o, *expires_at);
            o.push('}');
        }
        o.push_str(",\"forward_headers\":");
        push_pairs(o, forward_headers.iter());
        o.push_str(",\"strip_header_prefix\":");
        push_str(o, strip_header_prefix);
        if let Some(ApprovalChallenge { action_digest, binding_message, agent, approval_endpoint }) = approval
        {
            o.push_str(",\"approval\":{\"action_digest\":");
            push_str(o, action_digest);
            o.push_str(",\"binding_message\":");
            push_str(o, binding_message);
            o.push_str(",\"agent\":");
            push_str(o, agent);
            push_opt_str(o, ",\"approval_endpoint\":", approval_endpoint.as_deref());
            o.push('}');
        }
        if let Some(HttpResponse { status, headers, body }) = response {
            o.push_str(",\"response\":{\"status\":");
            push_u64(o, u64::from(*status));
            o.push_str(",\"headers\":");
            push_map(o, headers);
            o.push_str(",\"body\":");
            push_str(o, body);
            o.push('}');
        }
        o.push_str(",\"trace\":[");
        for (i, TraceStep { stage, result, detail }) in trace.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"stage\":");
            push_str(o, stage);
            o.push_str(",\"result\":\"");
            o.push_str(match result {
                StageResult::Pass => "pass",
                StageResult::Fail => "fail",
                StageResult::Skip => "skip",
            });
            o.push_str("\",\"detail\":");
            push_str(o, detail);
            o.push('}');
        }
        o.push_str("],\"event\":");
        event.write_json(o);
        o.push_str(",\"log\":");
        o.push_str(if *log { "true" } else { "false" });
        o.push('}');
        out
    }
}

impl DecisionEvent {
    /// The event as JSON, as `serde_json::to_string` writes it (see [`Decision::to_json`]).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, o: &mut String) {
        let DecisionEvent {
            v,
            time_ms,
            decision,
            status,
            reasons,
            route,
            method,
            host,
            path,
            source_ip,
            agent,
            cache_hit,
            limit,
            attestation,
            breaker,
            approval_digest,
            claims,
            headers,
            duration_us,
        } = self;
        o.push_str("{\"v\":");
        push_u64(o, u64::from(*v));
        o.push_str(",\"time_ms\":");
        push_i64(o, *time_ms);
        o.push_str(",\"decision\":\"");
        o.push_str(decision.as_str());
        o.push_str("\",\"status\":");
        push_u64(o, u64::from(*status));
        o.push_str(",\"reasons\":[");
        for (i, code) in reasons.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push('"');
            o.push_str(code.as_str());
            o.push('"');
        }
        o.push(']');
        push_opt_str(o, ",\"route\":", route.as_deref());
        o.push_str(",\"method\":");
        push_str(o, method);
        o.push_str(",\"host\":");
        push_str(o, host);
        o.push_str(",\"path\":");
        push_str(o, path);
        push_opt_str(o, ",\"source_ip\":", source_ip.as_deref());
        if let Some(EventAgent { issuer, subject, agent, actors, client_id, token_hash }) = agent.as_deref() {
            o.push_str(",\"agent\":{\"issuer\":");
            push_str(o, issuer);
            push_opt_str(o, ",\"subject\":", subject.as_deref());
            o.push_str(",\"agent\":");
            push_str(o, agent);
            o.push_str(",\"actors\":");
            push_list(o, actors);
            push_opt_str(o, ",\"client_id\":", client_id.as_deref());
            o.push_str(",\"token_hash\":");
            push_str(o, token_hash);
            o.push('}');
        }
        o.push_str(",\"cache_hit\":");
        o.push_str(if *cache_hit { "true" } else { "false" });
        push_opt_str(o, ",\"limit\":", limit.as_deref());
        if let Some(EventAttestation { workload, issuer }) = attestation {
            o.push_str(",\"attestation\":{\"workload\":");
            push_str(o, workload);
            o.push_str(",\"issuer\":");
            push_str(o, issuer);
            o.push('}');
        }
        if let Some(EventBreaker { kind, detail, until_ms }) = breaker {
            o.push_str(",\"breaker\":{\"kind\":");
            push_serde(o, kind);
            o.push_str(",\"detail\":");
            push_str(o, detail);
            o.push_str(",\"until_ms\":");
            push_i64(o, *until_ms);
            o.push('}');
        }
        push_opt_str(o, ",\"approval_digest\":", approval_digest.as_deref());
        if !claims.is_empty() {
            o.push_str(",\"claims\":");
            push_serde(o, claims);
        }
        if !headers.is_empty() {
            o.push_str(",\"headers\":");
            push_map(o, headers);
        }
        if let Some(us) = duration_us {
            o.push_str(",\"duration_us\":");
            push_u64(o, *us);
        }
        o.push('}');
    }
}

/// A JSON string as serde_json escapes it: `\"` and `\\`, the short forms
/// `\b \t \n \f \r`, other control characters as `\u00xx`; everything
/// else (including non-ASCII) as is. Runs without escapes are copied whole.
pub(crate) fn push_str(o: &mut String, text: &str) {
    o.push('"');
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte: a char boundary.
        o.push_str(text.get(start..i).unwrap_or_default());
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            o.push_str("\\u00");
            o.push(char::from(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0')));
            o.push(char::from(HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0')));
        } else {
            o.push_str(short);
        }
        start = i + 1;
    }
    o.push_str(text.get(start..).unwrap_or_default());
    o.push('"');
}

/// `key` (`,"name":`) and the string, when there is one: how every optional
/// string field is written (serde skips `None`).
fn push_opt_str(o: &mut String, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        o.push_str(key);
        push_str(o, value);
    }
}

fn push_list(o: &mut String, items: &[String]) {
    o.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        push_str(o, item);
    }
    o.push(']');
}

fn push_map(o: &mut String, map: &BTreeMap<String, String>) {
    push_pairs(o, map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

fn push_pairs<'a>(o: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    o.push('{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            o.push(',');
        }
        push_str(o, k);
        o.push(':');
        push_str(o, v);
    }
    o.push('}');
}

fn push_u64(o: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    // ASCII digits: one copy, not a `push` per digit.
    o.push_str(std::str::from_utf8(digits.get(at..).unwrap_or_default()).unwrap_or_default());
}

fn push_i64(o: &mut String, n: i64) {
    if n < 0 {
        o.push('-');
    }
    push_u64(o, n.unsigned_abs());
}

/// The rare parts (claims, breaker kind) go through serde.
fn push_serde<T: Serialize + ?Sized>(o: &mut String, value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => o.push_str(&text),
        Err(_) => o.push_str("null"),
    }
}

/// The authentication scheme a challenge names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `WWW-Authenticate: Bearer …` (RFC 6750).
    Bearer,
    /// `WWW-Authenticate: DPoP algs="…", …` (RFC 9449 §7.1).
    Dpop {
        /// Accepted proof algorithms.
        algs: Vec<&'static str>,
    },
}

/// Builds the HTTP response for a refused request: status, `WWW-Authenticate`
/// (RFC 6750 / RFC 9449) where OAuth defines one, and an RFC 9457 problem body.
pub(crate) fn http_response(
    outcome: Outcome,
    reason: &Reason,
    realm: &str,
    resource_metadata: Option<&str>,
    challenge: &Challenge,
    required_scopes: &[String],
    approval: Option<&ApprovalChallenge>,
) -> HttpResponse {
    let status = reason.code.status();
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), "application/problem+json".to_owned());
    headers.insert("cache-control".to_owned(), "no-store".to_owned());
    if status == 401 || reason.code.oauth_error().is_some() {
        let mut challenge = match challenge {
            Challenge::Bearer => format!("Bearer realm=\"{}\"", header_safe(realm)),
            Challenge::Dpop { algs } => {
                format!("DPoP realm=\"{}\", algs=\"{}\"", header_safe(realm), algs.join(" "))
            }
        };
        if let Some(error) = reason.code.oauth_error() {
            challenge.push_str(&format!(", error=\"{error}\""));
            challenge.push_str(&format!(", error_description=\"{}\"", header_safe(&reason.message)));
        }
        if let Some(url) = resource_metadata {
            challenge.push_str(&format!(", resource_metadata=\"{}\"", header_safe(url)));
        }
        if reason.code == ReasonCode::ScopeInsufficient && !required_scopes.is_empty() {
            challenge.push_str(&format!(", scope=\"{}\"", header_safe(&required_scopes.join(" "))));
        }
        headers.insert("www-authenticate".to_owned(), challenge);
    }
    let mut body = serde_json::json!({
        "type": format!("https://agentguard.dev/problems/{}", reason.code.as_str()),
        "title": title(status),
        "status": status,
        "detail": reason.message,
        "decision": outcome.as_str(),
        "reason": reason.code.as_str(),
    });
    if let (Some(challenge), Some(obj)) = (approval, body.as_object_mut()) {
        obj.insert("action_digest".into(), challenge.action_digest.clone().into());
        obj.insert("binding_message".into(), challenge.binding_message.clone().into());
        obj.insert("agent".into(), challenge.agent.clone().into());
        if let Some(endpoint) = &challenge.approval_endpoint {
            obj.insert("approval_endpoint".into(), endpoint.clone().into());
        }
    }
    HttpResponse { status, headers, body: body.to_string() }
}

fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    }
}

/// Makes text safe inside a quoted header parameter (RFC 6750 §3: printable
/// ASCII without `"` and `\`); anything else becomes `?`.
pub fn header_safe(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if (' '..='~').contains(&c) && c != '"' && c != '\\' { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_for_expired_token() {
        let reason = Reason { code: ReasonCode::TokenExpired, message: "token expired 42 s ago".into() };
        let r = http_response(Outcome::Deny, &reason, "api", None, &Challenge::Bearer, &[], None);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.headers["www-authenticate"],
            r#"Bearer realm="api", error="invalid_token", error_description="token expired 42 s ago""#
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["reason"], "token_expired");
        assert_eq!(body["status"], 401);
    }

    #[test]
    fn missing_credential_has_no_error_attribute() {
        let reason = Reason { code: ReasonCode::CredentialMissing, message: "no credential".into() };
        let r = http_response(Outcome::Deny, &reason, "api", None, &Challenge::Bearer, &[], None);
        assert_eq!(r.headers["www-authenticate"], r#"Bearer realm="api""#);
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let reason = Reason { code: ReasonCode::ScopeInsufficient, message: "needs `a`".into() };
        let r = http_response(
            Outcome::Deny,
            &reason,
            "api",
            None,
            &Challenge::Bearer,
            &["a".into(), "b".into()],
            None,
        );
        assert_eq!(r.status, 403);
        assert!(r.headers["www-authenticate"].contains(r#"error="insufficient_scope""#));
        assert!(r.headers["www-authenticate"].contains(r#"scope="a b""#));
    }

    #[test]
    fn header_values_cannot_be_broken_out_of() {
        assert_eq!(header_safe("a\"b\\c\r\nd é"), "a?b?c??d ?");
    }
}
