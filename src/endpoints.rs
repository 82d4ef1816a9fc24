//! The gateway's own endpoints, answered before any decision: RFC 9728
//! protected-resource metadata, and the edge token service (RFC 8693 token
//! exchange, its JWKS, RFC 8414 metadata).
//!
//! Every frontend that serves them routes a request's path with
//! [`Endpoints::at`] (the engine's [`crate::Engine::endpoints`]) and answers
//! the documents with [`document_response`]; `POST` to the token path goes to
//! [`crate::Engine::exchange`]. The core builds every document and every
//! response; a host only routes and sends.

use std::collections::BTreeMap;

use crate::decision::HttpResponse;
use crate::engine::Engine;

/// Where a gateway serves its own endpoints, from the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Endpoints {
    /// Protected-resource metadata: at the path of `resource.metadata_url`,
    /// at `/.well-known/oauth-protected-resource` plus the path of
    /// `resource.identifier` (RFC 9728 §3.1) and at the bare well-known path.
    pub resource_metadata: Vec<String>,
    /// The token endpoint: the token service issuer's path plus `/token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token service's JWKS: the issuer's path plus `/.well-known/jwks.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// RFC 8414 metadata: `/.well-known/oauth-authorization-server` plus the
    /// issuer's path (RFC 8414 §3.1).
    pub authorization_server: Vec<String>,
}

/// One of the gateway's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// RFC 9728 protected-resource metadata.
    ResourceMetadata,
    /// `POST` token exchange (RFC 8693).
    Token,
    /// The token service's public JWKS.
    Jwks,
    /// The token service's RFC 8414 metadata.
    AuthorizationServer,
}

/// Path of an absolute URL, without query, fragment or trailing `/`
/// (`https://h/a/b/?q` → `/a/b`; `https://h` → ``).
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("").trim_end_matches('/')
}

impl Endpoints {
    /// The endpoints `policy` asks for (none without `resource` or `token_service`).
    pub fn of(policy: &crate::policy::Policy) -> Endpoints {
        let mut out = Endpoints::default();
        if let Some(r) = &policy.resource {
            const BASE: &str = "/.well-known/oauth-protected-resource";
            for p in [
                url_path(&r.metadata_url).to_owned(),
                format!("{BASE}{}", url_path(&r.identifier)),
                BASE.into(),
            ] {
                if !p.is_empty() && !out.resource_metadata.contains(&p) {
                    out.resource_metadata.push(p);
                }
            }
        }
        if let Some(ts) = &policy.token_service {
            let base = url_path(&ts.issuer);
            out.token = Some(format!("{base}/token"));
            out.jwks = Some(format!("{base}/.well-known/jwks.json"));
            out.authorization_server.push(format!("/.well-known/oauth-authorization-server{base}"));
        }
        out
    }

    /// Whether the policy asks for no endpoint at all.
    pub fn is_empty(&self) -> bool {
        self.resource_metadata.is_empty() && self.token.is_none() && self.authorization_server.is_empty()
    }

    /// The endpoint at `path` (the request path without its query), if any.
    pub fn at(&self, path: &str) -> Option<Endpoint> {
        if self.token.as_deref() == Some(path) {
            Some(Endpoint::Token)
        } else if self.jwks.as_deref() == Some(path) {
            Some(Endpoint::Jwks)
        } else if self.resource_metadata.iter().any(|p| p == path) {
            Some(Endpoint::ResourceMetadata)
        } else if self.authorization_server.iter().any(|p| p == path) {
            Some(Endpoint::AuthorizationServer)
        } else {
            None
        }
    }
}

/// The response of a document endpoint (not [`Endpoint::Token`], which is
/// [`Engine::exchange`]'s) to a request with `method`: the document on `GET`
/// (headers only on `HEAD`: an empty body), `204` with the allowed methods on
/// `OPTIONS` (a CORS preflight), `405` otherwise. Public documents: any
/// origin may read them (browser-based MCP clients), caches may keep them
/// five minutes. `None` for the token endpoint or a document the engine does
/// not have.
pub fn document_response(engine: &Engine, endpoint: Endpoint, method: &str) -> Option<HttpResponse> {
    let (doc, media) = match endpoint {
        Endpoint::ResourceMetadata => (engine.resource_metadata()?, "application/json"),
        Endpoint::AuthorizationServer => (engine.token_service_metadata()?, "application/json"),
        Endpoint::Jwks if engine.token_service_metadata().is_some() => {
            (engine.token_service_jwks(), "application/jwk-set+json")
        }
        Endpoint::Jwks | Endpoint::Token => return None,
    };
    let mut headers = BTreeMap::new();
    headers.insert("access-control-allow-origin".to_owned(), "*".to_owned());
    let response = |status, headers, body| Some(HttpResponse { status, headers, body });
    match method {
        "GET" | "HEAD" => {
            headers.insert("content-type".to_owned(), media.to_owned());
            headers.insert("cache-control".to_owned(), "public, max-age=300".to_owned());
            let body = if method == "GET" { doc.to_string() } else { String::new() };
            response(200, headers, body)
        }
        "OPTIONS" => {
            headers.insert("access-control-allow-methods".to_owned(), "GET, HEAD".to_owned());
            response(204, headers, String::new())
        }
        _ => {
            headers.insert("allow".to_owned(), "GET, HEAD".to_owned());
            headers.insert("content-type".to_owned(), "application/json".to_owned());
            response(405, headers, r#"{"error":"method_not_allowed"}"#.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    const KEY: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
                                    "x": "3xBdjTlen6YEqELHPR3AhJwPG5XsWGa8_t1p4YSg5og"}]}"#;

    fn engine(extra: &str) -> Engine {
        Engine::from_json(&format!(
            r#"{{"issuers": [{{"iss": "https://as.test", "audiences": ["https://api.test/mcp"],
                 "algorithms": ["EdDSA"], "jwks": {KEY}}}],
                "routes": [{{"id": "mcp", "methods": ["POST"], "path": "/mcp", "scopes": ["mcp.tools"]}}]{extra}}}"#
        ))
        .unwrap()
    }

    const RESOURCE: &str = r#", "resource": {"identifier": "https://api.test/mcp",
        "metadata_url": "https://api.test/.well-known/oauth-protected-resource/mcp",
        "authorization_servers": ["https://as.test"]}"#;
    const TOKEN_SERVICE: &str = r#", "token_service": {"issuer": "https://api.test/sts/", "signing_kid": "e",
        "federation": [{"id": "ci", "issuer": {"iss": "https://ci.test", "audiences": ["https://api.test"],
            "algorithms": ["EdDSA"], "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "c",
            "x": "3xBdjTlen6YEqELHPR3AhJwPG5XsWGa8_t1p4YSg5og"}]}}, "scopes": ["mcp.tools"],
            "audiences": ["https://api.test/mcp"]}]}"#;

    #[test]
    fn paths_follow_rfc_9728_and_rfc_8414() {
        assert!(engine("").endpoints().is_empty());
        assert_eq!(engine("").endpoints().at("/.well-known/oauth-protected-resource"), None);
        let e = engine(&format!("{RESOURCE}{TOKEN_SERVICE}"));
        let got = e.endpoints();
        assert_eq!(
            got.resource_metadata,
            ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"],
            "the metadata URL's path and the identifier's suffixed form are the same here: listed once"
        );
        assert_eq!(got.token.as_deref(), Some("/sts/token"), "the issuer's path, without its trailing `/`");
        assert_eq!(got.jwks.as_deref(), Some("/sts/.well-known/jwks.json"));
        assert_eq!(got.authorization_server, ["/.well-known/oauth-authorization-server/sts"]);
        assert_eq!(got.at("/sts/token"), Some(Endpoint::Token));
        assert_eq!(got.at("/sts/.well-known/jwks.json"), Some(Endpoint::Jwks));
        assert_eq!(got.at("/.well-known/oauth-protected-resource"), Some(Endpoint::ResourceMetadata));
        assert_eq!(
            got.at("/.well-known/oauth-authorization-server/sts"),
            Some(Endpoint::AuthorizationServer)
        );
        for other in ["/sts/token/", "/STS/token", "/mcp", "", "/.well-known/oauth-authorization-server"] {
            assert_eq!(got.at(other), None, "{other}");
        }
        let json = serde_json::to_value(got).unwrap();
        assert_eq!(json["token"], "/sts/token");
        let none = serde_json::to_value(engine(RESOURCE).endpoints()).unwrap();
        assert!(none.get("token").is_none() && none.get("jwks").is_none(), "{none}");
        assert_eq!(none["authorization_server"], serde_json::json!([]));
    }

    #[test]
    fn documents_answer_get_head_and_preflight_and_refuse_other_methods() {
        let e = engine(&format!("{RESOURCE}{TOKEN_SERVICE}"));
        let get = document_response(&e, Endpoint::ResourceMetadata, "GET").unwrap();
        assert_eq!(get.status, 200);
        assert_eq!(get.headers["content-type"], "application/json");
        assert_eq!(get.headers["access-control-allow-origin"], "*");
        assert_eq!(get.headers["cache-control"], "public, max-age=300");
        let doc: serde_json::Value = serde_json::from_str(&get.body).unwrap();
        assert_eq!(doc["resource"], "https://api.test/mcp");
        let head = document_response(&e, Endpoint::ResourceMetadata, "HEAD").unwrap();
        assert_eq!((head.status, head.body.as_str()), (200, ""));
        assert_eq!(head.headers, get.headers);
        let jwks = document_response(&e, Endpoint::Jwks, "GET").unwrap();
        assert_eq!(jwks.headers["content-type"], "application/jwk-set+json");
        assert_eq!(jwks.body, r#"{"keys":[]}"#, "no signing key loaded yet");
        let meta = document_response(&e, Endpoint::AuthorizationServer, "GET").unwrap();
        let meta: serde_json::Value = serde_json::from_str(&meta.body).unwrap();
        assert_eq!(meta["token_endpoint"], "https://api.test/sts/token");
        let preflight = document_response(&e, Endpoint::Jwks, "OPTIONS").unwrap();
        assert_eq!(preflight.status, 204);
        assert_eq!(preflight.headers["access-control-allow-methods"], "GET, HEAD");
        let post = document_response(&e, Endpoint::AuthorizationServer, "POST").unwrap();
        assert_eq!((post.status, post.headers["allow"].as_str()), (405, "GET, HEAD"));
        // The token endpoint is the exchange's; documents a policy lacks are none.
        assert_eq!(document_response(&e, Endpoint::Token, "POST"), None);
        let plain = engine("");
        for endpoint in [Endpoint::ResourceMetadata, Endpoint::Jwks, Endpoint::AuthorizationServer] {
            assert_eq!(document_response(&plain, endpoint, "GET"), None, "{endpoint:?}");
        }
    }
}
