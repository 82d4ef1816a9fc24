//! Ed25519 verification for issuer keys: ed25519-dalek's `verify`, made
//! faster for keys that verify many signatures by a table of the key's
//! multiples (`src/fixed_base.rs`).
//!
//! A signature `(R, s)` over `M` verifies when `[s]B + [k](-A)` compresses
//! to `R`, with `k = SHA-512(R ‖ A ‖ M) mod ℓ`. At its [`TABLE_AFTER`]-th
//! signature a key builds the table of `-A` (264 points, 42 KiB); `B`'s is
//! built once per process. In Wasm (V8) a check then costs ~0.53×
//! ed25519-dalek's; building a table costs ~2.6 checks.
//!
//! Acceptance is ed25519-dalek's `verify` exactly (what jwt-compact calls):
//! `s` must be canonical (`s < ℓ`), `R` is compared as bytes, no
//! cofactor. `tests/wycheproof.rs` runs every Ed25519 vector both ways, and
//! unit tests compare the two on valid, tampered and non-canonical
//! signatures, and the table's products with curve25519-dalek's.

use std::fmt;
use std::sync::{Arc, OnceLock};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha512};

use crate::fixed_base::{self, Group, LazyTable, Multiples};

/// The signature at which a key builds its table: the first ones verify
/// with ed25519-dalek, as building the table costs ~2.6 verifications.
pub const TABLE_AFTER: u32 = 3;

/// An Ed25519 public key, and the table of its multiples once it has earned
/// one. Clones share the count and the table.
#[derive(Clone)]
pub struct Ed25519Key {
    key: VerifyingKey,
    /// The multiples of the negated key, so the check is one sum.
    minus_key: Arc<LazyTable<EdwardsPoint>>,
}

impl Group for EdwardsPoint {
    type Stored = EdwardsPoint;
    fn identity() -> Self {
        Identity::identity()
    }
    fn double(&self) -> Self {
        self + self
    }
    fn add(&self, other: &Self) -> Self {
        self + other
    }
    fn add_stored(&self, stored: &Self) -> Self {
        self + stored
    }
    fn sub_stored(&self, stored: &Self) -> Self {
        self - stored
    }
    fn store(points: &[Self]) -> Vec<Self> {
        points.to_vec()
    }
}

impl Ed25519Key {
    /// Wraps a parsed key; its table is built at its [`TABLE_AFTER`]-th
    /// signature, or by [`Ed25519Key::build_table`].
    pub fn new(key: VerifyingKey) -> Self {
        Ed25519Key { key, minus_key: Arc::default() }
    }

    /// The key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Builds the table now, for a host that would rather pay before the
    /// first request. Idempotent.
    pub fn build_table(&self) {
        self.minus_key.get_or_build(|| self.minus_key_multiples());
    }

    /// Whether the table has been built.
    pub fn has_table(&self) -> bool {
        self.minus_key.is_built()
    }

    fn minus_key_multiples(&self) -> Multiples<EdwardsPoint> {
        Multiples::of(&-self.key.to_edwards())
    }

    /// Verifies a 64-byte signature `R ‖ s` over `message`; accepts exactly
    /// what ed25519-dalek's `verify` accepts.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Some(minus_key) = self.minus_key.for_use(TABLE_AFTER, || self.minus_key_multiples()) else {
            return self.key.verify(message, &Signature::from_bytes(signature)).is_ok();
        };
        let (r, s) = signature.split_at(32);
        let Ok(s) = <[u8; 32]>::try_from(s) else { return false };
        if Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).is_none() {
            return false;
        }
        let k = Scalar::from_hash(
            Sha512::new().chain_update(r).chain_update(self.key.as_bytes()).chain_update(message),
        );
        static BASE: OnceLock<Multiples<EdwardsPoint>> = OnceLock::new();
        let base = BASE.get_or_init(|| Multiples::of(&ED25519_BASEPOINT_POINT));
        let expected_r = fixed_base::sum(base, &s, minus_key, &k.to_bytes());
        expected_r.compress().as_bytes() == r
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Key").field("has_table", &self.has_table()).finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    /// ℓ, the order of the base point, little-endian.
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// `a + b` as 256-bit little-endian numbers (no overflow for `s + ℓ`).
    fn add(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        out
    }

    fn dalek(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
        key.verify(message, &Signature::from_bytes(signature)).is_ok()
    }

    /// Valid, tampered and non-canonical signatures: the table and
    /// ed25519-dalek agree on every one, for several keys.
    #[test]
    fn the_table_accepts_exactly_what_dalek_accepts() {
        let mut checked = 0;
        for seed in 1u8..=6 {
            let signer = SigningKey::from_bytes(&[seed.wrapping_mul(37); 32]);
            let key = Ed25519Key::new(signer.verifying_key());
            key.build_table();
            assert!(key.has_table());
            for n in 0..24u32 {
                let message = format!("eyJhbGciOiJFZERTQSJ9.claims-{seed}-{n}").into_bytes();
                let good = signer.sign(&message).to_bytes();
                let mut cases = vec![(message.clone(), good, true)];
                // A flipped bit in R, in s, in the message.
                let mut bad_r = good;
                bad_r[(n as usize) % 32] ^= 1 << (n % 8);
                cases.push((message.clone(), bad_r, false));
                let mut bad_s = good;
                bad_s[32 + (n as usize) % 31] ^= 1 << (n % 8);
                cases.push((message.clone(), bad_s, false));
                let mut other = message.clone();
                other[n as usize % message.len()] ^= 0x20;
                cases.push((other, good, false));
                // s + ℓ: the same point, but not canonical — refused.
                let mut high_s = good;
                high_s[32..].copy_from_slice(&add(&good[32..], &ELL));
                cases.push((message.clone(), high_s, false));
                for (message, signature, expected) in cases {
                    assert_eq!(dalek(key.verifying_key(), &message, &signature), expected);
                    assert_eq!(key.verify(&message, &signature), expected, "seed {seed} n {n}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 24 * 5);
    }

    /// The table's sums against curve25519-dalek's constant-time products,
    /// on edge scalars (0, 1, 8, 15, 16, ℓ-1, all nibbles 8 or 7) and
    /// hashed ones.
    #[test]
    fn the_table_multiplies_as_curve25519_dalek_does() {
        let point = SigningKey::from_bytes(&[3; 32]).verifying_key().to_edwards();
        let (p, q) = (Multiples::of(&point), Multiples::of(&ED25519_BASEPOINT_POINT));
        let mut scalars: Vec<Scalar> = [0u64, 1, 7, 8, 9, 15, 16, 0x8888_8888_8888_8888, u64::MAX]
            .into_iter()
            .map(Scalar::from)
            .collect();
        scalars.push(-Scalar::ONE);
        scalars.push(Scalar::from_bytes_mod_order([0x88; 32]));
        scalars.push(Scalar::from_bytes_mod_order([0x77; 32]));
        scalars.extend((0u8..40).map(|i| Scalar::from_hash(Sha512::new().chain_update([i]))));
        for (i, a) in scalars.iter().enumerate() {
            let b = scalars.get((i * 7 + 3) % scalars.len()).unwrap();
            let sum = fixed_base::sum(&p, &a.to_bytes(), &q, &b.to_bytes());
            assert_eq!(sum, point * a + ED25519_BASEPOINT_POINT * b, "scalar {i}");
        }
    }

    /// A key verifies with ed25519-dalek until its `TABLE_AFTER`-th
    /// signature, then has a table; clones share it.
    #[test]
    fn a_key_builds_its_table_after_enough_signatures() {
        let signer = SigningKey::from_bytes(&[9; 32]);
        let key = Ed25519Key::new(signer.verifying_key());
        let clone = key.clone();
        let signature = signer.sign(b"m").to_bytes();
        for _ in 1..TABLE_AFTER {
            assert!(key.verify(b"m", &signature));
            assert!(!key.has_table());
        }
        assert!(clone.verify(b"m", &signature));
        assert!(key.has_table() && clone.has_table());
        assert!(key.verify(b"m", &signature));
        assert!(!key.verify(b"n", &signature));
        // Refused signatures count too: the work was done either way.
        let fresh = Ed25519Key::new(signer.verifying_key());
        for _ in 0..TABLE_AFTER {
            assert!(!fresh.verify(b"n", &signature));
        }
        assert!(fresh.has_table());
    }
}
