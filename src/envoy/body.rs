//! Which requests the filter must read the body of before deciding.
//!
//! An approval for a `high`/`critical` route is bound to the action digest,
//! which covers the body's SHA-256. When such a request comes with a body and
//! no `Content-Digest`, the filter holds its headers (Envoy keeps them
//! editable), buffers the body, hashes it and only then decides. Every other
//! request is decided on its headers alone, so nothing else is buffered.
//!
//! The routes are compiled from the same policy as the engine and matched the
//! same way (the core's normalised method and path, first match wins), so the
//! filter reads the body exactly when the route the engine will pick is
//! high-risk.

use crate::policy::{Policy, Risk};
use crate::request::Request;
use crate::route::Route;

/// The policy's routes, to tell whether a request's route needs an approval.
#[derive(Debug, Default)]
pub struct BodyRoutes {
    routes: Vec<Route>,
    /// Whether any route is `high` or `critical` (if not, no body is ever read).
    any: bool,
}

fn needs_approval(risk: Risk) -> bool {
    matches!(risk, Risk::High | Risk::Critical)
}

impl BodyRoutes {
    /// Compiles the policy's routes. A route that does not compile makes the
    /// engine refuse the policy, so it is merely left out here.
    pub fn new(policy: &Policy) -> BodyRoutes {
        let routes: Vec<Route> = policy
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Route::new(i, &r.id, &r.methods, &r.path, r.scopes.clone(), r.risk).ok())
            .collect();
        let any = routes.iter().any(|r| needs_approval(r.risk));
        BodyRoutes { routes, any }
    }

    /// Whether the route the request goes to needs an approval, whose digest
    /// covers the body. (A request the core cannot normalise needs no body:
    /// it is refused on its headers.)
    pub fn needs_body(&self, request: &Request) -> bool {
        self.any
            && self
                .routes
                .iter()
                .find_map(|r| r.matches(&request.method, &request.path))
                .is_some_and(|m| needs_approval(m.route.risk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestInput;

    fn routes(json: &str) -> BodyRoutes {
        let policy = format!(
            r#"{{"issuers": [{{"iss": "https://sts", "audiences": ["a"], "algorithms": ["EdDSA"],
                "jwks": {{"keys": []}}}}], "routes": {json}}}"#
        );
        BodyRoutes::new(&Policy::from_json(&policy).unwrap())
    }

    /// Whether `r` reads the body of `method path` (false for a request the core refuses).
    fn reads(r: &BodyRoutes, method: &str, path: &str) -> bool {
        let input = RequestInput {
            method: method.into(),
            path: path.into(),
            host: "h".into(),
            ..RequestInput::default()
        };
        Request::from_input(&input).is_ok_and(|request| r.needs_body(&request))
    }

    #[test]
    fn only_requests_to_high_risk_routes_need_their_body() {
        let r = routes(
            r#"[{"id": "read", "methods": ["GET"], "path": "/v1/**"},
                {"id": "pay", "methods": ["POST"], "path": "/v1/invoices/{id}/pay", "risk": "high"},
                {"id": "wipe", "methods": ["*"], "path": "/admin/**", "risk": "critical"},
                {"id": "post", "methods": ["POST"], "path": "/v1/**"}]"#,
        );
        assert!(reads(&r, "POST", "/v1/invoices/7/pay"));
        assert!(reads(&r, "post", "/v1/invoices/7/pay?x=1"), "the core's normalisation");
        assert!(reads(&r, "POST", "/v1/invoices/7/./pay"));
        assert!(reads(&r, "PUT", "/admin/x"));
        assert!(reads(&r, "POST", "/v1/x/../invoices/8/pay"), "dot segments cannot dodge it");
        assert!(!reads(&r, "POST", "/v1/drafts"));
        assert!(!reads(&r, "GET", "/v1/invoices/7/pay"), "the first matching route wins");
        assert!(!reads(&r, "POST", "no-slash"), "refused on its headers anyway");
    }

    #[test]
    fn a_policy_without_high_risk_routes_never_reads_bodies() {
        let r = routes(r#"[{"id": "all", "methods": ["*"], "path": "/**"}]"#);
        assert!(!r.any);
        assert!(!reads(&r, "POST", "/anything"));
    }
}
