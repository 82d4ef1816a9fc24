//! The filter's configuration: the plugin `configuration` string Envoy hands
//! to `on_configure`.
//!
//! Two shapes are accepted:
//!
//! - **a plain policy** (`{"issuers": [...], "routes": [...], ...}`): the same
//!   document every frontend loads. Enough when every issuer's keys are
//!   inline (`jwks`).
//! - **a wrapper** with the policy under `policy` and the Envoy-only settings
//!   next to it (told apart by the `policy` key, which a policy never has):
//!
//! ```json
//! {
//!   "policy": {"issuers": [...], "routes": [...]},
//!   "jwks_cluster": "sts",
//!   "jwks_clusters": {"https://other-sts.example.com": "other_sts", "revocation_list": "revocations"},
//!   "jwks_refresh": "5m",
//!   "jwks_cooldown": "30s",
//!   "jwks_timeout": "5s",
//!   "decision_log": "debug",
//!   "stat_prefix": "agentguard",
//!   "dpop_nonce_secret": "<base64url of 32 random bytes>",
//!   "body_wait": "10s",
//!   "shared_state": true,
//!   "lift_route": "agentguard-lift",
//!   "suspensions_route": "agentguard-suspensions"
//! }
//! ```
//!
//! `jwks_cluster` / `jwks_clusters` name the clusters of every document the
//! filter fetches: issuers' JWKS, Web Bot Auth key directories (keyed by
//! `iss` or operator) and the policy's `revocation_list` (keyed
//! `revocation_list`). The names stay `jwks_*` for compatibility.
//!
//! Every problem, in the wrapper or in the policy, is reported with its JSON
//! path (`policy.issuers[0].algorithms[0]: …`), and the filter refuses the
//! configuration (`on_configure` returns `false`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::duration::Duration;
use crate::engine::Engine;
use crate::limits::MAX_POLICY_BYTES;
use crate::policy::{Policy, PolicyError, PolicyErrors};
use crate::state::StateStore;

use super::mapping::Needs;
use crate::endpoints::Endpoints;

/// The `jwks_clusters` key of the policy's `revocation_list` (and the name
/// its fetch source goes by).
pub const REVOCATION_LIST: &str = "revocation_list";

/// What a fetched document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Keys: an issuer's JWKS or an operator's key directory, refetched every
    /// `jwks_refresh` and on demand (an unknown `kid`).
    Keys,
    /// The policy's `revocation_list`, refetched every `refresh_secs` (its
    /// `refresh`), never on demand.
    RevocationList {
        /// The list's `refresh`, in seconds.
        refresh_secs: u64,
    },
}

/// Where and how to fetch one document: an issuer's JWKS, an operator's key
/// directory, or the policy's revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// What the document is.
    pub kind: Fetched,
    /// The issuer (`iss`), the operator, or [`REVOCATION_LIST`].
    pub iss: String,
    /// The `jwks_uri` (`directory_uri`, `revocation_list.uri`) as written in the policy.
    pub uri: String,
    /// The Envoy cluster the request goes through.
    pub cluster: String,
    /// `:authority` of the request (the URI's host and port).
    pub authority: String,
    /// `:path` of the request (the URI's path and query).
    pub path: String,
}

/// At which level the decision-log event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionLog {
    /// Never.
    Off,
    /// At Envoy's `debug` level (`--component-log-level wasm:debug`).
    #[default]
    Debug,
    /// At `info`, which Envoy shows by default.
    Info,
}

/// Envoy-only settings (the wrapper's fields other than `policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// One entry per document fetched by URL: access-token, attestation
    /// and approval issuers with a `jwks_uri`, Web Bot Auth operators with a
    /// `directory_uri` (see `fetch_sources`), and the policy's
    /// `revocation_list` (last).
    pub jwks: Vec<JwksSource>,
    /// Seconds between two fetches of an issuer's keys after a good fetch.
    pub jwks_refresh_secs: u64,
    /// Least seconds between two fetches of the same keys outside the
    /// periodic refresh (an unknown `kid`, a retry after a failure).
    pub jwks_cooldown_secs: u64,
    /// Seconds a fetch may take before it counts as failed.
    pub jwks_timeout_secs: u64,
    /// Where the decision-log event goes.
    pub decision_log: DecisionLog,
    /// Prefix of every stat the filter defines.
    pub stat_prefix: String,
    /// The secret DPoP nonces derive from, when the operator gives one.
    pub dpop_nonce_secret: Option<Vec<u8>>,
    /// Seconds a request held for its body (approval-gated routes) may wait
    /// for the first of it before it is refused.
    pub body_wait_secs: u64,
    /// Whether per-agent state (limits, breaker, suspensions, replay caches)
    /// is shared by every worker through shared data, or kept per worker.
    pub shared_state: bool,
    /// The policy route that turns on `POST /_agentguard/suspensions/lift`.
    pub lift_route: Option<String>,
    /// The policy route that turns on `GET /_agentguard/suspensions`.
    pub suspensions_route: Option<String>,
    /// The policy route that turns on `POST /_agentguard/revocations`.
    pub revoke_route: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            jwks: Vec::new(),
            jwks_refresh_secs: 300,
            jwks_cooldown_secs: 30,
            jwks_timeout_secs: 5,
            decision_log: DecisionLog::Debug,
            stat_prefix: "agentguard".into(),
            dpop_nonce_secret: None,
            body_wait_secs: 10,
            shared_state: true,
            lift_route: None,
            suspensions_route: None,
            revoke_route: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapper {
    policy: Value,
    #[serde(default)]
    jwks_cluster: Option<String>,
    #[serde(default)]
    jwks_clusters: BTreeMap<String, String>,
    #[serde(default)]
    jwks_refresh: Option<Duration>,
    #[serde(default)]
    jwks_cooldown: Option<Duration>,
    #[serde(default)]
    jwks_timeout: Option<Duration>,
    #[serde(default)]
    decision_log: DecisionLog,
    #[serde(default)]
    stat_prefix: Option<String>,
    #[serde(default)]
    dpop_nonce_secret: Option<String>,
    #[serde(default)]
    body_wait: Option<Duration>,
    #[serde(default)]
    shared_state: Option<bool>,
    #[serde(default)]
    lift_route: Option<String>,
    #[serde(default)]
    suspensions_route: Option<String>,
    #[serde(default)]
    revoke_route: Option<String>,
    #[serde(default)]
    signing_keys: Option<Value>,
    #[serde(default)]
    serve_token_service: Option<bool>,
}

/// The VM environment variable the token service's private signing keys
/// come from (a JWK Set, JSON text), passed to the VM with
/// `vm_config.environment_variables.host_env_keys`: so the keys stay out of
/// the configuration, which Envoy's admin `/config_dump` shows.
pub const SIGNING_KEYS_ENV: &str = "AGENTGUARD_SIGNING_KEYS";

/// A configuration that compiled.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled policy.
    pub engine: Engine,
    /// The Envoy-only settings.
    pub settings: Settings,
    /// Which connection properties the decisions need.
    pub needs: Needs,
    /// The gateway endpoints the filter answers itself (the token
    /// service's only when `serve_token_service`).
    pub endpoints: Endpoints,
}

/// Opens the store per-agent state is shared through (the filter passes
/// one over Envoy's shared data).
pub type OpenStore<'a> = &'a dyn Fn(&Policy) -> Result<Box<dyn StateStore>, String>;

/// Parses and compiles a policy, its per-agent state in the store `open`
/// gives (`None`: the engine's own memory).
fn compile(text: &str, open: Option<OpenStore<'_>>) -> Result<(Engine, Needs), PolicyErrors> {
    let policy = Policy::from_json(text)?;
    let mut engine = match open {
        None => Engine::new(&policy)?,
        Some(open) => {
            let store = open(&policy).map_err(|e| {
                PolicyError::new("shared_state", format!("cannot open the shared state: {e}"))
            })?;
            Engine::with_store(&policy, store)?
        }
    };
    // Nothing in Envoy shows the per-stage trace (refusals carry their
    // reasons) or the engine's statistics (Envoy's metrics count decisions).
    engine.set_trace(false);
    engine.disable_stats();
    Ok((engine, Needs::new(&policy)))
}

/// Loads the token service's private signing keys into `engine` when the
/// filter serves its `token_service`: the wrapper's `signing_keys` (a JWK
/// Set, or its JSON text) or else `env`, the text of [`SIGNING_KEYS_ENV`].
/// Keys given for a policy without a token service (or one not served) are
/// a mistake, reported; so is a served token service without keys.
fn load_signing_keys(
    engine: &Engine,
    serve: bool,
    inline: Option<&Value>,
    env: Option<&str>,
) -> Result<(), PolicyError> {
    let field = "signing_keys";
    let Some(token_path) = engine.endpoints().token.as_deref() else {
        return match inline {
            Some(_) => Err(PolicyError::new(field, "the policy has no `token_service` to sign for")),
            None => Ok(()),
        };
    };
    if !serve {
        return match inline {
            Some(_) => Err(PolicyError::new(
                field,
                "`serve_token_service` is false: the filter signs nothing, so it needs no keys",
            )),
            None => Ok(()),
        };
    }
    let (loaded, from) = match (inline, env) {
        (Some(Value::String(text)), _) => (engine.set_signing_keys_json(text), "`signing_keys`"),
        (Some(value), _) => (engine.set_signing_keys(value), "`signing_keys`"),
        (None, Some(text)) => {
            (engine.set_signing_keys_json(text), "the environment variable `AGENTGUARD_SIGNING_KEYS`")
        }
        (None, None) => {
            return Err(PolicyError::new(
                field,
                format!(
                    "the policy has a `token_service`, so the filter serves `POST {token_path}` and needs its \
                     private signing keys: a JWK Set in the VM's environment variable `{SIGNING_KEYS_ENV}` \
                     (`vm_config.environment_variables.host_env_keys`), or `signing_keys` here (which Envoy's \
                     `/config_dump` shows); or set `\"serve_token_service\": false`"
                ),
            ))
        }
    };
    loaded.map(|_| ()).map_err(|e| PolicyError::new(field, format!("{from}: {e}")))
}

/// Compiles the plugin configuration into an engine and the Envoy settings;
/// per-agent state goes to the store `open` gives unless the wrapper says
/// `"shared_state": false`. `signing_keys_env`: the text of the VM's
/// [`SIGNING_KEYS_ENV`], if set.
pub fn load(
    bytes: &[u8],
    open: OpenStore<'_>,
    signing_keys_env: Option<&str>,
) -> Result<Loaded, PolicyErrors> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| PolicyError::new(".", "the plugin configuration is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(PolicyError::new(
            ".",
            "the plugin configuration is empty: expected the policy JSON (a `google.protobuf.StringValue`)",
        )
        .into());
    }
    // Strict JSON first (duplicate keys refused, as the core does for a policy).
    // Anything that is not a wrapper object goes to the core as it is, which
    // then reports its problems with line and column.
    match crate::json::parse_with_limits(bytes, 128, MAX_POLICY_BYTES) {
        Ok(value) if value.get("policy").is_some() => {}
        parsed => {
            let (engine, needs) = compile(text, Some(open))?;
            // It compiled, so it parsed: the value only names the sources.
            let policy = parsed.unwrap_or(Value::Null);
            if let Some(source) = fetch_sources(Some(&engine), &policy, true).first() {
                return Err(PolicyError::new(
                    ".",
                    format!(
                        "{}: wrap the policy as `{{\"policy\": {{...}}, \"jwks_cluster\": \"<envoy cluster>\"}}` so \
                         the filter knows which cluster to fetch it through",
                        source.describe("")
                    ),
                )
                .into());
            }
            load_signing_keys(&engine, true, None, signing_keys_env)?;
            let endpoints = engine.endpoints().clone();
            return Ok(Loaded { engine, settings: Settings::default(), needs, endpoints });
        }
    };
    let wrapper: Wrapper = crate::json::from_str_with_path(text).map_err(|e| PolicyError {
        path: e.path,
        message: e.message,
        line: Some(e.line),
        column: Some(e.column),
    })?;

    let mut errors = Vec::new();
    let shared = wrapper.shared_state.unwrap_or(true);
    let compiled = match compile(&wrapper.policy.to_string(), shared.then_some(open)) {
        Ok(compiled) => Some(compiled),
        Err(PolicyErrors(list)) => {
            // Positions refer to the re-serialised policy, so only the path is kept.
            errors.extend(list.into_iter().map(|e| {
                let path = if e.path == "." { "policy".to_owned() } else { format!("policy.{}", e.path) };
                PolicyError::new(path, e.message)
            }));
            None
        }
    };

    let serve = wrapper.serve_token_service.unwrap_or(true);
    let mut settings =
        Settings { decision_log: wrapper.decision_log, shared_state: shared, ..Settings::default() };
    if let Some((engine, _)) = &compiled {
        if let Err(e) = load_signing_keys(engine, serve, wrapper.signing_keys.as_ref(), signing_keys_env) {
            errors.push(e);
        }
    }
    let mut positive = |field: &str, value: Option<Duration>, default: u64| match value {
        None => default,
        Some(d) if d.as_secs() == 0 => {
            errors.push(PolicyError::new(field, "expected a positive duration like `30s`"));
            default
        }
        Some(d) => d.as_secs(),
    };
    settings.jwks_refresh_secs = positive("jwks_refresh", wrapper.jwks_refresh, settings.jwks_refresh_secs);
    settings.jwks_cooldown_secs =
        positive("jwks_cooldown", wrapper.jwks_cooldown, settings.jwks_cooldown_secs);
    settings.jwks_timeout_secs = positive("jwks_timeout", wrapper.jwks_timeout, settings.jwks_timeout_secs);
    settings.body_wait_secs = positive("body_wait", wrapper.body_wait, settings.body_wait_secs);
    if settings.jwks_timeout_secs > 60 {
        errors.push(PolicyError::new(
            "jwks_timeout",
            format!("expected at most `1m`, found `{}s`", settings.jwks_timeout_secs),
        ));
    }
    if let Some(prefix) = wrapper.stat_prefix {
        if prefix.is_empty()
            || prefix.starts_with('.')
            || prefix.ends_with('.')
            || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            errors.push(PolicyError::new(
                "stat_prefix",
                format!(
                    "expected letters, digits, `_` and inner `.` like `agentguard`, found `{}`",
                    crate::keys::clip(&prefix)
                ),
            ));
        } else {
            settings.stat_prefix = prefix;
        }
    }
    if let Some(secret) = &wrapper.dpop_nonce_secret {
        match crate::b64::decode(secret) {
            Ok(bytes) if bytes.len() >= 32 => settings.dpop_nonce_secret = Some(bytes),
            _ => errors.push(PolicyError::new(
                "dpop_nonce_secret",
                "expected at least 32 random bytes, base64url-encoded (43 characters or more)",
            )),
        }
    }
    for (field, route, setting) in [
        ("lift_route", &wrapper.lift_route, &mut settings.lift_route),
        ("suspensions_route", &wrapper.suspensions_route, &mut settings.suspensions_route),
        ("revoke_route", &wrapper.revoke_route, &mut settings.revoke_route),
    ] {
        let Some(id) = route else { continue };
        match operator_route_problem(&wrapper.policy, id) {
            Some(message) => errors.push(PolicyError::new(field, message)),
            None => *setting = Some(id.clone()),
        }
    }
    let cluster_ok = |c: &str| !c.is_empty() && !c.bytes().any(|b| b.is_ascii_control());
    if let Some(c) = &wrapper.jwks_cluster {
        if !cluster_ok(c) {
            errors.push(PolicyError::new("jwks_cluster", "expected the name of an Envoy cluster"));
        }
    }

    // The engine's list when the policy compiled; otherwise the policy as
    // written, so these problems are reported next to the policy's own.
    let sources = fetch_sources(compiled.as_ref().map(|(engine, _)| engine), &wrapper.policy, serve);
    for (iss, cluster) in &wrapper.jwks_clusters {
        let at = format!("jwks_clusters.{iss}");
        if !sources.iter().any(|s| &s.iss == iss) {
            let message = if iss == REVOCATION_LIST {
                "the policy has no `revocation_list` to fetch".to_owned()
            } else {
                format!(
                    "`{}` is not an issuer with a `jwks_uri` (nor an operator with a `directory_uri`) in the \
                     policy",
                    crate::keys::clip(iss)
                )
            };
            errors.push(PolicyError::new(at, message));
        } else if !cluster_ok(cluster) {
            errors.push(PolicyError::new(at, "expected the name of an Envoy cluster"));
        }
    }
    for source in &sources {
        let (iss, uri) = (&source.iss, &source.uri);
        let Some(cluster) = wrapper.jwks_clusters.get(iss).or(wrapper.jwks_cluster.as_ref()) else {
            let per_source = match source.kind {
                Fetched::Keys => "`jwks_clusters` for it".to_owned(),
                Fetched::RevocationList { .. } => format!("`jwks_clusters.{REVOCATION_LIST}`"),
            };
            errors.push(PolicyError::new(
                "jwks_cluster",
                format!(
                    "{}: expected `jwks_cluster` (or {per_source}) naming the Envoy cluster that serves `{}`",
                    source.describe("policy."),
                    crate::keys::clip(uri)
                ),
            ));
            continue;
        };
        match split_url(uri) {
            Ok((authority, path)) => settings.jwks.push(JwksSource {
                kind: source.kind,
                iss: iss.clone(),
                uri: uri.clone(),
                cluster: cluster.clone(),
                authority,
                path,
            }),
            Err(message) => {
                // The core reports most bad URLs itself (not `http(s)://`, no
                // host, credentials): one message per path is enough.
                let path = format!("policy.{}", source.path);
                if !errors.iter().any(|e| e.path == path) {
                    errors.push(PolicyError::new(path, message));
                }
            }
        }
    }

    match compiled {
        Some((engine, needs)) if errors.is_empty() => {
            let mut endpoints = engine.endpoints().clone();
            if !serve {
                endpoints.token = None;
                endpoints.jwks = None;
                endpoints.authorization_server.clear();
            }
            Ok(Loaded { engine, settings, needs, endpoints })
        }
        _ => Err(PolicyErrors(errors)),
    }
}

/// Why route `id` cannot guard an operator endpoint: it must exist and
/// require at least one scope (an admin scope), so only an operator's token
/// gets through.
fn operator_route_problem(policy: &Value, id: &str) -> Option<String> {
    let routes = policy.get("routes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let Some(route) = routes.iter().find(|r| r.get("id").and_then(Value::as_str) == Some(id)) else {
        return Some(format!("no route in the policy has the id `{}`", crate::keys::clip(id)));
    };
    let scopes = route.get("scopes").and_then(Value::as_array).map_or(0, Vec::len);
    (scopes == 0).then(|| {
        format!(
            "route `{}` requires no scope: an operator endpoint needs a route with an admin scope \
             (like `agentguard.admin`)",
            crate::keys::clip(id)
        )
    })
}

/// A document the filter fetches: `iss` (an operator's name for a Web Bot
/// Auth key directory, [`REVOCATION_LIST`] for the revocation list), its URI,
/// and where the policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    /// JSON path of the URI in the policy (`approval.jwks_uri`), or `.` when
    /// the policy as written does not show it.
    path: String,
    iss: String,
    uri: String,
    kind: Fetched,
}

impl Source {
    /// What the source is, for messages: ``issuer `…` has a `jwks_uri` (at `…`)``,
    /// the path prefixed with `prefix` (`policy.` in a wrapper).
    fn describe(&self, prefix: &str) -> String {
        if let Fetched::RevocationList { .. } = self.kind {
            return format!("the policy has a `revocation_list` (at `{prefix}{}`)", self.path);
        }
        let (who, field) = if self.path.starts_with("signature_agents.") {
            ("operator", "directory_uri")
        } else if self.path.starts_with("approval.") {
            ("approval issuer", "jwks_uri")
        } else if self.path.starts_with("attestation.") {
            ("attestation issuer", "jwks_uri")
        } else if self.path.starts_with("token_service.") {
            ("federation issuer", "jwks_uri")
        } else {
            ("issuer", "jwks_uri")
        };
        let who = format!("{who} `{}` has a `{field}`", crate::keys::clip(&self.iss));
        if self.path == "." {
            who
        } else {
            format!("{who} (at `{prefix}{}`)", self.path)
        }
    }
}

/// The documents the filter fetches. What to fetch is the engine's
/// [`Engine::jwks_uris`] (access-token issuers, attestation issuers, the
/// approval service, Web Bot Auth key directories: everything the core
/// verifies with keys by URL) and its [`Engine::revocation_list`] (last);
/// the policy as written only says where each is named. Without an engine
/// (the policy has problems of its own) the policy as written is the list,
/// so cluster problems are reported too.
///
/// Token-service federation issuers (their keys verify the subject tokens
/// of a token exchange) are left out unless the filter serves the token
/// service (`token_service`), so a policy shared with a gateway that serves
/// it needs no cluster here for them.
fn fetch_sources(engine: Option<&Engine>, policy: &Value, token_service: bool) -> Vec<Source> {
    let written = written_sources(policy);
    let listed: Vec<Source> = match engine {
        None => written,
        Some(engine) => engine
            .jwks_uris()
            .iter()
            .map(|(iss, uri)| Source {
                path: written
                    .iter()
                    .find(|s| &s.iss == iss && &s.uri == uri)
                    .map_or_else(|| ".".to_owned(), |s| s.path.clone()),
                iss: iss.clone(),
                uri: uri.clone(),
                kind: Fetched::Keys,
            })
            .collect(),
    };
    let mut sources: Vec<Source> = Vec::new();
    for source in listed {
        let federation = source.path.starts_with("token_service.");
        if (token_service || !federation)
            && !sources.iter().any(|s| s.iss == source.iss && s.uri == source.uri)
        {
            sources.push(source);
        }
    }
    let list = match engine {
        Some(engine) => engine
            .revocation_list()
            .map(|l| (l.uri.clone(), u64::try_from(l.refresh_secs).unwrap_or(u64::MAX))),
        // Only to report a missing cluster: a policy that does not compile is refused anyway.
        None => policy
            .get(REVOCATION_LIST)
            .and_then(|l| l.get("uri"))
            .and_then(Value::as_str)
            .map(|uri| (uri.to_owned(), 60)),
    };
    if let Some((uri, refresh_secs)) = list {
        sources.push(Source {
            path: format!("{REVOCATION_LIST}.uri"),
            iss: REVOCATION_LIST.to_owned(),
            uri,
            kind: Fetched::RevocationList { refresh_secs },
        });
    }
    sources
}

/// Every key source the policy as written names by URL (and not inline), in
/// [`Engine::jwks_uris`] order: access-token issuers, attestation issuers,
/// the approval service, token-service federation issuers, Web Bot Auth
/// operators.
fn written_sources(policy: &Value) -> Vec<Source> {
    fn list(v: Option<&Value>) -> &[Value] {
        v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }
    fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
        v.get(key)?.as_str()
    }
    let mut sources = Vec::new();
    // `object` names its keys at `object[uri]` unless it has them inline.
    let mut add = |at: String, object: &Value, iss: &str, uri: &str, inline: &str| {
        if object.get(inline).is_some() {
            return;
        }
        if let (Some(name), Some(link)) = (str_at(object, iss), str_at(object, uri)) {
            sources.push(Source {
                path: format!("{at}.{uri}"),
                iss: name.to_owned(),
                uri: link.to_owned(),
                kind: Fetched::Keys,
            });
        }
    };
    for (i, issuer) in list(policy.get("issuers")).iter().enumerate() {
        add(format!("issuers[{i}]"), issuer, "iss", "jwks_uri", "jwks");
    }
    let attestation = policy.get("attestation").and_then(|a| a.get("issuers"));
    for (i, issuer) in list(attestation).iter().enumerate() {
        add(format!("attestation.issuers[{i}]"), issuer, "iss", "jwks_uri", "jwks");
    }
    if let Some(approval) = policy.get("approval") {
        add("approval".to_owned(), approval, "issuer", "jwks_uri", "jwks");
    }
    let federation = policy.get("token_service").and_then(|t| t.get("federation"));
    for (i, rule) in list(federation).iter().enumerate() {
        if let Some(issuer) = rule.get("issuer") {
            add(format!("token_service.federation[{i}].issuer"), issuer, "iss", "jwks_uri", "jwks");
        }
    }
    let directories = policy.get("signature_agents").and_then(|sa| sa.get("directories"));
    for (i, directory) in list(directories).iter().enumerate() {
        add(format!("signature_agents.directories[{i}]"), directory, "operator", "directory_uri", "keys");
    }
    sources
}

/// Splits `https://host[:port]/path?query` into (`host[:port]`, `/path?query`).
pub fn split_url(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| format!("expected an `https://` URL, found `{}`", crate::keys::clip(uri)))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (rest.get(..at).unwrap_or(""), rest.get(at..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    if authority.is_empty()
        || authority.contains('@')
        || !authority.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    {
        return Err(format!("expected a URL with a host, found `{}`", crate::keys::clip(uri)));
    }
    if path.contains('#') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("expected a URL path without spaces or `#`, found `{}`", crate::keys::clip(uri)));
    }
    Ok((authority.to_owned(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
      "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"], "algorithms": ["EdDSA"],
                   "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
                                      "x": "4VxtOFbJsthZFwHZEML1JpzrdFdOzSHQfUikZB_YPU4"}]}}],
      "routes": [{"id": "r", "methods": ["GET"], "path": "/**"}]
    }"#;

    fn uri_policy(uri: &str) -> String {
        format!(
            r#"{{"issuers": [{{"iss": "https://sts.test", "audiences": ["a"], "algorithms": ["EdDSA"],
                 "jwks_uri": "{uri}"}}], "routes": []}}"#
        )
    }

    /// Loads with state in a mock of Envoy's shared data.
    fn load(bytes: &[u8]) -> Result<Loaded, PolicyErrors> {
        load_env(bytes, None)
    }

    /// [`load`] with the VM's `AGENTGUARD_SIGNING_KEYS` set to `env`.
    fn load_env(bytes: &[u8], env: Option<&str>) -> Result<Loaded, PolicyErrors> {
        let host = std::sync::Arc::new(crate::envoy::store::mock::MockHost::default());
        let open = move |p: &Policy| -> Result<Box<dyn StateStore>, String> {
            let layout = crate::envoy::store::Layout::new("agentguard", p);
            Ok(Box::new(crate::envoy::store::SharedStore::open(std::sync::Arc::clone(&host), layout)?))
        };
        super::load(bytes, &open, env)
    }

    /// A private JWK Set with the `signing_kid` of [`all_sources_policy`]'s token service.
    fn signing_keys() -> Value {
        let key = crate::mint::SigningKey::from_random(crate::keys::Alg::EdDSA, &[7; 32]).unwrap();
        serde_json::json!({"keys": [key.private_jwk("edge-1")]})
    }

    fn errors(text: &str) -> Vec<String> {
        match load(text.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_plain_policy_is_enough_for_inline_keys() {
        let loaded = load(POLICY.as_bytes()).unwrap();
        assert!(loaded.engine.jwks_uris().is_empty());
        assert_eq!(loaded.settings, Settings::default());
    }

    #[test]
    fn policy_errors_keep_their_path_and_position() {
        let bad = POLICY.replace(r#"["EdDSA"]"#, r#"["HS256"]"#);
        let errs = errors(&bad);
        assert!(errs[0].starts_with("issuers[0].algorithms[0]: "), "{errs:?}");
        assert!(errs[0].contains("line 2"), "{errs:?}");
    }

    #[test]
    fn the_wrapper_prefixes_policy_paths() {
        let bad = format!(r#"{{"policy": {}}}"#, POLICY.replace(r#""routes""#, r#""rutes""#));
        let errs = errors(&bad);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("policy.rutes: unknown field `rutes`"), "{errs:?}");
        let bad = format!(r#"{{"policy": {}}}"#, POLICY.replace(r#""/**""#, r#""no-slash""#));
        assert!(errors(&bad)[0].starts_with("policy.routes[0].path: "));
    }

    #[test]
    fn every_wrapper_field_is_documented_in_docs_envoy_md() {
        // serde names every field it expects when it meets an unknown one.
        let err = serde_json::from_str::<Wrapper>(r#"{"policy": {}, "no_such_field": 1}"#).unwrap_err();
        let message = err.to_string();
        let expected = message.split("expected one of ").nth(1).unwrap_or_default();
        let fields: Vec<&str> =
            expected.split(", ").map(|f| f.split('`').nth(1).unwrap_or_default()).collect();
        assert!(fields.len() >= 16 && fields.contains(&"signing_keys"), "{message}");
        let docs = include_str!("../../docs/envoy.md");
        for field in fields {
            assert!(docs.contains(&format!("| `{field}` |")), "docs/envoy.md has no table row for `{field}`");
        }
    }

    #[test]
    fn wrapper_fields_are_checked() {
        let errs = errors(&format!(r#"{{"policy": {POLICY}, "jwks_refresh": "soon"}}"#));
        // The wrapper's own fields have a position in the configuration text too.
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("jwks_refresh: expected a duration like `5m`, found `soon` (line "),
            "{errs:?}"
        );
        let errs = errors(&format!(r#"{{"policy": {POLICY}, "cluster": "x"}}"#));
        assert!(
            errs[0].starts_with("cluster: unknown field `cluster`, expected one of `policy`"),
            "{errs:?}"
        );
        let errs = errors(&format!(r#"{{"policy": {POLICY}, "jwks_cooldown": "0s", "stat_prefix": "a b"}}"#));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("jwks_cooldown: expected a positive duration"));
        assert!(errs[1].starts_with("stat_prefix: "));
        let errs = errors(&format!(r#"{{"policy": {POLICY}, "dpop_nonce_secret": "c2hvcnQ"}}"#));
        assert!(errs[0].starts_with("dpop_nonce_secret: expected at least 32 random bytes"), "{errs:?}");
        let secret = crate::b64::encode(&[7; 32]);
        let ok = format!(r#"{{"policy": {POLICY}, "dpop_nonce_secret": "{secret}"}}"#);
        assert_eq!(load(ok.as_bytes()).unwrap().settings.dpop_nonce_secret, Some(vec![7; 32]));
        let errs = errors(&format!(r#"{{"policy": {POLICY}, "decision_log": "loud"}}"#));
        assert!(errs[0].starts_with("decision_log: unknown variant `loud`"), "{errs:?}");
    }

    #[test]
    fn a_jwks_uri_needs_a_cluster() {
        let plain = uri_policy("https://sts.test/.well-known/jwks.json");
        assert!(errors(&plain)[0].contains("wrap the policy"));
        let wrapped = format!(r#"{{"policy": {plain}}}"#);
        assert!(errors(&wrapped)[0].starts_with("jwks_cluster: issuer `https://sts.test` has a `jwks_uri`"));
        let wrapped = format!(r#"{{"policy": {plain}, "jwks_cluster": "sts", "jwks_refresh": "1h"}}"#);
        let settings = load(wrapped.as_bytes()).unwrap().settings;
        assert_eq!(
            settings.jwks,
            [JwksSource {
                kind: Fetched::Keys,
                iss: "https://sts.test".into(),
                uri: "https://sts.test/.well-known/jwks.json".into(),
                cluster: "sts".into(),
                authority: "sts.test".into(),
                path: "/.well-known/jwks.json".into(),
            }]
        );
        assert_eq!(settings.jwks_refresh_secs, 3600);
        let per_issuer = format!(r#"{{"policy": {plain}, "jwks_clusters": {{"https://sts.test": "sts2"}}}}"#);
        assert_eq!(load(per_issuer.as_bytes()).unwrap().settings.jwks[0].cluster, "sts2");
        let unknown =
            format!(r#"{{"policy": {plain}, "jwks_cluster": "s", "jwks_clusters": {{"https://x": "y"}}}}"#);
        assert!(errors(&unknown)[0].starts_with("jwks_clusters.https://x: "));
        let bad_uri = format!(r#"{{"policy": {}, "jwks_cluster": "s"}}"#, uri_policy("https://user@h/x"));
        assert_eq!(
            errors(&bad_uri),
            ["policy.issuers[0].jwks_uri: expected an `https://` URL, found `https://user@h/x`"],
            "the core's message only, not the filter's too"
        );
    }

    /// `POLICY` with every other kind of key source by URL: an attestation
    /// issuer, the approval service, a token-service federation issuer and a
    /// Web Bot Auth key directory.
    fn all_sources_policy() -> String {
        let mut p: Value = serde_json::from_str(POLICY).unwrap();
        let extra = serde_json::json!({
            "attestation": {"issuers": [{"iss": "https://attest.test", "kind": "attestation_result",
                "audiences": ["https://api.test"], "algorithms": ["EdDSA"], "jwks_uri": "https://attest.test/keys"}]},
            "approval": {"issuer": "https://approvals.test", "audiences": ["https://api.test"],
                "algorithms": ["EdDSA"], "endpoint": "https://approvals.test/ask",
                "jwks_uri": "https://approvals.test:8443/jwks.json?v=1"},
            "token_service": {"issuer": "https://edge.test", "signing_kid": "edge-1", "federation": [{
                "id": "ci", "issuer": {"iss": "https://ci.test", "audiences": ["https://edge.test"],
                    "algorithms": ["ES256"], "jwks_uri": "https://ci.test/jwks"},
                "scopes": ["deploy"], "audiences": ["https://api.test"]}]},
            "signature_agents": {"directories": [{"operator": "https://bot.test",
                "directory_uri": "https://bot.test/.well-known/http-message-signatures-directory"}]}
        });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p.to_string()
    }

    #[test]
    fn every_key_source_the_engine_lists_is_fetched() {
        let policy = all_sources_policy();
        // The engine lists four sources; the filter fetches them all while it
        // serves the token service, all but the federation issuer otherwise.
        let engine = Engine::from_json(&policy).unwrap();
        assert_eq!(engine.jwks_uris().len(), 4, "{:?}", engine.jwks_uris());
        assert!(engine.jwks_uris().iter().any(|(iss, _)| iss == "https://ci.test"));
        let clusters = r#""jwks_cluster": "keys", "jwks_clusters": {"https://approvals.test": "appr"}"#;
        let keys = signing_keys();
        let fetched = |wrapped: String| -> Vec<(String, String, String, String)> {
            let jwks = load(wrapped.as_bytes()).unwrap().settings.jwks;
            jwks.iter()
                .map(|s| (s.iss.clone(), s.cluster.clone(), s.authority.clone(), s.path.clone()))
                .collect()
        };
        let own = |[a, b, c, d]: [&str; 4]| (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned());
        let attest = own(["https://attest.test", "keys", "attest.test", "/keys"]);
        let approvals = own(["https://approvals.test", "appr", "approvals.test:8443", "/jwks.json?v=1"]);
        let ci = own(["https://ci.test", "keys", "ci.test", "/jwks"]);
        let bot =
            own(["https://bot.test", "keys", "bot.test", "/.well-known/http-message-signatures-directory"]);
        assert_eq!(
            fetched(format!(r#"{{"policy": {policy}, {clusters}, "signing_keys": {keys}}}"#)),
            [attest.clone(), approvals.clone(), ci, bot.clone()]
        );
        let off = format!(r#"{{"policy": {policy}, {clusters}, "serve_token_service": false}}"#);
        assert_eq!(fetched(off), [attest, approvals, bot]);
        // Each fetched JWKS goes where the filter hands it (directories go to
        // `set_directory_keys`); a name the policy does not have is refused.
        let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
                                 "x": "4VxtOFbJsthZFwHZEML1JpzrdFdOzSHQfUikZB_YPU4"}]}"#;
        for iss in ["https://attest.test", "https://approvals.test", "https://ci.test"] {
            assert_eq!(engine.set_issuer_keys_json(iss, jwks), Ok(Vec::new()), "{iss}");
            assert!(!engine.is_directory_operator(iss));
        }
        assert!(engine.is_directory_operator("https://bot.test"));
        assert!(engine.set_issuer_keys_json("https://nobody.test", jwks).is_err());
        // Without the token service, a cluster for the federation issuer names nothing fetched.
        let federation = format!(
            r#"{{"policy": {policy}, "jwks_cluster": "keys", "jwks_clusters": {{"https://ci.test": "ci"}},
                 "serve_token_service": false}}"#
        );
        assert!(errors(&federation)[0].starts_with("jwks_clusters.https://ci.test: `https://ci.test` is not"));
    }

    #[test]
    fn a_served_token_service_needs_its_signing_keys() {
        let policy = all_sources_policy();
        let clusters = r#""jwks_cluster": "keys""#;
        let keys = signing_keys();
        // From the wrapper (an object or its JSON text), or from the VM's environment.
        let text = serde_json::to_string(&keys.to_string()).unwrap();
        for wrapped in [
            format!(r#"{{"policy": {policy}, {clusters}, "signing_keys": {keys}}}"#),
            format!(r#"{{"policy": {policy}, {clusters}, "signing_keys": {text}}}"#),
        ] {
            let loaded = load(wrapped.as_bytes()).unwrap();
            assert_eq!(loaded.engine.token_service_jwks()["keys"][0]["kid"], "edge-1");
            assert_eq!(loaded.endpoints.token.as_deref(), Some("/token"));
        }
        let wrapped = format!(r#"{{"policy": {policy}, {clusters}}}"#);
        let loaded = load_env(wrapped.as_bytes(), Some(&keys.to_string())).unwrap();
        assert_eq!(loaded.engine.token_service_jwks()["keys"].as_array().map(Vec::len), Some(1));
        assert!(loaded.engine.token_service_jwks()["keys"][0].get("d").is_none(), "public parts only");
        assert_eq!(loaded.endpoints.jwks.as_deref(), Some("/.well-known/jwks.json"));
        assert_eq!(loaded.endpoints.authorization_server, ["/.well-known/oauth-authorization-server"]);

        // None: refused, saying where keys come from and how to turn the service off.
        let none = errors(&wrapped);
        assert_eq!(none.len(), 1, "{none:?}");
        assert!(none[0].starts_with(
            "signing_keys: the policy has a `token_service`, so the filter serves `POST /token` and needs its \
             private signing keys: a JWK Set in the VM's environment variable `AGENTGUARD_SIGNING_KEYS`"
        ));
        assert!(none[0].ends_with(r#"or set `"serve_token_service": false`"#), "{}", none[0]);
        // Keys without the active `signing_kid`, or not JSON.
        let other = serde_json::json!({"keys": [crate::mint::SigningKey::from_random(crate::keys::Alg::EdDSA, &[8; 32])
            .unwrap()
            .private_jwk("edge-0")]});
        let wrong = format!(r#"{{"policy": {policy}, {clusters}, "signing_keys": {other}}}"#);
        assert_eq!(
            errors(&wrong),
            ["signing_keys: `signing_keys`: no key has the active `signing_kid` `edge-1`"]
        );
        let bad = load_env(wrapped.as_bytes(), Some("{not json")).unwrap_err().to_string();
        assert!(
            bad.starts_with(
                "signing_keys: the environment variable `AGENTGUARD_SIGNING_KEYS`: the key set is not acceptable JSON"
            ),
            "{bad}"
        );
        // Off: no keys needed, no token endpoints; keys given anyway are a mistake.
        let off = format!(r#"{{"policy": {policy}, {clusters}, "serve_token_service": false}}"#);
        let loaded = load_env(off.as_bytes(), Some("ignored")).unwrap();
        assert_eq!(loaded.endpoints, crate::endpoints::Endpoints::default());
        let off_with_keys = format!(
            r#"{{"policy": {policy}, {clusters}, "serve_token_service": false, "signing_keys": {keys}}}"#
        );
        assert_eq!(
            errors(&off_with_keys),
            ["signing_keys: `serve_token_service` is false: the filter signs nothing, so it needs no keys"]
        );
        let no_service = format!(r#"{{"policy": {POLICY}, "signing_keys": {keys}}}"#);
        assert_eq!(errors(&no_service), ["signing_keys: the policy has no `token_service` to sign for"]);
        // A plain policy takes its keys from the environment only.
        let mut plain: Value = serde_json::from_str(POLICY).unwrap();
        plain["token_service"] = serde_json::json!({"issuer": "https://edge.test/sts", "signing_kid": "edge-1",
            "federation": [{"id": "ci", "issuer": {"iss": "https://ci.test", "audiences": ["https://edge.test"],
                "algorithms": ["EdDSA"], "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ci-1",
                    "x": "4VxtOFbJsthZFwHZEML1JpzrdFdOzSHQfUikZB_YPU4"}]}},
            "scopes": ["deploy"], "audiences": ["https://api.test"]}]});
        let plain = plain.to_string();
        let none = errors(&plain);
        assert!(none[0].starts_with("signing_keys: the policy has a `token_service`"), "{none:?}");
        let loaded = load_env(plain.as_bytes(), Some(&keys.to_string())).unwrap();
        assert_eq!(loaded.endpoints.token.as_deref(), Some("/sts/token"));
    }

    #[test]
    fn a_source_without_a_cluster_is_named_with_its_path() {
        let policy = all_sources_policy();
        let errs = errors(&format!(r#"{{"policy": {policy}, "serve_token_service": false}}"#));
        assert_eq!(
            errs,
            [
                "jwks_cluster: attestation issuer `https://attest.test` has a `jwks_uri` (at \
                 `policy.attestation.issuers[0].jwks_uri`): expected `jwks_cluster` (or `jwks_clusters` for it) \
                 naming the Envoy cluster that serves `https://attest.test/keys`",
                "jwks_cluster: approval issuer `https://approvals.test` has a `jwks_uri` (at \
                 `policy.approval.jwks_uri`): expected `jwks_cluster` (or `jwks_clusters` for it) naming the Envoy \
                 cluster that serves `https://approvals.test:8443/jwks.json?v=1`",
                "jwks_cluster: operator `https://bot.test` has a `directory_uri` (at \
                 `policy.signature_agents.directories[0].directory_uri`): expected `jwks_cluster` (or \
                 `jwks_clusters` for it) naming the Envoy cluster that serves \
                 `https://bot.test/.well-known/http-message-signatures-directory`",
            ]
        );
        // A plain policy names the first source and asks for the wrapper.
        let plain = errors(&policy);
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(
            plain[0].starts_with(
                ".: attestation issuer `https://attest.test` has a `jwks_uri` (at \
                 `attestation.issuers[0].jwks_uri`): wrap the policy"
            ),
            "{plain:?}"
        );
        // When the policy has problems of its own, the sources come from the
        // policy as written, so both kinds of problem are reported at once.
        let broken = policy.replace(r#""/**""#, r#""no-slash""#);
        let errs =
            errors(&format!(r#"{{"policy": {broken}, "jwks_clusters": {{"https://approvals.test": ""}}}}"#));
        assert!(errs.iter().any(|e| e.starts_with("policy.routes[0].path: ")), "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e == "jwks_clusters.https://approvals.test: expected the name of an Envoy cluster"));
        assert!(errs.iter().any(|e| e.starts_with("jwks_cluster: attestation issuer `https://attest.test`")));
        // The federation issuer too: the filter serves the token service unless told not to.
        assert!(
            errs.iter().any(|e| e.starts_with("jwks_cluster: federation issuer `https://ci.test`")),
            "{errs:?}"
        );
    }

    /// `POLICY` (inline keys) with a `revocation_list`.
    fn list_policy(list: &str) -> String {
        POLICY.replace(r#""routes""#, &format!(r#""revocation_list": {list}, "routes""#))
    }

    #[test]
    fn a_revocation_list_is_fetched_through_a_cluster() {
        let policy = list_policy(
            r#"{"uri": "https://rev.test:8443/list.json?v=2", "refresh": "10s", "max_stale": "1m"}"#,
        );
        let list = |cluster: &str| JwksSource {
            kind: Fetched::RevocationList { refresh_secs: 10 },
            iss: REVOCATION_LIST.into(),
            uri: "https://rev.test:8443/list.json?v=2".into(),
            cluster: cluster.into(),
            authority: "rev.test:8443".into(),
            path: "/list.json?v=2".into(),
        };
        let wrapped = format!(r#"{{"policy": {policy}, "jwks_cluster": "keys"}}"#);
        assert_eq!(load(wrapped.as_bytes()).unwrap().settings.jwks, [list("keys")]);
        let keyed = format!(r#"{{"policy": {policy}, "jwks_clusters": {{"revocation_list": "rev"}}}}"#);
        assert_eq!(load(keyed.as_bytes()).unwrap().settings.jwks, [list("rev")]);
        // With keys by URL too, the list comes last, on its own cluster.
        let mut both: Value = serde_json::from_str(&policy).unwrap();
        both["issuers"][0].as_object_mut().unwrap().remove("jwks");
        both["issuers"][0]["jwks_uri"] = "https://sts.test/jwks".into();
        let keyed = format!(
            r#"{{"policy": {both}, "jwks_cluster": "sts", "jwks_clusters": {{"revocation_list": "rev"}}}}"#
        );
        let jwks = load(keyed.as_bytes()).unwrap().settings.jwks;
        let got: Vec<_> = jwks.iter().map(|s| (s.kind, s.iss.as_str(), s.cluster.as_str())).collect();
        assert_eq!(
            got,
            [
                (Fetched::Keys, "https://sts.test", "sts"),
                (Fetched::RevocationList { refresh_secs: 10 }, "revocation_list", "rev")
            ]
        );
        // Defaults: `refresh` 1m.
        let default = format!(
            r#"{{"policy": {}, "jwks_cluster": "keys"}}"#,
            list_policy(r#"{"uri": "https://rev.test/list.json"}"#)
        );
        assert_eq!(
            load(default.as_bytes()).unwrap().settings.jwks[0].kind,
            Fetched::RevocationList { refresh_secs: 60 }
        );
    }

    #[test]
    fn a_revocation_list_without_a_cluster_is_refused_with_its_path() {
        let policy = list_policy(r#"{"uri": "https://rev.test/list.json"}"#);
        assert_eq!(
            errors(&format!(r#"{{"policy": {policy}}}"#)),
            ["jwks_cluster: the policy has a `revocation_list` (at `policy.revocation_list.uri`): expected \
              `jwks_cluster` (or `jwks_clusters.revocation_list`) naming the Envoy cluster that serves \
              `https://rev.test/list.json`"]
        );
        let plain = errors(&policy);
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(
            plain[0].starts_with(
                ".: the policy has a `revocation_list` (at `revocation_list.uri`): wrap the policy as \
                 `{\"policy\": {...}, \"jwks_cluster\": \"<envoy cluster>\"}`"
            ),
            "{plain:?}"
        );
        // A cluster for another source does not serve the list.
        let other = format!(r#"{{"policy": {policy}, "jwks_clusters": {{"https://sts.test": "sts"}}}}"#);
        let errs = errors(&other);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("jwks_clusters.https://sts.test: `https://sts.test` is not an issuer"));
        assert!(errs[1].starts_with("jwks_cluster: the policy has a `revocation_list`"), "{errs:?}");
        // `jwks_clusters.revocation_list` without a list, an empty cluster name, a bad URL.
        let none = format!(r#"{{"policy": {POLICY}, "jwks_clusters": {{"revocation_list": "rev"}}}}"#);
        assert_eq!(
            errors(&none),
            ["jwks_clusters.revocation_list: the policy has no `revocation_list` to fetch"]
        );
        let empty = format!(r#"{{"policy": {policy}, "jwks_clusters": {{"revocation_list": ""}}}}"#);
        assert_eq!(errors(&empty)[0], "jwks_clusters.revocation_list: expected the name of an Envoy cluster");
        let bad = list_policy(r#"{"uri": "https://user@rev.test/list.json"}"#);
        assert_eq!(
            errors(&format!(r#"{{"policy": {bad}, "jwks_cluster": "c"}}"#)),
            ["policy.revocation_list.uri: expected an `https://` URL, found `https://user@rev.test/list.json`"]
        );
        // The policy's own problems and the missing cluster are reported together.
        let broken =
            list_policy(r#"{"uri": "https://rev.test/list.json", "refresh": "1m", "max_stale": "1s"}"#);
        let errs = errors(&format!(r#"{{"policy": {broken}}}"#));
        assert!(errs.iter().any(|e| e.starts_with("policy.revocation_list.max_stale: ")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("jwks_cluster: the policy has a `revocation_list`")),
            "{errs:?}"
        );
    }

    #[test]
    fn operator_routes_must_exist_and_need_a_scope() {
        let with_admin = POLICY.replace(
            r#""routes": ["#,
            r#""routes": [{"id": "lift", "methods": ["POST"], "path": "/_agentguard/suspensions/lift",
                           "scopes": ["agentguard.admin"]},"#,
        );
        let ok = format!(r#"{{"policy": {with_admin}, "lift_route": "lift"}}"#);
        assert_eq!(load(ok.as_bytes()).unwrap().settings.lift_route.as_deref(), Some("lift"));
        let errs = errors(&format!(r#"{{"policy": {with_admin}, "suspensions_route": "nope"}}"#));
        assert_eq!(errs, ["suspensions_route: no route in the policy has the id `nope`"]);
        let errs = errors(&format!(r#"{{"policy": {POLICY}, "lift_route": "r"}}"#));
        assert!(errs[0].starts_with("lift_route: route `r` requires no scope"), "{errs:?}");
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(split_url("https://h:8443/a/b?c=d").unwrap(), ("h:8443".into(), "/a/b?c=d".into()));
        assert_eq!(split_url("http://h").unwrap(), ("h".into(), "/".into()));
        assert_eq!(split_url("https://h?x").unwrap(), ("h".into(), "/?x".into()));
        assert!(split_url("https://user@h/").is_err());
        assert!(split_url("https:///path").is_err());
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("https://h/a b").is_err());
    }

    #[test]
    fn duplicate_keys_are_refused_in_both_shapes() {
        let plain = POLICY.replace(r#""routes""#, r#""realm": "a", "realm": "b", "routes""#);
        // The path names the repeated key, in the configuration as given.
        assert!(errors(&plain)[0].starts_with("realm: duplicate key `realm`"), "{:?}", errors(&plain));
        let wrapped = format!(r#"{{"policy": {plain}}}"#);
        assert!(
            errors(&wrapped)[0].starts_with("policy.realm: duplicate key `realm`"),
            "{:?}",
            errors(&wrapped)
        );
        let wrapped = format!(r#"{{"policy": {POLICY}, "stat_prefix": "a", "stat_prefix": "b"}}"#);
        assert!(errors(&wrapped)[0].contains("duplicate key `stat_prefix`"), "{:?}", errors(&wrapped));
    }

    #[test]
    fn empty_or_binary_configuration_is_refused() {
        assert!(errors("")[0].contains("empty"));
        assert!(load(&[0xff, 0xfe]).is_err());
    }
}
