//! Signing tokens: test tokens for the CLI and playground today, the
//! token-exchange service later. Randomness and time come from the caller.

use jwt_compact::Algorithm;
use serde_json::{json, Map, Value};

use crate::b64;
use crate::keys::Alg;

/// A private signing key.
#[derive(Clone)]
pub enum SigningKey {
    /// Ed25519 (`EdDSA`).
    Ed25519(ed25519_dalek::SigningKey),
    /// P-256 (`ES256`).
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "SigningKey({})", self.alg())
    }
}

impl SigningKey {
    /// Makes a key of `alg` from 32 random bytes supplied by the host.
    pub fn from_random(alg: Alg, seed: &[u8; 32]) -> Result<SigningKey, String> {
        match alg {
            Alg::EdDSA => Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed))),
            Alg::ES256 => p256::ecdsa::SigningKey::from_slice(seed)
                .map(SigningKey::P256)
                .map_err(|_| "random bytes are not a valid P-256 scalar; draw again".into()),
            other => Err(format!("cannot generate `{other}` keys; expected `EdDSA` or `ES256`")),
        }
    }

    /// Reads a private JWK (`d` present).
    pub fn from_jwk(jwk: &Value) -> Result<SigningKey, String> {
        let get = |name: &str| {
            jwk.get(name).and_then(Value::as_str).ok_or_else(|| format!("private JWK has no `{name}`"))
        };
        let d = b64::decode(get("d")?).map_err(|e| format!("`d`: {e}"))?;
        match (get("kty")?, get("crv")?) {
            ("OKP", "Ed25519") => {
                let d: [u8; 32] = d.try_into().map_err(|_| "`d` must be 32 bytes for Ed25519")?;
                Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&d)))
            }
            ("EC", "P-256") => p256::ecdsa::SigningKey::from_slice(&d)
                .map(SigningKey::P256)
                .map_err(|_| "`d` is not a valid P-256 private key".into()),
            (kty, crv) => {
                Err(format!("unsupported signing key `{kty}`/`{crv}`; expected OKP/Ed25519 or EC/P-256"))
            }
        }
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match self {
            SigningKey::Ed25519(_) => Alg::EdDSA,
            SigningKey::P256(_) => Alg::ES256,
        }
    }

    /// The public JWK, with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self, kid: &str) -> Value {
        let mut jwk = match self {
            SigningKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.verifying_key().as_bytes())})
            }
            SigningKey::P256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64::encode(&point.x().map(|x| x.to_vec()).unwrap_or_default()),
                    "y": b64::encode(&point.y().map(|y| y.to_vec()).unwrap_or_default()),
                })
            }
        };
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), kid.into());
            obj.insert("alg".into(), self.alg().name().into());
            obj.insert("use".into(), "sig".into());
        }
        jwk
    }

    /// The private JWK (public members plus `d`).
    pub fn private_jwk(&self, kid: &str) -> Value {
        let mut jwk = self.public_jwk(kid);
        let d = match self {
            SigningKey::Ed25519(k) => b64::encode(k.as_bytes()),
            SigningKey::P256(k) => b64::encode(&k.to_bytes()),
        };
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("d".into(), d.into());
        }
        jwk
    }
}

/// Signs `claims` as a compact JWS with header `{alg, typ, kid}`.
pub fn sign(key: &SigningKey, kid: Option<&str>, typ: &str, claims: &Map<String, Value>) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), key.alg().name().into());
    header.insert("typ".into(), typ.into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    sign_with_header(key, &header, claims)
}

/// Signs `claims` under exactly the given header (tests use it to build hostile tokens).
pub fn sign_with_header(
    key: &SigningKey,
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
) -> String {
    let signing_input = format!(
        "{}.{}",
        b64::encode(Value::Object(header.clone()).to_string().as_bytes()),
        b64::encode(Value::Object(claims.clone()).to_string().as_bytes())
    );
    format!("{signing_input}.{}", b64::encode(&sign_bytes(key, signing_input.as_bytes())))
}

/// The raw JWS signature (`r‖s` for ES256) over `message`.
pub fn sign_bytes(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    match key {
        SigningKey::Ed25519(k) => jwt_compact::alg::Ed25519.sign(k, message).to_bytes().to_vec(),
        SigningKey::P256(k) => {
            use p256::ecdsa::signature::Signer;
            let signature: p256::ecdsa::Signature = k.sign(message);
            signature.to_bytes().to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::UntrustedJws;
    use crate::keys::{parse_jwk, KeySet};

    #[test]
    fn signed_tokens_verify_with_the_public_jwk() {
        for alg in [Alg::EdDSA, Alg::ES256] {
            let key = SigningKey::from_random(alg, &[7; 32]).unwrap();
            let jwk = key.public_jwk("k1");
            let set = KeySet::from_keys(vec![parse_jwk(&jwk).unwrap().unwrap()]);
            let mut claims = Map::new();
            claims.insert("sub".into(), "a".into());
            let token = sign(&key, Some("k1"), "at+jwt", &claims);
            let v = UntrustedJws::parse(&token).unwrap().verify(&set, &[alg]).unwrap();
            assert_eq!(v.alg, alg);
            // The private JWK round-trips to the same public key.
            let again = SigningKey::from_jwk(&key.private_jwk("k1")).unwrap();
            assert_eq!(again.public_jwk("k1"), jwk);
        }
    }
}
