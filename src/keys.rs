//! Issuer keys: JWK / JWKS parsing, the algorithm allow-list, and signature
//! verification (RSA through jwt-compact's algorithms, EdDSA through
//! [`crate::ed25519`], ES256 through [`crate::es256`]).
//!
//! The algorithm always comes from the policy's allow-list and is tied to the
//! key's type: an Ed25519 key only verifies `EdDSA`, a P-256 key only `ES256`,
//! an RSA key (≥ 2048 bits) only `RS256`/`PS256`. A JWS header can pick among
//! the allowed algorithms but never widen them; `none` and HMAC are not
//! algorithms this crate knows.

use std::fmt;

use jwt_compact::{Algorithm, AlgorithmSignature};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::ed25519::Ed25519Key;
use crate::es256::P256Key;
use crate::limits::{MAX_JWKS_KEYS, MAX_RSA_BITS, MIN_RSA_BITS};

/// A JWS algorithm agentguard can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// Ed25519 signatures (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256, signature as `r‖s`.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 4] = [Alg::EdDSA, Alg::ES256, Alg::RS256, Alg::PS256];

    /// The JOSE name (`"ES256"`).
    pub const fn name(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
        }
    }

    /// Parses a JOSE name; the error says why a well-known but refused name is refused.
    pub fn parse(name: &str) -> Result<Alg, String> {
        match name {
            "EdDSA" => Ok(Alg::EdDSA),
            "ES256" => Ok(Alg::ES256),
            "RS256" => Ok(Alg::RS256),
            "PS256" => Ok(Alg::PS256),
            _ if name.eq_ignore_ascii_case("none") => {
                Err(format!("algorithm `{name}` is never accepted: tokens must be signed"))
            }
            _ if name.starts_with("HS") => Err(format!(
                "algorithm `{name}` is never accepted: a verifier holding an HMAC secret could forge tokens"
            )),
            _ => Err(format!(
                "unsupported algorithm `{name}`, expected one of `EdDSA`, `ES256`, `RS256`, `PS256`"
            )),
        }
    }

    fn fits(self, key: &PublicKey) -> bool {
        matches!(
            (self, key),
            (Alg::EdDSA, PublicKey::Ed25519(_))
                | (Alg::ES256, PublicKey::P256(_))
                | (Alg::RS256 | Alg::PS256, PublicKey::Rsa(_))
        )
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Alg {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Alg::parse(&name).map_err(de::Error::custom)
    }
}

impl Serialize for Alg {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A verified-usable public key.
#[derive(Clone)]
pub enum PublicKey {
    /// An Ed25519 key (`kty: OKP`, `crv: Ed25519`), which builds a table of
    /// its multiples once it has verified enough signatures.
    Ed25519(Ed25519Key),
    /// A P-256 key (`kty: EC`, `crv: P-256`), which builds a table of its
    /// multiples once it has verified enough signatures.
    P256(P256Key),
    /// An RSA key of at least 2048 bits.
    Rsa(rsa::RsaPublicKey),
}

impl PublicKey {
    /// Whether the key has built its table of multiples (RSA keys have none).
    pub fn has_table(&self) -> bool {
        match self {
            PublicKey::Ed25519(k) => k.has_table(),
            PublicKey::P256(k) => k.has_table(),
            PublicKey::Rsa(_) => false,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublicKey::Ed25519(_) => "PublicKey::Ed25519",
            PublicKey::P256(_) => "PublicKey::P256",
            PublicKey::Rsa(_) => "PublicKey::Rsa",
        })
    }
}

/// One key from a JWKS, with the members that matter for selection.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// `kid`, if the key has one.
    pub kid: Option<String>,
    /// `alg`, if the key pins one.
    pub alg: Option<Alg>,
    /// The key itself.
    pub key: PublicKey,
    /// RFC 7638 thumbprint (base64url SHA-256 of the canonical members).
    pub thumbprint: String,
    /// The public key as a minimal JWK (the RFC 7638 members), for hosts that
    /// verify signatures with platform crypto.
    pub public_jwk: Value,
}

/// The set of verification keys of one issuer.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// What became of one JWKS member that is not a usable verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// Index in `keys`.
    pub index: usize,
    /// Whether the key was merely skipped (e.g. `use: enc`) rather than malformed.
    pub skipped: bool,
    /// What is wrong, lowercase.
    pub message: String,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    ///
    /// Keys not meant for signature verification (`use` other than `sig`,
    /// `key_ops` without `verify`) are skipped; malformed keys, private key
    /// material, unknown key types and weak RSA keys are reported. The caller
    /// decides whether a problem is fatal (an inline policy JWKS) or a warning
    /// (a JWKS fetched at run time).
    pub fn from_jwks(jwks: &Value) -> Result<(KeySet, Vec<KeyProblem>), String> {
        let keys =
            jwks.get("keys").and_then(Value::as_array).ok_or("expected a JWKS object with a `keys` array")?;
        if keys.len() > MAX_JWKS_KEYS {
            return Err(format!("expected at most {MAX_JWKS_KEYS} keys, found {}", keys.len()));
        }
        let mut set = KeySet::default();
        let mut problems = Vec::new();
        for (index, value) in keys.iter().enumerate() {
            match parse_jwk(value) {
                Ok(Some(jwk)) => set.keys.push(jwk),
                Ok(None) => problems.push(KeyProblem {
                    index,
                    skipped: true,
                    message: "key is not for signature verification (`use`/`key_ops`), skipped".into(),
                }),
                Err(message) => problems.push(KeyProblem { index, skipped: false, message }),
            }
        }
        Ok((set, problems))
    }

    /// Compiles a policy section's keys: inline (`names[0]`, a JWKS) or
    /// fetched by the host (`names[1]`, a URL), exactly one of them. Returns
    /// the inline set (empty for a URL, until the host hands keys over), the
    /// URL, and every problem as `(JSON path, message)`, paths under
    /// `section` (e.g. `issuers[2]`; `""` for paths relative to the caller's
    /// own section, which is then `.`). Malformed inline keys are errors
    /// (skipped ones, e.g. `use: enc`, are not); an inline set with no usable
    /// key is an error (`what`: "signature verification key", …). Every
    /// policy section with keys (issuers, attestation and approval issuers,
    /// token-exchange issuers, signature-agent directories) goes through here.
    pub fn from_policy(
        inline: Option<&Value>,
        uri: Option<&str>,
        names: [&str; 2],
        what: &str,
        section: &str,
    ) -> (KeySet, Option<String>, Vec<(String, String)>) {
        let [jwks_name, uri_name] = names;
        let mut problems = Vec::new();
        let path = |rel: &str| match (section.is_empty(), rel.is_empty()) {
            (true, true) => ".".to_owned(),
            (true, false) => rel.to_owned(),
            (false, true) => section.to_owned(),
            (false, false) => format!("{section}.{rel}"),
        };
        match (inline, uri) {
            (Some(jwks), None) => match KeySet::from_jwks(jwks) {
                Ok((set, found)) => {
                    for p in found.into_iter().filter(|p| !p.skipped) {
                        problems.push((path(&format!("{jwks_name}.keys[{}]", p.index)), p.message));
                    }
                    if set.is_empty() {
                        problems.push((
                            path(&format!("{jwks_name}.keys")),
                            format!("expected at least one {what}"),
                        ));
                    }
                    (set, None, problems)
                }
                Err(message) => {
                    problems.push((path(jwks_name), message));
                    (KeySet::default(), None, problems)
                }
            },
            (None, Some(uri)) => {
                if let Some(problem) = crate::policy::url_problem(uri) {
                    problems.push((path(uri_name), problem));
                }
                (KeySet::default(), Some(uri.to_owned()), problems)
            }
            (Some(_), Some(_)) => {
                problems
                    .push((path(""), format!("expected one of `{jwks_name}` and `{uri_name}`, found both")));
                (KeySet::default(), None, problems)
            }
            (None, None) => {
                problems.push((
                    path(""),
                    format!("expected `{jwks_name}` (inline keys) or `{uri_name}` (fetched by the host)"),
                ));
                (KeySet::default(), None, problems)
            }
        }
    }

    /// Builds a set from already-parsed keys.
    pub fn from_keys(keys: Vec<Jwk>) -> KeySet {
        KeySet { keys }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this RFC 7638 thumbprint.
    pub fn by_thumbprint(&self, thumbprint: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.thumbprint == thumbprint)
    }

    /// Takes over the keys `previous` has with the same thumbprints (the
    /// same public keys), with their use counts and tables of multiples, so
    /// a refetched JWKS does not start its keys over.
    pub fn keep_tables_from(&mut self, previous: &KeySet) {
        for jwk in &mut self.keys {
            if let Some(old) = previous.by_thumbprint(&jwk.thumbprint) {
                jwk.key = old.key.clone();
            }
        }
    }

    /// Picks the key for a JWS with header `kid` and algorithm `alg`.
    ///
    /// With a `kid`, the key with that `kid` (and it must fit `alg`). Without
    /// one, the only key that fits `alg`; two candidates are ambiguous and refused.
    pub fn select(&self, kid: Option<&str>, alg: Alg) -> Result<&Jwk, String> {
        let fits = |k: &&Jwk| alg.fits(&k.key) && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or_else(|| format!("no key with kid `{}` in the issuer's JWKS", clip(kid)))?;
                if fits(&key) {
                    Ok(key)
                } else {
                    Err(format!("key `{}` cannot verify `{alg}` signatures", clip(kid)))
                }
            }
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Ok(key),
                    (None, _) => Err(format!("no key in the issuer's JWKS verifies `{alg}`")),
                    (Some(_), Some(_)) => {
                        Err("token has no `kid` and the issuer has several keys for its algorithm".into())
                    }
                }
            }
        }
    }
}

/// Verifies `signature` over `message` with `key` under `alg`: jwt-compact's
/// RSA algorithms; EdDSA through [`Ed25519Key`] and ES256 through
/// [`P256Key`] (ed25519-dalek and p256 0.14, then the key's own table).
pub fn verify_signature(alg: Alg, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<(), String> {
    /// Whether a jwt-compact algorithm accepts the signature.
    fn run<A: Algorithm>(
        alg: A,
        key: &A::VerifyingKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        if let Some(len) = A::Signature::LENGTH {
            if signature.len() != len.get() {
                return Err(format!(
                    "signature is {} bytes, expected {} for `{}`",
                    signature.len(),
                    len,
                    alg.name()
                ));
            }
        }
        let signature = A::Signature::try_from_slice(signature)
            .map_err(|_| format!("signature is not a valid `{}` signature", alg.name()))?;
        Ok(alg.verify_signature(&signature, key, message))
    }
    // EdDSA and ES256 signatures are 64 bytes.
    let sized = |signature: &[u8]| -> Result<[u8; 64], String> {
        signature
            .try_into()
            .map_err(|_| format!("signature is {} bytes, expected 64 for `{alg}`", signature.len()))
    };
    let valid = match (alg, key) {
        (Alg::EdDSA, PublicKey::Ed25519(k)) => k.verify(message, &sized(signature)?),
        (Alg::ES256, PublicKey::P256(k)) => {
            let signature = p256::ecdsa::Signature::from_slice(&sized(signature)?)
                .map_err(|_| "signature is not a valid `ES256` signature".to_owned())?;
            k.verify(message, &signature)
        }
        (Alg::RS256, PublicKey::Rsa(k)) => {
            rsa_length(k, signature)?;
            run(jwt_compact::alg::Rsa::rs256(), k, message, signature)?
        }
        (Alg::PS256, PublicKey::Rsa(k)) => {
            rsa_length(k, signature)?;
            run(jwt_compact::alg::Rsa::ps256(), k, message, signature)?
        }
        _ => return Err(format!("a {key:?} key cannot verify `{alg}`")),
    };
    if valid {
        Ok(())
    } else {
        Err("signature does not verify".into())
    }
}

fn rsa_length(key: &rsa::RsaPublicKey, signature: &[u8]) -> Result<(), String> {
    use rsa::traits::PublicKeyParts;
    if signature.len() == key.size() {
        Ok(())
    } else {
        Err(format!("signature is {} bytes, expected {} for this RSA key", signature.len(), key.size()))
    }
}

/// Parses one public JWK. `Ok(None)`: a well-formed key not meant for verification.
pub fn parse_jwk(value: &Value) -> Result<Option<Jwk>, String> {
    let obj = value.as_object().ok_or("expected a JWK object")?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{name}` must be a string")),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let s = text(name)?.ok_or_else(|| format!("missing `{name}`"))?;
        b64::decode(s).map_err(|e| format!("`{name}`: {e}"))
    };
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        if obj.contains_key(private) {
            return Err(format!(
                "contains private key member `{private}`: publish only public keys in a JWKS"
            ));
        }
    }
    if let Some(usage) = text("use")? {
        if usage != "sig" {
            return Ok(None);
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array().ok_or("`key_ops` must be an array")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let kid = text("kid")?.map(str::to_owned);
    let alg = text("alg")?.map(Alg::parse).transpose()?;
    let kty = text("kty")?.ok_or("missing `kty`")?;
    let (key, thumbprint_input) = match kty {
        "OKP" => {
            let crv = text("crv")?.ok_or("missing `crv`")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve `{crv}`, expected `Ed25519`"));
            }
            let x = bytes("x")?;
            let x: [u8; 32] = x.try_into().map_err(|_| "`x` must be 32 bytes for Ed25519")?;
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| "`x` is not an Ed25519 point")?;
            if key.is_weak() {
                // A small-order key verifies a forged signature (`R` = identity, `s` = 0) over any message.
                return Err("`x` is a small-order Ed25519 point (a weak key)".into());
            }
            let canon = serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": b64::encode(&x)});
            (PublicKey::Ed25519(Ed25519Key::new(key)), canon)
        }
        "EC" => {
            let crv = text("crv")?.ok_or("missing `crv`")?;
            if crv != "P-256" {
                return Err(format!("unsupported EC curve `{crv}`, expected `P-256`"));
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("`x` and `y` must be 32 bytes each for P-256".into());
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(4);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let key =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| "point is not on P-256")?;
            let canon =
                serde_json::json!({"crv": "P-256", "kty": "EC", "x": b64::encode(&x), "y": b64::encode(&y)});
            (PublicKey::P256(P256Key::new(key)), canon)
        }
        "RSA" => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            if n.first() == Some(&0) || e.first() == Some(&0) {
                return Err("`n` and `e` must not have leading zero bytes".into());
            }
            let n_big = rsa::BigUint::from_bytes_be(&n);
            let bits = n_big.bits();
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA key has {bits} bits, expected at least {MIN_RSA_BITS}"));
            }
            if has_roca_fingerprint(&n_big) {
                return Err(
                    "RSA key has the ROCA fingerprint (CVE-2017-15361): its private key can be recovered"
                        .into(),
                );
            }
            let key =
                rsa::RsaPublicKey::new_with_max_size(n_big, rsa::BigUint::from_bytes_be(&e), MAX_RSA_BITS)
                    .map_err(|err| format!("invalid RSA key: {err}"))?;
            let canon = serde_json::json!({"e": b64::encode(&e), "kty": "RSA", "n": b64::encode(&n)});
            (PublicKey::Rsa(key), canon)
        }
        "oct" => return Err("symmetric (`oct`) keys are never accepted".into()),
        other => return Err(format!("unsupported key type `{other}`, expected `OKP`, `EC` or `RSA`")),
    };
    if let Some(alg) = alg {
        if !alg.fits(&key) {
            return Err(format!("key `alg` is `{alg}`, which does not fit a {kty} key"));
        }
    }
    // serde_json keeps object members sorted and prints no whitespace: exactly
    // RFC 7638's canonical form of the required members.
    let thumbprint = b64::encode(&Sha256::digest(thumbprint_input.to_string().as_bytes()));
    Ok(Some(Jwk { kid, alg, key, thumbprint, public_jwk: thumbprint_input }))
}

/// Whether an RSA modulus has the ROCA fingerprint (CVE-2017-15361): keys
/// from the affected Infineon library are `65537^a mod M` for a primorial-like
/// `M`, so `n mod p` lies in the subgroup generated by 65537 for every small
/// prime `p`. A random modulus passes all 38 residue tests with negligible
/// probability.
fn has_roca_fingerprint(n: &rsa::BigUint) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101,
        103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n % rsa::BigUint::from(p);
        let residue: u32 = residue.to_u32_digits_safe();
        // Walk the subgroup generated by 65537 mod p.
        let g = 65_537 % p;
        let mut x = 1;
        loop {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                return false;
            }
        }
    })
}

trait SmallDigit {
    fn to_u32_digits_safe(&self) -> u32;
}

impl SmallDigit for rsa::BigUint {
    /// The value of a number known to be below 2^32 (a residue mod a small prime).
    fn to_u32_digits_safe(&self) -> u32 {
        self.to_bytes_be().iter().fold(0u32, |acc, b| acc.wrapping_shl(8) | u32::from(*b))
    }
}

/// Shortens attacker-controlled text before it goes into a message.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 64;
    // The usual case, short printable ASCII, is kept as is (no per-char walk).
    if text.len() <= MAX && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return text.to_owned();
    }
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A refetched JWKS keeps the tables of the keys it still has; a new
    /// key starts without one.
    #[test]
    fn a_refetched_jwks_keeps_its_keys_tables() {
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "a",
            "x": b64::encode(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key().as_bytes())});
        let point =
            p256::ecdsa::SigningKey::from_slice(&[2; 32]).unwrap().verifying_key().to_sec1_point(false);
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "b",
            "x": b64::encode(point.x().unwrap()), "y": b64::encode(point.y().unwrap())});
        let fresh = json!({"kty": "OKP", "crv": "Ed25519", "kid": "c",
            "x": b64::encode(ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key().as_bytes())});
        let (old, _) = KeySet::from_jwks(&json!({"keys": [ed, ec]})).unwrap();
        for jwk in &old.keys {
            match &jwk.key {
                PublicKey::Ed25519(k) => k.build_table(),
                PublicKey::P256(k) => k.build_table(),
                PublicKey::Rsa(_) => unreachable!(),
            }
        }
        let (mut new, _) = KeySet::from_jwks(&json!({"keys": [fresh, ec, ed]})).unwrap();
        assert!(new.keys.iter().all(|k| !k.key.has_table()));
        new.keep_tables_from(&old);
        let tables: Vec<(Option<&str>, bool)> =
            new.keys.iter().map(|k| (k.kid.as_deref(), k.key.has_table())).collect();
        assert_eq!(tables, [(Some("c"), false), (Some("b"), true), (Some("a"), true)]);
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = parse_jwk(&jwk).unwrap().unwrap();
        assert_eq!(key.thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn refuses_none_and_hmac_with_reasons() {
        assert!(Alg::parse("none").unwrap_err().contains("never accepted"));
        assert!(Alg::parse("HS256").unwrap_err().contains("HMAC"));
        assert!(Alg::parse("ES384").unwrap_err().contains("unsupported"));
        assert!(Alg::parse("es256").is_err(), "names are case-sensitive");
    }

    #[test]
    fn skips_encryption_keys_and_refuses_private_or_symmetric_keys() {
        let enc = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"});
        assert!(parse_jwk(&enc).unwrap().is_none());
        let ops = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","key_ops":["encrypt"]});
        assert!(parse_jwk(&ops).unwrap().is_none());
        let private = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"});
        assert!(parse_jwk(&private).unwrap_err().contains("private key member `d`"));
        let oct = json!({"kty":"oct","k":"c2VjcmV0"});
        assert!(parse_jwk(&oct).unwrap_err().contains("private key member `k`"));
        let oct = json!({"kty":"oct"});
        assert!(parse_jwk(&oct).unwrap_err().contains("never accepted"));
    }

    #[test]
    fn alg_member_must_fit_the_key() {
        let jwk = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"ES256"});
        assert!(parse_jwk(&jwk).unwrap_err().contains("does not fit"));
    }

    #[test]
    fn select_needs_kid_when_ambiguous() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let jwks = json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":x,"kid":"a"},{"kty":"OKP","crv":"Ed25519","x":x,"kid":"b"}]});
        let (set, problems) = KeySet::from_jwks(&jwks).unwrap();
        assert!(problems.is_empty());
        assert!(set.select(None, Alg::EdDSA).unwrap_err().contains("several keys"));
        assert_eq!(set.select(Some("b"), Alg::EdDSA).unwrap().kid.as_deref(), Some("b"));
        assert!(set.select(Some("c"), Alg::EdDSA).unwrap_err().contains("no key with kid `c`"));
        assert!(set.select(Some("a"), Alg::ES256).unwrap_err().contains("cannot verify"));
    }

    #[test]
    fn policy_keys_come_from_exactly_one_source_with_paths() {
        let key = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let jwks = serde_json::json!({"keys": [key, {"kty": "OKP", "crv": "Ed25519", "x": "short"}]});
        let names = ["jwks", "jwks_uri"];
        let (set, uri, problems) = KeySet::from_policy(Some(&jwks), None, names, "key", "issuers[1]");
        assert_eq!((set.len(), uri), (1, None));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "issuers[1].jwks.keys[1]");

        let (set, uri, problems) =
            KeySet::from_policy(None, Some("https://x/jwks"), names, "key", "issuers[1]");
        assert!(set.is_empty() && problems.is_empty());
        assert_eq!(uri.as_deref(), Some("https://x/jwks"));

        let (_, _, problems) = KeySet::from_policy(None, Some("ftp://x"), names, "key", "issuers[1]");
        assert_eq!(
            problems,
            [("issuers[1].jwks_uri".to_owned(), "expected an `https://` URL, found `ftp://x`".to_owned())]
        );
        // No host, or credentials in the URL: refused as every policy URL is (policy::url_problem).
        for bad in ["https://", "https:///jwks", "https://user:pw@x/jwks", "https:x/jwks"] {
            let (_, _, problems) = KeySet::from_policy(None, Some(bad), names, "key", "issuers[1]");
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0].1, format!("expected an `https://` URL, found `{bad}`"));
        }
        let (_, _, problems) = KeySet::from_policy(Some(&jwks), Some("https://x"), names, "key", "");
        assert_eq!(
            problems,
            [(".".to_owned(), "expected one of `jwks` and `jwks_uri`, found both".to_owned())]
        );
        let (_, _, problems) =
            KeySet::from_policy(None, None, ["keys", "directory_uri"], "Ed25519 key", "d[0]");
        assert_eq!(problems[0].0, "d[0]");
        assert!(problems[0].1.contains("`keys` (inline keys) or `directory_uri`"));
        let empty = serde_json::json!({"keys": []});
        let (_, _, problems) = KeySet::from_policy(Some(&empty), None, names, "Ed25519 key", "");
        assert_eq!(problems, [("jwks.keys".to_owned(), "expected at least one Ed25519 key".to_owned())]);
    }

    #[test]
    fn small_order_ed25519_keys_are_refused() {
        // The identity point (y = 1): with it, R = identity, s = 0 verifies any message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64::encode(&identity)});
        let err = parse_jwk(&jwk).map(|_| ()).unwrap_err();
        assert!(err.contains("small-order"), "{err}");
    }
}
