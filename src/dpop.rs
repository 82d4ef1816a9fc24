//! Stage 5 (part): DPoP proofs (RFC 9449) — the token is only usable by the
//! holder of the private key it is bound to.
//!
//! For a DPoP-bound token (`cnf.jkt`, or any token of an issuer with
//! `binding: "dpop"`) the request must carry `Authorization: DPoP <token>` and
//! exactly one `DPoP` header holding a proof JWS that:
//!
//! - has `typ: dpop+jwt` and an asymmetric `alg` from the policy's list;
//! - carries its public key in the `jwk` header (private members refused) and
//!   is signed by it;
//! - names this request: `htm` = the method, `htu` = the URL without query or
//!   fragment, compared after normalisation;
//! - is fresh: `iat` within `dpop.max_age` in the past (and the clock skew in
//!   the future), its `jti` never seen before (a bounded replay cache whose
//!   entries expire with the window);
//! - is bound to this token: `ath` = base64url(SHA-256(token)), and the
//!   token's `cnf.jkt` = the RFC 7638 thumbprint of the proof key;
//! - when server nonces are on, carries a current `nonce` (otherwise the
//!   answer is `use_dpop_nonce` with a fresh `DPoP-Nonce`).
//!
//! The proof's signature arithmetic can be left to the host, like a token's
//! ([`signature_check`] → a [`HostVerdict`] whose id binds it to this proof
//! and its key): an ES256 proof costs ~1 ms in Wasm and ~0.1 ms with
//! WebCrypto. Every other check stays here.
//!
//! An agent signs every proof with the same key, so the engine remembers
//! the keys of proofs that passed for a verified token bound to them
//! ([`ProofKeys`], by thumbprint, least recently used out): a remembered
//! EdDSA or ES256 key builds its table of multiples after a few proofs,
//! as an issuer's key does (`src/fixed_base.rs`), and each later proof
//! costs about half. Only keys a valid token names get in, so a caller
//! cannot fill the list with keys of its own.

use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::duration::Duration;
use crate::json;
use crate::jws::{self, UntrustedJws};
use crate::keys::{clip, parse_jwk, Alg, KeySet, PublicKey};
use crate::limits::MAX_TOKEN_BYTES;
use crate::reason::ReasonCode;
use crate::request::{normalise_target, Request};
use crate::token::{check_id, HostVerdict, SignatureCheck};

/// The policy's `dpop` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DpopPolicy {
    /// Algorithms accepted for proofs. Default `["EdDSA", "ES256"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Alg>,
    /// How old a proof may be. Default `60s`.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
    /// Tolerance for proofs from clients whose clocks run ahead. Default `5s`.
    #[serde(default = "default_skew")]
    pub clock_skew: Duration,
    /// Require server-issued nonces (`DPoP-Nonce`). Default `false`.
    #[serde(default)]
    pub nonce: bool,
    /// Proof `jti`s remembered for replay detection. Default 100000.
    #[serde(default = "default_replay_entries")]
    pub replay_cache: usize,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        DpopPolicy {
            algorithms: default_algorithms(),
            max_age: default_max_age(),
            clock_skew: default_skew(),
            nonce: false,
            replay_cache: default_replay_entries(),
        }
    }
}

fn default_algorithms() -> Vec<Alg> {
    vec![Alg::EdDSA, Alg::ES256]
}
fn default_max_age() -> Duration {
    Duration::from_secs(60)
}
fn default_skew() -> Duration {
    Duration::from_secs(5)
}
fn default_replay_entries() -> usize {
    crate::limits::DEFAULT_REPLAY_ENTRIES
}

/// A proof that passed every check but the replay check (which needs the
/// engine's state): its replay key and when that key may be forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// SHA-256 over the proof key thumbprint and `jti`.
    pub replay_key: [u8; 32],
    /// Unix seconds after which the proof is stale anyway.
    pub expires_at: i64,
    /// The proof key's thumbprint.
    pub jkt: String,
}

/// Why a proof failed, plus whether the answer should carry a fresh nonce.
pub type DpopError = (ReasonCode, String);

/// The current server nonce for `secret` at `now` (rotates every `max_age`).
pub fn nonce(secret: &[u8], now: i64, window: Duration) -> String {
    let step = now.div_euclid(window.as_secs_i64().max(1));
    nonce_for_step(secret, step)
}

fn nonce_for_step(secret: &[u8], step: i64) -> String {
    let mut h = Sha256::new();
    h.update(b"agentguard-dpop-nonce-v1\0");
    h.update(secret);
    h.update(step.to_be_bytes());
    b64::encode(h.finalize().get(..16).unwrap_or_default())
}

/// Proof keys remembered across requests, by RFC 7638 thumbprint, so that
/// each keeps its table of multiples; least recently used out.
#[derive(Debug)]
pub struct ProofKeys(Mutex<lru::LruCache<String, PublicKey>>);

impl ProofKeys {
    /// Keys remembered at most: at ≤ 42 KiB of table each, ≤ 2.7 MiB.
    pub const CAPACITY: usize = 64;

    /// An empty list.
    pub fn new() -> Self {
        ProofKeys(Mutex::new(crate::cache::lru(Self::CAPACITY)))
    }

    fn get(&self, thumbprint: &str) -> Option<PublicKey> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(thumbprint).cloned()
    }

    /// Remembers an EdDSA or ES256 key (RSA keys have no table to keep).
    fn remember(&self, thumbprint: &str, key: &PublicKey) {
        if matches!(key, PublicKey::Ed25519(_) | PublicKey::P256(_)) {
            let mut keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if !keys.contains(thumbprint) {
                keys.put(thumbprint.to_owned(), key.clone());
            }
        }
    }

    /// The remembered keys' thumbprints, most recently used first, and
    /// whether each has built its table.
    pub fn list(&self) -> Vec<(String, bool)> {
        let keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        keys.iter().map(|(thumbprint, key)| (thumbprint.clone(), key.has_table())).collect()
    }
}

impl Default for ProofKeys {
    fn default() -> Self {
        Self::new()
    }
}

/// The request's one proof, parsed, with its embedded key (not yet verified).
struct Proof<'r> {
    jws: UntrustedJws<'r>,
    /// The embedded key: a remembered one with the same thumbprint, if any.
    keys: KeySet,
    thumbprint: String,
    /// The host-verification id of this proof with this key.
    check_id: String,
}

fn parse_proof<'r>(request: &'r Request, remembered: Option<&ProofKeys>) -> Result<Proof<'r>, DpopError> {
    let invalid = |m: String| (ReasonCode::DpopProofInvalid, m);
    let mut proofs = request.header_values("dpop");
    let proof = proofs.next().ok_or((ReasonCode::DpopProofMissing, "no `DPoP` proof header".to_owned()))?;
    if proofs.next().is_some() {
        return Err(invalid("more than one `DPoP` header".into()));
    }
    if proof.len() > MAX_TOKEN_BYTES {
        return Err(invalid(format!("proof is larger than {MAX_TOKEN_BYTES} bytes")));
    }
    let jws = UntrustedJws::parse(proof).map_err(|e| invalid(format!("proof: {}", e.message())))?;
    match jws.typ().map_err(|e| invalid(e.message()))? {
        Some(typ) if jws::typ_matches(typ, "dpop+jwt") => {}
        Some(typ) => return Err(invalid(format!("proof type is `{}`, expected `dpop+jwt`", clip(typ)))),
        None => return Err(invalid("proof has no `typ`, expected `dpop+jwt`".into())),
    }
    let jwk_value = jws.header().get("jwk").ok_or_else(|| invalid("proof header has no `jwk`".into()))?;
    let mut jwk = parse_jwk(jwk_value)
        .map_err(|e| invalid(format!("proof `jwk`: {e}")))?
        .ok_or_else(|| invalid("proof `jwk` is not a signing key".into()))?;
    // The same thumbprint is the same key: use the remembered one, and its table.
    if let Some(key) = remembered.and_then(|r| r.get(&jwk.thumbprint)) {
        jwk.key = key;
    }
    let thumbprint = jwk.thumbprint.clone();
    let check_id = check_id(&Sha256::digest(proof.as_bytes()).into(), &thumbprint);
    Ok(Proof { jws, keys: KeySet::from_keys(vec![jwk]), thumbprint, check_id })
}

/// The signature a host could verify for the request's DPoP proof, if it has
/// a well-formed one whose algorithm the policy allows. Its `token_hash` is
/// the check id a [`HostVerdict`] must carry (proof hash + key thumbprint).
pub fn signature_check(policy: &DpopPolicy, request: &Request) -> Option<SignatureCheck> {
    let proof = parse_proof(request, None).ok()?;
    let (alg, key) = proof.jws.key_for_embedded(&proof.keys, &policy.algorithms).ok()?;
    Some(SignatureCheck {
        token_hash: proof.check_id.clone(),
        alg: alg.name(),
        jwk: key.public_jwk.clone(),
        signing_input: proof.jws.signing_input().to_owned(),
        signature: b64::encode(proof.jws.signature()),
    })
}

/// Checks the DPoP proof of `request` for `token` (whose `cnf.jkt` is `jkt`);
/// with no token (a token request), only the proof itself. A verdict in
/// `host_verdicts` naming this proof and key replaces the Wasm signature check.
/// A key in `remembered` with the proof key's thumbprint verifies in its
/// place; a proof that passes for a token bound to its key puts the key
/// there.
pub fn check(
    policy: &DpopPolicy,
    request: &Request,
    token: Option<&str>,
    jkt: Option<&str>,
    nonce_secret: Option<&[u8]>,
    host_verdicts: &[HostVerdict],
    remembered: &ProofKeys,
) -> Result<CheckedProof, DpopError> {
    let invalid = |m: String| (ReasonCode::DpopProofInvalid, m);
    let Proof { jws, keys, thumbprint, check_id } = parse_proof(request, Some(remembered))?;
    let verdict = host_verdicts.iter().find(|v| v.token_hash == check_id).map(|v| v.valid);
    // The proof's own `kid` (if any) must not steer key choice: drop it.
    let verified = jws
        .verify_embedded(&keys, &policy.algorithms, verdict)
        .map_err(|e| invalid(format!("proof: {}", e.message())))?;
    let claims = match json::parse_strict(&verified.payload) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(invalid("proof claims must be a JSON object".into())),
        Err(e) => return Err(invalid(format!("proof claims: {e}"))),
    };
    let string = |name: &str| -> Result<&str, DpopError> {
        match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(invalid(format!("proof `{name}` must be a non-empty string"))),
            None => Err(invalid(format!("proof has no `{name}`"))),
        }
    };
    let jti = string("jti")?;
    if jti.len() > 256 {
        return Err(invalid("proof `jti` is longer than 256 characters".into()));
    }
    let htm = string("htm")?;
    if htm != request.method {
        return Err((
            ReasonCode::DpopMethodMismatch,
            format!("proof is for `{}`, the request is `{}`", clip(htm), request.method),
        ));
    }
    let htu = string("htu")?;
    let expected_url = format!("{}://{}{}", request.scheme, request.host, request.path);
    match normalise_url(htu) {
        Some(url) if url == expected_url => {}
        _ => {
            return Err((
                ReasonCode::DpopUrlMismatch,
                format!("proof is for `{}`, the request is for `{}`", clip(htu), clip(&expected_url)),
            ))
        }
    }
    let iat = match claims.get("iat") {
        // Seconds since 1970 before year 10000, like any NumericDate.
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite() && (0.0..=253_402_300_799.0).contains(f))
            .map(|f| f.floor() as i64),
        _ => None,
    }
    .ok_or_else(|| invalid("proof `iat` must be a number".into()))?;
    let now = request.now();
    if iat > now.saturating_add(policy.clock_skew.as_secs_i64()) {
        return Err((
            ReasonCode::DpopProofStale,
            format!("proof was made {} s in the future", iat.saturating_sub(now)),
        ));
    }
    if now.saturating_sub(iat) > policy.max_age.as_secs_i64() {
        return Err((
            ReasonCode::DpopProofStale,
            format!("proof is {} s old, more than the {} allowed", now.saturating_sub(iat), policy.max_age),
        ));
    }
    // At a resource, the proof must be bound to the presented token and the
    // token to the proof key; at the token endpoint (no token yet) the proof
    // key is what the new token will be bound to.
    if let Some(token) = token {
        let ath = string("ath").map_err(|_| {
            (ReasonCode::DpopAthMismatch, "proof has no `ath` (access token hash)".to_owned())
        })?;
        if ath != b64::encode(&Sha256::digest(token.as_bytes())) {
            return Err((
                ReasonCode::DpopAthMismatch,
                "proof `ath` is not the hash of this access token".into(),
            ));
        }
        match jkt {
            Some(jkt) if jkt == thumbprint => {}
            Some(_) => {
                return Err((
                    ReasonCode::DpopKeyMismatch,
                    "proof key is not the key the token is bound to (`cnf.jkt`)".into(),
                ))
            }
            None => {
                return Err((
                    ReasonCode::BindingMissing,
                    "token is not bound to a DPoP key (`cnf.jkt`)".into(),
                ))
            }
        }
    }
    if policy.nonce && nonce_secret.is_none() {
        // Fail closed: nonces are required, and without the secret none can be checked.
        return Err((
            ReasonCode::InternalError,
            "DPoP nonces are on but the host set no nonce secret".into(),
        ));
    }
    if let (true, Some(secret)) = (policy.nonce, nonce_secret) {
        let step = now.div_euclid(policy.max_age.as_secs_i64().max(1));
        let fresh = [step, step - 1]
            .iter()
            .any(|s| claims.get("nonce").and_then(Value::as_str) == Some(&nonce_for_step(secret, *s)));
        if !fresh {
            return Err((
                ReasonCode::DpopNonceRequired,
                "proof must carry the server's current `DPoP-Nonce`".into(),
            ));
        }
    }
    let mut h = Sha256::new();
    h.update(thumbprint.as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    let expires_at =
        iat.max(now).saturating_add(policy.max_age.as_secs_i64() + policy.clock_skew.as_secs_i64());
    // Bound to a verified token (`jkt` matched above): worth remembering.
    if let (Some(_), Some(jwk)) = (token, keys.by_thumbprint(&thumbprint)) {
        remembered.remember(&thumbprint, &jwk.key);
    }
    Ok(CheckedProof { replay_key: h.finalize().into(), expires_at, jkt: thumbprint })
}

/// `scheme://host/normalised-path` of an absolute `htu`, without query and fragment.
fn normalise_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let rest = rest.split('#').next()?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return None;
    }
    let host = authority.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host).to_owned();
    let (path, _query) = normalise_target(target).ok()?;
    Some(format!("{scheme}://{host}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_normalisation_for_htu() {
        assert_eq!(
            normalise_url("https://API.example.com:443/a/../b?x=1#f").as_deref(),
            Some("https://api.example.com/b")
        );
        assert_eq!(normalise_url("https://api.example.com").as_deref(), Some("https://api.example.com/"));
        assert_eq!(normalise_url("ftp://x/y"), None);
        assert_eq!(normalise_url("https://user@x/y"), None);
    }

    #[test]
    fn nonces_rotate_per_window() {
        let w = Duration::from_secs(60);
        assert_eq!(nonce(b"s", 120, w), nonce(b"s", 179, w));
        assert_ne!(nonce(b"s", 120, w), nonce(b"s", 180, w));
        assert_ne!(nonce(b"s", 120, w), nonce(b"t", 120, w));
    }

    #[test]
    fn nonces_on_without_a_secret_fail_closed() {
        use crate::keys::Alg;
        use crate::mint::{self, SigningKey};
        use serde_json::json;
        let key = SigningKey::from_random(Alg::ES256, &[42; 32]).unwrap();
        let mut jwk = key.public_jwk("x");
        for m in ["kid", "alg", "use"] {
            jwk.as_object_mut().unwrap().remove(m);
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let claims = json!({"jti": "j1", "htm": "POST", "htu": "https://api.test/token", "iat": 1_000});
        let proof = mint::sign_with_header(&key, header.as_object().unwrap(), claims.as_object().unwrap());
        let request = Request::builder("POST", "/token", 1_000)
            .host("api.test")
            .header("dpop", &proof)
            .build()
            .unwrap();
        let policy = DpopPolicy { nonce: true, ..DpopPolicy::default() };
        let r = check(&policy, &request, None, None, None, &[], &ProofKeys::new());
        assert_eq!(r.map(|_| ()).unwrap_err().0, ReasonCode::InternalError);
    }
}
