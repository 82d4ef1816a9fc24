//! Stage 7: workload attestation — the agent runs as the workload we trust.
//!
//! Evidence is a signed token in a request header (default
//! `x-agent-attestation`), verified with the same strict code as access
//! tokens but against the policy's *attestation* issuers (never the access
//! token issuers, so one kind of token can't stand in for the other):
//!
//! - `jwt_svid`: a SPIFFE JWT-SVID — `sub` is a SPIFFE ID, `aud` and `exp`
//!   required, RS/ES/PS algorithms only, `typ` absent or `JWT`/`JOSE`; `iss`
//!   may be absent, the trust domain of `sub` then names the issuer;
//! - `attestation_result`: a generic attestation-result JWT (from a verifier
//!   such as a TEE attestation service or a build-provenance checker) whose
//!   claims — image digest, code signer, TEE type, measurements — are matched
//!   by path.
//!
//! Or the evidence is a claim object embedded in the (already verified)
//! access token (`embedded_claim`). The attested subject must be the token's
//! acting agent (`act.sub`, else `client_id`), so one workload's evidence
//! can't be replayed with another's token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decision::EventAttestation;
use crate::duration::Duration;
use crate::glob::Glob;
use crate::keys::{clip, Alg, KeySet};
use crate::policy::Binding;
use crate::reason::ReasonCode;
use crate::request::Request;
use crate::token::{self, Claims, Issuer, TokenError};

/// The policy's `attestation` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationPolicy {
    /// Request header carrying the evidence token. Default `x-agent-attestation`.
    #[serde(default = "default_header")]
    pub header: String,
    /// Instead of a header: the access-token claim holding the evidence object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_claim: Option<String>,
    /// Who may sign evidence.
    #[serde(default)]
    pub issuers: Vec<AttestationIssuerPolicy>,
    /// What the evidence must say.
    #[serde(default)]
    pub require: Requirements,
    /// The attested subject must be the token's acting agent. Default `true`.
    #[serde(default = "yes")]
    pub bind_to_actor: bool,
}

fn default_header() -> String {
    "x-agent-attestation".into()
}
fn yes() -> bool {
    true
}

/// An evidence signer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationIssuerPolicy {
    /// `iss` of its tokens; for JWT-SVIDs, `spiffe://<trust-domain>`.
    pub iss: String,
    /// What it issues.
    pub kind: EvidenceKind,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Inline public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Where the host fetches the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Alg>,
    /// Required `typ`; `null` (default) accepts any, for SVIDs `JWT`/`JOSE`/absent.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Longest accepted lifetime. Default `1h`.
    #[serde(default = "default_lifetime")]
    pub max_lifetime: Duration,
    /// Clock skew. Default `30s`.
    #[serde(default = "default_skew")]
    pub clock_skew: Duration,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_skew() -> Duration {
    Duration::from_secs(30)
}

/// The kind of evidence token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A SPIFFE JWT-SVID.
    JwtSvid,
    /// A generic attestation-result token.
    AttestationResult,
}

/// What the evidence must show.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// SPIFFE ID patterns the subject must match (trust domain + path glob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<Vec<String>>,
    /// Claim path (dots into nested objects) → allowed values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Vec<Value>>,
}

/// Compiled attestation rules.
#[derive(Debug, Clone)]
pub struct Attestation {
    header: String,
    embedded_claim: Option<String>,
    kinds: Vec<EvidenceKind>,
    spiffe_id: Option<Vec<Glob>>,
    claims: Vec<(String, Vec<String>, Vec<Value>)>,
    bind_to_actor: bool,
}

/// Compiled issuers with their inline keys and the `(iss, jwks_uri)` to fetch.
pub type CompiledIssuers = (Vec<Issuer>, Vec<KeySet>, Vec<(String, String)>);

impl Attestation {
    /// Compiles the section; errors are `(path relative to "attestation", message)`.
    pub fn new(p: &AttestationPolicy) -> Result<(Attestation, CompiledIssuers), Vec<(String, String)>> {
        let mut errors = Vec::new();
        if p.header.is_empty()
            || !p.header.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            errors
                .push(("header".into(), format!("expected a lower-case header name, found `{}`", p.header)));
        }
        if p.embedded_claim.is_none() && p.issuers.is_empty() {
            errors.push((
                "issuers".into(),
                "expected at least one evidence issuer, or `embedded_claim`".into(),
            ));
        }
        let (mut issuers, mut keys, mut uris, mut kinds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, ip) in p.issuers.iter().enumerate() {
            let at = |f: &str| format!("issuers[{i}].{f}");
            if ip.iss.is_empty() {
                errors.push((at("iss"), "expected a non-empty issuer".into()));
            }
            if ip.kind == EvidenceKind::JwtSvid && !ip.iss.starts_with("spiffe://") {
                errors.push((
                    at("iss"),
                    format!(
                        "a JWT-SVID issuer is a trust domain like `spiffe://prod.example.com`, found `{}`",
                        ip.iss
                    ),
                ));
            }
            if ip.audiences.is_empty() {
                errors.push((
                    at("audiences"),
                    "expected at least one audience (JWT-SVIDs require `aud`)".into(),
                ));
            }
            if ip.algorithms.is_empty() {
                errors.push((at("algorithms"), "expected at least one algorithm".into()));
            }
            if ip.kind == EvidenceKind::JwtSvid && ip.algorithms.contains(&Alg::EdDSA) {
                errors.push((
                    at("algorithms"),
                    "JWT-SVIDs are signed with RS, ES or PS algorithms, not `EdDSA`".into(),
                ));
            }
            let (set, uri, problems) = KeySet::from_policy(
                ip.jwks.as_ref(),
                ip.jwks_uri.as_deref(),
                ["jwks", "jwks_uri"],
                "signature verification key",
                &format!("issuers[{i}]"),
            );
            errors.extend(problems);
            if let Some(uri) = uri {
                uris.push((ip.iss.clone(), uri));
            }
            let spiffe = ip.kind == EvidenceKind::JwtSvid;
            issuers.push(Issuer {
                iss: ip.iss.clone(),
                audiences: ip.audiences.clone(),
                algorithms: ip.algorithms.clone(),
                token_type: ip.token_type.clone(),
                max_lifetime: ip.max_lifetime,
                clock_skew: ip.clock_skew,
                required_claims: vec!["sub".into()],
                binding: Binding::None,
                spiffe,
            });
            keys.push(set);
            kinds.push(ip.kind);
        }
        let spiffe_id = match &p.require.spiffe_id {
            None => None,
            Some(list) => {
                let mut globs = Vec::new();
                for (i, pattern) in list.iter().enumerate() {
                    if !pattern.starts_with("spiffe://") {
                        errors.push((format!("require.spiffe_id[{i}]"), format!("expected a SPIFFE ID pattern like `spiffe://prod.example.com/agents/*`, found `{pattern}`")));
                    }
                    match Glob::new(pattern) {
                        Ok(g) => globs.push(g),
                        Err(e) => errors.push((format!("require.spiffe_id[{i}]"), e)),
                    }
                }
                Some(globs)
            }
        };
        let mut claims = Vec::new();
        for (path, values) in &p.require.claims {
            let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
            if parts.iter().any(String::is_empty) {
                errors
                    .push((format!("require.claims.{path}"), "expected a claim path like `tee.type`".into()));
            }
            if values.is_empty() {
                errors.push((format!("require.claims.{path}"), "expected at least one allowed value".into()));
            }
            claims.push((path.clone(), parts, values.clone()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let compiled = Attestation {
            header: p.header.clone(),
            embedded_claim: p.embedded_claim.clone(),
            kinds,
            spiffe_id,
            claims,
            bind_to_actor: p.bind_to_actor,
        };
        Ok((compiled, (issuers, keys, uris)))
    }

    /// Checks the request's evidence against the access token's claims.
    pub fn check<'k>(
        &self,
        request: &Request,
        access: &Claims,
        issuers: &[Issuer],
        keys_for: impl Fn(usize) -> Option<&'k KeySet>,
    ) -> Result<EventAttestation, TokenError> {
        let (evidence, source): (Map<String, Value>, String) = match &self.embedded_claim {
            Some(claim) => match access.raw.get(claim) {
                Some(Value::Object(obj)) => (obj.clone(), format!("claim:{claim}")),
                _ => {
                    return Err((
                        ReasonCode::AttestationMissing,
                        format!("token has no `{claim}` attestation object"),
                    ))
                }
            },
            None => {
                let mut values = request.header_values(&self.header);
                let token = values.next().ok_or_else(|| {
                    (ReasonCode::AttestationMissing, format!("no `{}` attestation header", self.header))
                })?;
                if values.next().is_some() {
                    return Err((
                        ReasonCode::AttestationInvalid,
                        format!("more than one `{}` header", self.header),
                    ));
                }
                let verified = token::verify(token, issuers, keys_for, &[]).map_err(evidence_error)?;
                let issuer = issuers
                    .get(verified.issuer)
                    .ok_or((ReasonCode::InternalError, "attestation issuer index out of range".to_owned()))?;
                token::validate(&verified.claims, issuer, request.now()).map_err(evidence_error)?;
                if self.kinds.get(verified.issuer) == Some(&EvidenceKind::JwtSvid) {
                    check_svid(&verified.claims, issuer)?;
                }
                (verified.claims.raw, issuer.iss.clone())
            }
        };
        let subject = evidence.get("sub").and_then(Value::as_str).unwrap_or("");
        if let Some(patterns) = &self.spiffe_id {
            if !patterns.iter().any(|g| g.matches(subject)) {
                return Err((
                    ReasonCode::AttestationSubjectNotAllowed,
                    format!("attested workload `{}` is not an allowed SPIFFE ID", clip(subject)),
                ));
            }
        }
        for (path, parts, allowed) in &self.claims {
            match token::claim_at(&evidence, parts) {
                Some(v) if allowed.contains(v) => {}
                Some(v) => {
                    return Err((
                        ReasonCode::AttestationClaimMismatch,
                        format!(
                            "attestation claim `{path}` is `{}`, not an allowed value",
                            clip(&v.to_string())
                        ),
                    ))
                }
                None => {
                    return Err((
                        ReasonCode::AttestationClaimMismatch,
                        format!("attestation has no `{path}` claim"),
                    ))
                }
            }
        }
        if self.bind_to_actor && self.embedded_claim.is_none() {
            let actor = access.actors.first().or(access.client_id.as_ref());
            if actor.map(String::as_str) != Some(subject) {
                return Err((
                    ReasonCode::AttestationActorMismatch,
                    format!(
                        "attestation is for `{}` but the token's agent is `{}`",
                        clip(subject),
                        actor.map(|a| clip(a)).unwrap_or_else(|| "nobody".into())
                    ),
                ));
            }
        }
        Ok(EventAttestation { workload: clip(subject), issuer: clip(&source) })
    }
}

fn check_svid(claims: &Claims, issuer: &Issuer) -> Result<(), TokenError> {
    let sub = claims.sub.as_deref().unwrap_or("");
    let domain = token::spiffe_trust_domain(sub).ok_or_else(|| {
        (ReasonCode::AttestationInvalid, format!("JWT-SVID subject `{}` is not a SPIFFE ID", clip(sub)))
    })?;
    if domain != issuer.iss {
        return Err((
            ReasonCode::AttestationInvalid,
            format!("JWT-SVID for trust domain `{domain}` was accepted from issuer `{}`", issuer.iss),
        ));
    }
    Ok(())
}

/// Evidence failures keep their cause but in the attestation's own codes.
fn evidence_error((code, message): TokenError) -> TokenError {
    let code = match code {
        ReasonCode::TokenExpired => ReasonCode::AttestationExpired,
        ReasonCode::TokenAudienceInvalid => ReasonCode::AttestationAudienceInvalid,
        _ => ReasonCode::AttestationInvalid,
    };
    (code, format!("attestation: {message}"))
}
