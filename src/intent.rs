//! Stage 9: intent — does the token's task fit this endpoint?
//!
//! Scopes: every scope the route requires must be granted. RFC 9396
//! `authorization_details` can narrow a token further: a route with a rule
//! needs an entry of the rule's `type` listing its `actions`, naming the
//! route's `{param}` as `identifier` and (if given) one of its `locations` —
//! so a token for "read contact 42" cannot read contact 43. Source networks
//! ([`crate::network`]) and rate limits ([`crate::state`]) complete the stage.

use serde_json::Value;

use crate::keys::clip;
use crate::policy::AuthorizationDetailsRule;
use crate::reason::ReasonCode;
use crate::request::Request;
use crate::route::Route;
use crate::token::{Claims, TokenError};

/// Checks the route's scopes; `Ok` carries a trace detail.
pub fn check_scopes(route: &Route, claims: &Claims) -> Result<(), TokenError> {
    if route.scopes.iter().all(|s| claims.scopes.contains(s)) {
        return Ok(());
    }
    let missing: Vec<&str> =
        route.scopes.iter().filter(|s| !claims.scopes.contains(s)).map(String::as_str).collect();
    {
        let has = if claims.scopes.is_empty() {
            "none".to_owned()
        } else {
            format!("`{}`", claims.scopes.join("`, `"))
        };
        Err((
            ReasonCode::ScopeInsufficient,
            format!("token lacks scope `{}` (has {has})", missing.join("`, `")),
        ))
    }
}

/// What a passed [`check_scopes`] found, for the trace.
pub fn describe_scopes(route: &Route) -> String {
    if route.scopes.is_empty() {
        "route requires no scope".into()
    } else {
        format!("has `{}`", route.scopes.join("`, `"))
    }
}

/// Checks the token's RFC 9396 `authorization_details` against a route's rule.
pub fn check_authorization_details(
    rule: &AuthorizationDetailsRule,
    params: &[(String, String)],
    claims: &Claims,
    request: &Request,
) -> Result<String, TokenError> {
    let mismatch = |m: String| (ReasonCode::AuthorizationDetailsMismatch, m);
    let entries = match claims.raw.get("authorization_details") {
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err((ReasonCode::TokenClaimInvalid, "`authorization_details` must be an array".into()))
        }
        None => {
            return Err(mismatch(format!("token has no `authorization_details` of type `{}`", rule.kind)))
        }
    };
    let identifier = rule.identifier.as_ref().map(|template| {
        let name = template.strip_prefix('{').and_then(|t| t.strip_suffix('}'));
        match name {
            Some(name) => params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default(),
            None => template.clone(),
        }
    });
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let mut closest = None;
    for entry in entries {
        if entry.get("type").and_then(Value::as_str) != Some(rule.kind.as_str()) {
            continue;
        }
        let actions = strings(entry.get("actions"));
        if let Some(missing) = rule.actions.iter().find(|a| !actions.contains(a)) {
            closest = Some(format!("its `{}` grant lacks the action `{missing}`", rule.kind));
            continue;
        }
        if let Some(id) = &identifier {
            let granted = strings(entry.get("identifier"));
            if !granted.contains(id) {
                closest = Some(format!(
                    "its `{}` grant is for `{}`, not `{}`",
                    rule.kind,
                    clip(&granted.join("`, `")),
                    clip(id)
                ));
                continue;
            }
        }
        if !rule.locations.is_empty() {
            let locations = strings(entry.get("locations"));
            let origin = format!("{}://{}", request.scheme, request.host);
            let fits =
                rule.locations.iter().any(|l| locations.contains(l) && (l == &origin || l != "origin"));
            if !fits {
                closest = Some(format!("its `{}` grant names none of the route's locations", rule.kind));
                continue;
            }
        }
        return Ok(format!(
            "authorization_details `{}`{}",
            rule.kind,
            identifier.map(|i| format!(" for `{}`", clip(&i))).unwrap_or_default()
        ));
    }
    Err(mismatch(format!(
        "token's `authorization_details` do not cover this request: {}",
        closest.unwrap_or_else(|| format!("no grant of type `{}`", rule.kind))
    )))
}
