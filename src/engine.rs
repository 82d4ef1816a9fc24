//! The engine: a compiled policy plus bounded per-instance state, and the
//! pipeline that strings the stages together.
//!
//! [`Engine::new`] validates the whole policy once and reports every problem
//! with its JSON path. [`Engine::decide`] runs the stages in order, recording
//! each in the trace, and stops at the first that refuses. It never panics and
//! never returns an error: any failure is a decision.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde_json::Value;

use crate::approval::{self, ApprovalGate};
use crate::attestation::Attestation;
use crate::b64;
use crate::cache::TokenCache;
use crate::credential::{self, Scheme};
use crate::decision::HttpResponse;
use crate::decision::{
    self, ApprovalChallenge, Decision, DecisionEvent, EventAgent, EventBreaker, ForwardHeaders, Identity,
    Outcome, Reason, StageResult, TraceStep,
};
use crate::delegation::Delegation;
use crate::dpop::{self, DpopPolicy};
use crate::exchange::{self, ExchangeContext, Exchanged, OAuthError, TokenService};
use crate::intent;
use crate::keys::{KeyProblem, KeySet};
use crate::limits::MAX_TOKEN_CACHE_ENTRIES;
use crate::mint::SigningKey;
use crate::network::NetworkList;
use crate::policy::{Binding, LimitKey, Policy, PolicyError, PolicyErrors, Risk};
use crate::pop;
use crate::reason::ReasonCode;
use crate::request::{Request, RequestError, RequestInput, RequestParts};
use crate::revocation::Revocations;
use crate::route::{Route, RouteMatch};
use crate::state::{
    BreakerConfig, FirstUse, MemoryStore, Rate, ReplaySpace, StateStore, Suspension, Take, TripKind,
};
use crate::token::{self, Issuer, VerifiedToken};

/// The pipeline's stages, in order: every decision's trace has each of them
/// once, in this order (stages not reached are `skip`).
pub const STAGES: [&str; 13] = [
    "request",
    "route",
    "network",
    "credential",
    "token",
    "binding",
    "delegation",
    "attestation",
    "revocation",
    "behaviour",
    "scope",
    "limits",
    "risk",
];
/// What a host should read of a request's body before deciding it
/// ([`Engine::body_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Nothing: the route needs no body.
    None,
    /// Its SHA-256, as `body_sha256` (a high-risk route's approval digest covers it).
    Digest,
    /// The body itself, as `body` text (the route's `approval_when` conditions read it;
    /// at most [`crate::limits::MAX_BODY_BYTES`] are read).
    Text,
}

/// What `route` reads of a request's body.
fn body_use_of(route: &Route) -> BodyUse {
    if !route.approval_when.is_empty() {
        BodyUse::Text
    } else if matches!(route.risk, Risk::High | Risk::Critical) {
        BodyUse::Digest
    } else {
        BodyUse::None
    }
}

/// A compiled policy, ready to decide. Share one per isolate / VM / process.
#[derive(Debug)]
pub struct Engine {
    realm: String,
    issuers: Vec<Issuer>,
    keys: RwLock<Vec<IssuerKeys>>,
    jwks_uris: Vec<(String, String)>,
    routes: Vec<Route>,
    /// Whether any route reads request bodies (high-risk, or `approval_when`).
    reads_bodies: bool,
    delegation: Delegation,
    /// The lists in force, compiled from `revocation_sources`.
    revocations: RwLock<Arc<Revocations>>,
    revocation_sources: Mutex<crate::revocation::Sources>,
    /// The policy's `revocation_list`: what the host fetches, and how fresh it is.
    revocation_list: Option<crate::revocation::ListSource>,
    identity_prefix: Arc<str>,
    /// Which of [`crate::policy::IDENTITY_HEADERS`] are added upstream.
    identity_include: [bool; crate::policy::IDENTITY_HEADERS.len()],
    /// The route header's name, if it is added upstream, and each route's
    /// id as a header value (by route index): shared by every decision.
    route_header: Option<Arc<str>>,
    route_ids: Vec<(Arc<str>, Arc<str>)>,
    cache: Option<Mutex<TokenCache>>,
    dpop: DpopPolicy,
    attestation: Option<Attestation>,
    att_issuers: Vec<Issuer>,
    att_keys: RwLock<Vec<IssuerKeys>>,
    dpop_nonce_secret: RwLock<Option<Vec<u8>>>,
    network: Option<NetworkList>,
    limits: Vec<Limit>,
    breaker: Option<BreakerConfig>,
    store: Box<dyn StateStore>,
    approval: Option<ApprovalGate>,
    approval_keys: RwLock<Vec<IssuerKeys>>,
    token_service: Option<TokenService>,
    ts_keys: RwLock<Vec<IssuerKeys>>,
    signing_keys: RwLock<Vec<(String, SigningKey)>>,
    log: crate::policy::LogPolicy,
    /// The live statistics; `None` once a host turns them off with
    /// [`Engine::disable_stats`].
    stats: Option<Mutex<crate::stats::Stats>>,
    resource: Option<crate::policy::ResourcePolicy>,
    /// Where a gateway serves the documents and the token endpoint above.
    endpoints: crate::endpoints::Endpoints,
    credentials: crate::policy::CredentialMode,
    signature_agents: Option<crate::httpsig::SignatureAgentsPolicy>,
    directories: RwLock<Vec<(String, KeySet, Vec<String>)>>,
    /// Whether decisions carry the per-stage trace (on unless a host turns
    /// it off with [`Engine::set_trace`]).
    trace: bool,
    /// Tokens handed to the host for signature checks, parsed, by check id,
    /// with the generation of their issuer's keys at the time.
    prepared: Mutex<lru::LruCache<String, (u64, token::Prepared)>>,
    /// Agents' DPoP keys, kept with their tables of multiples.
    proof_keys: dpop::ProofKeys,
}

/// Key-set text as fetched (a JWKS or a key directory, `what`): size-capped
/// ([`crate::limits::MAX_JWKS_BYTES`]) and parsed strictly (no duplicate keys).
fn parse_jwks_text(text: &str, what: &str) -> Result<Value, String> {
    use crate::limits::{MAX_JWKS_BYTES, MAX_JWKS_KEYS};
    if text.len() > MAX_JWKS_BYTES {
        return Err(format!("{what} is {} bytes, more than the {MAX_JWKS_BYTES}-byte limit", text.len()));
    }
    crate::json::parse_with_limits(text.as_bytes(), 8, MAX_JWKS_KEYS * 32)
        .map_err(|e| format!("{what} is not acceptable JSON: {e}"))
}

/// A compiled rate limit.
#[derive(Debug, Clone)]
struct Limit {
    id: String,
    per: LimitKey,
    rate: Rate,
    burst: u32,
    /// Route indices it applies to; `None`: all.
    routes: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Default)]
struct IssuerKeys {
    set: Arc<KeySet>,
    generation: u64,
}

impl Engine {
    /// Parses and compiles policy JSON.
    pub fn from_json(text: &str) -> Result<Engine, PolicyErrors> {
        let policy = Policy::from_json(text)?;
        Engine::new(&policy)
    }

    /// Turns the per-stage trace in decisions on or off. Gateways that never
    /// show it turn it off: each stage then costs no message formatting and
    /// a decision's `trace` is empty (its reasons still say why it refused).
    /// The CLI, the playground and the tests keep it on.
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// Turns the live statistics ([`Engine::stats`]) off. A host that keeps
    /// its own counters (Envoy's metrics) turns them off: a decision then
    /// skips the per-agent table (a lookup and an update per request), and
    /// `stats()` stays empty.
    pub fn disable_stats(&mut self) {
        self.stats = None;
    }

    /// Compiles a policy, reporting every problem found. Per-agent state
    /// (rate limits, breaker) lives in a [`MemoryStore`] inside the engine.
    pub fn new(policy: &Policy) -> Result<Engine, PolicyErrors> {
        let replay = |n: usize| n.clamp(1, crate::limits::MAX_REPLAY_ENTRIES);
        let store = MemoryStore::new(policy.state.max_keys.clamp(1, crate::limits::MAX_STATE_KEYS))
            .with_replay_capacity(
                ReplaySpace::DpopProof,
                replay(
                    policy.dpop.as_ref().map_or(crate::limits::DEFAULT_REPLAY_ENTRIES, |d| d.replay_cache),
                ),
            )
            .with_replay_capacity(
                ReplaySpace::Approval,
                replay(policy.approval.as_ref().map_or(1, |a| a.replay_cache)),
            );
        Engine::with_store(policy, Box::new(store))
    }

    /// [`Engine::new`] with per-agent state kept in `store` (for state shared
    /// across instances: a Durable Object, proxy-wasm shared data).
    pub fn with_store(policy: &Policy, store: Box<dyn StateStore>) -> Result<Engine, PolicyErrors> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(PolicyError::new(path, message));

        if policy.issuers.is_empty() {
            err("issuers".into(), "expected at least one trusted issuer".into());
        }
        let mut issuers = Vec::new();
        let mut keys = Vec::new();
        let mut jwks_uris = Vec::new();
        for (i, p) in policy.issuers.iter().enumerate() {
            let at = |field: &str| format!("issuers[{i}].{field}");
            if p.iss.is_empty() {
                err(at("iss"), "expected a non-empty issuer identifier".into());
            }
            if policy.issuers.iter().take(i).any(|q| q.iss == p.iss) {
                err(at("iss"), format!("issuer `{}` is listed twice", p.iss));
            }
            if p.audiences.is_empty() || p.audiences.iter().any(String::is_empty) {
                err(at("audiences"), "expected at least one non-empty audience".into());
            }
            if p.algorithms.is_empty() {
                err(
                    at("algorithms"),
                    "expected at least one algorithm, e.g. `[\"EdDSA\", \"ES256\"]`".into(),
                );
            }
            if p.token_type.as_deref() == Some("") {
                err(at("token_type"), "expected a media type like `at+jwt`, or `null` to accept any".into());
            }
            if p.max_lifetime.as_secs() == 0 {
                err(at("max_lifetime"), "expected a positive duration like `5m`".into());
            }
            if p.clock_skew.as_secs() > 600 {
                err(at("clock_skew"), format!("expected at most `10m`, found `{}`", p.clock_skew));
            }
            for (j, c) in p.required_claims.iter().enumerate() {
                if c.is_empty() {
                    err(at(&format!("required_claims[{j}]")), "expected a claim name".into());
                }
            }
            let (set, uri, problems) = KeySet::from_policy(
                p.jwks.as_ref(),
                p.jwks_uri.as_deref(),
                ["jwks", "jwks_uri"],
                "signature verification key",
                &format!("issuers[{i}]"),
            );
            for (path, message) in problems {
                err(path, message);
            }
            if let Some(uri) = uri {
                jwks_uris.push((p.iss.clone(), uri));
            }
            issuers.push(Issuer::from_policy(p));
            keys.push(IssuerKeys { set: Arc::new(set), generation: 0 });
        }

        let mut routes = Vec::new();
        for (i, r) in policy.routes.iter().enumerate() {
            if policy.routes.iter().take(i).any(|q| q.id == r.id) {
                err(format!("routes[{i}].id"), format!("route id `{}` is used twice", r.id));
            }
            match Route::new(i, &r.id, &r.methods, &r.path, r.scopes.clone(), r.risk) {
                Ok(route) => routes.push(route),
                Err((field, message)) => err(format!("routes[{i}].{field}"), message),
            }
        }

        let delegation = match &policy.delegation {
            None => Delegation::default(),
            Some(d) => Delegation::new(d).unwrap_or_else(|(field, message)| {
                err(format!("delegation.{field}"), message);
                Delegation::default()
            }),
        };

        let dpop = policy.dpop.clone().unwrap_or_default();
        if dpop.algorithms.is_empty() {
            err(
                "dpop.algorithms".into(),
                "expected at least one algorithm, e.g. `[\"ES256\", \"EdDSA\"]`".into(),
            );
        }
        if dpop.max_age.as_secs() == 0 || dpop.max_age.as_secs() > 3600 {
            err(
                "dpop.max_age".into(),
                format!("expected a duration between `1s` and `1h`, found `{}`", dpop.max_age),
            );
        }
        if dpop.replay_cache == 0 || dpop.replay_cache > crate::limits::MAX_REPLAY_ENTRIES {
            err(
                "dpop.replay_cache".into(),
                format!(
                    "expected between 1 and {}, found {}",
                    crate::limits::MAX_REPLAY_ENTRIES,
                    dpop.replay_cache
                ),
            );
        }

        let mut att_issuers = Vec::new();
        let mut att_keys = Vec::new();
        let attestation = match &policy.attestation {
            None => None,
            Some(p) => match Attestation::new(p) {
                Ok((compiled, (issuers, keys, uris))) => {
                    for i in &issuers {
                        if policy.issuers.iter().any(|q| q.iss == i.iss) {
                            err(
                                "attestation.issuers".into(),
                                format!("`{}` is also an access-token issuer; use separate issuers", i.iss),
                            );
                        }
                    }
                    att_issuers = issuers;
                    att_keys = keys
                        .into_iter()
                        .map(|set| IssuerKeys { set: Arc::new(set), generation: 0 })
                        .collect();
                    jwks_uris.extend(uris);
                    Some(compiled)
                }
                Err(problems) => {
                    for (path, message) in problems {
                        err(format!("attestation.{path}"), message);
                    }
                    None
                }
            },
        };

        let network = match &policy.network {
            None => None,
            Some(n) => match NetworkList::new(&n.allow) {
                Ok(list) if list.is_empty() => {
                    err(
                        "network.allow".into(),
                        "expected at least one CIDR block (omit `network` to allow any)".into(),
                    );
                    None
                }
                Ok(list) => Some(list),
                Err((i, message)) => {
                    err(format!("network.allow[{i}]"), message);
                    None
                }
            },
        };
        for (i, r) in policy.routes.iter().enumerate() {
            if let Some(n) = &r.network {
                match NetworkList::new(&n.allow) {
                    Ok(list) => {
                        if let Some(route) = routes.iter_mut().find(|route| route.index == i) {
                            route.network = Some(list);
                        }
                    }
                    Err((j, message)) => err(format!("routes[{i}].network.allow[{j}]"), message),
                }
            }
            if let Some(rule) = &r.authorization_details {
                if rule.kind.is_empty() {
                    err(
                        format!("routes[{i}].authorization_details.type"),
                        "expected a non-empty type".into(),
                    );
                }
                if let Some(template) = &rule.identifier {
                    let names: Vec<&str> =
                        r.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
                    if let Some(name) = template.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                        if !names.contains(&name) {
                            err(
                                format!("routes[{i}].authorization_details.identifier"),
                                format!("`{{{name}}}` is not a parameter of the route's path `{}`", r.path),
                            );
                        }
                    }
                }
                if let Some(route) = routes.iter_mut().find(|route| route.index == i) {
                    route.authorization_details = Some(rule.clone());
                }
            }
            let mut conditions = Vec::new();
            for (j, rule) in r.approval_when.iter().enumerate() {
                match crate::approval_rules::BodyCondition::new(rule) {
                    Ok(c) => conditions.push(c),
                    Err((field, message)) => err(format!("routes[{i}].approval_when[{j}].{field}"), message),
                }
            }
            if !r.approval_when.is_empty() && policy.approval.is_none() {
                err(
                    format!("routes[{i}].approval_when"),
                    "approval conditions need an `approval` section (an approval issuer and endpoint); without one a request that meets them could never be approved".into(),
                );
            }
            if let Some(route) = routes.iter_mut().find(|route| route.index == i) {
                route.approval_when = conditions;
            }
            if matches!(r.risk, Risk::High | Risk::Critical) && policy.approval.is_none() {
                err(
                    format!("routes[{i}].risk"),
                    "a high-risk route needs an `approval` section (an approval issuer and endpoint); without one it could never be called".into(),
                );
            }
        }
        let mut limits = Vec::new();
        for (i, l) in policy.limits.iter().enumerate() {
            let burst = l.burst.unwrap_or(l.rate.n);
            if burst == 0 {
                err(format!("limits[{i}].burst"), "expected at least 1".into());
            }
            let route_indices = match &l.routes {
                None => None,
                Some(ids) => {
                    let mut indices = Vec::new();
                    for (j, id) in ids.iter().enumerate() {
                        match policy.routes.iter().position(|r| &r.id == id) {
                            Some(index) => indices.push(index),
                            None => {
                                err(format!("limits[{i}].routes[{j}]"), format!("no route has the id `{id}`"))
                            }
                        }
                    }
                    Some(indices)
                }
            };
            let per = match l.per {
                LimitKey::Agent => "agent",
                LimitKey::Route => "route",
                LimitKey::Issuer => "issuer",
                LimitKey::AgentRoute => "agent_route",
            };
            let id = l.id.clone().unwrap_or_else(|| format!("{per}-{}", l.rate));
            limits.push(Limit { id, per: l.per, rate: l.rate, burst, routes: route_indices });
        }
        if let Some(b) = &policy.circuit_breaker {
            if b.window.as_secs() == 0 {
                err("circuit_breaker.window".into(), "expected a positive duration like `10s`".into());
            }
            if b.max_deny_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                err("circuit_breaker.max_deny_ratio".into(), "expected a ratio between 0 and 1".into());
            }
            if b.max_requests.is_none() && b.max_deny_ratio.is_none() && b.profile_requests.is_none() {
                err(
                    "circuit_breaker".into(),
                    "expected at least one of `max_requests`, `max_deny_ratio`, `profile_requests`".into(),
                );
            }
        }
        if policy.state.max_keys == 0 || policy.state.max_keys > crate::limits::MAX_STATE_KEYS {
            err("state.max_keys".into(), format!("expected between 1 and {}", crate::limits::MAX_STATE_KEYS));
        }
        let approval = match &policy.approval {
            None => None,
            Some(a) => match ApprovalGate::new(a) {
                Ok(gate) => {
                    if let Some(uri) = &gate.jwks_uri {
                        jwks_uris.push((gate.issuer.iss.clone(), uri.clone()));
                    }
                    Some(gate)
                }
                Err(problems) => {
                    for (path, message) in problems {
                        err(
                            if path == "." { "approval".into() } else { format!("approval.{path}") },
                            message,
                        );
                    }
                    None
                }
            },
        };

        let token_service = match &policy.token_service {
            None => None,
            Some(t) => match TokenService::new(t) {
                Ok(ts) => {
                    jwks_uris.extend(ts.jwks_uris.iter().cloned());
                    Some(ts)
                }
                Err(problems) => {
                    for (path, message) in problems {
                        err(format!("token_service.{path}"), message);
                    }
                    None
                }
            },
        };

        let log = &policy.log;
        if !(0.0..=1.0).contains(&log.sample) {
            err("log.sample".into(), format!("expected a share between 0 and 1, found {}", log.sample));
        }
        if log.outcomes.is_empty() {
            err("log.outcomes".into(), "expected at least one outcome to log".into());
        }
        let secret_headers = ["authorization", "proxy-authorization", "cookie", "dpop", "set-cookie"];
        for (i, h) in log.headers.iter().enumerate() {
            let is_credential = secret_headers.contains(&h.as_str())
                || policy.approval.as_ref().is_some_and(|a| a.header == *h)
                || policy.attestation.as_ref().is_some_and(|a| a.header == *h);
            if is_credential {
                err(format!("log.headers[{i}]"), format!("`{h}` carries credentials and is never logged"));
            } else if h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()) {
                err(format!("log.headers[{i}]"), format!("expected a lower-case header name, found `{h}`"));
            }
        }
        if log.stats_agents == 0 || log.stats_agents > crate::limits::MAX_STATE_KEYS {
            err(
                "log.stats_agents".into(),
                format!("expected between 1 and {}", crate::limits::MAX_STATE_KEYS),
            );
        }

        if let Some(r) = &policy.resource {
            if !policy.issuers.iter().any(|i| i.audiences.contains(&r.identifier)) {
                err(
                    "resource.identifier".into(),
                    format!(
                        "no issuer lists `{}` among its `audiences`: every token for this resource would be refused",
                        r.identifier
                    ),
                );
            }
            if let Some(problem) = crate::policy::url_problem(&r.metadata_url) {
                err("resource.metadata_url".into(), problem);
            }
            if r.authorization_servers.is_empty() {
                err(
                    "resource.authorization_servers".into(),
                    "expected at least one authorization server".into(),
                );
            }
        }

        let mut directories = Vec::new();
        if let Some(sa) = &policy.signature_agents {
            if sa.directories.is_empty() {
                err("signature_agents.directories".into(), "expected at least one trusted operator".into());
            }
            for (i, d) in sa.directories.iter().enumerate() {
                let (set, uri, problems) = KeySet::from_policy(
                    d.keys.as_ref(),
                    d.directory_uri.as_deref(),
                    ["keys", "directory_uri"],
                    "Ed25519 key",
                    &format!("signature_agents.directories[{i}]"),
                );
                for (path, message) in problems {
                    err(path, message);
                }
                if let Some(uri) = uri {
                    jwks_uris.push((d.operator.clone(), uri));
                }
                directories.push((d.operator.clone(), set, d.scopes.clone()));
            }
        }
        if policy.credentials != crate::policy::CredentialMode::Token && policy.signature_agents.is_none() {
            err(
                "credentials".into(),
                "signatures are accepted only with a `signature_agents` section".into(),
            );
        }

        let prefix = &policy.identity_headers.prefix;
        if prefix.is_empty()
            || !prefix.ends_with('-')
            || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            err(
                "identity_headers.prefix".into(),
                format!("expected a lower-case header prefix ending in `-`, like `x-agentguard-`, found `{prefix}`"),
            );
        }
        let mut identity_include = [true; crate::policy::IDENTITY_HEADERS.len()];
        if let Some(list) = &policy.identity_headers.include {
            identity_include = [false; crate::policy::IDENTITY_HEADERS.len()];
            for (i, name) in list.iter().enumerate() {
                match crate::policy::IDENTITY_HEADERS.iter().position(|h| h == name) {
                    Some(slot) => {
                        if let Some(on) = identity_include.get_mut(slot) {
                            *on = true;
                        }
                    }
                    None => err(
                        format!("identity_headers.include[{i}]"),
                        format!(
                            "expected one of {}, found `{}`",
                            crate::policy::IDENTITY_HEADERS.map(|h| format!("`{h}`")).join(", "),
                            crate::keys::clip(name)
                        ),
                    ),
                }
            }
        }
        if policy.cache.tokens > MAX_TOKEN_CACHE_ENTRIES {
            err(
                "cache.tokens".into(),
                format!("expected at most {MAX_TOKEN_CACHE_ENTRIES}, found {}", policy.cache.tokens),
            );
        }

        let revocation_list =
            match policy.revocation_list.as_ref().map(crate::revocation::ListSource::from_policy) {
                Some(Ok(list)) => Some(list),
                Some(Err(problems)) => {
                    for (path, message) in problems {
                        err(path, message);
                    }
                    None
                }
                None => None,
            };

        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        let route_ids = routes.iter().map(|r| (r.id.as_str().into(), header_value(&r.id).into())).collect();
        let reads_bodies = routes.iter().any(|r| body_use_of(r) != BodyUse::None);
        Ok(Engine {
            reads_bodies,
            realm: policy.realm.clone().unwrap_or_else(|| "agentguard".into()),
            route_ids,
            issuers,
            keys: RwLock::new(keys),
            jwks_uris,
            routes,
            delegation,
            revocations: RwLock::new(Arc::new(Revocations::new(&policy.revoked))),
            revocation_sources: Mutex::new(crate::revocation::Sources {
                base: policy.revoked.clone(),
                ..Default::default()
            }),
            revocation_list,
            identity_prefix: prefix.as_str().into(),
            route_header: included(&identity_include, "route").then(|| format!("{prefix}route").into()),
            identity_include,
            cache: TokenCache::new(policy.cache.tokens).map(Mutex::new),
            dpop_nonce_secret: RwLock::new(None),
            dpop,
            attestation,
            att_issuers,
            att_keys: RwLock::new(att_keys),
            network,
            limits,
            breaker: policy.circuit_breaker.clone(),
            store,
            approval_keys: RwLock::new(
                approval
                    .iter()
                    .map(|g| IssuerKeys { set: Arc::new(g.initial_keys.clone()), generation: 0 })
                    .collect(),
            ),
            approval,
            ts_keys: RwLock::new(
                token_service
                    .iter()
                    .flat_map(|ts| ts.initial_keys.iter())
                    .map(|set| IssuerKeys { set: Arc::new(set.clone()), generation: 0 })
                    .collect(),
            ),
            token_service,
            signing_keys: RwLock::new(Vec::new()),
            stats: Some(Mutex::new(crate::stats::Stats::new(policy.log.stats_agents.max(1)))),
            log: policy.log.clone(),
            resource: policy.resource.clone(),
            endpoints: crate::endpoints::Endpoints::of(policy),
            credentials: policy.credentials,
            signature_agents: policy.signature_agents.clone(),
            directories: RwLock::new(directories),
            trace: true,
            prepared: Mutex::new(crate::cache::lru(crate::limits::MAX_PREPARED_TOKENS)),
            proof_keys: dpop::ProofKeys::new(),
        })
    }

    /// The agents' DPoP keys the engine remembers (thumbprints, most
    /// recently used first) and whether each has built its table of
    /// multiples: see [`dpop::ProofKeys`].
    pub fn remembered_proof_keys(&self) -> Vec<(String, bool)> {
        self.proof_keys.list()
    }

    /// Where a gateway serves its own endpoints (protected-resource
    /// metadata, the token service): see [`crate::endpoints`].
    pub fn endpoints(&self) -> &crate::endpoints::Endpoints {
        &self.endpoints
    }

    /// Issuers whose keys the host must fetch: `(iss, jwks_uri)`.
    pub fn jwks_uris(&self) -> &[(String, String)] {
        &self.jwks_uris
    }

    /// Replaces an issuer's keys with a JWKS the host fetched. Malformed keys
    /// are skipped and reported; a document with no usable key is refused and
    /// the previous keys stay (last good keys win over no keys).
    pub fn set_issuer_keys(&self, iss: &str, jwks: &Value) -> Result<Vec<KeyProblem>, String> {
        let (list, index) = match self.issuers.iter().position(|i| i.iss == iss) {
            Some(i) => (&self.keys, i),
            None => match self.att_issuers.iter().position(|i| i.iss == iss) {
                Some(i) => (&self.att_keys, i),
                None if self.approval.as_ref().is_some_and(|g| g.issuer.iss == iss) => {
                    (&self.approval_keys, 0)
                }
                None => match self
                    .token_service
                    .as_ref()
                    .and_then(|ts| ts.issuers.iter().position(|i| i.iss == iss))
                {
                    Some(i) => (&self.ts_keys, i),
                    None => {
                        // A Web Bot Auth key directory, by operator: only
                        // without its response signature when the policy says so.
                        if self.signature_agents.as_ref().is_some_and(|sa| {
                            sa.directory_signatures == crate::httpsig::DirectorySignatures::Required
                        }) && self.directory_uri(iss).is_some()
                        {
                            return Err(format!(
                                "the key directory of `{}` must be handed over with its response signature \
                                 (`signature_agents.directory_signatures` is `required`); keeping the previous keys",
                                crate::keys::clip(iss)
                            ));
                        }
                        let (set, problems) = KeySet::from_jwks(jwks)?;
                        return self.replace_directory(iss, set, problems);
                    }
                },
            },
        };
        let (mut set, problems) = KeySet::from_jwks(jwks)?;
        if set.is_empty() {
            return Err("JWKS has no usable signature verification key; keeping the previous keys".into());
        }
        let mut keys = list.write().unwrap_or_else(PoisonError::into_inner);
        let slot = keys.get_mut(index).ok_or("issuer index out of range")?;
        set.keep_tables_from(&slot.set);
        slot.set = Arc::new(set);
        slot.generation = slot.generation.wrapping_add(1);
        Ok(problems)
    }

    /// Replaces an operator's Web Bot Auth keys with the key directory the
    /// host fetched from its `directory_uri`, given with the response's
    /// `Signature-Input`, `Signature` and `Content-Digest` headers, at `now`
    /// (Unix seconds). With `signature_agents.directory_signatures: required`
    /// (the default) only keys a valid directory signature covers are kept
    /// ([`crate::directory`]; the authority is the `directory_uri`'s); unsigned
    /// keys are reported as problems, and a directory whose signatures do not
    /// verify, or with no signed key, is refused: the previous keys stay.
    pub fn set_directory_keys(
        &self,
        operator: &str,
        response: &crate::directory::DirectoryResponse<'_>,
        now: i64,
    ) -> Result<Vec<KeyProblem>, String> {
        let sa = self.signature_agents.as_ref().ok_or("the policy has no `signature_agents`")?;
        let uri = self.directory_uri(operator).ok_or_else(|| {
            format!("operator `{}` has no `directory_uri` in the policy", crate::keys::clip(operator))
        })?;
        let jwks = parse_jwks_text(response.text, "key directory")?;
        let (set, mut problems) = KeySet::from_jwks(&jwks)?;
        if sa.directory_signatures == crate::httpsig::DirectorySignatures::Unchecked {
            return self.replace_directory(operator, set, problems);
        }
        let authority = crate::directory::authority_of(uri)?;
        let signed = crate::directory::verify(&set, response, &authority, now, sa.clock_skew.as_secs_i64())
            .map_err(|e| format!("{e}; keeping the previous keys"))?;
        // Keep the signed keys, in directory order; report the others.
        let list = jwks.get("keys").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let mut kept = Vec::new();
        for (index, value) in list.iter().enumerate() {
            if let Ok(Some(jwk)) = crate::keys::parse_jwk(value) {
                if signed.contains(&jwk.thumbprint) {
                    kept.push(jwk);
                } else {
                    problems.push(KeyProblem {
                        index,
                        skipped: false,
                        message: format!(
                            "key `{}` has no valid directory signature; not trusted",
                            jwk.thumbprint
                        ),
                    });
                }
            }
        }
        self.replace_directory(operator, KeySet::from_keys(kept), problems)
    }

    /// Whether `operator`'s keys come from a key directory the policy names
    /// by `directory_uri`: a host that fetches it gives the response to
    /// [`Engine::set_directory_keys`] (with its signature headers), not to
    /// [`Engine::set_issuer_keys`].
    pub fn is_directory_operator(&self, operator: &str) -> bool {
        self.directory_uri(operator).is_some()
    }

    /// The `directory_uri` the policy names for `operator`.
    fn directory_uri(&self, operator: &str) -> Option<&str> {
        self.signature_agents
            .as_ref()?
            .directories
            .iter()
            .find(|d| d.operator == operator)?
            .directory_uri
            .as_deref()
    }

    fn replace_directory(
        &self,
        operator: &str,
        mut set: KeySet,
        problems: Vec<KeyProblem>,
    ) -> Result<Vec<KeyProblem>, String> {
        let mut dirs = self.directories.write().unwrap_or_else(PoisonError::into_inner);
        let slot = dirs
            .iter_mut()
            .find(|(op, _, _)| op == operator)
            .ok_or_else(|| format!("issuer `{}` is not in the policy", crate::keys::clip(operator)))?;
        if set.is_empty() {
            return Err("directory has no usable key; keeping the previous keys".into());
        }
        set.keep_tables_from(&slot.1);
        slot.1 = set;
        Ok(problems)
    }

    /// [`Engine::set_issuer_keys`] for JWKS text as fetched: size-capped
    /// ([`crate::limits::MAX_JWKS_BYTES`]) and parsed strictly (no duplicate keys).
    pub fn set_issuer_keys_json(&self, iss: &str, jwks_text: &str) -> Result<Vec<KeyProblem>, String> {
        let jwks = parse_jwks_text(jwks_text, "JWKS")?;
        self.set_issuer_keys(iss, &jwks)
    }

    /// Sets the secret DPoP nonces are derived from (needed when the policy
    /// sets `dpop.nonce`; hosts pass random bytes, e.g. from `crypto.getRandomValues`).
    /// Nonces rotate every `dpop.max_age`; the previous one stays valid one more window.
    pub fn set_dpop_nonce_secret(&self, secret: &[u8]) {
        *self.dpop_nonce_secret.write().unwrap_or_else(PoisonError::into_inner) = Some(secret.to_vec());
    }

    /// The DPoP nonce to hand out at `now` (Unix seconds), if nonces are on and a secret is set.
    pub fn dpop_nonce(&self, now: i64) -> Option<String> {
        if !self.dpop.nonce {
            return None;
        }
        let secret = self.dpop_nonce_secret.read().unwrap_or_else(PoisonError::into_inner);
        secret.as_ref().map(|s| dpop::nonce(s, now, self.dpop.max_age))
    }

    /// [`Engine::set_signing_keys`] from the JSON text of a secret, as every
    /// frontend gets the keys: size-capped and parsed strictly like a fetched
    /// JWKS, so each frontend refuses bad text with the same message.
    pub fn set_signing_keys_json(&self, private_jwks_json: &str) -> Result<usize, String> {
        self.set_signing_keys(&parse_jwks_text(private_jwks_json, "the key set")?)
    }

    /// Loads the token service's private signing keys (`{"keys": [private JWKs with kid]}`,
    /// from a secret — never from the policy). Returns how many were loaded;
    /// the policy's `signing_kid` must be among them.
    pub fn set_signing_keys(&self, private_jwks: &Value) -> Result<usize, String> {
        let ts = self.token_service.as_ref().ok_or("the policy has no `token_service`")?;
        let list =
            private_jwks.get("keys").and_then(Value::as_array).ok_or("expected `{\"keys\": [...]}`")?;
        let mut keys = Vec::new();
        for (i, jwk) in list.iter().enumerate() {
            let kid = jwk
                .get("kid")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("keys[{i}]: a signing key needs a `kid`"))?;
            let key = SigningKey::from_jwk(jwk).map_err(|e| format!("keys[{i}]: {e}"))?;
            keys.push((kid.to_owned(), key));
        }
        if !keys.iter().any(|(kid, _)| *kid == ts.signing_kid) {
            return Err(format!("no key has the active `signing_kid` `{}`", ts.signing_kid));
        }
        let n = keys.len();
        *self.signing_keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(n)
    }

    /// The token service's public JWKS (every loaded signing key), for `/.well-known/jwks.json`.
    pub fn token_service_jwks(&self) -> Value {
        let keys = self.signing_keys.read().unwrap_or_else(PoisonError::into_inner);
        serde_json::json!({ "keys": keys.iter().map(|(kid, k)| k.public_jwk(kid)).collect::<Vec<_>>() })
    }

    /// RFC 8414 metadata of the token service, if the policy has one.
    pub fn token_service_metadata(&self) -> Option<Value> {
        self.token_service.as_ref().map(|ts| ts.metadata(&self.dpop.algorithms))
    }

    /// Handles `POST /token` (RFC 8693 token exchange). Never fails: errors are
    /// RFC 6749 §5.2 responses, and nothing is minted unless every check passed.
    pub fn exchange(&self, ctx: ExchangeContext<'_>) -> HttpResponse {
        self.exchange_checked(ctx, true).response
    }

    /// [`Engine::exchange`] (`first_attempt`) or [`Engine::exchange_again`],
    /// also saying whether it failed because a subject or actor token names
    /// a key the engine does not have: a host that fetches the federation
    /// issuers' keys by URL then fetches them and tries once more.
    pub fn exchange_checked(&self, ctx: ExchangeContext<'_>, first_attempt: bool) -> Exchanged {
        match self.try_exchange(ctx, first_attempt) {
            Ok(minted) => Exchanged { response: minted.response(), key_unknown: false },
            Err(e) => Exchanged { response: e.response(), key_unknown: e.key_unknown },
        }
    }

    /// [`Engine::exchange`] once more for the same request, after the host
    /// refreshed the external issuers' keys because the first attempt named
    /// a key it did not have (`invalid_grant`): the first attempt already
    /// took the client's `token_service.rate_limit` token, so this one takes
    /// none.
    pub fn exchange_again(&self, ctx: ExchangeContext<'_>) -> HttpResponse {
        self.exchange_checked(ctx, false).response
    }

    fn try_exchange(&self, ctx: ExchangeContext<'_>, count: bool) -> Result<exchange::Minted, OAuthError> {
        let ts = self
            .token_service
            .as_ref()
            .ok_or_else(|| OAuthError::new("invalid_request", "this gateway has no token service"))?;
        let request = ctx.request;
        // Before anything is parsed or verified: a flood costs one bucket each.
        if let Some((rate, burst)) = ts.rate_limit.filter(|_| count) {
            let bucket = TokenService::client_bucket(request.source_ip);
            if let Take::Limited { retry_after_ms } = self.store.take(&bucket, request.now_ms, rate, burst) {
                let retry = retry_after_ms.div_ceil(1000).max(1);
                return Err(OAuthError {
                    retry_after: Some(retry),
                    ..OAuthError::new(
                        "rate_limited",
                        format!(
                            "too many token requests from this client ({} per {}, burst {burst}); retry in {retry} s",
                            rate.n, rate.period
                        ),
                    )
                });
            }
        }
        if request.method != "POST" {
            return Err(OAuthError::new("invalid_request", "the token endpoint takes `POST`"));
        }
        let content_type = request.header_values("content-type").next().unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::new(
                "invalid_request",
                format!(
                    "expected `application/x-www-form-urlencoded`, found `{}`",
                    crate::keys::clip(content_type)
                ),
            ));
        }
        let form = exchange::parse_form(ctx.body)?;
        let (subject_token, actor_token) = exchange::check_form(&form)?;
        let now = request.now();
        let keys = self.ts_keys.read().unwrap_or_else(PoisonError::into_inner);
        let verify = |t: &str, what: &str| {
            let v = token::verify(t, &ts.issuers, |i| keys.get(i).map(|k| k.set.as_ref()), &[]).map_err(
                |(code, m)| OAuthError {
                    key_unknown: code == ReasonCode::TokenKeyNotFound,
                    ..OAuthError::new("invalid_grant", format!("{what} token: {m}"))
                },
            )?;
            let issuer = ts
                .issuers
                .get(v.issuer)
                .ok_or_else(|| OAuthError::new("server_error", "issuer index out of range"))?;
            token::validate(&v.claims, issuer, now)
                .map_err(|(_, m)| OAuthError::new("invalid_grant", format!("{what} token: {m}")))?;
            Ok::<_, OAuthError>(v)
        };
        let subject = verify(subject_token, "subject")?;
        let actor = actor_token.map(|t| verify(t, "actor")).transpose()?;
        let mut grant = ts.grant(subject.issuer, subject.claims, actor.map(|a| a.claims), &form)?;
        if request.header_values("dpop").next().is_some() {
            let secret = self.dpop_nonce_secret.read().unwrap_or_else(PoisonError::into_inner).clone();
            let proof =
                dpop::check(&self.dpop, request, None, None, secret.as_deref(), &[], &self.proof_keys)
                    .map_err(|(code, m)| {
                        let error = if code == ReasonCode::DpopNonceRequired {
                            "use_dpop_nonce"
                        } else {
                            "invalid_dpop_proof"
                        };
                        OAuthError::new(error, m)
                    })?;
            match self.store.first_use(ReplaySpace::DpopProof, proof.replay_key, now, proof.expires_at) {
                FirstUse::Fresh => {}
                FirstUse::Replayed => {
                    return Err(OAuthError::new(
                        "invalid_dpop_proof",
                        "this DPoP proof (`jti`) was already used",
                    ))
                }
                FirstUse::Full { retry_after_secs } => {
                    return Err(OAuthError::new(
                        "temporarily_unavailable",
                        format!(
                        "too many live DPoP proofs to remember another one; retry in {retry_after_secs} s"
                    ),
                    ))
                }
            }
            grant.jkt = Some(proof.jkt);
        }
        let signing = self.signing_keys.read().unwrap_or_else(PoisonError::into_inner);
        let key =
            signing.iter().find(|(kid, _)| *kid == ts.signing_kid).map(|(_, k)| k).ok_or_else(|| {
                OAuthError::new("server_error", "the token service has no signing key loaded")
            })?;
        if ctx.jti.len() < 16 {
            return Err(OAuthError::new(
                "server_error",
                "the host must supply a random `jti` of 16+ characters",
            ));
        }
        ts.mint(&grant, key, now, ctx.jti)
    }

    /// RFC 9728 protected-resource metadata, if the policy names the resource.
    pub fn resource_metadata(&self) -> Option<Value> {
        let r = self.resource.as_ref()?;
        // Sorted and deduplicated by a set (no sort instance in the Wasm module).
        let mut scopes = std::collections::BTreeSet::new();
        scopes.extend(self.routes.iter().flat_map(|route| route.scopes.iter().map(String::as_str)));
        let mut doc = serde_json::json!({
            "resource": r.identifier,
            "authorization_servers": r.authorization_servers,
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": self.dpop.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
        });
        if let Some(obj) = doc.as_object_mut() {
            if let Some(name) = &r.name {
                obj.insert("resource_name".into(), name.clone().into());
            }
            if let Some(docs) = &r.documentation {
                obj.insert("resource_documentation".into(), docs.clone().into());
            }
        }
        Some(doc)
    }

    /// A snapshot of the live statistics (per agent, per route, by outcome and reason).
    pub fn stats(&self) -> crate::stats::StatsSnapshot {
        match &self.stats {
            Some(stats) => stats.lock().unwrap_or_else(PoisonError::into_inner).snapshot(),
            None => crate::stats::StatsSnapshot::default(),
        }
    }

    /// Lifts a circuit-breaker suspension (an operator's call); `true` if the agent was suspended.
    pub fn lift_suspension(&self, agent: &str) -> bool {
        self.store.lift(agent)
    }

    /// Puts a breaker suspension back in force (a host restoring what it kept
    /// in durable storage); `false` if the store cannot. An expired one is
    /// ignored when decisions look at it.
    pub fn restore_suspension(&self, agent: &str, suspension: Suspension) -> bool {
        self.store.restore(agent, suspension)
    }

    /// The single-use record the approval in `request` makes when accepted,
    /// for a host that keeps used approvals in durable storage so that one
    /// stays used after a restart (a Durable Object): its replay key (the
    /// SHA-256 of the approval token's signed part, as the engine records it) and a time
    /// (Unix seconds) past which no approval presented at `request`'s time
    /// can still be valid (its `now` plus the gate's `max_lifetime` and
    /// `clock_skew`). `None` without an approval gate, or without exactly one
    /// approval header. The token is not verified here: ask only for a
    /// request that was allowed with an approval.
    pub fn approval_record(&self, request: &Request) -> Option<([u8; 32], i64)> {
        let gate = self.approval.as_ref()?;
        let mut values = request.header_values(&gate.header);
        let token = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let lifetime =
            gate.issuer.max_lifetime.as_secs_i64().saturating_add(gate.issuer.clock_skew.as_secs_i64());
        Some((crate::approval::replay_key(token), request.now().saturating_add(lifetime)))
    }

    /// Records an approval as used until `expires_at` (Unix seconds), as
    /// [`Engine::approval_record`] described it: a host restoring what it
    /// kept. A later request with it is `approval_replayed`. `false` when
    /// the replay cache has no room (it never forgets a live id).
    pub fn restore_approval(&self, key: [u8; 32], expires_at: i64, now: i64) -> bool {
        !matches!(self.store.first_use(ReplaySpace::Approval, key, now, expires_at), FirstUse::Full { .. })
    }

    /// Entries held in the per-agent state (buckets, agent windows, suspensions).
    pub fn state_keys(&self) -> usize {
        self.store.keys_held()
    }

    /// Agents suspended by the circuit breaker at `now` (Unix seconds).
    pub fn suspended_agents(&self, now: i64) -> Vec<(String, Suspension)> {
        self.store.suspended(now.saturating_mul(1000))
    }

    /// Replaces the policy's `revoked` lists at run time (entries pushed or
    /// fetched from `revocation_list` stay in force on top).
    pub fn set_revocations(&self, lists: &crate::policy::RevocationLists) {
        self.update_revocations(|sources| sources.base = lists.clone());
    }

    /// Puts `pushed` in force on top of the policy's `revoked` lists (and a
    /// fetched list): for hosts that receive revocations at run time.
    pub fn set_pushed_revocations(&self, pushed: &crate::policy::RevocationLists) {
        self.update_revocations(|sources| sources.pushed = pushed.clone());
    }

    /// The policy's `revocation_list`: the URL the host should fetch, every
    /// `refresh_secs`, and hand to [`Engine::set_listed_revocations`].
    pub fn revocation_list(&self) -> Option<&crate::revocation::ListSource> {
        self.revocation_list.as_ref()
    }

    /// Puts a revocation list fetched from `revocation_list.uri` in force
    /// (replacing the previous fetched list) and records `now_ms` (Unix ms)
    /// as its load time — for a signed list (`revocation_list.jwks`) its
    /// `iat`, after its signature verified; returns its number of entries. A document that
    /// cannot be read is refused with its JSON path, and the previous list
    /// stays, as old as it was (past `max_stale`, token-bearing requests
    /// are refused).
    pub fn set_listed_revocations(&self, text: &str, now_ms: i64) -> Result<usize, String> {
        let Some(source) = &self.revocation_list else {
            return Err("the policy has no `revocation_list`".into());
        };
        let (listed, fresh_from_ms) = source.read(text, now_ms)?;
        let entries = listed.len();
        self.update_revocations(|sources| sources.listed = listed);
        source.loaded(fresh_from_ms);
        Ok(entries)
    }

    /// The list host answered a conditional fetch with `304 Not Modified`:
    /// the fetched list in force is still the current one, and `now_ms` (Unix
    /// ms) becomes its load time (never earlier than it was; a signed list's
    /// age keeps counting from its `iat`: only the signer makes a list
    /// fresher); returns its number of entries. Nothing is parsed again. Refused when no list was
    /// ever loaded: a host only sends `If-None-Match` with the `ETag` of a
    /// list the engine accepted (a refused document's `ETag` must not be
    /// kept, or a `304` would vouch for the list before it).
    pub fn confirm_listed_revocations(&self, now_ms: i64) -> Result<usize, String> {
        let Some(source) = &self.revocation_list else {
            return Err("the policy has no `revocation_list`".into());
        };
        if !source.confirmed(now_ms) {
            return Err(format!("no revocation list from `{}` is loaded to confirm", source.uri));
        }
        let sources = self.revocation_sources.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(sources.listed.len())
    }

    fn update_revocations(&self, change: impl FnOnce(&mut crate::revocation::Sources)) {
        let mut sources = self.revocation_sources.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut sources);
        *self.revocations.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(sources.compile());
    }

    /// Number of tokens in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.lock().unwrap_or_else(PoisonError::into_inner).len())
    }

    /// Decides a host-described request (the JSON API's entry point).
    pub fn decide_input(&self, input: &RequestInput) -> Decision {
        match Request::from_input(input) {
            Ok(request) => self.decide(&request),
            Err(e) => self.refuse_invalid(&input.method, &input.host, &input.path, input.now, e),
        }
    }

    /// [`Engine::decide_input`] for a borrowed [`RequestParts`].
    pub fn decide_parts(&self, parts: &RequestParts<'_>) -> Decision {
        match Request::from_parts(parts) {
            Ok(request) => self.decide(&request),
            Err(e) => self.refuse_invalid(&parts.method, &parts.host, &parts.path, parts.now, e),
        }
    }

    /// The refusal of a request that [`Request::from_parts`] (or
    /// [`Request::from_input`]) refused, `error`, for hosts that normalise the
    /// request themselves (to look at it before deciding).
    pub fn refuse_invalid(
        &self,
        method: &str,
        host: &str,
        target: &str,
        now: f64,
        e: RequestError,
    ) -> Decision {
        let code = if e.field == "path" { ReasonCode::PathInvalid } else { ReasonCode::RequestInvalid };
        let message = format!("{}: {}", e.field, e.message);
        let path = target.split('?').next().unwrap_or("");
        let now_ms = if now.is_finite() { (now * 1000.0) as i64 } else { 0 };
        let mut run = Run::new(self, method, host, path, now_ms);
        let refusal = run.fail("request", Refusal::deny(code, message));
        run.finish(Err(refusal))
    }

    /// A refusal for a request that could not even be parsed.
    pub fn refuse_unparsed(&self, code: ReasonCode, message: String) -> Decision {
        let mut run = Run::new(self, "", "", "", 0);
        let refusal = run.fail("request", Refusal::deny(code, message));
        run.finish(Err(refusal))
    }
    /// What the host should read of the request body before deciding, for
    /// the route the request will match: [`BodyUse::Text`] when the route
    /// has `approval_when` conditions (they read the JSON body; give it as
    /// `body`), [`BodyUse::Digest`] when it is high-risk (the approval's
    /// action digest covers the body: give `body_sha256`), else
    /// [`BodyUse::None`]. Hosts that read bodies only when asked stay fast
    /// for every other request.
    pub fn body_use(&self, request: &Request) -> BodyUse {
        if !self.reads_bodies {
            return BodyUse::None;
        }
        self.routes
            .iter()
            .find_map(|r| r.matches(&request.method, &request.path))
            .map_or(BodyUse::None, |m| body_use_of(m.route))
    }

    /// Whether any route reads request bodies: if not, [`Engine::body_use`]
    /// is `None` for every request, and a host need not even ask.
    pub fn reads_bodies(&self) -> bool {
        self.reads_bodies
    }

    /// Decides a request. Never panics, never fails: any problem is a refusal.
    pub fn decide(&self, request: &Request) -> Decision {
        self.decide_with(request, None)
    }

    /// The signature check deciding `request` would need, for hosts that
    /// verify with platform crypto (WebCrypto is several times faster than
    /// Wasm for ES256). `None` when no check is needed: no credential, a
    /// cached token, or a token refused before its signature matters.
    /// Run it, then call [`Engine::decide_with`] with the verdict.
    pub fn pending_signature(&self, request: &Request) -> Option<token::SignatureCheck> {
        let credential = credential::extract(request).ok()?;
        if self.is_cached(credential.token, request.now()) {
            return None;
        }
        self.token_check(credential.token)
    }

    /// The signature check of a token that is not cached; the parsed token
    /// is kept for the verdict (see [`token::prepare`]).
    fn token_check(&self, token: &str) -> Option<token::SignatureCheck> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let (check, prepared) =
            token::prepare(token, &self.issuers, |i| keys.get(i).map(|k| k.set.as_ref()))?;
        if let Some(p) = prepared {
            let generation = keys.get(p.issuer()).map_or(0, |k| k.generation);
            let mut kept = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
            kept.put(p.check_id().to_owned(), (generation, p));
        }
        Some(check)
    }

    /// Whether `token` is in the verified-token cache (and still valid for
    /// its issuer's current keys) at `now`.
    fn is_cached(&self, token: &str, now: i64) -> bool {
        self.cached_token(token, now).is_some()
    }

    /// Whether `token` is bound to a client certificate (`cnf.x5t#S256`),
    /// if it is in the verified-token cache; `None` when it is not. A host
    /// that reads the connection's certificate only for tokens that may need
    /// it (Envoy) asks this before decoding the token itself.
    pub fn cached_token_wants_certificate(&self, token: &str) -> Option<bool> {
        let cache = self.cache.as_ref()?.lock().unwrap_or_else(PoisonError::into_inner);
        let claims = &cache.peek(token)?.claims;
        Some(claims.cnf.as_ref().is_some_and(|cnf| cnf.contains_key("x5t#S256")))
    }

    /// `token` from the verified-token cache, if it is there (and still
    /// valid for its issuer's current keys) at `now`.
    fn cached_token(&self, token: &str, now: i64) -> Option<Arc<VerifiedToken>> {
        let cache = self.cache.as_ref()?;
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(token, |issuer| keys.get(issuer).map(|k| k.generation), now)
    }

    /// Every signature check deciding `request` would need, for hosts that
    /// verify with platform crypto: the token's (as [`Engine::pending_signature`])
    /// and, for a DPoP request, the proof's (in Node an ES256 proof adds ~1 ms
    /// in Wasm, ~0.46 ms once its key has a table of multiples, ~0.23 ms with
    /// WebCrypto). Run them, then call
    /// [`Engine::decide_with_verdicts`] with the verdicts.
    pub fn pending_signatures(&self, request: &Request) -> Vec<token::SignatureCheck> {
        self.pending_signatures_for(request, |_| true)
    }

    /// [`Engine::pending_signatures`], limited to the algorithms `host`
    /// verifies (by JWS name, e.g. `ES256`). A token or proof whose header
    /// names another algorithm is left to Wasm before anything else of it is
    /// parsed: a host that verifies only ES256 pays nothing extra for EdDSA.
    pub fn pending_signatures_for(
        &self,
        request: &Request,
        host: impl Fn(&str) -> bool,
    ) -> Vec<token::SignatureCheck> {
        let Ok(credential) = credential::extract(request) else {
            return Vec::new();
        };
        let mut checks = Vec::new();
        // The cache first: a cached token (the steady state) costs one hash
        // lookup, cheaper in Wasm than decoding and parsing its JOSE header
        // for the algorithm, which decides whether the host verifies it.
        if !self.is_cached(credential.token, request.now())
            && crate::jws::peek_alg(credential.token).is_some_and(|alg| host(&alg))
        {
            checks.extend(self.token_check(credential.token));
        }
        if credential.scheme == Scheme::Dpop {
            let proof = request.header_values("dpop").next();
            if proof.and_then(crate::jws::peek_alg).is_some_and(|alg| host(&alg)) {
                checks.extend(dpop::signature_check(&self.dpop, request));
            }
        }
        checks
    }

    /// [`Engine::decide`], with the host's verdict on the signature check from
    /// [`Engine::pending_signature`]. A verdict for another token is ignored
    /// (the signature is then checked in Wasm).
    pub fn decide_with(&self, request: &Request, verdict: Option<&token::HostVerdict>) -> Decision {
        self.decide_with_verdicts(request, verdict.map(std::slice::from_ref).unwrap_or_default())
    }

    /// [`Engine::decide`], with the host's verdicts on the checks from
    /// [`Engine::pending_signatures`]. Each verdict counts only for the token
    /// or proof (and key) its id names; anything else is checked in Wasm.
    pub fn decide_with_verdicts(&self, request: &Request, verdicts: &[token::HostVerdict]) -> Decision {
        let mut run = Run::new(self, &request.method, &request.host, &request.path, request.now_ms);
        run.source_ip = request.source_ip.map(crate::network::ip_text);
        for name in &self.log.headers {
            if let Some(v) = request.header_values(name).next() {
                run.logged_headers.insert(name.clone(), crate::keys::clip(v));
            }
        }
        run.pass("request", || format!("{} {}", request.method, request.path));
        let result = self.pipeline(&mut run, request, verdicts);
        run.finish(result)
    }

    fn pipeline<'e>(
        &'e self,
        run: &mut Run<'e>,
        request: &Request,
        verdicts: &[token::HostVerdict],
    ) -> Result<(), Refusal> {
        let now = request.now();

        // 2. Route.
        let mut matched: RouteMatch<'e> =
            match self.routes.iter().find_map(|r| r.matches(&request.method, &request.path)) {
                Some(m) => m,
                None => {
                    let message =
                        format!("no route matches {} {}", request.method, crate::keys::clip(&request.path));
                    return Err(run.fail("route", Refusal::deny(ReasonCode::RouteNotMatched, message)));
                }
            };
        run.route = Some(matched.route);
        // Moved into the decision; copied only for a route that needs them again.
        let detail_params =
            if matched.route.authorization_details.is_some() { matched.params.clone() } else { Vec::new() };
        // `extend`, not `collect`: a collected map is sorted first (a sort
        // instance per map type in the Wasm module, for one or two entries).
        run.params.extend(std::mem::take(&mut matched.params));
        run.pass("route", || format!("route `{}`", matched.route.id));

        // Network: the caller must be inside the allowed infrastructure.
        let networks = [self.network.as_ref(), matched.route.network.as_ref()];
        if networks.iter().any(Option::is_some) {
            let allowed = |list: &NetworkList| request.source_ip.is_some_and(|ip| list.contains(ip));
            if let Some(list) = networks.into_iter().flatten().find(|list| !allowed(list)) {
                let message = match request.source_ip {
                    Some(ip) => format!("source {ip} is outside the allowed networks ({})", list.describe()),
                    None => "the source IP is unknown and the policy restricts networks".into(),
                };
                return Err(run.fail("network", Refusal::deny(ReasonCode::NetworkNotAllowed, message)));
            }
            let ip = request.source_ip.map(crate::network::ip_text).unwrap_or_default();
            run.pass("network", || format!("source {ip} is inside the allowed networks"));
        } else {
            run.skip("network", "the policy restricts no networks");
        }

        // 3–5. Credential, token and sender constraint (or an HTTP message signature).
        let (verified, issuer_name) = self.authenticate(run, request, verdicts)?;
        let claims = &verified.claims;

        // 6. Delegation.
        self.delegation
            .check(claims)
            .map_err(|(code, message)| run.fail("delegation", Refusal::deny(code, message)))?;
        run.pass("delegation", || Delegation::describe(claims));

        // 7. Attestation.
        if let Some(attestation) = &self.attestation {
            let keys = self.att_keys.read().unwrap_or_else(PoisonError::into_inner);
            let attested = attestation
                .check(request, claims, &self.att_issuers, |i| keys.get(i).map(|k| k.set.as_ref()))
                .map_err(|(code, message)| run.fail("attestation", Refusal::deny(code, message)))?;
            run.pass("attestation", || {
                format!("workload `{}` attested by `{}`", attested.workload, attested.issuer)
            });
            run.attestation = Some(attested);
        } else {
            run.skip("attestation", "the policy requires no attestation");
        }

        // 8. Revocation: a fresh enough fetched list, the lists, then breaker suspensions.
        if let Some(list) = &self.revocation_list {
            list.check_fresh(request.now_ms).map_err(|(code, message)| {
                let retry = vec![("retry-after".to_owned(), list.refresh_secs.to_string())];
                run.fail("revocation", Refusal { headers: retry, ..Refusal::deny(code, message) })
            })?;
        }
        let revocations = Arc::clone(&self.revocations.read().unwrap_or_else(PoisonError::into_inner));
        revocations.check(&verified).map_err(|(code, message)| {
            run.fail("revocation", Refusal { outcome: Outcome::Revoked, ..Refusal::deny(code, message) })
        })?;
        let agent = claims.agent_str();
        // Suspensions are the circuit breaker's: without one there are none
        // to find (and in Envoy the lookup is a shared-data read per request).
        if let Some(s) = self.breaker.as_ref().and_then(|_| self.store.suspension(agent, request.now_ms)) {
            return Err(run.fail("revocation", suspended(agent, &s, request.now_ms, false)));
        }
        run.pass("revocation", || format!("not revoked ({} list entries)", revocations.len()));

        // 11 (watched from here on). Behaviour monitor.
        if let Some(cfg) = &self.breaker {
            run.agent_watched = true;
            if let Some(s) = self.store.observe(agent, matched.route.index, request.now_ms, cfg) {
                return Err(run.fail("behaviour", suspended(agent, &s, request.now_ms, true)));
            }
            run.pass("behaviour", || "within the agent's usual behaviour".into());
        } else {
            run.skip("behaviour", "the policy has no circuit breaker");
        }

        // 9. Intent: scopes and RFC 9396 authorization details.
        intent::check_scopes(matched.route, claims).map_err(|(code, message)| {
            run.fail(
                "scope",
                Refusal { required_scopes: matched.route.scopes.clone(), ..Refusal::deny(code, message) },
            )
        })?;
        match &matched.route.authorization_details {
            None => run.pass("scope", || intent::describe_scopes(matched.route)),
            Some(rule) => {
                let more = intent::check_authorization_details(rule, &detail_params, claims, request)
                    .map_err(|(code, message)| run.fail("scope", Refusal::deny(code, message)))?;
                run.pass("scope", || format!("{}; {more}", intent::describe_scopes(matched.route)));
            }
        }

        // 9. Intent: rate limits.
        let mut applied = Vec::new();
        for limit in &self.limits {
            if limit.routes.as_ref().is_some_and(|r| !r.contains(&matched.route.index)) {
                continue;
            }
            let key = match limit.per {
                LimitKey::Agent => {
                    format!("{}|a|{}|{}", limit.id, claims.sub.as_deref().unwrap_or(""), agent)
                }
                LimitKey::Route => format!("{}|r|{}", limit.id, matched.route.id),
                LimitKey::Issuer => format!("{}|i|{}", limit.id, issuer_name),
                LimitKey::AgentRoute => format!("{}|ar|{}|{}", limit.id, agent, matched.route.id),
            };
            match self.store.take(&key, request.now_ms, limit.rate, limit.burst) {
                Take::Allowed { remaining } => applied.push(format!("`{}` ({remaining} left)", limit.id)),
                Take::Limited { retry_after_ms } => {
                    let retry = retry_after_ms.div_ceil(1000).max(1);
                    let message = format!(
                        "rate limit `{}` ({} per {}, burst {}) exhausted; retry in {retry} s",
                        limit.id, limit.rate.n, limit.rate.period, limit.burst
                    );
                    let mut refusal = Refusal::deny(ReasonCode::RateLimited, message);
                    refusal.headers.push(("retry-after".into(), retry.to_string()));
                    refusal.headers.push(("ratelimit-limit".into(), limit.burst.to_string()));
                    refusal.headers.push(("ratelimit-remaining".into(), "0".into()));
                    refusal.headers.push(("ratelimit-reset".into(), retry.to_string()));
                    run.limit = Some(limit.id.clone());
                    return Err(run.fail("limits", refusal));
                }
            }
        }
        if applied.is_empty() {
            run.skip("limits", "no rate limit applies to this route");
        } else {
            run.pass("limits", || format!("within {}", applied.join(", ")));
        }

        // 10. Risk gate: a high-risk route, or a body that meets one of the
        // route's `approval_when` conditions, needs a human approval.
        let why = if matches!(matched.route.risk, Risk::High | Risk::Critical) {
            Some(format!("route `{}` is high-risk", matched.route.id))
        } else {
            crate::approval_rules::first_met(
                &matched.route.approval_when,
                request.body.as_deref(),
                request.body_sha256.is_some(),
            )
            .map(|met| format!("on route `{}`, {met}", matched.route.id))
        };
        if let Some(why) = why {
            let endpoint = self.approval.as_ref().map(|g| g.endpoint.as_str());
            let challenge = approval::challenge(request, matched.route, agent, endpoint);
            run.approval_digest = Some(challenge.action_digest.clone());
            let approved = match &self.approval {
                None => None,
                Some(gate) => {
                    let keys = self.approval_keys.read().unwrap_or_else(PoisonError::into_inner);
                    let keys = keys.first().map(|k| Arc::clone(&k.set)).unwrap_or_default();
                    gate.check(request, agent, &keys)
                        .map_err(|(code, message)| run.fail("risk", Refusal::deny(code, message)))?
                }
            };
            match approved {
                None => {
                    let message = format!(
                        "{why}: a human must approve this action (digest `{}`)",
                        challenge.action_digest
                    );
                    return Err(run.fail(
                        "risk",
                        Refusal {
                            outcome: Outcome::ApprovalRequired,
                            approval: Some(Box::new(challenge)),
                            ..Refusal::deny(ReasonCode::ApprovalRequired, message)
                        },
                    ));
                }
                Some((replay_key, expires_at, approver)) => {
                    self.first_use(ReplaySpace::Approval, replay_key, now, expires_at)
                        .map_err(|refusal| run.fail("risk", refusal))?;
                    run.pass("risk", || {
                        format!("{why}; approved by {} for this exact action", crate::keys::clip(&approver))
                    });
                }
            }
        } else if matched.route.approval_when.is_empty() {
            run.pass("risk", || "low-risk route".into());
        } else {
            run.pass("risk", || "low-risk route; the body meets none of its approval conditions".into());
        }
        Ok(())
    }

    /// Stages 3–5: who is calling. A bearer/DPoP token (verified, then held
    /// to its binding), an HTTP message signature (Web Bot Auth), or both, as
    /// the policy's `credentials` says. Returns the verified identity and the
    /// name of what vouched for it (the token issuer or the signing operator).
    fn authenticate<'e>(
        &'e self,
        run: &mut Run<'e>,
        request: &Request,
        verdicts: &[token::HostVerdict],
    ) -> Result<(Arc<VerifiedToken>, std::borrow::Cow<'e, str>), Refusal> {
        use crate::policy::CredentialMode;
        let now = request.now();
        let has_token = request.header_values("authorization").next().is_some();
        let has_signature = request.header_values("signature-input").next().is_some();
        let (use_token, use_signature) = match self.credentials {
            CredentialMode::Token => (true, false),
            CredentialMode::Signature => (false, true),
            CredentialMode::Either => (has_token || !has_signature, !has_token && has_signature),
            CredentialMode::Both => (true, true),
        };
        let signed = if use_signature {
            let s = self
                .check_signature(request)
                .map_err(|(code, message)| run.fail("credential", Refusal::deny(code, message)))?;
            if let Some((key, until)) = s.nonce {
                self.first_use(ReplaySpace::SignatureNonce, key, request.now(), until)
                    .map_err(|refusal| run.fail("credential", refusal))?;
            }
            Some(s)
        } else {
            None
        };
        if !use_token {
            let Some(sig) = signed else {
                let refusal = Refusal::deny(ReasonCode::InternalError, "no credential was checked".into());
                return Err(run.fail("credential", refusal));
            };
            run.pass("credential", || {
                format!("HTTP message signature by `{}`", crate::keys::clip(&sig.operator))
            });
            run.skip("token", "no token: the agent is identified by its HTTP message signature");
            run.pass("binding", || {
                format!(
                    "signed with key `{}` from `{}`'s directory",
                    sig.keyid,
                    crate::keys::clip(&sig.operator)
                )
            });
            let operator = sig.operator.clone();
            let verified = Arc::new(signature_identity(sig));
            run.token = Some(Arc::clone(&verified));
            return Ok((verified, operator.into()));
        }
        let credential = credential::extract_unchecked(request)
            .map_err(|(code, message)| run.fail("credential", Refusal::deny(code, message)))?;
        // A cached token is the text of one that passed the character check.
        let cached = self.cached_token(credential.token, now);
        if cached.is_none() {
            credential::check_characters(credential.token)
                .map_err(|(code, message)| run.fail("credential", Refusal::deny(code, message)))?;
        }
        run.dpop = credential.scheme == Scheme::Dpop;
        run.pass("credential", || match credential.scheme {
            Scheme::Bearer => "bearer token".into(),
            Scheme::Dpop => "DPoP token".into(),
        });

        // 4. Token (cache first).
        let (verified, cache_hit) = match cached {
            Some(hit) => (hit, true),
            None => (self.verify_token(credential.token, verdicts).map_err(|e| run.fail_token(e))?, false),
        };
        run.token = Some(Arc::clone(&verified));
        run.cache_hit = cache_hit;
        let issuer = self.issuers.get(verified.issuer).ok_or_else(|| {
            run.fail("token", Refusal::deny(ReasonCode::InternalError, "issuer index out of range".into()))
        })?;
        if cache_hit {
            token::revalidate(&verified.claims, issuer, now)
        } else {
            token::validate(&verified.claims, issuer, now)
        }
        .map_err(|e| run.fail_token(e))?;
        if cache_hit {
            run.pass("token", || format!("verified `{}` token from `{}` (cached)", verified.alg, issuer.iss));
        } else {
            run.pass("token", || format!("verified `{}` signature from `{}`", verified.alg, issuer.iss));
            self.remember(credential.token, &verified, issuer);
        }
        let claims = &verified.claims;

        // 5. Sender constraint.
        let jkt = claims.cnf.as_ref().and_then(|c| c.get("jkt"));
        if jkt.is_some() || issuer.binding == Binding::Dpop {
            run.dpop = true;
            if credential.scheme != Scheme::Dpop {
                let message = if jkt.is_some() {
                    "token is DPoP-bound: send it as `Authorization: DPoP` with a `DPoP` proof".into()
                } else {
                    format!(
                        "issuer `{}` requires DPoP: get a DPoP-bound token and send it as `Authorization: DPoP` with a proof",
                        crate::keys::clip(&issuer.iss)
                    )
                };
                return Err(run.fail("binding", Refusal::deny(ReasonCode::BindingDpopRequired, message)));
            }
            let jkt = jkt.and_then(Value::as_str);
            let proof =
                self.check_dpop(request, credential.token, jkt, verdicts).map_err(|(code, message)| {
                    let mut refusal = Refusal::deny(code, message);
                    if code == ReasonCode::DpopNonceRequired {
                        if let Some(nonce) = self.dpop_nonce(now) {
                            refusal.headers.push(("dpop-nonce".into(), nonce));
                        }
                    }
                    run.fail("binding", refusal)
                })?;
            self.first_use(ReplaySpace::DpopProof, proof.replay_key, now, proof.expires_at)
                .map_err(|refusal| run.fail("binding", refusal))?;
            run.pass("binding", || format!("DPoP proof by key `{}`", proof.jkt));
        } else {
            let detail = pop::check(claims, issuer, credential.scheme, request)
                .map_err(|(code, message)| run.fail("binding", Refusal::deny(code, message)))?;
            run.pass("binding", || detail.into());
        }

        if let Some(sig) = &signed {
            run.pass("credential", || {
                format!("token and an HTTP message signature by `{}`", crate::keys::clip(&sig.operator))
            });
        }
        Ok((verified, issuer.iss.as_str().into()))
    }

    fn check_signature(
        &self,
        request: &Request,
    ) -> Result<crate::httpsig::VerifiedSignature, token::TokenError> {
        let policy = self
            .signature_agents
            .as_ref()
            .ok_or((ReasonCode::InternalError, "the policy has no `signature_agents`".to_owned()))?;
        let directories = self.directories.read().unwrap_or_else(PoisonError::into_inner);
        crate::httpsig::verify(policy, &directories, request)
    }

    /// Verifies a token that is not in the cache.
    fn verify_token(
        &self,
        token: &str,
        verdicts: &[token::HostVerdict],
    ) -> Result<Arc<VerifiedToken>, token::TokenError> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        // A token the host just verified was parsed when its check was handed
        // out: used as is if the verdict names it and its issuer's keys have
        // not changed since (else parsed and checked again below).
        let mut kept = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        for verdict in verdicts.iter().filter(|v| v.valid) {
            if let Some((generation, prepared)) = kept.pop(&verdict.token_hash) {
                let current = keys.get(prepared.issuer()).map(|k| k.generation);
                if current == Some(generation) {
                    if let Some(verified) = prepared.verified(token, verdicts) {
                        return Ok(Arc::new(verified));
                    }
                }
            }
        }
        drop(kept);
        let verified =
            token::verify(token, &self.issuers, |i| keys.get(i).map(|k| k.set.as_ref()), verdicts)?;
        Ok(Arc::new(verified))
    }

    fn check_dpop(
        &self,
        request: &Request,
        token: &str,
        jkt: Option<&str>,
        verdicts: &[token::HostVerdict],
    ) -> Result<dpop::CheckedProof, dpop::DpopError> {
        let secret = self.dpop_nonce_secret.read().unwrap_or_else(PoisonError::into_inner).clone();
        if self.dpop.nonce && secret.is_none() {
            return Err((
                ReasonCode::InternalError,
                "DPoP nonces are on but the host set no nonce secret".into(),
            ));
        }
        dpop::check(&self.dpop, request, Some(token), jkt, secret.as_deref(), verdicts, &self.proof_keys)
    }

    /// Records a single-use id in the store: a replay is refused with the
    /// space's code; a store with no room left refuses with `503` and
    /// `Retry-After` rather than forget a live id.
    fn first_use(&self, space: ReplaySpace, key: [u8; 32], now: i64, expires_at: i64) -> Result<(), Refusal> {
        match self.store.first_use(space, key, now, expires_at) {
            FirstUse::Fresh => Ok(()),
            FirstUse::Replayed => {
                let message = match space {
                    ReplaySpace::DpopProof => "this DPoP proof (`jti`) was already used",
                    ReplaySpace::Approval => "this approval was already used; ask for a new one",
                    ReplaySpace::SignatureNonce => "this signature's nonce was already used",
                };
                Err(Refusal::deny(space.replayed_code(), message.into()))
            }
            FirstUse::Full { retry_after_secs } => {
                let message = format!(
                    "the {} replay cache is full of live ids and cannot safely remember another; retry in {retry_after_secs} s",
                    space.as_str()
                );
                let mut refusal = Refusal::deny(ReasonCode::ReplayCacheFull, message);
                refusal.headers.push(("retry-after".into(), retry_after_secs.to_string()));
                Err(refusal)
            }
        }
    }

    fn remember(&self, token: &str, verified: &Arc<VerifiedToken>, issuer: &Issuer) {
        let (Some(cache), Some(exp)) = (&self.cache, verified.claims.exp) else { return };
        let generation = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys.get(verified.issuer).map_or(0, |k| k.generation)
        };
        let expires_at = exp.saturating_add(issuer.clock_skew.as_secs_i64());
        cache.lock().unwrap_or_else(PoisonError::into_inner).insert(
            token,
            Arc::clone(verified),
            generation,
            expires_at,
        );
    }
}

/// Why the pipeline stopped.
#[derive(Debug)]
struct Refusal {
    outcome: Outcome,
    reason: Reason,
    required_scopes: Vec<String>,
    approval: Option<Box<ApprovalChallenge>>,
    /// Extra response headers (e.g. `DPoP-Nonce`, `Retry-After`).
    headers: Vec<(String, String)>,
    /// A breaker suspension behind the refusal.
    suspension: Option<Box<Suspension>>,
}

impl Refusal {
    fn deny(code: ReasonCode, message: String) -> Refusal {
        Refusal {
            outcome: Outcome::Deny,
            reason: Reason { code, message },
            required_scopes: Vec::new(),
            approval: None,
            headers: Vec::new(),
            suspension: None,
        }
    }
}

/// The refusal for a suspended agent; `tripped`: the breaker tripped on this request.
fn suspended(agent: &str, s: &Suspension, now_ms: i64, tripped: bool) -> Refusal {
    let code = match (tripped, s.kind) {
        (false, _) => ReasonCode::AgentSuspended,
        (true, TripKind::Burst) => ReasonCode::BreakerBurst,
        (true, TripKind::DenyRatio) => ReasonCode::BreakerDenyRatio,
        (true, TripKind::UnusualRoutes) => ReasonCode::BreakerUnusualRoutes,
    };
    let left = (s.until_ms.saturating_sub(now_ms).max(0).saturating_add(999)) / 1000;
    let message = if tripped {
        format!("agent `{}` is revoked for {left} s: {}", crate::keys::clip(agent), s.detail)
    } else {
        format!(
            "agent `{}` is revoked by the circuit breaker for {left} s more ({})",
            crate::keys::clip(agent),
            s.detail
        )
    };
    let mut refusal = Refusal { outcome: Outcome::Revoked, ..Refusal::deny(code, message) };
    refusal.headers.push(("retry-after".into(), left.max(1).to_string()));
    refusal.suspension = Some(Box::new(s.clone()));
    refusal
}

/// One decision in progress: what the stages found so far.
struct Run<'e> {
    engine: &'e Engine,
    method: String,
    host: String,
    path: String,
    now_ms: i64,
    source_ip: Option<String>,
    trace: Vec<TraceStep>,
    route: Option<&'e Route>,
    params: BTreeMap<String, String>,
    token: Option<Arc<VerifiedToken>>,
    cache_hit: bool,
    /// The request used (or its token needs) DPoP: challenges use the `DPoP` scheme.
    dpop: bool,
    /// The breaker watches this agent: its outcome is recorded.
    agent_watched: bool,
    /// The rate limit that refused the request.
    limit: Option<String>,
    /// The breaker suspension in force or tripped.
    suspension: Option<Suspension>,
    /// The action digest of a high-risk request.
    approval_digest: Option<String>,
    /// The workload attestation that passed.
    attestation: Option<crate::decision::EventAttestation>,
    /// Request headers the log settings name.
    logged_headers: BTreeMap<String, String>,
}

impl<'e> Run<'e> {
    fn new(engine: &'e Engine, method: &str, host: &str, path: &str, now_ms: i64) -> Run<'e> {
        Run {
            engine,
            method: crate::keys::clip(method),
            host: crate::keys::clip(host),
            path: if path.len() <= crate::limits::MAX_PATH_BYTES {
                path.to_owned()
            } else {
                path.chars().take(crate::limits::MAX_PATH_BYTES).collect()
            },
            now_ms,
            source_ip: None,
            trace: Vec::new(),
            route: None,
            params: BTreeMap::new(),
            token: None,
            cache_hit: false,
            dpop: false,
            agent_watched: false,
            limit: None,
            suspension: None,
            approval_digest: None,
            attestation: None,
            logged_headers: BTreeMap::new(),
        }
    }

    /// A stage passed; `detail` is only formatted when the trace is on.
    fn pass(&mut self, stage: &'static str, detail: impl FnOnce() -> String) {
        if self.engine.trace {
            self.trace.push(TraceStep { stage, result: StageResult::Pass, detail: detail() });
        }
    }

    fn skip(&mut self, stage: &'static str, detail: &str) {
        if self.engine.trace {
            self.trace.push(TraceStep { stage, result: StageResult::Skip, detail: detail.into() });
        }
    }

    fn fail(&mut self, stage: &'static str, refusal: Refusal) -> Refusal {
        if self.engine.trace {
            self.trace.push(TraceStep {
                stage,
                result: StageResult::Fail,
                detail: refusal.reason.message.clone(),
            });
        }
        refusal
    }

    fn fail_token(&mut self, (code, message): token::TokenError) -> Refusal {
        let stage = if code == ReasonCode::DelegationInvalid || code == ReasonCode::DelegationTooDeep {
            "delegation"
        } else {
            "token"
        };
        self.fail(stage, Refusal::deny(code, message))
    }

    fn finish(mut self, mut result: Result<(), Refusal>) -> Decision {
        // Behaviour monitor: record how this request ended. A refusal that
        // tips the agent's deny ratio over the limit revokes it now, with its
        // own code; otherwise a trip takes effect from the next request.
        if let (true, Some(cfg), Some(token)) = (self.agent_watched, &self.engine.breaker, &self.token) {
            let agent = token.claims.agent_str();
            let refused = matches!(&result, Err(r) if r.outcome != Outcome::ApprovalRequired);
            if let Some(s) = self.engine.store.outcome(agent, refused, self.now_ms, cfg) {
                if refused && s.kind == TripKind::DenyRatio {
                    let mut tripped = suspended(agent, &s, self.now_ms, true);
                    if let Err(previous) = &result {
                        tripped.reason.message =
                            format!("{} (this request: {})", tripped.reason.message, previous.reason.message);
                    }
                    let step = TraceStep {
                        stage: "behaviour",
                        result: StageResult::Fail,
                        detail: tripped.reason.message.clone(),
                    };
                    match self.trace.iter_mut().find(|t| t.stage == "behaviour") {
                        Some(existing) => *existing = step,
                        None if self.engine.trace => self.trace.push(step),
                        None => {}
                    }
                    result = Err(tripped);
                }
                self.suspension = Some(s);
            }
        }
        // Every stage appears once, in pipeline order; those not reached are skipped.
        let mut recorded = std::mem::take(&mut self.trace);
        for stage in STAGES.into_iter().filter(|_| self.engine.trace) {
            match recorded.iter().position(|t| t.stage == stage) {
                Some(i) => self.trace.push(recorded.remove(i)),
                None => self.trace.push(TraceStep {
                    stage,
                    result: StageResult::Skip,
                    detail: "not reached".into(),
                }),
            }
        }
        let view = self.token.as_ref().map(|t| self.engine.token_view(t).clone());
        let route_ids = self.route.and_then(|r| self.engine.route_ids.get(r.index));
        let route_id = route_ids.map(|(id, _)| Arc::clone(id));
        let prefix = Arc::clone(&self.engine.identity_prefix);
        let (outcome, status, reasons, forward_headers, approval, response) = match result {
            Ok(()) => {
                let route_header = self.engine.route_header.as_ref().zip(route_ids.map(|(_, value)| value));
                let headers =
                    view.as_ref().map(|v| ForwardHeaders::with(&v.headers, route_header)).unwrap_or_default();
                (Outcome::Allow, 200, Vec::new(), headers, None, None)
            }
            Err(refusal) => {
                let challenge = if self.dpop || refusal.reason.code.is_dpop() {
                    decision::Challenge::Dpop {
                        algs: self.engine.dpop.algorithms.iter().map(|a| a.name()).collect(),
                    }
                } else {
                    decision::Challenge::Bearer
                };
                let mut response = decision::http_response(
                    refusal.outcome,
                    &refusal.reason,
                    &self.engine.realm,
                    self.engine.resource.as_ref().map(|r| r.metadata_url.as_str()),
                    &challenge,
                    &refusal.required_scopes,
                    refusal.approval.as_deref(),
                );
                response.headers.extend(refusal.headers);
                if let Some(s) = refusal.suspension {
                    self.suspension = Some(*s);
                }
                (
                    refusal.outcome,
                    response.status,
                    vec![refusal.reason],
                    ForwardHeaders::default(),
                    refusal.approval.map(|a| *a),
                    Some(response),
                )
            }
        };
        let (identity, agent) = view.map(|v| (v.identity, v.agent)).unzip();
        let event = DecisionEvent {
            v: 1,
            time_ms: self.now_ms,
            decision: outcome,
            status,
            reasons: reasons.iter().map(|r| r.code).collect(),
            route: route_id.clone(),
            method: self.method,
            host: self.host,
            path: self.path,
            source_ip: self.source_ip,
            agent,
            cache_hit: self.cache_hit,
            limit: self.limit,
            breaker: self.suspension.map(|s| EventBreaker {
                kind: s.kind,
                detail: s.detail,
                until_ms: s.until_ms,
            }),
            approval_digest: self.approval_digest,
            attestation: self.attestation,
            claims: self
                .token
                .as_ref()
                .map(|t| {
                    let mut claims = BTreeMap::new();
                    claims.extend(
                        self.engine
                            .log
                            .claims
                            .iter()
                            .filter_map(|c| Some((c.clone(), t.claims.raw.get(c)?.clone()))),
                    );
                    claims
                })
                .unwrap_or_default(),
            headers: self.logged_headers,
            duration_us: None,
        };
        let log = self.engine.log.outcomes.contains(&outcome) && sampled(&event, self.engine.log.sample);
        let decision = Decision {
            decision: outcome,
            status,
            reasons,
            route: route_id,
            params: self.params,
            identity,
            forward_headers,
            strip_header_prefix: prefix,
            approval,
            response,
            trace: self.trace,
            event,
            log,
        };
        if let Some(stats) = &self.engine.stats {
            stats.lock().unwrap_or_else(PoisonError::into_inner).record(&decision);
        }
        decision
    }
}

/// The identity of an agent known only by its HTTP message signature.
fn signature_identity(sig: crate::httpsig::VerifiedSignature) -> VerifiedToken {
    let mut scopes = sig.scopes.clone();
    scopes.sort();
    scopes.dedup();
    VerifiedToken {
        issuer: usize::MAX,
        alg: crate::keys::Alg::EdDSA,
        kid: Some(sig.keyid.clone()),
        claims: token::Claims {
            iss: sig.operator.clone(),
            sub: Some(sig.operator.clone()),
            aud: Vec::new(),
            exp: None,
            nbf: None,
            iat: None,
            jti: None,
            client_id: Some(sig.operator.clone()),
            scopes,
            actors: Vec::new(),
            cnf: None,
            raw: serde_json::Map::new(),
        },
        hash: sig.hash,
        view: std::sync::OnceLock::new(),
    }
}

/// Deterministic sampling: the same request (time, path, token) always gets
/// the same answer, without randomness in the core.
fn sampled(event: &DecisionEvent, share: f64) -> bool {
    use sha2::{Digest, Sha256};
    if share >= 1.0 {
        return true;
    }
    let mut h = Sha256::new();
    h.update(event.time_ms.to_be_bytes());
    h.update(event.path.as_bytes());
    h.update(event.agent.as_ref().map(|a| a.token_hash.as_str()).unwrap_or("").as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    (u64::from_be_bytes(first) as f64 / u64::MAX as f64) < share
}

/// What decisions show of a verified token: built once per token by
/// [`Engine::token_view`] and shared by every decision on it.
#[derive(Debug, Clone)]
pub(crate) struct TokenView {
    identity: Arc<Identity>,
    agent: Arc<EventAgent>,
    /// The identity headers that come from the token (all but the route's),
    /// sorted by name, values header-safe.
    headers: Arc<[(Arc<str>, Arc<str>)]>,
}

impl Engine {
    /// `token`'s [`TokenView`], built on first use.
    fn token_view<'t>(&self, token: &'t VerifiedToken) -> &'t TokenView {
        token.view.get_or_init(|| {
            let c = &token.claims;
            let identity = Identity {
                issuer: c.iss.clone(),
                subject: c.sub.clone(),
                agent: c.agent(),
                client_id: c.client_id.clone(),
                actors: c.actors.clone(),
                scopes: c.scopes.clone(),
                jti: c.jti.clone(),
                expires_at: c.exp.unwrap_or_default(),
            };
            let agent = EventAgent {
                issuer: c.iss.clone(),
                subject: c.sub.clone(),
                agent: c.agent(),
                actors: c.actors.clone(),
                client_id: c.client_id.clone(),
                // 12 bytes are exactly 16 base64url characters.
                token_hash: b64::encode(token.hash.get(..12).unwrap_or_default()),
            };
            let mut headers = token_headers(&self.identity_prefix, &self.identity_include, &identity);
            crate::decision::ForwardHeaders::sort_by_name(&mut headers);
            TokenView { identity: Arc::new(identity), agent: Arc::new(agent), headers: headers.into() }
        })
    }
}

/// Whether identity header `name` (one of [`crate::policy::IDENTITY_HEADERS`]) is added upstream.
fn included(include: &[bool; crate::policy::IDENTITY_HEADERS.len()], name: &str) -> bool {
    crate::policy::IDENTITY_HEADERS.iter().position(|n| *n == name).and_then(|i| include.get(i))
        == Some(&true)
}

/// The identity headers that come from the token (the route's is added per request).
fn token_headers(
    prefix: &str,
    include: &[bool; crate::policy::IDENTITY_HEADERS.len()],
    id: &Identity,
) -> Vec<(Arc<str>, Arc<str>)> {
    let mut h = Vec::new();
    let wanted = |name: &str| included(include, name);
    let mut put = |name: &str, value: &str| {
        if !wanted(name) {
            return;
        }
        h.push((format!("{prefix}{name}").into(), header_value(value).into()));
    };
    put("issuer", &id.issuer);
    put("agent", &id.agent);
    if let Some(sub) = &id.subject {
        put("subject", sub);
    }
    if let Some(client_id) = &id.client_id {
        put("client-id", client_id);
    }
    if !id.actors.is_empty() && wanted("actors") {
        put("actors", &id.actors.join(","));
    }
    if wanted("scopes") {
        put("scopes", &id.scopes.join(" "));
    }
    h
}

/// Header-safe value: visible ASCII stays, everything else (and `%`) is percent-encoded.
fn header_value(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
