//! The policy document: plain JSON, checked strictly.
//!
//! These types mirror the JSON one to one (unknown fields are errors) and are
//! only the *input*: [`crate::Engine::new`] compiles a [`Policy`] into the
//! structures the pipeline runs on, checking everything once. The JSON Schema
//! in `schema/policy.schema.json` describes the same document; the full
//! reference is `docs/policy.md`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Duration;
use crate::keys::Alg;
use crate::limits::MAX_POLICY_BYTES;

/// A whole policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A free-form description for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The `realm` in `WWW-Authenticate` challenges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Token issuers this policy trusts. At least one.
    pub issuers: Vec<IssuerPolicy>,
    /// DPoP proof rules (RFC 9449), for issuers with `binding: "dpop"` and
    /// tokens bound with `cnf.jkt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop: Option<crate::dpop::DpopPolicy>,
    /// Workload attestation: evidence every request must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<crate::attestation::AttestationPolicy>,
    /// Rules for delegated tokens (RFC 8693 `act`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<DelegationPolicy>,
    /// Routes, matched in order; the first that fits the method and path wins.
    pub routes: Vec<RoutePolicy>,
    /// What happens when no route matches. Only `"deny"`.
    #[serde(default)]
    pub default: DefaultDecision,
    /// Revocation lists.
    #[serde(default)]
    pub revoked: RevocationLists,
    /// A revocation list the host fetches from a URL and keeps fresh, in
    /// force on top of `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_list: Option<RevocationListPolicy>,
    /// Headers added upstream on `allow`.
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    /// Verified-token cache.
    #[serde(default)]
    pub cache: CachePolicy,
    /// Source networks every request must come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPolicy>,
    /// Rate limits (token buckets), all of which apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitPolicy>,
    /// The behaviour monitor: bursts, deny ratios and unusual routes revoke an agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<crate::state::BreakerConfig>,
    /// Bounds on per-agent state.
    #[serde(default)]
    pub state: StatePolicy,
    /// Human approvals for high-risk routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPolicy>,
    /// What goes into the decision log.
    #[serde(default)]
    pub log: LogPolicy,
    /// Which machine credentials a request may carry. Default `token`.
    #[serde(default)]
    pub credentials: CredentialMode,
    /// Web Bot Auth: operators whose signed agents are trusted (RFC 9421).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_agents: Option<crate::httpsig::SignatureAgentsPolicy>,
    /// This API as an OAuth protected resource (RFC 9728 metadata, MCP authorization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourcePolicy>,
    /// The edge token service (RFC 8693 token exchange, workload identity federation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_service: Option<crate::exchange::TokenServicePolicy>,
}

/// Which machine credentials a request must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// An access token (`Authorization: Bearer|DPoP`).
    #[default]
    Token,
    /// An HTTP message signature (Web Bot Auth) alone.
    Signature,
    /// Either: a token when one is sent, else a signature.
    Either,
    /// Both a token and a signature.
    Both,
}

/// The protected resource's identity (RFC 9728, RFC 8707).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicy {
    /// The resource identifier tokens must name as audience (RFC 8707), e.g. `https://api.example.com/mcp`.
    pub identifier: String,
    /// Where the metadata document is served; every 401 points to it (`resource_metadata`).
    pub metadata_url: String,
    /// Authorization servers that issue tokens for it.
    pub authorization_servers: Vec<String>,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A documentation URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation: Option<String>,
}

/// Decision-log settings. Events never contain tokens, signatures or
/// credential headers; query values are never logged.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogPolicy {
    /// Outcomes to log. Default all four.
    #[serde(default = "all_outcomes")]
    pub outcomes: Vec<crate::decision::Outcome>,
    /// Share of matching decisions to log, 0–1 (deterministic per request). Default 1.
    #[serde(default = "one")]
    pub sample: f64,
    /// Token claims copied into events (by name); default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
    /// Request headers copied into events (lower-case names); credential headers are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Agents kept in the live statistics. Default 10000.
    #[serde(default = "default_stats_agents")]
    pub stats_agents: usize,
}

impl Default for LogPolicy {
    fn default() -> Self {
        LogPolicy {
            outcomes: all_outcomes(),
            sample: 1.0,
            claims: Vec::new(),
            headers: Vec::new(),
            stats_agents: default_stats_agents(),
        }
    }
}

fn all_outcomes() -> Vec<crate::decision::Outcome> {
    use crate::decision::Outcome::*;
    vec![Allow, Deny, ApprovalRequired, Revoked]
}
fn one() -> f64 {
    1.0
}
fn default_stats_agents() -> usize {
    10_000
}

/// Allowed source networks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// CIDR blocks (IPv4 and IPv6); a request from elsewhere, or with no known source IP, is refused.
    pub allow: Vec<String>,
}

/// One rate limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicy {
    /// A name for responses and logs. Default `<per>-<rate>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What one bucket counts.
    pub per: LimitKey,
    /// Sustained rate, like `"100/1m"`.
    pub rate: crate::state::Rate,
    /// Bucket size (requests allowed at once). Default: the rate's count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Only these route ids count against the limit. Default: all routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
}

/// What a rate-limit bucket is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    /// Each agent (subject and acting agent) has its own bucket.
    Agent,
    /// Each route has one bucket, shared by all agents.
    Route,
    /// Each issuer has one bucket.
    Issuer,
    /// Each agent has a bucket per route.
    AgentRoute,
}

/// Bounds on per-agent state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatePolicy {
    /// Buckets and agent windows kept (each); least recently used are evicted. Default 100000.
    #[serde(default = "default_state_keys")]
    pub max_keys: usize,
}

impl Default for StatePolicy {
    fn default() -> Self {
        StatePolicy { max_keys: default_state_keys() }
    }
}

fn default_state_keys() -> usize {
    crate::limits::DEFAULT_STATE_KEYS
}

/// Where approvals for high-risk routes come from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// `iss` of approval tokens.
    pub issuer: String,
    /// Inline public keys of the approval service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Where the host fetches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Alg>,
    /// Accepted `aud` values of approval tokens.
    pub audiences: Vec<String>,
    /// Where agents ask a human (a CIBA-style backchannel endpoint), sent in the challenge.
    pub endpoint: String,
    /// Required `typ`. Default `approval+jwt`.
    #[serde(default = "default_approval_type")]
    pub token_type: String,
    /// Request header carrying the approval token. Default `x-agent-approval`.
    #[serde(default = "default_approval_header")]
    pub header: String,
    /// Longest approval lifetime. Default `10m`.
    #[serde(default = "default_approval_ttl")]
    pub max_lifetime: Duration,
    /// Clock skew. Default `30s`.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: Duration,
    /// Approval ids remembered so each is used once. Default 100000.
    #[serde(default = "default_replay")]
    pub replay_cache: usize,
}

fn default_approval_type() -> String {
    "approval+jwt".into()
}
fn default_approval_header() -> String {
    "x-agent-approval".into()
}
fn default_approval_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_replay() -> usize {
    crate::limits::DEFAULT_REPLAY_ENTRIES
}

/// One trusted token issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerPolicy {
    /// The exact `iss` value.
    pub iss: String,
    /// Accepted `aud` values; a token must name at least one. At least one.
    pub audiences: Vec<String>,
    /// Inline verification keys (`{"keys": [...]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Where the host fetches the keys from (the core never fetches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Allowed signature algorithms. At least one.
    pub algorithms: Vec<Alg>,
    /// Required JWS `typ`; `null` accepts any. Default `at+jwt` (RFC 9068).
    #[serde(default = "default_token_type")]
    pub token_type: Option<String>,
    /// Longest accepted `exp − iat`. Default `1h`.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: Duration,
    /// Tolerance for clock differences on `exp`, `nbf` and `iat`. Default `30s`.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: Duration,
    /// Claims that must be present. Default `["sub", "iat", "jti"]`.
    #[serde(default = "default_required_claims")]
    pub required_claims: Vec<String>,
    /// Proof of possession the issuer's tokens need.
    #[serde(default)]
    pub binding: Binding,
}

fn default_token_type() -> Option<String> {
    Some("at+jwt".into())
}
fn default_max_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(30)
}
fn default_required_claims() -> Vec<String> {
    vec!["sub".into(), "iat".into(), "jti".into()]
}

/// Proof-of-possession requirement for an issuer's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// Bearer tokens are accepted (but a token that carries `cnf` is still held to it).
    #[default]
    None,
    /// RFC 8705: the token's `cnf.x5t#S256` must match the client certificate.
    Mtls,
    /// RFC 9449: every request carries a DPoP proof by the key in `cnf.jkt`.
    Dpop,
}

/// Rules for delegated tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationPolicy {
    /// Longest `act` chain accepted. Default 1.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Patterns the acting agent (outermost `act.sub`) must match; omitted means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actors: Option<Vec<String>>,
    /// Patterns the subject (`sub`, on whose behalf the agent acts) must match; omitted means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
    /// Whether every token must carry an `act` claim (an agent acting for someone).
    #[serde(default)]
    pub require_actor: bool,
}

fn default_max_depth() -> usize {
    1
}

/// One route: a method and path pattern, and what it takes to call it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicy {
    /// A stable name for logs and decisions.
    pub id: String,
    /// HTTP methods, upper case; `["*"]` for any.
    pub methods: Vec<String>,
    /// Path pattern: literal segments, `*` (one segment), `{name}` (one segment,
    /// captured), and a final `**` (any number of segments).
    pub path: String,
    /// Scopes the token must carry, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Risk level; `high` and `critical` need a human approval.
    #[serde(default)]
    pub risk: Risk,
    /// Source networks for this route, on top of the policy's `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPolicy>,
    /// RFC 9396: the token's `authorization_details` must contain a matching entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<AuthorizationDetailsRule>,
    /// Conditions on the JSON request body that send a request on this route
    /// to the approval gate, as if the route were high-risk (any one met is
    /// enough): `[{"body": "/amount", "gt": 1000}]`. See `approval_rules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_when: Vec<BodyRule>,
}

/// One condition on a value of the JSON request body: a JSON Pointer and
/// exactly one test.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BodyRule {
    /// RFC 6901 JSON Pointer into the body, e.g. `/amount` or `/payee/country`.
    pub body: String,
    /// Met when the value is a number greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// Met when the value is a number greater than or equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    /// Met when the value is a number less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// Met when the value is a number less than or equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    /// Met when the value equals this string, number or boolean (for null: `in: [null]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<Value>,
    /// Met when the value equals one of these.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// Met when the value equals none of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in: Option<Vec<Value>>,
}

/// What a token's RFC 9396 `authorization_details` must grant for a route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationDetailsRule {
    /// The entry's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Actions the entry must list (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The entry's `identifier`, with `{param}` filled from the route's path
    /// (`"{id}"`: a grant for contact 42 only reaches `/contacts/42`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// One of these must be in the entry's `locations`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
}

/// Risk level of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Allowed on machine factors alone.
    #[default]
    Low,
    /// Needs an approval bound to the action.
    High,
    /// Needs an approval bound to the action.
    Critical,
}

/// What happens when no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultDecision {
    /// Deny (the only choice: agentguard never allows an unmatched request).
    #[default]
    Deny,
}

/// Revocation lists; a hit is a `revoked` decision.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationLists {
    /// Revoked token ids (`jti`).
    #[serde(default)]
    pub jti: Vec<String>,
    /// Revoked subjects (`sub`).
    #[serde(default)]
    pub sub: Vec<String>,
    /// Revoked agents (the acting agent's id).
    #[serde(default)]
    pub agents: Vec<String>,
    /// Revoked signing keys (`kid`).
    #[serde(default)]
    pub kid: Vec<String>,
}

/// Where the host fetches a revocation list (a JSON document shaped like
/// [`RevocationLists`]), how often, and how old it may get before the engine
/// refuses to decide without a fresher one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationListPolicy {
    /// The list's URL (`https://`).
    pub uri: String,
    /// How often the host fetches it again.
    #[serde(default = "default_revocation_refresh")]
    pub refresh: Duration,
    /// The oldest list decisions may rely on: past it (or before the first
    /// list arrives) token-bearing requests are refused with
    /// `state_unavailable` (fail closed).
    #[serde(default = "default_revocation_max_stale")]
    pub max_stale: Duration,
    /// The public keys (a JWKS) that sign the list. With them the document
    /// must be a compact JWS (`typ` `revocation-list+jwt`) whose payload is
    /// the list plus `iat`, and the list's age counts from its `iat`, not
    /// from when it was fetched: a host serving an old signed list cannot
    /// make it look fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
}

fn default_revocation_refresh() -> Duration {
    Duration::from_secs(60)
}
fn default_revocation_max_stale() -> Duration {
    Duration::from_secs(3600)
}

impl RevocationLists {
    /// Adds `other`'s entries that are not listed yet.
    pub fn extend(&mut self, other: &RevocationLists) {
        for (mine, theirs) in [
            (&mut self.jti, &other.jti),
            (&mut self.sub, &other.sub),
            (&mut self.agents, &other.agents),
            (&mut self.kid, &other.kid),
        ] {
            let mut seen: std::collections::HashSet<String> = mine.iter().cloned().collect();
            for entry in theirs {
                if seen.insert(entry.clone()) {
                    mine.push(entry.clone());
                }
            }
        }
    }

    /// Entries in all four lists.
    pub fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.agents.len() + self.kid.len()
    }

    /// Whether every list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Headers added upstream on `allow`; inbound headers with the same prefix are removed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    /// Lowercase prefix of every identity header. Default `x-agentguard-`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Which identity headers to add (names from [`IDENTITY_HEADERS`],
    /// without the prefix). Default: all of them. Inbound headers with the
    /// prefix are removed whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
}

/// The identity headers an allowed request can carry upstream, in the order
/// they are listed in the docs (each is `prefix` + name).
pub const IDENTITY_HEADERS: [&str; 7] =
    ["issuer", "agent", "subject", "client-id", "actors", "scopes", "route"];

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders { prefix: default_prefix(), include: None }
    }
}

fn default_prefix() -> String {
    "x-agentguard-".into()
}

/// Verified-token cache settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    /// Entries kept; 0 turns the cache off.
    #[serde(default = "default_cache_entries")]
    pub tokens: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy { tokens: default_cache_entries() }
    }
}

fn default_cache_entries() -> usize {
    crate::limits::DEFAULT_TOKEN_CACHE_ENTRIES
}

/// One problem with a policy, at a JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    /// Where: `issuers[0].max_lifetime`, or `.` for the document itself.
    pub path: String,
    /// What was expected, lowercase.
    pub message: String,
    /// 1-based line in the policy text, when the problem is a parse error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column in the policy text, when the problem is a parse error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

/// What is wrong with a URL the policy names (`jwks_uri`, `revocation_list.uri`,
/// an approval `endpoint`, …): `None` for an `https://` URL with a plain
/// `host[:port]` (`http://` is allowed too, for local tests), else the
/// message for the policy error at its path. One check for every such
/// field, so they all refuse the same URLs with the same words.
pub(crate) fn url_problem(url: &str) -> Option<String> {
    crate::directory::authority_of(url).err().map(|_| format!("expected an `https://` URL, found `{url}`"))
}

impl PolicyError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError { path: path.into(), message: message.into(), line: None, column: None }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

/// Every problem found in a policy (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.0 {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl From<PolicyError> for PolicyErrors {
    fn from(e: PolicyError) -> Self {
        PolicyErrors(vec![e])
    }
}

impl Policy {
    /// Parses policy JSON; the error names the JSON path of the first problem.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::new(
                ".",
                format!("policy is {} bytes, more than the {MAX_POLICY_BYTES}-byte limit", text.len()),
            ));
        }
        // Duplicate keys would silently keep the last value: refuse them first.
        if let Err(e) = crate::json::parse_with_limits(text.as_bytes(), 128, MAX_POLICY_BYTES) {
            if e.contains("duplicate key") {
                let (line, column) = position(&e);
                let message = strip_position(&e);
                let path = match (line, column) {
                    (Some(line), Some(column)) => crate::json::path_of_error(text, line, column, &message),
                    _ => ".".into(),
                };
                return Err(PolicyError { path, message, line, column });
            }
        }
        crate::json::from_str_with_path(text).map_err(|e| PolicyError {
            path: e.path,
            message: e.message,
            line: (e.line > 0).then_some(e.line),
            column: (e.line > 0).then_some(e.column),
        })
    }
}

/// The " at line L column C" serde_json appends, as numbers.
fn position(message: &str) -> (Option<usize>, Option<usize>) {
    let Some(at) = message.rfind(" at line ") else { return (None, None) };
    let mut words =
        message.get(at..).unwrap_or("").split_whitespace().filter_map(|w| w.parse::<usize>().ok());
    (words.next(), words.next())
}

/// serde_json appends " at line L column C"; the position is kept separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message.get(..at).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(extra_issuer: &str) -> String {
        format!(
            r#"{{"issuers":[{{"iss":"https://sts","audiences":["api"],"algorithms":["EdDSA"]{extra_issuer}}}],"routes":[]}}"#
        )
    }

    #[test]
    fn defaults_are_strict() {
        let p = Policy::from_json(&minimal("")).unwrap();
        let i = &p.issuers[0];
        assert_eq!(i.token_type.as_deref(), Some("at+jwt"));
        assert_eq!(i.max_lifetime.as_secs(), 3600);
        assert_eq!(i.clock_skew.as_secs(), 30);
        assert_eq!(i.binding, Binding::None);
        assert_eq!(p.default, DefaultDecision::Deny);
    }

    #[test]
    fn null_token_type_accepts_any() {
        let p = Policy::from_json(&minimal(r#","token_type":null"#)).unwrap();
        assert_eq!(p.issuers[0].token_type, None);
    }

    #[test]
    fn bad_duration_names_its_path() {
        let err = Policy::from_json(&minimal(r#","max_lifetime":"5 minutes""#)).unwrap_err();
        assert_eq!(err.path, "issuers[0].max_lifetime");
        assert_eq!(err.message, "expected a duration like `5m`, found `5 minutes`");
        assert!(err.line.is_some());
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = Policy::from_json(&minimal(r#","audience":"x""#)).unwrap_err();
        assert_eq!(err.path, "issuers[0].audience");
        assert!(err.message.starts_with("unknown field `audience`, expected one of"), "{}", err.message);
        let err = Policy::from_json(r#"{"issuers":[],"routes":[],"extra":1}"#).unwrap_err();
        assert_eq!(err.path, "extra");
        assert!(err.message.contains("unknown field `extra`"));
    }

    #[test]
    fn refused_algorithms_say_why() {
        let text =
            r#"{"issuers":[{"iss":"x","audiences":["a"],"algorithms":["ES256","HS256"]}],"routes":[]}"#;
        let err = Policy::from_json(text).unwrap_err();
        assert_eq!(err.path, "issuers[0].algorithms[1]");
        assert!(err.message.contains("HMAC"));
    }

    #[test]
    fn default_cannot_be_allow() {
        let err = Policy::from_json(r#"{"issuers":[],"routes":[],"default":"allow"}"#).unwrap_err();
        assert_eq!(err.path, "default");
        assert!(err.message.contains("expected `deny`"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_refused_with_a_position() {
        let err =
            Policy::from_json("{\n \"issuers\": [],\n \"routes\": [],\n \"routes\": []\n}").unwrap_err();
        assert_eq!(err.message, "duplicate key `routes`");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = Policy::from_json("{\n  \"issuers\": [,]\n}").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(!err.message.contains(" at line "));
    }
}
