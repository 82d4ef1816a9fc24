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
//!   "jwks_clusters": {"https://other-sts.example.com": "other_sts"},
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

use super::body::BodyRoutes;
use super::mapping::Needs;

/// Where and how to fetch one issuer's JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// The issuer (`iss`).
    pub iss: String,
    /// The `jwks_uri` as written in the policy.
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
    /// One entry per issuer with a `jwks_uri`.
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
}

/// A configuration that compiled.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled policy.
    pub engine: Engine,
    /// The Envoy-only settings.
    pub settings: Settings,
    /// Which requests need their body read before the decision.
    pub body_routes: BodyRoutes,
    /// Which connection properties the decisions need.
    pub needs: Needs,
}

/// Opens the store per-agent state is shared through (the filter passes
/// one over Envoy's shared data).
pub type OpenStore<'a> = &'a dyn Fn(&Policy) -> Result<Box<dyn StateStore>, String>;

/// Parses and compiles a policy, its per-agent state in the store `open`
/// gives (`None`: the engine's own memory).
fn compile(text: &str, open: Option<OpenStore<'_>>) -> Result<(Engine, BodyRoutes, Needs), PolicyErrors> {
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
    // Nothing in Envoy shows the per-stage trace; refusals carry their reasons.
    engine.set_trace(false);
    Ok((engine, BodyRoutes::new(&policy), Needs::new(&policy)))
}

/// Compiles the plugin configuration into an engine and the Envoy settings;
/// per-agent state goes to the store `open` gives unless the wrapper says
/// `"shared_state": false`.
pub fn load(bytes: &[u8], open: OpenStore<'_>) -> Result<Loaded, PolicyErrors> {
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
    let wrapper_value = match crate::json::parse_with_limits(bytes, 128, MAX_POLICY_BYTES) {
        Ok(value) if value.get("policy").is_some() => value,
        _ => {
            let (engine, body_routes, needs) = compile(text, Some(open))?;
            if let Some((iss, _)) = engine.jwks_uris().first() {
                return Err(PolicyError::new(
                    ".",
                    format!(
                        "issuer `{}` has a `jwks_uri`: wrap the policy as `{{\"policy\": {{...}}, \"jwks_cluster\": \
                         \"<envoy cluster>\"}}` so the filter knows which cluster to fetch it through",
                        crate::keys::clip(iss)
                    ),
                )
                .into());
            }
            return Ok(Loaded { engine, settings: Settings::default(), body_routes, needs });
        }
    };
    let wrapper: Wrapper = serde_path_to_error::deserialize(&wrapper_value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        PolicyError::new(if path.is_empty() || path == "?" { ".".into() } else { path }, message)
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

    let mut settings =
        Settings { decision_log: wrapper.decision_log, shared_state: shared, ..Settings::default() };
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

    // Checked on the policy as written, so these problems are reported even
    // when the policy itself has others.
    let uri_issuers = jwks_uri_issuers(&wrapper.policy);
    for (iss, cluster) in &wrapper.jwks_clusters {
        let at = format!("jwks_clusters.{iss}");
        if !uri_issuers.iter().any(|(_, i, _)| i == iss) {
            errors.push(PolicyError::new(
                at,
                format!("`{}` is not an issuer with a `jwks_uri` in the policy", crate::keys::clip(iss)),
            ));
        } else if !cluster_ok(cluster) {
            errors.push(PolicyError::new(at, "expected the name of an Envoy cluster"));
        }
    }
    for (at, iss, uri) in &uri_issuers {
        let Some(cluster) = wrapper.jwks_clusters.get(iss).or(wrapper.jwks_cluster.as_ref()) else {
            errors.push(PolicyError::new(
                "jwks_cluster",
                format!(
                    "issuer `{}` has a `jwks_uri`: expected `jwks_cluster` (or `jwks_clusters` for it) naming the \
                     Envoy cluster that serves `{}`",
                    crate::keys::clip(iss),
                    crate::keys::clip(uri)
                ),
            ));
            continue;
        };
        match split_url(uri) {
            Ok((authority, path)) => settings.jwks.push(JwksSource {
                iss: iss.clone(),
                uri: uri.clone(),
                cluster: cluster.clone(),
                authority,
                path,
            }),
            // The core reports a URI that is not `http(s)://` itself.
            Err(_) if !uri.starts_with("https://") && !uri.starts_with("http://") => {}
            Err(message) => errors.push(PolicyError::new(at.clone(), message)),
        }
    }

    match compiled {
        Some((engine, body_routes, needs)) if errors.is_empty() => {
            Ok(Loaded { engine, settings, body_routes, needs })
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

/// `(path of the URI, iss, jwks_uri)` of every issuer in the policy with a
/// `jwks_uri` and no inline `jwks`, then of every Web Bot Auth operator with a
/// `directory_uri` and no inline `keys` (the sources whose keys the filter
/// fetches; an operator's `iss` is its `operator`).
fn jwks_uri_issuers(policy: &Value) -> Vec<(String, String, String)> {
    fn list(v: Option<&Value>) -> &[Value] {
        v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }
    let issuers =
        list(policy.get("issuers")).iter().enumerate().filter(|(_, i)| i.get("jwks").is_none()).filter_map(
            |(index, i)| {
                let iss = i.get("iss")?.as_str()?;
                let uri = i.get("jwks_uri")?.as_str()?;
                Some((format!("policy.issuers[{index}].jwks_uri"), iss.to_owned(), uri.to_owned()))
            },
        );
    let directories = list(policy.get("signature_agents").and_then(|sa| sa.get("directories")))
        .iter()
        .enumerate()
        .filter(|(_, d)| d.get("keys").is_none())
        .filter_map(|(index, d)| {
            let operator = d.get("operator")?.as_str()?;
            let uri = d.get("directory_uri")?.as_str()?;
            Some((
                format!("policy.signature_agents.directories[{index}].directory_uri"),
                operator.to_owned(),
                uri.to_owned(),
            ))
        });
    issuers.chain(directories).collect()
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
        let host = std::sync::Arc::new(crate::envoy::store::mock::MockHost::default());
        let open = move |p: &Policy| -> Result<Box<dyn StateStore>, String> {
            let layout = crate::envoy::store::Layout::new("agentguard", p);
            Ok(Box::new(crate::envoy::store::SharedStore::open(std::sync::Arc::clone(&host), layout)?))
        };
        super::load(bytes, &open)
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
    fn wrapper_fields_are_checked() {
        let errs = errors(&format!(r#"{{"policy": {POLICY}, "jwks_refresh": "soon"}}"#));
        assert_eq!(errs, ["jwks_refresh: expected a duration like `5m`, found `soon`"]);
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
            ["policy.issuers[0].jwks_uri: expected a URL with a host, found `https://user@h/x`"]
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
        assert!(errors(&plain)[0].starts_with(".: duplicate key `realm`"), "{:?}", errors(&plain));
        let wrapped = format!(r#"{{"policy": {plain}}}"#);
        assert!(errors(&wrapped)[0].starts_with(".: duplicate key `realm`"), "{:?}", errors(&wrapped));
        let wrapped = format!(r#"{{"policy": {POLICY}, "stat_prefix": "a", "stat_prefix": "b"}}"#);
        assert!(errors(&wrapped)[0].contains("duplicate key `stat_prefix`"), "{:?}", errors(&wrapped));
    }

    #[test]
    fn empty_or_binary_configuration_is_refused() {
        assert!(errors("")[0].contains("empty"));
        assert!(load(&[0xff, 0xfe]).is_err());
    }
}
