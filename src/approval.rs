//! Stage 10: the risk gate — high-risk actions need a human approval bound to
//! the exact action.
//!
//! A request to a `high` or `critical` route without an approval gets
//! `approval_required` and a challenge: the action digest, a short binding
//! message, the agent, and the policy's approval endpoint — enough to start a
//! CIBA-style request to a human. The agent retries with the approval token
//! (a JWT from the policy's approval issuer, `typ` `approval+jwt`) in the
//! `x-agent-approval` header. Its claims bind it to the action and the agent:
//!
//! ```json
//! {"iss": "https://approvals.example.com", "aud": "https://api.example.com",
//!  "action_digest": "<digest>", "agent": "<agent id>", "jti": "…", "iat": …, "exp": …}
//! ```
//!
//! It is short-lived (`max_lifetime`) and single-use (a bounded replay cache).
//!
//! The action digest is base64url(SHA-256) over this canonical form, one
//! field per line, each line ending in `\n`:
//!
//! ```text
//! agentguard-action-v1
//! <METHOD>
//! <host>
//! <normalised path>
//! <raw query, or empty>
//! <base64url SHA-256 of the body as the host gave it, or empty>
//! ```

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::decision::ApprovalChallenge;
use crate::keys::{clip, KeySet};
use crate::policy::{ApprovalPolicy, Binding};
use crate::reason::ReasonCode;
use crate::request::Request;
use crate::route::Route;
use crate::token::{self, Issuer, TokenError};

/// The canonical action text for a request.
pub fn canonical_action(request: &Request) -> String {
    format!(
        "agentguard-action-v1\n{}\n{}\n{}\n{}\n{}\n",
        request.method,
        request.host,
        request.path,
        request.query.as_deref().unwrap_or(""),
        request.body_sha256.map(|d| b64::encode(&d)).unwrap_or_default()
    )
}

/// The action digest of a request.
pub fn action_digest(request: &Request) -> String {
    b64::encode(&Sha256::digest(canonical_action(request).as_bytes()))
}

/// The challenge for a request to a high-risk route.
pub fn challenge(request: &Request, route: &Route, agent: &str, endpoint: Option<&str>) -> ApprovalChallenge {
    ApprovalChallenge {
        action_digest: action_digest(request),
        binding_message: format!(
            "{} wants to {} {} ({})",
            clip(agent),
            request.method,
            clip(&request.path),
            route.id
        ),
        agent: agent.to_owned(),
        approval_endpoint: endpoint.map(str::to_owned),
    }
}

/// The compiled approval gate.
#[derive(Debug)]
pub struct ApprovalGate {
    /// The approval issuer (verified like any token issuer).
    pub issuer: Issuer,
    /// Where agents ask a human.
    pub endpoint: String,
    /// Header carrying approval tokens.
    pub header: String,
    /// Inline keys (replaced by the host for `jwks_uri`).
    pub initial_keys: KeySet,
    /// `jwks_uri`, if the host must fetch the keys.
    pub jwks_uri: Option<String>,
}

impl ApprovalGate {
    /// Compiles the policy section; errors are `(path relative to "approval", message)`.
    pub fn new(p: &ApprovalPolicy) -> Result<ApprovalGate, Vec<(String, String)>> {
        let mut errors = Vec::new();
        if p.issuer.is_empty() {
            errors.push(("issuer".into(), "expected the approval service's `iss`".into()));
        }
        if p.audiences.is_empty() {
            errors.push(("audiences".into(), "expected at least one audience".into()));
        }
        if p.algorithms.is_empty() {
            errors.push(("algorithms".into(), "expected at least one algorithm".into()));
        }
        if let Some(problem) = crate::policy::url_problem(&p.endpoint) {
            errors.push(("endpoint".into(), problem));
        }
        if p.header.is_empty()
            || !p.header.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            errors
                .push(("header".into(), format!("expected a lower-case header name, found `{}`", p.header)));
        }
        if p.replay_cache == 0 || p.replay_cache > crate::limits::MAX_REPLAY_ENTRIES {
            errors.push((
                "replay_cache".into(),
                format!("expected between 1 and {}", crate::limits::MAX_REPLAY_ENTRIES),
            ));
        }
        let (initial_keys, _, problems) = KeySet::from_policy(
            p.jwks.as_ref(),
            p.jwks_uri.as_deref(),
            ["jwks", "jwks_uri"],
            "signature verification key",
            "",
        );
        errors.extend(problems);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ApprovalGate {
            issuer: Issuer {
                iss: p.issuer.clone(),
                audiences: p.audiences.clone(),
                algorithms: p.algorithms.clone(),
                token_type: Some(p.token_type.clone()),
                max_lifetime: p.max_lifetime,
                clock_skew: p.clock_skew,
                required_claims: vec!["jti".into(), "iat".into(), "action_digest".into(), "agent".into()],
                binding: Binding::None,
                spiffe: false,
            },
            endpoint: p.endpoint.clone(),
            header: p.header.clone(),
            initial_keys,
            jwks_uri: p.jwks_uri.clone(),
        })
    }

    /// Checks the request's approval token, if any. `Ok(None)`: no approval
    /// was sent (answer `approval_required`). `Ok(Some((replay key, expiry)))`:
    /// valid for this action and agent, pending the single-use check.
    pub fn check(
        &self,
        request: &Request,
        agent: &str,
        keys: &KeySet,
    ) -> Result<Option<([u8; 32], i64, String)>, TokenError> {
        let mut values = request.header_values(&self.header);
        let Some(approval) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err((ReasonCode::ApprovalInvalid, format!("more than one `{}` header", self.header)));
        }
        let issuers = std::slice::from_ref(&self.issuer);
        let verified = token::verify(approval, issuers, |_| Some(keys), &[]).map_err(approval_error)?;
        token::validate(&verified.claims, &self.issuer, request.now()).map_err(approval_error)?;
        let raw = &verified.claims.raw;
        let digest = action_digest(request);
        match raw.get("action_digest").and_then(Value::as_str) {
            Some(d) if d == digest => {}
            _ => {
                return Err((
                    ReasonCode::ApprovalDigestMismatch,
                    "approval is for a different action (method, host, path, query or body)".into(),
                ))
            }
        }
        match raw.get("agent").and_then(Value::as_str) {
            Some(a) if a == agent => {}
            other => {
                return Err((
                    ReasonCode::ApprovalAgentMismatch,
                    format!("approval is for agent `{}`, not `{}`", clip(other.unwrap_or("")), clip(agent)),
                ))
            }
        }
        let expires_at =
            verified.claims.exp.unwrap_or_default().saturating_add(self.issuer.clock_skew.as_secs_i64());
        let approver = verified.claims.sub.clone().unwrap_or_else(|| "a human".into());
        Ok(Some((replay_key(approval), expires_at, approver)))
    }
}

/// The single-use key of an approval token: SHA-256 of its signed part
/// (`header.payload`), not of the whole text. An ECDSA signature has a
/// second valid encoding (`s` → `n − s`, accepted like p256 accepts it), so
/// keying on the whole text would let one approval be used twice.
pub(crate) fn replay_key(approval: &str) -> [u8; 32] {
    crate::token::token_hash(approval.rsplit_once('.').map_or(approval, |(signed, _)| signed))
}

fn approval_error((code, message): TokenError) -> TokenError {
    let code = if code == ReasonCode::TokenExpired {
        ReasonCode::ApprovalExpired
    } else {
        ReasonCode::ApprovalInvalid
    };
    (code, format!("approval: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_method_host_path_query_and_body() {
        let a = Request::builder("POST", "/v1/payments?x=1", 0).host("api").build().unwrap();
        let b = Request::builder("POST", "/v1/payments?x=2", 0).host("api").build().unwrap();
        assert_eq!(canonical_action(&a), "agentguard-action-v1\nPOST\napi\n/v1/payments\nx=1\n\n");
        assert_ne!(action_digest(&a), action_digest(&b));
        let mut c = a.clone();
        c.body_sha256 = Some([1; 32]);
        assert_ne!(action_digest(&a), action_digest(&c));
    }

    #[test]
    fn an_es256_approval_stays_single_use_under_its_high_s_twin() {
        use crate::keys::Alg;
        use crate::mint::{self, SigningKey};
        use crate::{Engine, ReasonCode};
        use serde_json::json;
        const NOW: i64 = 1_767_225_600;
        let sts = SigningKey::from_random(Alg::EdDSA, &[1; 32]).unwrap();
        let approver = SigningKey::from_random(Alg::ES256, &[2; 32]).unwrap();
        let policy = json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                         "jwks": {"keys": [sts.public_jwk("s1")]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "pay", "methods": ["POST"], "path": "/v1/payments", "scopes": ["pay"], "risk": "high"}],
            "approval": {"issuer": "https://approvals.test", "jwks": {"keys": [approver.public_jwk("a1")]},
                         "algorithms": ["ES256"], "audiences": ["https://api.test"],
                         "endpoint": "https://approvals.test/bc-authorize"}
        });
        let e = Engine::from_json(&policy.to_string()).unwrap();
        let claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "user:alice",
            "client_id": "payer", "scope": "pay", "iat": NOW - 10, "exp": NOW + 600, "jti": "t1"});
        let token = mint::sign(&sts, Some("s1"), "at+jwt", claims.as_object().unwrap());
        let body_hash = "11".repeat(32);
        let req = |approval: &str, now: i64| {
            Request::builder("POST", "/v1/payments", now)
                .host("api.test")
                .header("authorization", &format!("Bearer {token}"))
                .header("x-agent-approval", approval)
                .body_sha256(&body_hash)
                .build()
                .unwrap()
        };
        let digest = action_digest(&req("x", NOW));
        let claims = json!({"iss": "https://approvals.test", "aud": "https://api.test", "sub": "user:cfo",
            "agent": "payer", "action_digest": digest, "iat": NOW, "exp": NOW + 300, "jti": "ap-1"});
        let approval = mint::sign(&approver, Some("a1"), "approval+jwt", claims.as_object().unwrap());
        assert!(e.decide(&req(&approval, NOW + 1)).is_allowed());
        assert_eq!(e.decide(&req(&approval, NOW + 2)).codes(), [ReasonCode::ApprovalReplayed]);
        // The same signature with s -> n - s: another text that verifies, the same approval.
        let (head, sig) = approval.rsplit_once('.').unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&crate::b64::decode(sig).unwrap()).unwrap();
        let twin = p256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let twin = format!("{head}.{}", crate::b64::encode(&twin.to_bytes()));
        assert_ne!(twin, approval);
        assert_eq!(e.decide(&req(&twin, NOW + 3)).codes(), [ReasonCode::ApprovalReplayed]);
        assert_eq!(e.approval_record(&req(&twin, NOW + 3)), e.approval_record(&req(&approval, NOW + 3)));
    }
}
