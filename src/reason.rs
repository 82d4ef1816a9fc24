//! Stable reason codes: the machine-readable "why" of every decision.
//!
//! Codes are part of the public API: they appear in decisions, logs and
//! `problem+json` bodies, and never change meaning. The documented list is
//! `docs/reason-codes.md`; a test checks every code here is documented there.

use serde::Serialize;

/// Why a request was not allowed (or, for `approval_required`, what it still needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReasonCode {
    /// The request object itself is malformed (bad method, header, IP, time).
    RequestInvalid,
    /// The path cannot be normalised safely (encoded `/`, encoded dot segment, …).
    PathInvalid,
    /// No route matches the method and path; the default is deny.
    RouteNotMatched,
    /// No credential (`Authorization` header) was sent.
    CredentialMissing,
    /// The `Authorization` header is malformed, repeated, or uses an unsupported scheme.
    CredentialMalformed,
    /// The policy requires an HTTP message signature and the request has none.
    SignatureMissing,
    /// The HTTP message signature is malformed, untagged, or does not verify.
    SignatureInvalid,
    /// The signature's `created`/`expires` window is not current.
    SignatureExpired,
    /// The signing key is in no trusted directory (or not the named agent's).
    SignatureKeyUnknown,
    /// The signature does not cover a required component.
    SignatureComponentMissing,
    /// The signature's nonce was already used.
    SignatureReplayed,
    /// The token is not a well-formed compact JWS (or is too large, or is a JWE).
    TokenMalformed,
    /// The token's header or claims are not acceptable JSON (duplicate keys, depth, types).
    TokenJsonInvalid,
    /// The token's header uses a refused feature (`crit`, `b64`, nested JWT).
    TokenHeaderUnsupported,
    /// The token's `typ` is not the issuer's token type.
    TokenTypeInvalid,
    /// The token's `iss` is not a trusted issuer.
    TokenIssuerUnknown,
    /// The token's algorithm is not allowed for its issuer.
    TokenAlgorithmNotAllowed,
    /// No issuer key fits the token's `kid` and algorithm (or keys are not loaded yet).
    TokenKeyNotFound,
    /// The signature does not verify.
    TokenSignatureInvalid,
    /// `exp` is in the past (beyond the clock skew).
    TokenExpired,
    /// `nbf` is in the future (beyond the clock skew).
    TokenNotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    TokenIssuedInFuture,
    /// `exp − iat` exceeds the issuer's maximum lifetime.
    TokenLifetimeTooLong,
    /// `aud` names none of the issuer's audiences.
    TokenAudienceInvalid,
    /// A required claim is missing.
    TokenClaimMissing,
    /// A claim has the wrong type or an out-of-range value.
    TokenClaimInvalid,
    /// The issuer requires a bound token, but the token has no `cnf`.
    BindingMissing,
    /// The token is bound to a client certificate, but the connection has none.
    BindingCertificateMissing,
    /// The token is bound to a different client certificate.
    BindingCertificateMismatch,
    /// The token is DPoP-bound (`cnf.jkt`) or its issuer requires DPoP, but it was sent as a bearer token.
    BindingDpopRequired,
    /// A DPoP-bound token came without a `DPoP` proof header.
    DpopProofMissing,
    /// The DPoP proof is malformed, has the wrong `typ` or algorithm, a bad key, or a bad signature.
    DpopProofInvalid,
    /// The proof's `htm` is not the request method.
    DpopMethodMismatch,
    /// The proof's `htu` is not the request URL.
    DpopUrlMismatch,
    /// The proof's `iat` is outside the accepted window.
    DpopProofStale,
    /// The proof's `jti` was already used.
    DpopProofReplayed,
    /// The proof's `ath` is missing or is not the hash of the presented token.
    DpopAthMismatch,
    /// The proof key is not the key the token is bound to (`cnf.jkt`).
    DpopKeyMismatch,
    /// The proof lacks the server's current nonce; retry with `DPoP-Nonce`.
    DpopNonceRequired,
    /// The token has no `act` claim but the policy requires an acting agent.
    DelegationRequired,
    /// The `act` chain is longer than the policy allows.
    DelegationTooDeep,
    /// The acting agent does not match the policy's allowed actors.
    DelegationActorNotAllowed,
    /// The subject does not match the policy's allowed subjects.
    DelegationSubjectNotAllowed,
    /// The `act` claim is malformed.
    DelegationInvalid,
    /// The request carries no attestation evidence.
    AttestationMissing,
    /// The attestation token is malformed, from an unknown issuer, badly signed, or not a valid SVID.
    AttestationInvalid,
    /// The attestation token has expired.
    AttestationExpired,
    /// The attestation token is not for this audience.
    AttestationAudienceInvalid,
    /// The attested workload's SPIFFE ID is not an allowed one.
    AttestationSubjectNotAllowed,
    /// An attested claim (digest, signer, TEE type, …) is not an allowed value.
    AttestationClaimMismatch,
    /// The evidence is for a different workload than the token's acting agent.
    AttestationActorMismatch,
    /// The token id (`jti`) is on the revocation list.
    RevokedToken,
    /// The subject is on the revocation list.
    RevokedSubject,
    /// The acting agent is on the revocation list.
    RevokedAgent,
    /// The signing key (`kid`) is on the revocation list.
    RevokedKey,
    /// The token lacks a scope the route requires.
    ScopeInsufficient,
    /// The token's RFC 9396 `authorization_details` grant nothing matching this route.
    AuthorizationDetailsMismatch,
    /// The source IP is outside the allowed networks (or unknown).
    NetworkNotAllowed,
    /// A rate limit is exhausted; retry after `Retry-After` seconds.
    RateLimited,
    /// A replay cache (DPoP proofs, approvals, signature nonces) is full of
    /// live ids; refused rather than forget one; retry after `Retry-After` seconds.
    ReplayCacheFull,
    /// The agent is revoked by the circuit breaker until its cooldown ends.
    AgentSuspended,
    /// The breaker tripped now: too many requests in its window.
    BreakerBurst,
    /// The breaker tripped now: too many of the agent's requests were refused.
    BreakerDenyRatio,
    /// The breaker tripped now: too many calls outside the agent's usual routes.
    BreakerUnusualRoutes,
    /// The route is high-risk and needs a human approval bound to this action.
    ApprovalRequired,
    /// The approval token is malformed, badly signed or from an untrusted issuer.
    ApprovalInvalid,
    /// The approval token has expired.
    ApprovalExpired,
    /// The approval is for a different action (method, host, path, query or body).
    ApprovalDigestMismatch,
    /// The approval is for a different agent.
    ApprovalAgentMismatch,
    /// The approval was already used.
    ApprovalReplayed,
    /// The agent's shared state (a Durable Object) could not be reached; the
    /// host refuses rather than decide without it (fail closed).
    StateUnavailable,
    /// Something failed inside agentguard; the request is denied (fail closed).
    InternalError,
}

impl ReasonCode {
    /// Every code, for documentation checks.
    pub const ALL: &'static [ReasonCode] = &[
        ReasonCode::RequestInvalid,
        ReasonCode::PathInvalid,
        ReasonCode::RouteNotMatched,
        ReasonCode::CredentialMissing,
        ReasonCode::CredentialMalformed,
        ReasonCode::SignatureMissing,
        ReasonCode::SignatureInvalid,
        ReasonCode::SignatureExpired,
        ReasonCode::SignatureKeyUnknown,
        ReasonCode::SignatureComponentMissing,
        ReasonCode::SignatureReplayed,
        ReasonCode::TokenMalformed,
        ReasonCode::TokenJsonInvalid,
        ReasonCode::TokenHeaderUnsupported,
        ReasonCode::TokenTypeInvalid,
        ReasonCode::TokenIssuerUnknown,
        ReasonCode::TokenAlgorithmNotAllowed,
        ReasonCode::TokenKeyNotFound,
        ReasonCode::TokenSignatureInvalid,
        ReasonCode::TokenExpired,
        ReasonCode::TokenNotYetValid,
        ReasonCode::TokenIssuedInFuture,
        ReasonCode::TokenLifetimeTooLong,
        ReasonCode::TokenAudienceInvalid,
        ReasonCode::TokenClaimMissing,
        ReasonCode::TokenClaimInvalid,
        ReasonCode::BindingMissing,
        ReasonCode::BindingCertificateMissing,
        ReasonCode::BindingCertificateMismatch,
        ReasonCode::BindingDpopRequired,
        ReasonCode::DpopProofMissing,
        ReasonCode::DpopProofInvalid,
        ReasonCode::DpopMethodMismatch,
        ReasonCode::DpopUrlMismatch,
        ReasonCode::DpopProofStale,
        ReasonCode::DpopProofReplayed,
        ReasonCode::DpopAthMismatch,
        ReasonCode::DpopKeyMismatch,
        ReasonCode::DpopNonceRequired,
        ReasonCode::DelegationRequired,
        ReasonCode::DelegationTooDeep,
        ReasonCode::DelegationActorNotAllowed,
        ReasonCode::DelegationSubjectNotAllowed,
        ReasonCode::DelegationInvalid,
        ReasonCode::AttestationMissing,
        ReasonCode::AttestationInvalid,
        ReasonCode::AttestationExpired,
        ReasonCode::AttestationAudienceInvalid,
        ReasonCode::AttestationSubjectNotAllowed,
        ReasonCode::AttestationClaimMismatch,
        ReasonCode::AttestationActorMismatch,
        ReasonCode::RevokedToken,
        ReasonCode::RevokedSubject,
        ReasonCode::RevokedAgent,
        ReasonCode::RevokedKey,
        ReasonCode::ScopeInsufficient,
        ReasonCode::AuthorizationDetailsMismatch,
        ReasonCode::NetworkNotAllowed,
        ReasonCode::RateLimited,
        ReasonCode::ReplayCacheFull,
        ReasonCode::AgentSuspended,
        ReasonCode::BreakerBurst,
        ReasonCode::BreakerDenyRatio,
        ReasonCode::BreakerUnusualRoutes,
        ReasonCode::ApprovalRequired,
        ReasonCode::ApprovalInvalid,
        ReasonCode::ApprovalExpired,
        ReasonCode::ApprovalDigestMismatch,
        ReasonCode::ApprovalAgentMismatch,
        ReasonCode::ApprovalReplayed,
        ReasonCode::StateUnavailable,
        ReasonCode::InternalError,
    ];

    /// The wire form, e.g. `token_expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::RequestInvalid => "request_invalid",
            ReasonCode::PathInvalid => "path_invalid",
            ReasonCode::RouteNotMatched => "route_not_matched",
            ReasonCode::CredentialMissing => "credential_missing",
            ReasonCode::CredentialMalformed => "credential_malformed",
            ReasonCode::SignatureMissing => "signature_missing",
            ReasonCode::SignatureInvalid => "signature_invalid",
            ReasonCode::SignatureExpired => "signature_expired",
            ReasonCode::SignatureKeyUnknown => "signature_key_unknown",
            ReasonCode::SignatureComponentMissing => "signature_component_missing",
            ReasonCode::SignatureReplayed => "signature_replayed",
            ReasonCode::TokenMalformed => "token_malformed",
            ReasonCode::TokenJsonInvalid => "token_json_invalid",
            ReasonCode::TokenHeaderUnsupported => "token_header_unsupported",
            ReasonCode::TokenTypeInvalid => "token_type_invalid",
            ReasonCode::TokenIssuerUnknown => "token_issuer_unknown",
            ReasonCode::TokenAlgorithmNotAllowed => "token_algorithm_not_allowed",
            ReasonCode::TokenKeyNotFound => "token_key_not_found",
            ReasonCode::TokenSignatureInvalid => "token_signature_invalid",
            ReasonCode::TokenExpired => "token_expired",
            ReasonCode::TokenNotYetValid => "token_not_yet_valid",
            ReasonCode::TokenIssuedInFuture => "token_issued_in_future",
            ReasonCode::TokenLifetimeTooLong => "token_lifetime_too_long",
            ReasonCode::TokenAudienceInvalid => "token_audience_invalid",
            ReasonCode::TokenClaimMissing => "token_claim_missing",
            ReasonCode::TokenClaimInvalid => "token_claim_invalid",
            ReasonCode::BindingMissing => "binding_missing",
            ReasonCode::BindingCertificateMissing => "binding_certificate_missing",
            ReasonCode::BindingCertificateMismatch => "binding_certificate_mismatch",
            ReasonCode::BindingDpopRequired => "binding_dpop_required",
            ReasonCode::DpopProofMissing => "dpop_proof_missing",
            ReasonCode::DpopProofInvalid => "dpop_proof_invalid",
            ReasonCode::DpopMethodMismatch => "dpop_method_mismatch",
            ReasonCode::DpopUrlMismatch => "dpop_url_mismatch",
            ReasonCode::DpopProofStale => "dpop_proof_stale",
            ReasonCode::DpopProofReplayed => "dpop_proof_replayed",
            ReasonCode::DpopAthMismatch => "dpop_ath_mismatch",
            ReasonCode::DpopKeyMismatch => "dpop_key_mismatch",
            ReasonCode::DpopNonceRequired => "dpop_nonce_required",
            ReasonCode::DelegationRequired => "delegation_required",
            ReasonCode::DelegationTooDeep => "delegation_too_deep",
            ReasonCode::DelegationActorNotAllowed => "delegation_actor_not_allowed",
            ReasonCode::DelegationSubjectNotAllowed => "delegation_subject_not_allowed",
            ReasonCode::DelegationInvalid => "delegation_invalid",
            ReasonCode::AttestationMissing => "attestation_missing",
            ReasonCode::AttestationInvalid => "attestation_invalid",
            ReasonCode::AttestationExpired => "attestation_expired",
            ReasonCode::AttestationAudienceInvalid => "attestation_audience_invalid",
            ReasonCode::AttestationSubjectNotAllowed => "attestation_subject_not_allowed",
            ReasonCode::AttestationClaimMismatch => "attestation_claim_mismatch",
            ReasonCode::AttestationActorMismatch => "attestation_actor_mismatch",
            ReasonCode::RevokedToken => "revoked_token",
            ReasonCode::RevokedSubject => "revoked_subject",
            ReasonCode::RevokedAgent => "revoked_agent",
            ReasonCode::RevokedKey => "revoked_key",
            ReasonCode::ScopeInsufficient => "scope_insufficient",
            ReasonCode::AuthorizationDetailsMismatch => "authorization_details_mismatch",
            ReasonCode::NetworkNotAllowed => "network_not_allowed",
            ReasonCode::RateLimited => "rate_limited",
            ReasonCode::ReplayCacheFull => "replay_cache_full",
            ReasonCode::AgentSuspended => "agent_suspended",
            ReasonCode::BreakerBurst => "breaker_burst",
            ReasonCode::BreakerDenyRatio => "breaker_deny_ratio",
            ReasonCode::BreakerUnusualRoutes => "breaker_unusual_routes",
            ReasonCode::ApprovalRequired => "approval_required",
            ReasonCode::ApprovalInvalid => "approval_invalid",
            ReasonCode::ApprovalExpired => "approval_expired",
            ReasonCode::ApprovalDigestMismatch => "approval_digest_mismatch",
            ReasonCode::ApprovalAgentMismatch => "approval_agent_mismatch",
            ReasonCode::ApprovalReplayed => "approval_replayed",
            ReasonCode::StateUnavailable => "state_unavailable",
            ReasonCode::InternalError => "internal_error",
        }
    }

    /// The HTTP status a decision with this (first) reason gets.
    pub fn status(self) -> u16 {
        use ReasonCode::*;
        match self {
            RequestInvalid | PathInvalid | CredentialMalformed => 400,
            CredentialMissing
            | SignatureMissing
            | SignatureInvalid
            | SignatureExpired
            | SignatureKeyUnknown
            | SignatureComponentMissing
            | SignatureReplayed
            | TokenMalformed
            | TokenJsonInvalid
            | TokenHeaderUnsupported
            | TokenTypeInvalid
            | TokenIssuerUnknown
            | TokenAlgorithmNotAllowed
            | TokenKeyNotFound
            | TokenSignatureInvalid
            | TokenExpired
            | TokenNotYetValid
            | TokenIssuedInFuture
            | TokenLifetimeTooLong
            | TokenAudienceInvalid
            | TokenClaimMissing
            | TokenClaimInvalid
            | BindingMissing
            | BindingCertificateMissing
            | BindingCertificateMismatch
            | BindingDpopRequired
            | DpopProofMissing
            | DpopProofInvalid
            | DpopMethodMismatch
            | DpopUrlMismatch
            | DpopProofStale
            | DpopProofReplayed
            | DpopAthMismatch
            | DpopKeyMismatch
            | DpopNonceRequired
            | RevokedToken
            | RevokedSubject
            | RevokedAgent
            | RevokedKey => 401,
            RouteNotMatched
            | DelegationRequired
            | DelegationTooDeep
            | DelegationActorNotAllowed
            | DelegationSubjectNotAllowed
            | DelegationInvalid
            | AttestationMissing
            | AttestationInvalid
            | AttestationExpired
            | AttestationAudienceInvalid
            | AttestationSubjectNotAllowed
            | AttestationClaimMismatch
            | AttestationActorMismatch
            | ScopeInsufficient
            | AuthorizationDetailsMismatch
            | NetworkNotAllowed
            | AgentSuspended
            | BreakerBurst
            | BreakerDenyRatio
            | BreakerUnusualRoutes
            | ApprovalRequired
            | ApprovalInvalid
            | ApprovalExpired
            | ApprovalDigestMismatch
            | ApprovalAgentMismatch
            | ApprovalReplayed => 403,
            RateLimited => 429,
            ReplayCacheFull => 503,
            StateUnavailable => 503,
            InternalError => 500,
        }
    }

    /// Whether this is a DPoP proof problem (answered with a `DPoP` challenge).
    pub fn is_dpop(self) -> bool {
        self.as_str().starts_with("dpop_")
    }

    /// The RFC 6750 / RFC 9449 `error` attribute of the `WWW-Authenticate` challenge, if any.
    pub fn oauth_error(self) -> Option<&'static str> {
        if self == ReasonCode::DpopNonceRequired {
            return Some("use_dpop_nonce");
        }
        if self.is_dpop() {
            return Some("invalid_dpop_proof");
        }
        match self.status() {
            400 => Some("invalid_request"),
            401 if self == ReasonCode::CredentialMissing => None,
            401 => Some("invalid_token"),
            _ if self == ReasonCode::ScopeInsufficient => Some("insufficient_scope"),
            _ => None,
        }
    }

    /// Whether a hit means the agent is revoked (outcome `revoked`, not `deny`).
    pub fn revokes(self) -> bool {
        matches!(
            self,
            ReasonCode::RevokedToken
                | ReasonCode::RevokedSubject
                | ReasonCode::RevokedAgent
                | ReasonCode::RevokedKey
                | ReasonCode::AgentSuspended
                | ReasonCode::BreakerBurst
                | ReasonCode::BreakerDenyRatio
                | ReasonCode::BreakerUnusualRoutes
        )
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_serde() {
        for code in ReasonCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ReasonCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }
}
