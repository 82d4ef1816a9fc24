//! Strict compact JWS (RFC 7515 §7.1): parse first, trust later.
//!
//! [`UntrustedJws::parse`] only splits and decodes; nothing in it is believed
//! until [`UntrustedJws::verify`] has checked the signature with a key the
//! *policy* names, under an algorithm the *policy* allows. Header members that
//! would let a token choose its own key (`jwk`, `jku`, `x5u`, `x5c`) are never
//! used; extensions listed in `crit` are not understood, so any `crit` is refused.

use serde_json::{Map, Value};

use crate::b64;
use crate::json;
use crate::keys::{self, clip, Alg, Jwk, KeySet};
use crate::limits::MAX_TOKEN_BYTES;

/// Why a JWS was refused, by the class of problem (each maps to a reason code).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwsError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    TooLarge(usize),
    /// Not three base64url segments, or a JWE, or bad base64url.
    Malformed(String),
    /// Header or payload is not acceptable JSON (duplicate keys, depth, type).
    Json(String),
    /// The header asks for something refused (`crit`, nested JWT, `b64`).
    Header(String),
    /// The algorithm is not allowed for this issuer.
    Algorithm(String),
    /// No usable key.
    Key(String),
    /// The signature does not verify.
    Signature(String),
}

impl JwsError {
    /// The message, lowercase.
    pub fn message(&self) -> String {
        match self {
            JwsError::TooLarge(n) => {
                format!("token is {n} bytes, more than the {MAX_TOKEN_BYTES}-byte limit")
            }
            JwsError::Malformed(m)
            | JwsError::Json(m)
            | JwsError::Header(m)
            | JwsError::Algorithm(m)
            | JwsError::Key(m)
            | JwsError::Signature(m) => m.clone(),
        }
    }
}

/// A compact JWS that has been parsed but not verified.
#[derive(Debug, Clone)]
pub struct UntrustedJws<'a> {
    header: Map<String, Value>,
    payload: Vec<u8>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// A JWS whose signature verified under a policy-chosen key and algorithm.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The algorithm that verified.
    pub alg: Alg,
    /// The `kid` of the key that verified, if it has one.
    pub kid: Option<String>,
}

/// The `alg` a compact JWS's header names, untrusted and unchecked: only
/// for choosing who verifies it (the full parse still decides). `None` for
/// anything that is not a JWS with a string `alg`.
pub fn peek_alg(token: &str) -> Option<String> {
    let (header, _) = token.split_once('.')?;
    if header.len() > 1024 {
        return None;
    }
    match json::parse_strict(&b64::decode(header).ok()?).ok()? {
        Value::Object(mut map) => match map.remove("alg")? {
            Value::String(alg) => Some(alg),
            _ => None,
        },
        _ => None,
    }
}

impl<'a> UntrustedJws<'a> {
    /// Splits and decodes a compact JWS, with the strict rules of this module.
    pub fn parse(token: &'a str) -> Result<Self, JwsError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwsError::TooLarge(token.len()));
        }
        Self::parse_document(token)
    }

    /// [`Self::parse`] without the token size limit, for signed documents
    /// that have their own (a signed revocation list: up to
    /// [`crate::limits::MAX_REVOCATION_LIST_BYTES`], checked by the caller).
    pub fn parse_document(token: &'a str) -> Result<Self, JwsError> {
        let segments = token.split('.').count();
        if segments == 5 {
            return Err(JwsError::Malformed("encrypted tokens (JWE) are not accepted".into()));
        }
        let mut parts = token.splitn(3, '.');
        let (Some(h), Some(p), Some(s), 3) = (parts.next(), parts.next(), parts.next(), segments) else {
            return Err(JwsError::Malformed(format!(
                "expected a compact JWS of 3 dot-separated parts, found {segments}"
            )));
        };
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or_else(|| JwsError::Malformed("token is not valid text".into()))?;
        let header_bytes = b64::decode(h).map_err(|e| JwsError::Malformed(format!("header: {e}")))?;
        let payload = b64::decode(p).map_err(|e| JwsError::Malformed(format!("payload: {e}")))?;
        let signature = b64::decode(s).map_err(|e| JwsError::Malformed(format!("signature: {e}")))?;
        let header = match json::parse_strict(&header_bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(JwsError::Json("header must be a JSON object".into())),
            Err(e) => return Err(JwsError::Json(format!("header: {e}"))),
        };
        if header.contains_key("enc") {
            return Err(JwsError::Malformed("encrypted tokens (JWE) are not accepted".into()));
        }
        if let Some(crit) = header.get("crit") {
            let first = crit.as_array().and_then(|c| c.first()).and_then(Value::as_str);
            return Err(JwsError::Header(match first {
                Some(name) => format!("header extension `{}` in `crit` is not supported", clip(name)),
                None => "`crit` must be a non-empty array of names".into(),
            }));
        }
        if header.contains_key("b64") {
            return Err(JwsError::Header("unencoded payloads (`b64`) are not accepted".into()));
        }
        if let Some(cty) = header.get("cty").and_then(Value::as_str) {
            if cty.eq_ignore_ascii_case("JWT") {
                return Err(JwsError::Header("nested tokens (`cty: JWT`) are not accepted".into()));
            }
        }
        Ok(UntrustedJws { header, payload, signing_input, signature })
    }

    /// The header, untrusted.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The payload bytes, untrusted.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The header's `alg`, checked against `allowed` (the policy's list).
    pub fn algorithm(&self, allowed: &[Alg]) -> Result<Alg, JwsError> {
        let name = match self.header.get("alg") {
            Some(Value::String(name)) => name,
            Some(_) => return Err(JwsError::Json("header `alg` must be a string".into())),
            None => return Err(JwsError::Json("header has no `alg`".into())),
        };
        let alg = Alg::parse(name).map_err(JwsError::Algorithm)?;
        if allowed.contains(&alg) {
            Ok(alg)
        } else {
            let names: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
            Err(JwsError::Algorithm(format!(
                "algorithm `{alg}` is not allowed for this issuer (allowed: {})",
                names.join(", ")
            )))
        }
    }

    /// The header's `kid`, if any (must be a string when present).
    pub fn kid(&self) -> Result<Option<&str>, JwsError> {
        match self.header.get("kid") {
            None => Ok(None),
            Some(Value::String(kid)) => Ok(Some(kid)),
            Some(_) => Err(JwsError::Json("header `kid` must be a string".into())),
        }
    }

    /// The header's `typ`, if any (must be a string when present).
    pub fn typ(&self) -> Result<Option<&str>, JwsError> {
        match self.header.get("typ") {
            None => Ok(None),
            Some(Value::String(typ)) => Ok(Some(typ)),
            Some(_) => Err(JwsError::Json("header `typ` must be a string".into())),
        }
    }

    /// Checks the signature with a key from `keys` under an algorithm from `allowed`.
    pub fn verify(self, keys: &KeySet, allowed: &[Alg]) -> Result<VerifiedJws, JwsError> {
        self.verify_with(keys, allowed, None)
    }

    /// The algorithm and key [`Self::verify`] would use.
    pub fn key_for<'k>(&self, keys: &'k KeySet, allowed: &[Alg]) -> Result<(Alg, &'k Jwk), JwsError> {
        let alg = self.algorithm(allowed)?;
        let key = keys.select(self.kid()?, alg).map_err(JwsError::Key)?;
        Ok((alg, key))
    }

    /// Checks the signature with the single key in `keys`, ignoring any `kid`
    /// (for DPoP proofs, whose key travels in the header and was already
    /// parsed by the caller). `host_verdict`, when given, is the host's check
    /// of this exact signature.
    pub fn verify_embedded(
        self,
        keys: &KeySet,
        allowed: &[Alg],
        host_verdict: Option<bool>,
    ) -> Result<VerifiedJws, JwsError> {
        let (alg, key) = self.key_for_embedded(keys, allowed)?;
        self.verified_by(alg, key, host_verdict)
    }

    /// The algorithm and key [`Self::verify_embedded`] would use.
    pub fn key_for_embedded<'k>(
        &self,
        keys: &'k KeySet,
        allowed: &[Alg],
    ) -> Result<(Alg, &'k Jwk), JwsError> {
        let alg = self.algorithm(allowed)?;
        let key = keys.select(None, alg).map_err(JwsError::Key)?;
        Ok((alg, key))
    }

    /// The bytes the signature covers (`header.payload`).
    pub fn signing_input(&self) -> &str {
        self.signing_input
    }

    /// The decoded signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// [`Self::verify`], where `host_verdict` (when given) is the result of the
    /// host checking this exact signature with platform crypto, standing in
    /// for the Wasm signature check. Algorithm and key selection still happen here.
    pub fn verify_with(
        self,
        keys: &KeySet,
        allowed: &[Alg],
        host_verdict: Option<bool>,
    ) -> Result<VerifiedJws, JwsError> {
        let (alg, key) = self.key_for(keys, allowed)?;
        self.verified_by(alg, key, host_verdict)
    }

    /// The signature check itself: the host's verdict when it gave one, else Wasm.
    fn verified_by(self, alg: Alg, key: &Jwk, host_verdict: Option<bool>) -> Result<VerifiedJws, JwsError> {
        match host_verdict {
            Some(true) => {}
            Some(false) => return Err(JwsError::Signature("signature does not verify".into())),
            None => keys::verify_signature(alg, &key.key, self.signing_input.as_bytes(), &self.signature)
                .map_err(JwsError::Signature)?,
        }
        Ok(VerifiedJws { alg, kid: key.kid.clone(), header: self.header, payload: self.payload })
    }
}

/// Whether a `typ` value names the media type `expected` (RFC 7515 §4.1.9:
/// case-insensitive, the `application/` prefix may be omitted).
pub fn typ_matches(typ: &str, expected: &str) -> bool {
    let strip = |t: &str| -> String {
        let lower = t.to_ascii_lowercase();
        lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
    };
    strip(typ) == strip(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(json: &str) -> String {
        b64::encode(json.as_bytes())
    }

    #[test]
    fn splits_three_parts_only() {
        assert!(matches!(UntrustedJws::parse("a.b"), Err(JwsError::Malformed(m)) if m.contains("found 2")));
        assert!(
            matches!(UntrustedJws::parse("a.b.c.d"), Err(JwsError::Malformed(m)) if m.contains("found 4"))
        );
        assert!(matches!(UntrustedJws::parse("a.b.c.d.e"), Err(JwsError::Malformed(m)) if m.contains("JWE")));
        assert!(matches!(UntrustedJws::parse(""), Err(JwsError::Malformed(_))));
    }

    #[test]
    fn refuses_jwe_header_crit_b64_and_nested() {
        for (header, want) in [
            (r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#, "JWE"),
            (r#"{"alg":"ES256","crit":["exp"],"exp":1}"#, "`exp` in `crit`"),
            (r#"{"alg":"ES256","crit":[]}"#, "non-empty"),
            (r#"{"alg":"ES256","b64":false}"#, "b64"),
            (r#"{"alg":"ES256","cty":"JWT"}"#, "nested"),
            (r#"{"alg":"ES256","alg":"none"}"#, "duplicate key"),
            (r#"["ES256"]"#, "JSON object"),
        ] {
            let token = format!("{}.{}.", seg(header), seg("{}"));
            let err = UntrustedJws::parse(&token).unwrap_err();
            assert!(err.message().contains(want), "{header}: {err:?}");
        }
    }

    #[test]
    fn refuses_oversized_tokens_before_decoding() {
        let token = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(UntrustedJws::parse(&token).unwrap_err(), JwsError::TooLarge(MAX_TOKEN_BYTES + 1));
    }

    #[test]
    fn alg_comes_from_the_allow_list() {
        let token = format!("{}.{}.", seg(r#"{"alg":"none"}"#), seg("{}"));
        let jws = UntrustedJws::parse(&token).unwrap();
        assert!(jws.algorithm(&Alg::ALL).unwrap_err().message().contains("never accepted"));
        let token = format!("{}.{}.", seg(r#"{"alg":"RS256"}"#), seg("{}"));
        let jws = UntrustedJws::parse(&token).unwrap();
        assert!(jws.algorithm(&[Alg::ES256]).unwrap_err().message().contains("not allowed"));
    }

    #[test]
    fn typ_comparison_follows_rfc7515() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
        assert!(!typ_matches("dpop+jwt", "at+jwt"));
    }
}
