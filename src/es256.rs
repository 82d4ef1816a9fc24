//! ES256 verification for issuer keys: p256's ECDSA `verify`, made faster
//! for keys that verify many signatures by a table of the key's multiples
//! (`src/fixed_base.rs`).
//!
//! ECDSA over P-256 with SHA-256 (FIPS 186-5 §6.4.2): for a signature
//! `(r, s)` with `1 ≤ r, s < n` over `M`, with `z = SHA-256(M) mod n` and
//! `w = s⁻¹ mod n`, the point `[z·w]G + [r·w]Q` must not be the identity
//! and its `x` coordinate, reduced mod `n`, must equal `r`. p256 computes
//! the sum with ~256 doublings, whatever the key. At its [`TABLE_AFTER`]-th
//! signature a key builds the table of `Q` (264 affine points, ~19 KiB);
//! `G`'s is built once per process. This is what Envoy pays for every
//! fresh ES256 token (proxy-wasm has no host crypto), and the JS package
//! when it verifies in Wasm.
//!
//! Acceptance is p256's `verify` exactly: the same signature parsing
//! (`r` and `s` in `1..n`), high `s` accepted, the same reductions.
//! `tests/wycheproof.rs` runs every ECDSA P-256 vector both ways, and unit
//! tests compare the two on valid, tampered and edge signatures, and the
//! table's products with p256's.

use std::fmt;
use std::sync::{Arc, OnceLock};

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::group::{Curve, Group as _};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::PrimeField;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};

use crate::fixed_base::{self, Group, LazyTable, Multiples};

/// The signature at which a key builds its table: the first ones verify
/// with p256, as building the table costs about as much as that many.
pub const TABLE_AFTER: u32 = 2;

/// A P-256 public key, and the table of its multiples once it has earned
/// one. Clones share the count and the table.
#[derive(Clone)]
pub struct P256Key {
    key: VerifyingKey,
    table: Arc<LazyTable<ProjectivePoint>>,
}

impl Group for ProjectivePoint {
    type Stored = AffinePoint;
    fn identity() -> Self {
        ProjectivePoint::IDENTITY
    }
    fn double(&self) -> Self {
        p256::elliptic_curve::group::Group::double(self)
    }
    fn add(&self, other: &Self) -> Self {
        self + other
    }
    fn add_stored(&self, stored: &AffinePoint) -> Self {
        self + stored
    }
    fn sub_stored(&self, stored: &AffinePoint) -> Self {
        self - stored
    }
    fn store(points: &[Self]) -> Vec<AffinePoint> {
        let mut affine = vec![AffinePoint::IDENTITY; points.len()];
        ProjectivePoint::batch_normalize(points, &mut affine);
        affine
    }
}

/// A scalar's little-endian bytes (p256 gives big-endian ones).
fn little_endian(scalar: &Scalar) -> [u8; 32] {
    let mut bytes: [u8; 32] = scalar.to_repr().into();
    bytes.reverse();
    bytes
}

impl P256Key {
    /// Wraps a parsed key; its table is built at its [`TABLE_AFTER`]-th
    /// signature, or by [`P256Key::build_table`].
    pub fn new(key: VerifyingKey) -> Self {
        P256Key { key, table: Arc::default() }
    }

    /// The key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Builds the table now. Idempotent.
    pub fn build_table(&self) {
        self.table.get_or_build(|| self.multiples());
    }

    /// Whether the table has been built.
    pub fn has_table(&self) -> bool {
        self.table.is_built()
    }

    fn multiples(&self) -> Multiples<ProjectivePoint> {
        Multiples::of(&ProjectivePoint::from(*self.key.as_affine()))
    }

    /// Verifies a parsed signature (`r` and `s` in `1..n`, as
    /// `Signature::from_slice` checks) over `message`, hashed with SHA-256
    /// here; accepts exactly what p256's `verify` accepts.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Some(key_table) = self.table.for_use(TABLE_AFTER, || self.multiples()) else {
            return self.key.verify(message, signature).is_ok();
        };
        let (r, s) = signature.split_scalars();
        let digest: [u8; 32] = Sha256::digest(message).into();
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(digest));
        // s is not zero (parsing checked), so it has an inverse.
        let Some(w) = Option::<Scalar>::from(s.invert_vartime()) else { return false };
        static GENERATOR: OnceLock<Multiples<ProjectivePoint>> = OnceLock::new();
        let generator = GENERATOR.get_or_init(|| Multiples::of(&ProjectivePoint::GENERATOR));
        let point =
            fixed_base::sum(generator, &little_endian(&(z * w)), key_table, &little_endian(&(*r * w)));
        if bool::from(point.is_identity()) {
            return false;
        }
        <Scalar as Reduce<FieldBytes>>::reduce(&point.to_affine().x()) == *r
    }
}

impl fmt::Debug for P256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P256Key").field("has_table", &self.has_table()).finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;

    /// n, the group order, big-endian.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
        0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];

    fn p256_verify(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
        Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s).is_ok())
    }

    fn table_verify(key: &P256Key, message: &[u8], signature: &[u8; 64]) -> bool {
        Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s))
    }

    /// Valid, high-s, tampered, zero and out-of-range signatures: the table
    /// and p256 agree on every one, for several keys.
    #[test]
    fn the_table_accepts_exactly_what_p256_accepts() {
        let mut checked = 0;
        for seed in 1u8..=4 {
            let signer = SigningKey::from_slice(&[seed.wrapping_mul(41); 32]).unwrap();
            let key = P256Key::new(*signer.verifying_key());
            key.build_table();
            assert!(key.has_table());
            for n in 0..12u32 {
                let message = format!("eyJhbGciOiJFUzI1NiJ9.claims-{seed}-{n}").into_bytes();
                let sig: Signature = signer.sign(&message);
                let good: [u8; 64] = sig.to_bytes().into();
                let mut cases = vec![(message.clone(), good, true)];
                // High s: n - s is the same signature's twin, and valid.
                let high: [u8; 64] = Signature::from_scalars(sig.r(), -*sig.s()).unwrap().to_bytes().into();
                cases.push((message.clone(), high, true));
                let mut bad_r = good;
                bad_r[(n as usize) % 32] ^= 1 << (n % 8);
                cases.push((message.clone(), bad_r, false));
                let mut bad_s = good;
                bad_s[32 + (n as usize) % 32] ^= 1 << (n % 8);
                cases.push((message.clone(), bad_s, false));
                let mut other = message.clone();
                other[n as usize % message.len()] ^= 0x20;
                cases.push((other, good, false));
                // r = 0, s = 0, r = n, s = n: refused by parsing.
                for (offset, value) in [(0, [0u8; 32]), (32, [0u8; 32]), (0, N), (32, N)] {
                    let mut edge = good;
                    edge[offset..offset + 32].copy_from_slice(&value);
                    cases.push((message.clone(), edge, false));
                }
                for (message, signature, expected) in cases {
                    assert_eq!(p256_verify(key.verifying_key(), &message, &signature), expected);
                    assert_eq!(table_verify(&key, &message, &signature), expected, "seed {seed} n {n}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 4 * 12 * 9);
    }

    /// The table's sums against p256's products, on edge scalars (0, 1,
    /// n-1, all nibbles 8, all 15 reduced) and a spread of others.
    #[test]
    fn the_table_multiplies_as_p256_does() {
        let point =
            ProjectivePoint::from(*SigningKey::from_slice(&[5; 32]).unwrap().verifying_key().as_affine());
        let (p, q) = (Multiples::of(&ProjectivePoint::GENERATOR), Multiples::of(&point));
        let mut scalars: Vec<Scalar> =
            [0u64, 1, 8, 15, 16, 0x8888_8888_8888_8888, u64::MAX].map(Scalar::from).to_vec();
        scalars.push(-Scalar::ONE);
        scalars.push(<Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from([0x88; 32])));
        scalars.push(<Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from([0xff; 32])));
        scalars.extend((0u8..30).map(|i| {
            let digest: [u8; 32] = Sha256::digest([i]).into();
            <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(digest))
        }));
        for (i, a) in scalars.iter().enumerate() {
            let b = scalars[(i * 5 + 2) % scalars.len()];
            let sum = fixed_base::sum(&p, &little_endian(a), &q, &little_endian(&b));
            assert_eq!(
                sum.to_affine(),
                (ProjectivePoint::GENERATOR * a + point * b).to_affine(),
                "scalar {i}"
            );
        }
    }

    /// A key verifies with p256 until its `TABLE_AFTER`-th signature,
    /// refused ones included; clones share the table.
    #[test]
    fn a_key_builds_its_table_after_enough_signatures() {
        let signer = SigningKey::from_slice(&[9; 32]).unwrap();
        let key = P256Key::new(*signer.verifying_key());
        let clone = key.clone();
        let signature: Signature = signer.sign(b"m");
        for _ in 1..TABLE_AFTER {
            assert!(!key.verify(b"n", &signature));
            assert!(!key.has_table());
        }
        assert!(clone.verify(b"m", &signature));
        assert!(key.has_table() && clone.has_table());
        assert!(key.verify(b"m", &signature));
        assert!(!key.verify(b"n", &signature));
    }
}
