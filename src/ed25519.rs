//! Ed25519 verification for issuer keys: ed25519-dalek's `verify`, made
//! faster for keys that verify many signatures by a table of the key's
//! multiples.
//!
//! A signature `(R, s)` over `M` verifies when `[s]B - [k]A` compresses to
//! `R`, with `k = SHA-512(R ‖ A ‖ M) mod ℓ`. ed25519-dalek computes that
//! double scalar multiplication with ~253 point doublings, whatever the key.
//! But an issuer's key `A` is fixed and signs every token, just as the base
//! point `B` is: so a key that keeps verifying keeps a table of its
//! multiples `[j·16^(2i)](-A)` (`i < 32`, `1 ≤ j ≤ 8`; 256 points, 40 KiB),
//! as does `B`, once for the process. Written in signed radix 16, each
//! scalar is then 64 table additions and the pair shares 4 doublings
//! (curve25519-dalek's fixed-base method, in variable time: every input of a
//! verification is public). In Wasm (V8) that verification costs ~0.55×
//! ed25519-dalek's; building a table costs ~2.6 of them, so a key builds
//! its own at its [`TABLE_AFTER`]-th signature (the ski-rental rule: at
//! worst about twice the best cost, and nothing for a key that verifies
//! once, such as the one in a cold start's first decision).
//!
//! Acceptance is ed25519-dalek's `verify` exactly (what jwt-compact calls):
//! `s` must be canonical (`s < ℓ`), `R` is compared as bytes, no
//! cofactor. `tests/wycheproof.rs` runs every Ed25519 vector both ways, and
//! unit tests compare the two on valid, tampered and non-canonical
//! signatures, and the table's products with curve25519-dalek's.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha512};

/// The signature at which a key builds its table: the first ones verify
/// with ed25519-dalek, as building the table costs ~2.6 verifications.
pub const TABLE_AFTER: u32 = 3;

/// An Ed25519 public key, and the table of its multiples once it has earned
/// one. Clones share the count and the table.
#[derive(Clone)]
pub struct Ed25519Key {
    key: VerifyingKey,
    fast: Arc<Fast>,
}

#[derive(Default)]
struct Fast {
    /// Verifications so far, counted up to `TABLE_AFTER`.
    uses: AtomicU32,
    /// The multiples of the negated key, so the check is one sum.
    minus_key: OnceLock<Multiples>,
}

impl Ed25519Key {
    /// Wraps a parsed key; its table is built at its [`TABLE_AFTER`]-th
    /// signature, or by [`Ed25519Key::build_table`].
    pub fn new(key: VerifyingKey) -> Self {
        Ed25519Key { key, fast: Arc::default() }
    }

    /// The key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Builds the table now, for a host that would rather pay before the
    /// first request. Idempotent.
    pub fn build_table(&self) {
        self.table();
    }

    /// Whether the table has been built.
    pub fn has_table(&self) -> bool {
        self.fast.minus_key.get().is_some()
    }

    fn table(&self) -> &Multiples {
        self.fast.minus_key.get_or_init(|| Multiples::of(&-self.key.to_edwards()))
    }

    /// Verifies a 64-byte signature `R ‖ s` over `message`; accepts exactly
    /// what ed25519-dalek's `verify` accepts.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        if !self.has_table() && self.fast.uses.fetch_add(1, Ordering::Relaxed).saturating_add(1) < TABLE_AFTER
        {
            return self.key.verify(message, &Signature::from_bytes(signature)).is_ok();
        }
        let (r, s) = signature.split_at(32);
        let Ok(s) = <[u8; 32]>::try_from(s) else { return false };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let k = Scalar::from_hash(
            Sha512::new().chain_update(r).chain_update(self.key.as_bytes()).chain_update(message),
        );
        static BASE: OnceLock<Multiples> = OnceLock::new();
        let base = BASE.get_or_init(|| Multiples::of(&ED25519_BASEPOINT_POINT));
        // [k](-A) + [s]B
        let expected_r = Multiples::sum(self.table(), &k, base, &s);
        expected_r.compress().as_bytes() == r
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Key").field("has_table", &self.has_table()).finish_non_exhaustive()
    }
}

/// `[j·16^(2i)]P` for `i < 32` (rows) and `1 ≤ j ≤ 8` (columns): the
/// multiples a signed radix-16 scalar below 2^253 needs.
struct Multiples(Box<[[EdwardsPoint; 8]; 32]>);

impl Multiples {
    fn of(point: &EdwardsPoint) -> Multiples {
        let mut rows = Box::new([[EdwardsPoint::identity(); 8]; 32]);
        let mut base = *point;
        for row in rows.iter_mut() {
            let mut multiple = base;
            for cell in row.iter_mut() {
                *cell = multiple;
                multiple += base;
            }
            for _ in 0..8 {
                base += base;
            }
        }
        Multiples(rows)
    }

    /// `[a]P + [b]Q`, in variable time: `Σ odd digits`, times 16, plus
    /// `Σ even digits`, as curve25519-dalek's `mul_base` does for one point.
    fn sum(p: &Multiples, a: &Scalar, q: &Multiples, b: &Scalar) -> EdwardsPoint {
        let (a, b) = (radix_16(a), radix_16(b));
        let mut sum = EdwardsPoint::identity();
        for half in [1, 0] {
            if half == 0 {
                for _ in 0..4 {
                    sum += sum;
                }
            }
            let digits = a.chunks_exact(2).zip(b.chunks_exact(2));
            for ((p_row, q_row), (a_pair, b_pair)) in p.0.iter().zip(q.0.iter()).zip(digits) {
                add_multiple(&mut sum, p_row, a_pair.get(half).copied().unwrap_or(0));
                add_multiple(&mut sum, q_row, b_pair.get(half).copied().unwrap_or(0));
            }
        }
        sum
    }
}

/// `sum += [digit]·row[0]`, for `-8 ≤ digit ≤ 8`.
fn add_multiple(sum: &mut EdwardsPoint, row: &[EdwardsPoint; 8], digit: i8) {
    let Some(multiple) = usize::from(digit.unsigned_abs()).checked_sub(1).and_then(|j| row.get(j)) else {
        return;
    };
    if digit > 0 {
        *sum += multiple;
    } else {
        *sum -= multiple;
    }
}

/// The scalar in signed radix 16, least significant digit first: 64 digits
/// in `-8..=7`, whose sum of `digit·16^i` is the scalar. A reduced scalar is
/// below 2^253, so the top digit absorbs the last carry.
fn radix_16(scalar: &Scalar) -> [i8; 64] {
    let mut digits = [0i8; 64];
    let mut carry = 0i8;
    for (pair, byte) in digits.chunks_exact_mut(2).zip(scalar.to_bytes()) {
        for (digit, nibble) in pair.iter_mut().zip([byte & 15, byte >> 4]) {
            // nibble + carry is 0..=16; ≥ 8 becomes negative with a carry.
            let value = nibble.cast_signed() + carry;
            carry = (value + 8) >> 4;
            *digit = value - (carry << 4);
        }
    }
    digits
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
    /// on edge scalars (0, 1, 15, 16, 8, ℓ-1, digits of every value) and
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
            assert_eq!(Multiples::sum(&p, a, &q, b), point * a + ED25519_BASEPOINT_POINT * b, "scalar {i}");
            // The digits are in range and add up to the scalar.
            let digits = radix_16(a);
            assert!(digits.iter().all(|d| (-8..=8).contains(d)));
            let value = digits.iter().rev().fold(Scalar::ZERO, |acc, &d| {
                acc * Scalar::from(16u8)
                    + if d < 0 { -Scalar::from(d.unsigned_abs()) } else { Scalar::from(d as u8) }
            });
            assert_eq!(&value, a);
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
