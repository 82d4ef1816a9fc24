//! Stage 4: token verification — strict JWS, issuer, key, signature, claims.
//!
//! Order matters and is fixed: parse strictly ([`UntrustedJws`]), read the
//! *untrusted* `iss` only to pick which issuer's policy applies, check `typ`,
//! verify the signature with that issuer's keys under its algorithm allow-list,
//! and only then type the claims. Time, audience and required-claim checks run
//! on every request — also for tokens served from the cache — so a cached
//! token can never outlive its validity.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::b64;
use crate::duration::Duration;
use crate::json;
use crate::jws::{self, JwsError, UntrustedJws};
use crate::keys::{clip, Alg, KeySet};
use crate::limits::MAX_ACT_DEPTH;
use crate::policy::{Binding, IssuerPolicy};
use crate::reason::ReasonCode;

/// A compiled issuer (keys live in the engine, which may refresh them).
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Exact `iss`.
    pub iss: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Alg>,
    /// Required `typ`, if any.
    pub token_type: Option<String>,
    /// Longest accepted lifetime.
    pub max_lifetime: Duration,
    /// Clock skew tolerance.
    pub clock_skew: Duration,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Binding requirement.
    pub binding: Binding,
    /// A SPIFFE trust domain issuing JWT-SVIDs: tokens without `iss` are
    /// matched by the trust domain of their `sub` (`spiffe://<domain>`).
    pub spiffe: bool,
}

impl Issuer {
    /// Takes the policy's issuer as is; the engine validated it.
    pub fn from_policy(p: &IssuerPolicy) -> Issuer {
        Issuer {
            iss: p.iss.clone(),
            audiences: p.audiences.clone(),
            algorithms: p.algorithms.clone(),
            token_type: p.token_type.clone(),
            max_lifetime: p.max_lifetime,
            clock_skew: p.clock_skew,
            required_claims: p.required_claims.clone(),
            binding: p.binding,
            spiffe: false,
        }
    }
}

/// The typed claims of a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub iss: String,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`, as a list.
    pub aud: Vec<String>,
    /// `exp`, Unix seconds.
    pub exp: Option<i64>,
    /// `nbf`, Unix seconds.
    pub nbf: Option<i64>,
    /// `iat`, Unix seconds.
    pub iat: Option<i64>,
    /// `jti`.
    pub jti: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// Scopes from `scope` (space-separated) and `scp` (array).
    pub scopes: Vec<String>,
    /// The `act` chain, current actor first.
    pub actors: Vec<String>,
    /// `cnf`, if present.
    pub cnf: Option<Map<String, Value>>,
    /// Every claim, as sent.
    pub raw: Map<String, Value>,
}

impl Claims {
    /// The acting agent: the current actor, else `client_id`, else `sub`.
    pub fn agent(&self) -> String {
        self.agent_str().to_owned()
    }

    /// [`Claims::agent`], borrowed.
    pub fn agent_str(&self) -> &str {
        self.actors.first().or(self.client_id.as_ref()).or(self.sub.as_ref()).map_or("", String::as_str)
    }
}

/// A token whose signature verified under a trusted issuer's key.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Index of the issuer in the policy.
    pub issuer: usize,
    /// Algorithm that verified.
    pub alg: Alg,
    /// `kid` of the key that verified.
    pub kid: Option<String>,
    /// Typed claims.
    pub claims: Claims,
    /// SHA-256 of the token text.
    pub hash: [u8; 32],
    /// What decisions show of this token (identity, event agent, identity
    /// headers), built by the engine on first use and shared from then on:
    /// a cached token's decisions copy no strings. A token is only ever
    /// verified and cached by one engine, so one view fits it.
    pub(crate) view: std::sync::OnceLock<crate::engine::TokenView>,
}

/// A refusal: reason code plus message.
pub type TokenError = (ReasonCode, String);

/// SHA-256 of the token text: the cache key and the log's token id.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A signature check the host may run with platform crypto (WebCrypto's
/// `crypto.subtle.verify`) instead of Wasm, then report as a [`HostVerdict`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignatureCheck {
    /// The check's id: base64url SHA-256 over the token's hash and the
    /// selected key's thumbprint, so a verdict applies to this token verified
    /// with this key only.
    pub token_hash: String,
    /// JWS algorithm (`ES256`, `EdDSA`, `RS256`, `PS256`).
    pub alg: &'static str,
    /// The issuer's public key, as a minimal JWK.
    pub jwk: Value,
    /// The signed bytes (`header.payload`, ASCII).
    pub signing_input: String,
    /// base64url of the raw signature (`r‖s` for ES256).
    pub signature: String,
}

impl SignatureCheck {
    /// `{"checks": [...]}`, as `serde_json` would write it (a test checks
    /// that), without building a `Value` tree of the signed bytes first: this
    /// runs for every fresh token a host verifies.
    pub fn list_json(checks: &[SignatureCheck]) -> String {
        let mut o =
            String::with_capacity(64 + checks.iter().map(|c| c.signing_input.len() * 2).sum::<usize>());
        o.push_str("{\"checks\":[");
        for (i, c) in checks.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            // Keys in sorted order, as `json!` (a sorted map) wrote them.
            o.push_str("{\"alg\":");
            crate::decision::push_str(&mut o, c.alg);
            o.push_str(",\"jwk\":");
            o.push_str(&c.jwk.to_string());
            o.push_str(",\"signature\":");
            crate::decision::push_str(&mut o, &c.signature);
            o.push_str(",\"signing_input\":");
            crate::decision::push_str(&mut o, &c.signing_input);
            o.push_str(",\"token_hash\":");
            crate::decision::push_str(&mut o, &c.token_hash);
            o.push('}');
        }
        o.push_str("]}");
        o
    }
}

/// The host's answer to a [`SignatureCheck`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostVerdict {
    /// The check's `token_hash`.
    pub token_hash: String,
    /// Whether the signature verified.
    pub valid: bool,
}

/// The id of a signature check: binds a host's verdict to a token (or DPoP
/// proof) and a key.
pub(crate) fn check_id(token_hash: &[u8; 32], key_thumbprint: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"agentguard-signature-check-v1\0");
    h.update(token_hash);
    h.update(key_thumbprint.as_bytes());
    b64::encode(&h.finalize())
}

/// Everything [`verify`] does before the signature check; `None` when the token
/// would be refused before any signature is checked (the decision says why).
pub fn signature_check<'k>(
    token: &str,
    issuers: &[Issuer],
    keys_for: impl Fn(usize) -> Option<&'k KeySet>,
) -> Option<SignatureCheck> {
    prepare(token, issuers, keys_for).map(|(check, _)| check)
}

/// [`signature_check`], plus the token parsed as far as the signature: what
/// [`verify`] would build from it, kept by the engine until the host's
/// verdict comes back so the token is not parsed twice. `None` in the second
/// place when the claims would be refused anyway (the full path says why).
pub fn prepare<'k>(
    token: &str,
    issuers: &[Issuer],
    keys_for: impl Fn(usize) -> Option<&'k KeySet>,
) -> Option<(SignatureCheck, Option<Prepared>)> {
    let (jws, index, claims) = pre_signature(token, issuers).ok()?;
    let issuer = issuers.get(index)?;
    let (alg, key) = jws.key_for(keys_for(index)?, &issuer.algorithms).ok()?;
    let hash = token_hash(token);
    let check = SignatureCheck {
        token_hash: check_id(&hash, &key.thumbprint),
        alg: alg.name(),
        jwk: key.public_jwk.clone(),
        signing_input: jws.signing_input().to_owned(),
        signature: b64::encode(jws.signature()),
    };
    let prepared = type_claims(claims).ok().map(|claims| Prepared {
        token: token.to_owned(),
        token_hash: check.token_hash.clone(),
        parsed: VerifiedToken {
            issuer: index,
            alg,
            kid: key.kid.clone(),
            claims,
            hash,
            view: std::sync::OnceLock::new(),
        },
    });
    Some((check, prepared))
}

/// A token parsed up to its signature by [`prepare`], waiting for the host's
/// verdict. It is not verified: [`Prepared::verified`] hands it out only for
/// a valid verdict on its own check id and the exact token text.
#[derive(Debug, Clone)]
pub struct Prepared {
    token: String,
    token_hash: String,
    parsed: VerifiedToken,
}

impl Prepared {
    /// The check id its verdict must name.
    pub fn check_id(&self) -> &str {
        &self.token_hash
    }

    /// The issuer (index in the policy) whose keys it was prepared with.
    pub fn issuer(&self) -> usize {
        self.parsed.issuer
    }

    /// The verified token, when `verdicts` hold a valid verdict for this
    /// check and `token` is the text it was prepared from. The caller must
    /// also know the issuer's keys are the ones it was prepared with (the
    /// check id names the key's thumbprint, but a rotation could change which
    /// key the token's `kid` selects).
    pub fn verified(self, token: &str, verdicts: &[HostVerdict]) -> Option<VerifiedToken> {
        let valid = verdicts.iter().any(|v| v.valid && v.token_hash == self.token_hash);
        (valid && crate::cache::same(token.as_bytes(), self.token.as_bytes())).then_some(self.parsed)
    }
}

/// Parses strictly, finds the issuer by the untrusted `iss`, checks `typ`.
fn pre_signature<'t>(
    token: &'t str,
    issuers: &[Issuer],
) -> Result<(UntrustedJws<'t>, usize, Map<String, Value>), TokenError> {
    let jws = UntrustedJws::parse(token).map_err(jws_reason)?;
    let claims = match json::parse_strict(jws.payload()) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err((ReasonCode::TokenJsonInvalid, "claims must be a JSON object".into())),
        Err(e) => return Err((ReasonCode::TokenJsonInvalid, format!("claims: {e}"))),
    };
    let trust_domain;
    let iss = match claims.get("iss") {
        Some(Value::String(iss)) => iss,
        Some(_) => return Err((ReasonCode::TokenClaimInvalid, "`iss` must be a string".into())),
        // JWT-SVIDs may omit `iss`: their issuer is the trust domain of `sub`.
        None => match claims.get("sub").and_then(Value::as_str).and_then(spiffe_trust_domain) {
            Some(domain) if issuers.iter().any(|i| i.spiffe) => {
                trust_domain = domain;
                &trust_domain
            }
            _ => return Err((ReasonCode::TokenClaimMissing, "token has no `iss` claim".into())),
        },
    };
    let (index, issuer) =
        issuers.iter().enumerate().find(|(_, i)| i.iss == *iss).ok_or_else(|| {
            (ReasonCode::TokenIssuerUnknown, format!("issuer `{}` is not trusted", clip(iss)))
        })?;
    if let Some(expected) = &issuer.token_type {
        match jws.typ().map_err(jws_reason)? {
            Some(typ) if jws::typ_matches(typ, expected) => {}
            Some(typ) => {
                return Err((
                    ReasonCode::TokenTypeInvalid,
                    format!("token type is `{}`, expected `{expected}`", clip(typ)),
                ))
            }
            None => {
                return Err((
                    ReasonCode::TokenTypeInvalid,
                    format!("token has no `typ`, expected `{expected}`"),
                ))
            }
        }
    }
    Ok((jws, index, claims))
}

/// Verifies signature and claim types. `keys_for(i)` gives issuer `i`'s current
/// keys; a host verdict naming this token (and the key selected now)
/// replaces the Wasm signature check.
pub fn verify<'k>(
    token: &str,
    issuers: &[Issuer],
    keys_for: impl Fn(usize) -> Option<&'k KeySet>,
    host_verdicts: &[HostVerdict],
) -> Result<VerifiedToken, TokenError> {
    let (jws, index, claims) = pre_signature(token, issuers)?;
    let hash = token_hash(token);
    let issuer =
        issuers.get(index).ok_or((ReasonCode::InternalError, "issuer index out of range".to_owned()))?;
    let keys = keys_for(index).filter(|k| !k.is_empty()).ok_or_else(|| {
        (ReasonCode::TokenKeyNotFound, format!("keys for issuer `{}` are not loaded yet", clip(&issuer.iss)))
    })?;
    // A verdict counts only for this token *and* the key selected now: if the
    // keys rotated while the host was verifying, the check id no longer matches.
    let verdict = match host_verdicts {
        [] => None,
        verdicts => jws.key_for(keys, &issuer.algorithms).ok().and_then(|(_, key)| {
            let id = check_id(&hash, &key.thumbprint);
            verdicts.iter().find(|v| v.token_hash == id).map(|v| v.valid)
        }),
    };
    let verified = jws.verify_with(keys, &issuer.algorithms, verdict).map_err(jws_reason)?;
    let claims = type_claims(claims)?;
    Ok(VerifiedToken {
        issuer: index,
        alg: verified.alg,
        kid: verified.kid,
        claims,
        hash,
        view: std::sync::OnceLock::new(),
    })
}

fn jws_reason(e: JwsError) -> TokenError {
    let code = match &e {
        JwsError::TooLarge(_) | JwsError::Malformed(_) => ReasonCode::TokenMalformed,
        JwsError::Json(_) => ReasonCode::TokenJsonInvalid,
        JwsError::Header(_) => ReasonCode::TokenHeaderUnsupported,
        JwsError::Algorithm(_) => ReasonCode::TokenAlgorithmNotAllowed,
        JwsError::Key(_) => ReasonCode::TokenKeyNotFound,
        JwsError::Signature(_) => ReasonCode::TokenSignatureInvalid,
    };
    (code, e.message())
}

/// Checks required claims, time, lifetime and audience at `now` (Unix
/// seconds), for a token just verified.
pub fn validate(claims: &Claims, issuer: &Issuer, now: i64) -> Result<(), TokenError> {
    for name in &issuer.required_claims {
        if claims.raw.get(name).is_none_or(Value::is_null) {
            return Err((ReasonCode::TokenClaimMissing, format!("token has no `{name}` claim")));
        }
    }
    revalidate(claims, issuer, now)
}

/// [`validate`] for a token from the verified-token cache: all but the
/// required claims, which are there (it passed [`validate`] when it was
/// verified, and a hit is the same text). Looking them up again was ~7% of
/// a cached decision.
pub fn revalidate(claims: &Claims, issuer: &Issuer, now: i64) -> Result<(), TokenError> {
    let skew = issuer.clock_skew.as_secs_i64();
    let exp = claims.exp.ok_or((ReasonCode::TokenClaimMissing, "token has no `exp` claim".to_owned()))?;
    if now >= exp.saturating_add(skew) {
        return Err((ReasonCode::TokenExpired, format!("token expired {} s ago", now.saturating_sub(exp))));
    }
    if let Some(nbf) = claims.nbf {
        if now.saturating_add(skew) < nbf {
            return Err((
                ReasonCode::TokenNotYetValid,
                format!("token is not valid for another {} s", nbf.saturating_sub(now)),
            ));
        }
    }
    if let Some(iat) = claims.iat {
        if iat > now.saturating_add(skew) {
            return Err((
                ReasonCode::TokenIssuedInFuture,
                format!("token was issued {} s in the future", iat.saturating_sub(now)),
            ));
        }
    }
    let lifetime = exp.saturating_sub(claims.iat.unwrap_or(now));
    let max = issuer.max_lifetime.as_secs_i64();
    if lifetime > max {
        return Err((
            ReasonCode::TokenLifetimeTooLong,
            format!(
                "token lifetime is {lifetime} s, more than the issuer's maximum of {}",
                issuer.max_lifetime
            ),
        ));
    }
    if claims.aud.is_empty() {
        return Err((ReasonCode::TokenClaimMissing, "token has no `aud` claim".into()));
    }
    if !claims.aud.iter().any(|a| issuer.audiences.contains(a)) {
        let first = claims.aud.first().map(|a| clip(a)).unwrap_or_default();
        return Err((
            ReasonCode::TokenAudienceInvalid,
            format!("token audience `{first}` is not one of this API's audiences"),
        ));
    }
    Ok(())
}

/// Types the claims the pipeline reads; the rest stay in `raw`.
pub fn type_claims(raw: Map<String, Value>) -> Result<Claims, TokenError> {
    let invalid = |m: String| (ReasonCode::TokenClaimInvalid, m);
    let string = |name: &str| -> Result<Option<String>, TokenError> {
        match raw.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("`{name}` must be a string"))),
        }
    };
    let date = |name: &str| -> Result<Option<i64>, TokenError> {
        match raw.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                let secs = n.as_f64().filter(|s| s.is_finite() && (0.0..=253_402_300_799.0).contains(s));
                // In range by the filter, so the cast is exact for whole seconds.
                secs.map(|s| Some(s.floor() as i64))
                    .ok_or_else(|| invalid(format!("`{name}` must be seconds since 1970 before year 10000")))
            }
            Some(_) => {
                Err(invalid(format!("`{name}` must be a number (NumericDate), not a string or object")))
            }
        }
    };
    let iss = string("iss")?.unwrap_or_default();
    let aud = match raw.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("`aud` must be a string or an array of strings".into()))?,
        Some(_) => return Err(invalid("`aud` must be a string or an array of strings".into())),
    };
    let mut scopes: Vec<String> = Vec::new();
    match raw.get("scope") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned)),
        Some(_) => return Err(invalid("`scope` must be a space-separated string".into())),
    }
    match raw.get("scp") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned)),
        Some(Value::Array(items)) => {
            for v in items {
                scopes.push(
                    v.as_str().ok_or_else(|| invalid("`scp` must be an array of strings".into()))?.to_owned(),
                );
            }
        }
        Some(_) => return Err(invalid("`scp` must be a string or an array of strings".into())),
    }
    scopes.sort();
    scopes.dedup();
    let actors = actor_chain(raw.get("act"))?;
    let cnf = match raw.get("cnf") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(invalid("`cnf` must be an object".into())),
    };
    Ok(Claims {
        iss,
        sub: string("sub")?,
        aud,
        exp: date("exp")?,
        nbf: date("nbf")?,
        iat: date("iat")?,
        jti: string("jti")?,
        client_id: string("client_id")?,
        scopes,
        actors,
        cnf,
        raw,
    })
}

/// The claim at a dotted path (`["tee", "type"]`) into nested objects.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(claims.get(first)?, |v, part| v.get(part))
}

/// `spiffe://<trust-domain>` of a SPIFFE ID, if `id` is one.
pub fn spiffe_trust_domain(id: &str) -> Option<String> {
    let rest = id.strip_prefix("spiffe://")?;
    let domain = rest.split('/').next()?;
    let valid = !domain.is_empty()
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    valid.then(|| format!("spiffe://{domain}"))
}

/// Walks the RFC 8693 `act` chain: `{"sub": A1, "act": {"sub": A0}}` → `[A1, A0]`.
fn actor_chain(act: Option<&Value>) -> Result<Vec<String>, TokenError> {
    let mut actors = Vec::new();
    let mut current = act;
    while let Some(value) = current {
        if value.is_null() && actors.is_empty() {
            break;
        }
        let obj = value
            .as_object()
            .ok_or((ReasonCode::DelegationInvalid, "`act` must be an object with a `sub`".to_owned()))?;
        let sub = obj
            .get("sub")
            .and_then(Value::as_str)
            .ok_or((ReasonCode::DelegationInvalid, "each `act` must have a string `sub`".to_owned()))?;
        if actors.len() >= MAX_ACT_DEPTH {
            return Err((
                ReasonCode::DelegationTooDeep,
                format!("`act` chain is deeper than {MAX_ACT_DEPTH}"),
            ));
        }
        actors.push(sub.to_owned());
        current = obj.get("act");
    }
    Ok(actors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Result<Claims, TokenError> {
        type_claims(v.as_object().unwrap().clone())
    }

    #[test]
    fn act_chain_is_current_actor_first() {
        let c = claims(json!({"act": {"sub": "agent-b", "act": {"sub": "agent-a"}}})).unwrap();
        assert_eq!(c.actors, ["agent-b", "agent-a"]);
        assert_eq!(c.agent(), "agent-b");
        let bad = claims(json!({"act": {"client": "x"}})).unwrap_err();
        assert_eq!(bad.0, ReasonCode::DelegationInvalid);
        let mut deep = json!({"sub": "a0"});
        for i in 1..=MAX_ACT_DEPTH {
            deep = json!({"sub": format!("a{i}"), "act": deep});
        }
        assert_eq!(claims(json!({ "act": deep })).unwrap_err().0, ReasonCode::DelegationTooDeep);
    }

    #[test]
    fn scopes_from_scope_and_scp() {
        let c = claims(json!({"scope": "b a", "scp": ["c", "a"]})).unwrap();
        assert_eq!(c.scopes, ["a", "b", "c"]);
        assert_eq!(claims(json!({"scope": ["a"]})).unwrap_err().0, ReasonCode::TokenClaimInvalid);
    }

    #[test]
    fn numeric_dates_must_be_numbers_in_range() {
        assert_eq!(claims(json!({"exp": "1700000000"})).unwrap_err().0, ReasonCode::TokenClaimInvalid);
        assert_eq!(claims(json!({"exp": -1})).unwrap_err().0, ReasonCode::TokenClaimInvalid);
        assert_eq!(claims(json!({"exp": 1e300})).unwrap_err().0, ReasonCode::TokenClaimInvalid);
        assert_eq!(claims(json!({"exp": 1700000000.9})).unwrap().exp, Some(1_700_000_000));
    }

    #[test]
    fn agent_falls_back_to_client_id_then_sub() {
        assert_eq!(claims(json!({"sub": "u", "client_id": "c"})).unwrap().agent(), "c");
        assert_eq!(claims(json!({"sub": "u"})).unwrap().agent(), "u");
    }
}
