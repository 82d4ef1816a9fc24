//! Stage 9: intent — does the token's task fit this endpoint?
//!
//! This build checks scopes: every scope the route requires must be granted.
//! Source networks, RFC 9396 `authorization_details` and rate limits belong
//! to this stage as well and arrive with later work.

use crate::reason::ReasonCode;
use crate::route::Route;
use crate::token::{Claims, TokenError};

/// Checks the route's scopes; `Ok` carries a trace detail.
pub fn check_scopes(route: &Route, claims: &Claims) -> Result<String, TokenError> {
    let missing: Vec<&str> =
        route.scopes.iter().filter(|s| !claims.scopes.contains(s)).map(String::as_str).collect();
    if missing.is_empty() {
        if route.scopes.is_empty() {
            Ok("route requires no scope".into())
        } else {
            Ok(format!("has `{}`", route.scopes.join("`, `")))
        }
    } else {
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
