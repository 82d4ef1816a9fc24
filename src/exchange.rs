//! The edge token service: RFC 8693 token exchange for workload identity
//! federation.
//!
//! A workload trades the identity its platform gives it (a CI job's OIDC
//! token, a Kubernetes service-account token, a SPIFFE JWT-SVID) for a
//! short-lived, task-scoped `at+jwt` signed by the edge — so no static secret
//! ever reaches the agent. The subject token is verified with the same strict
//! code as access tokens (its issuer is just another issuer); federation
//! rules then say which workloads get which scopes, audiences and lifetime.
//!
//! The whole endpoint is here — form parsing, RFC 6749 §5.2 / RFC 8693
//! errors, minting — so a host only maps `POST /token` to
//! [`crate::Engine::exchange`] and supplies randomness (the `jti`) and the
//! private signing keys (from a secret, never the policy).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::decision::HttpResponse;
use crate::duration::Duration;
use crate::glob::Glob;
use crate::keys::{clip, Alg, KeySet};
use crate::mint::{self, SigningKey};
use crate::policy::Binding;
use crate::token::{self, Claims, Issuer};

/// `grant_type` of RFC 8693.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token types a subject or actor token may be declared as.
const JWT_TOKEN_TYPES: [&str; 3] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token",
];
/// Largest token request body.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The policy's `token_service` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenServicePolicy {
    /// `iss` of minted tokens (the edge's URL).
    pub issuer: String,
    /// `kid` of the signing key in use (others stay published for verifiers).
    pub signing_kid: String,
    /// Lifetime when a rule allows more. Default `5m`.
    #[serde(default = "default_lifetime")]
    pub default_lifetime: Duration,
    /// The federation rules, tried in order; the first that matches wins.
    pub federation: Vec<FederationRule>,
    /// A limit on token requests per client (each costs a signature check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<TokenRateLimit>,
}

/// How many token requests one client may make: a token bucket per client
/// IP (IPv6 by its /64, which one host usually holds whole), taken before
/// anything else of the request is read.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRateLimit {
    /// Sustained rate per client, like `"30/1m"`.
    pub rate: crate::state::Rate,
    /// Requests allowed at once. Default: the rate's count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(300)
}

/// One federation rule: which external workloads get what.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FederationRule {
    /// Name, also the minted token's `client_id`.
    pub id: String,
    /// The external issuer whose tokens this rule accepts.
    pub issuer: ExternalIssuer,
    /// `sub` patterns the subject token must match (`repo:acme/*:ref:refs/heads/main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
    /// Claim path → allowed values (`{"repository": ["acme/agents"]}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Vec<Value>>,
    /// Patterns an actor token's `sub` must match, when one is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actors: Option<Vec<String>>,
    /// Scopes that may be granted.
    pub scopes: Vec<String>,
    /// Audiences (resources) tokens may be minted for.
    pub audiences: Vec<String>,
    /// Longest lifetime. Default `15m`.
    #[serde(default = "default_rule_lifetime")]
    pub max_lifetime: Duration,
    /// Require a DPoP proof, so the minted token is bound to the workload's key.
    #[serde(default)]
    pub require_dpop: bool,
}

fn default_rule_lifetime() -> Duration {
    Duration::from_secs(900)
}

/// An external token issuer (a CI system, a cluster, a SPIFFE trust domain).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuer {
    /// Its `iss`.
    pub iss: String,
    /// Audiences its tokens must name (the edge's identifier, usually).
    pub audiences: Vec<String>,
    /// Inline public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Where the host fetches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Alg>,
    /// Required `typ`; default any (OIDC tokens say `JWT` or nothing).
    #[serde(default)]
    pub token_type: Option<String>,
    /// Longest accepted lifetime of its tokens. Default `1h`.
    #[serde(default = "default_ext_lifetime")]
    pub max_lifetime: Duration,
    /// Clock skew. Default `30s`.
    #[serde(default = "default_skew")]
    pub clock_skew: Duration,
}

fn default_ext_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_skew() -> Duration {
    Duration::from_secs(30)
}

/// A compiled federation rule.
#[derive(Debug, Clone)]
pub struct Rule {
    id: String,
    /// Index into [`TokenService::issuers`].
    issuer: usize,
    subjects: Option<Vec<Glob>>,
    claims: Vec<(String, Vec<String>, Vec<Value>)>,
    actors: Option<Vec<Glob>>,
    scopes: Vec<String>,
    audiences: Vec<String>,
    max_lifetime: Duration,
    require_dpop: bool,
}

/// The compiled token service.
#[derive(Debug, Clone)]
pub struct TokenService {
    /// `iss` of minted tokens.
    pub issuer: String,
    /// Active signing key id.
    pub signing_kid: String,
    default_lifetime: Duration,
    /// External issuers (deduplicated by `iss`).
    pub issuers: Vec<Issuer>,
    /// Their inline keys, by index.
    pub initial_keys: Vec<KeySet>,
    /// `(iss, jwks_uri)` for issuers whose keys the host fetches.
    pub jwks_uris: Vec<(String, String)>,
    rules: Vec<Rule>,
    /// The per-client limit: rate and burst.
    pub rate_limit: Option<(crate::state::Rate, u32)>,
}

impl TokenService {
    /// The rate-limit bucket of the client at `ip` (`None`: unknown, one shared bucket).
    pub fn client_bucket(ip: Option<std::net::IpAddr>) -> String {
        match ip {
            None => "token|unknown".into(),
            Some(std::net::IpAddr::V4(v4)) => format!("token|{v4}"),
            Some(std::net::IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("token|{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

fn patterns(list: &Option<Vec<String>>, at: &str, errors: &mut Vec<(String, String)>) -> Option<Vec<Glob>> {
    list.as_ref().map(|l| {
        l.iter()
            .enumerate()
            .filter_map(|(i, p)| Glob::new(p).map_err(|e| errors.push((format!("{at}[{i}]"), e))).ok())
            .collect()
    })
}

impl TokenService {
    /// Compiles the section; errors are `(path relative to "token_service", message)`.
    pub fn new(p: &TokenServicePolicy) -> Result<TokenService, Vec<(String, String)>> {
        let mut errors = Vec::new();
        if crate::policy::url_problem(&p.issuer).is_some() {
            errors
                .push(("issuer".into(), format!("expected the edge's `https://` URL, found `{}`", p.issuer)));
        }
        if p.signing_kid.is_empty() {
            errors.push(("signing_kid".into(), "expected the `kid` of the active signing key".into()));
        }
        if p.federation.is_empty() {
            errors.push(("federation".into(), "expected at least one federation rule".into()));
        }
        let mut service = TokenService {
            issuer: p.issuer.trim_end_matches('/').to_owned(),
            signing_kid: p.signing_kid.clone(),
            default_lifetime: p.default_lifetime,
            issuers: Vec::new(),
            initial_keys: Vec::new(),
            jwks_uris: Vec::new(),
            rules: Vec::new(),
            rate_limit: p.rate_limit.map(|l| (l.rate, l.burst.unwrap_or(l.rate.n))),
        };
        if p.rate_limit.is_some_and(|l| l.burst == Some(0)) {
            errors.push(("rate_limit.burst".into(), "expected at least 1".into()));
        }
        for (i, r) in p.federation.iter().enumerate() {
            let at = |f: &str| format!("federation[{i}].{f}");
            if r.id.is_empty() || p.federation.iter().take(i).any(|q| q.id == r.id) {
                errors.push((at("id"), format!("expected a unique, non-empty rule id, found `{}`", r.id)));
            }
            if r.scopes.is_empty() {
                errors.push((at("scopes"), "expected at least one scope the rule may grant".into()));
            }
            if r.audiences.is_empty() {
                errors.push((at("audiences"), "expected at least one audience the rule may mint for".into()));
            }
            let ext = &r.issuer;
            if ext.audiences.is_empty() {
                errors.push((
                    at("issuer.audiences"),
                    "expected the audience the external tokens must name".into(),
                ));
            }
            if ext.algorithms.is_empty() {
                errors.push((at("issuer.algorithms"), "expected at least one algorithm".into()));
            }
            let index = match service.issuers.iter().position(|x| x.iss == ext.iss) {
                Some(index) => index,
                None => {
                    let (keys, uri, problems) = KeySet::from_policy(
                        ext.jwks.as_ref(),
                        ext.jwks_uri.as_deref(),
                        ["jwks", "jwks_uri"],
                        "signature verification key",
                        &at("issuer"),
                    );
                    errors.extend(problems);
                    if let Some(uri) = uri {
                        service.jwks_uris.push((ext.iss.clone(), uri));
                    }
                    service.issuers.push(Issuer {
                        iss: ext.iss.clone(),
                        audiences: ext.audiences.clone(),
                        algorithms: ext.algorithms.clone(),
                        token_type: ext.token_type.clone(),
                        max_lifetime: ext.max_lifetime,
                        clock_skew: ext.clock_skew,
                        required_claims: vec!["sub".into()],
                        binding: Binding::None,
                        spiffe: ext.iss.starts_with("spiffe://"),
                    });
                    service.initial_keys.push(keys);
                    service.issuers.len() - 1
                }
            };
            let subjects = patterns(&r.subjects, &at("subjects"), &mut errors);
            let actors = patterns(&r.actors, &at("actors"), &mut errors);
            let claims = r
                .claims
                .iter()
                .map(|(path, values)| {
                    (path.clone(), path.split('.').map(str::to_owned).collect(), values.clone())
                })
                .collect();
            service.rules.push(Rule {
                id: r.id.clone(),
                issuer: index,
                subjects,
                claims,
                actors,
                scopes: r.scopes.clone(),
                audiences: r.audiences.clone(),
                max_lifetime: r.max_lifetime,
                require_dpop: r.require_dpop,
            });
        }
        if errors.is_empty() {
            Ok(service)
        } else {
            Err(errors)
        }
    }

    /// The first rule whose issuer, subject patterns and claims fit.
    fn rule_for(&self, issuer: usize, claims: &Claims) -> Option<&Rule> {
        let sub = claims.sub.as_deref().unwrap_or("");
        self.rules.iter().find(|r| {
            r.issuer == issuer
                && r.subjects.as_ref().is_none_or(|s| s.iter().any(|g| g.matches(sub)))
                && r.claims.iter().all(|(_, path, allowed)| {
                    token::claim_at(&claims.raw, path).is_some_and(|v| allowed.contains(v))
                })
        })
    }

    /// RFC 8414 authorization-server metadata.
    pub fn metadata(&self, dpop_algs: &[Alg]) -> Value {
        json!({
            "issuer": self.issuer,
            "token_endpoint": format!("{}/token", self.issuer),
            "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["none"],
            "dpop_signing_alg_values_supported": dpop_algs.iter().map(|a| a.name()).collect::<Vec<_>>(),
        })
    }
}

/// What the host passes with a token request.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeContext<'a> {
    /// The request (method, content type, `DPoP` header, time, URL).
    pub request: &'a crate::request::Request<'a>,
    /// The raw body.
    pub body: &'a str,
    /// A fresh random `jti` for the minted token.
    pub jti: &'a str,
}

/// An RFC 6749 §5.2 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// `error`.
    pub error: &'static str,
    /// `error_description`.
    pub description: String,
    /// Seconds for `Retry-After` (`rate_limited` only).
    pub retry_after: Option<u64>,
    /// The subject or actor token names a key its issuer's loaded keys do
    /// not have (or none are loaded yet): a host that fetches them by URL may
    /// fetch them and try once more ([`crate::Engine::exchange_again`]).
    pub key_unknown: bool,
}

impl OAuthError {
    /// A new error.
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError { error, description: description.into(), retry_after: None, key_unknown: false }
    }

    /// The JSON response, `Cache-Control: no-store`. `rate_limited` (an
    /// extension error code, RFC 6749 §8.5) is a 429 with `Retry-After`.
    pub fn response(&self) -> HttpResponse {
        let status = match self.error {
            "invalid_client" => 401,
            "rate_limited" => 429,
            "server_error" => 500,
            "temporarily_unavailable" => 503,
            _ => 400,
        };
        let mut response =
            json_response(status, &json!({"error": self.error, "error_description": self.description}));
        if let Some(secs) = self.retry_after {
            response.headers.insert("retry-after".to_owned(), secs.to_string());
        }
        response
    }
}

/// What [`crate::Engine::exchange_checked`] answers: the response, and
/// whether the request failed only for want of an issuer's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    /// The RFC 8693 success or the RFC 6749 §5.2 error.
    pub response: HttpResponse,
    /// See [`OAuthError::key_unknown`].
    pub key_unknown: bool,
}

/// A JSON response that must not be cached.
pub fn json_response(status: u16, body: &Value) -> HttpResponse {
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), "application/json".to_owned());
    headers.insert("cache-control".to_owned(), "no-store".to_owned());
    headers.insert("pragma".to_owned(), "no-cache".to_owned());
    HttpResponse { status, headers, body: body.to_string() }
}

/// Parses `application/x-www-form-urlencoded`; a repeated parameter is an error (RFC 6749 §3.2).
pub fn parse_form(body: &str) -> Result<BTreeMap<String, String>, OAuthError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(OAuthError::new(
            "invalid_request",
            format!("body is larger than {MAX_FORM_BYTES} bytes"),
        ));
    }
    let mut out = BTreeMap::new();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (form_decode(k)?, form_decode(v)?);
        if out.insert(k.clone(), v).is_some() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("parameter `{}` appears more than once", clip(&k)),
            ));
        }
    }
    Ok(out)
}

fn form_decode(s: &str) -> Result<String, OAuthError> {
    let bad = || OAuthError::new("invalid_request", "body is not valid form encoding");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits exactly: `from_str_radix` would also take a sign (`%+f`).
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .ok_or_else(bad)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The minted token and what the response says about it.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The access token.
    pub token: String,
    /// `Bearer` or `DPoP`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Granted scopes.
    pub scope: String,
}

impl Minted {
    /// The RFC 8693 §2.2.1 success response.
    pub fn response(&self) -> HttpResponse {
        json_response(
            200,
            &json!({
                "access_token": self.token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": self.token_type,
                "expires_in": self.expires_in,
                "scope": self.scope,
            }),
        )
    }
}

/// Everything about one exchange, before signing.
pub struct Grant<'a> {
    /// The rule that matched.
    pub rule: &'a Rule,
    /// The verified subject token's claims.
    pub subject: Claims,
    /// The verified actor token's claims, if any.
    pub actor: Option<Claims>,
    /// Requested scope (space-separated), if any.
    pub scope: Option<String>,
    /// Requested audience / resource, if any.
    pub audience: Option<String>,
    /// The proof key thumbprint to bind to.
    pub jkt: Option<String>,
}

impl std::fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("rule", &self.rule.id).finish_non_exhaustive()
    }
}

impl TokenService {
    /// Looks up the rule for a verified subject token (and checks the actor).
    pub fn grant<'a>(
        &'a self,
        issuer: usize,
        subject: Claims,
        actor: Option<Claims>,
        form: &BTreeMap<String, String>,
    ) -> Result<Grant<'a>, OAuthError> {
        let rule = self.rule_for(issuer, &subject).ok_or_else(|| {
            OAuthError::new(
                "invalid_grant",
                format!(
                    "no federation rule accepts subject `{}` from `{}`",
                    clip(subject.sub.as_deref().unwrap_or("")),
                    clip(&subject.iss)
                ),
            )
        })?;
        if let (Some(actor), Some(patterns)) = (&actor, &rule.actors) {
            let sub = actor.sub.as_deref().unwrap_or("");
            if !patterns.iter().any(|g| g.matches(sub)) {
                return Err(OAuthError::new(
                    "invalid_grant",
                    format!("actor `{}` is not allowed by rule `{}`", clip(sub), rule.id),
                ));
            }
        }
        if actor.is_some() && rule.actors.is_none() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("rule `{}` accepts no actor token", rule.id),
            ));
        }
        Ok(Grant {
            rule,
            subject,
            actor,
            scope: form.get("scope").cloned(),
            audience: form.get("audience").or_else(|| form.get("resource")).cloned(),
            jkt: None,
        })
    }

    /// Mints the token for a grant at `now` (Unix seconds).
    pub fn mint(
        &self,
        grant: &Grant<'_>,
        key: &SigningKey,
        now: i64,
        jti: &str,
    ) -> Result<Minted, OAuthError> {
        let rule = grant.rule;
        let scopes: Vec<String> = match &grant.scope {
            None => rule.scopes.clone(),
            Some(requested) => {
                let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
                if let Some(extra) = requested.iter().find(|s| !rule.scopes.iter().any(|a| a == *s)) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        format!("scope `{}` is not allowed for rule `{}`", clip(extra), rule.id),
                    ));
                }
                requested.into_iter().map(str::to_owned).collect()
            }
        };
        if scopes.is_empty() {
            return Err(OAuthError::new("invalid_scope", "no scope requested"));
        }
        let audience = match &grant.audience {
            Some(a) if rule.audiences.contains(a) => a.clone(),
            Some(a) => {
                return Err(OAuthError::new(
                    "invalid_target",
                    format!("audience `{}` is not allowed for rule `{}`", clip(a), rule.id),
                ))
            }
            None => match rule.audiences.as_slice() {
                [only] => only.clone(),
                _ => {
                    return Err(OAuthError::new(
                        "invalid_target",
                        "several audiences are allowed: name one with `audience`",
                    ))
                }
            },
        };
        if rule.require_dpop && grant.jkt.is_none() {
            return Err(OAuthError::new(
                "invalid_dpop_proof",
                format!("rule `{}` requires a DPoP proof", rule.id),
            ));
        }
        let lifetime = self.default_lifetime.min(rule.max_lifetime).as_secs_i64();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), audience.into());
        claims.insert("sub".into(), grant.subject.sub.clone().unwrap_or_default().into());
        claims.insert("client_id".into(), rule.id.clone().into());
        claims.insert("scope".into(), scopes.join(" ").into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + lifetime).into());
        claims.insert("jti".into(), jti.into());
        // The acting workload: the actor token's subject, with the subject
        // token's own chain nested under it (RFC 8693 §4.1).
        let previous = grant.subject.raw.get("act").cloned();
        if let Some(actor) = &grant.actor {
            let mut act = Map::new();
            act.insert("sub".into(), actor.sub.clone().unwrap_or_default().into());
            if let Some(previous) = previous {
                act.insert("act".into(), previous);
            }
            let depth = grant.subject.actors.len() + 1;
            if depth > crate::limits::MAX_ACT_DEPTH {
                return Err(OAuthError::new("invalid_request", "the delegation chain would be too deep"));
            }
            claims.insert("act".into(), Value::Object(act));
        } else if let Some(previous) = previous {
            claims.insert("act".into(), previous);
        }
        // Nothing else of the subject token is carried over: its issuer is
        // trusted to say who the workload is, not what it may do. (Its RFC 9396
        // `authorization_details` in particular would grant resource-level
        // access on routes that require them, which no federation rule
        // granted.)
        if let Some(jkt) = &grant.jkt {
            claims.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        let token = mint::sign(key, Some(&self.signing_kid), "at+jwt", &claims);
        Ok(Minted {
            token,
            token_type: if grant.jkt.is_some() { "DPoP" } else { "Bearer" },
            expires_in: lifetime,
            scope: scopes.join(" "),
        })
    }
}

/// Checks the form's fixed parameters.
pub fn check_form(form: &BTreeMap<String, String>) -> Result<(&str, Option<&str>), OAuthError> {
    match form.get("grant_type").map(String::as_str) {
        Some(GRANT_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant type `{}` is not supported", clip(other)),
            ))
        }
        None => return Err(OAuthError::new("invalid_request", "missing `grant_type`")),
    }
    let subject = form
        .get("subject_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_request", "missing `subject_token`"))?;
    match form.get("subject_token_type").map(String::as_str) {
        Some(t) if JWT_TOKEN_TYPES.contains(&t) => {}
        Some(t) => {
            return Err(OAuthError::new(
                "invalid_request",
                format!("subject token type `{}` is not supported", clip(t)),
            ))
        }
        None => return Err(OAuthError::new("invalid_request", "missing `subject_token_type`")),
    }
    let actor = form.get("actor_token").map(String::as_str);
    if actor.is_some() && !form.get("actor_token_type").is_some_and(|t| JWT_TOKEN_TYPES.contains(&t.as_str()))
    {
        return Err(OAuthError::new("invalid_request", "`actor_token` needs a supported `actor_token_type`"));
    }
    if let Some(t) = form.get("requested_token_type") {
        if t != "urn:ietf:params:oauth:token-type:access_token" && t != "urn:ietf:params:oauth:token-type:jwt"
        {
            return Err(OAuthError::new("invalid_request", format!("cannot issue token type `{}`", clip(t))));
        }
    }
    Ok((subject, actor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing() {
        let f = parse_form("a=1&b=x+y%2Fz&c=").unwrap();
        assert_eq!(f["b"], "x y/z");
        assert_eq!(f["c"], "");
        assert_eq!(parse_form("a=1&a=2").unwrap_err().error, "invalid_request");
        // Two hex digits exactly: not a sign (`u8::from_str_radix` takes `+f`), not one digit.
        for bad in ["a=%+f", "a=%-1", "a=%f", "a=%zz"] {
            assert_eq!(parse_form(bad).unwrap_err().error, "invalid_request", "{bad}");
        }
        assert_eq!(parse_form("a=%zz").unwrap_err().error, "invalid_request");
        assert_eq!(parse_form("a=%ff").unwrap_err().error, "invalid_request");
    }
}
