//! Fixed-base tables for signature checks: an issuer's public key is as
//! fixed as a curve's base point, so it can keep a table of its multiples.
//!
//! Verifying an EdDSA or ECDSA signature ends in a double scalar
//! multiplication, `[a]P + [b]Q`, with `P` the curve's base point and `Q`
//! the signer's key (or its negation). The crates compute it with one
//! doubling per scalar bit (~256) whatever the points. With a table of
//! `[j·16^(2i)]P` for `0 ≤ i ≤ 32`, `1 ≤ j ≤ 8` (264 points), a scalar
//! written in signed radix 16 (65 digits in `-8..=8`) is one table
//! addition per non-zero digit: the odd-position digits are summed, the sum
//! multiplied by 16 (4 doublings), then the even ones added. Both scalars
//! share those 4 doublings: ~128 additions in all, instead of ~256
//! doublings and ~70 additions (Bernstein et al., "High-speed high-security
//! signatures", §4; curve25519-dalek's `EdwardsBasepointTable` is the
//! constant-time form of the same table). Every input of a verification is
//! public, so lookups index the table directly, in variable time.
//!
//! A table costs a few verifications to build, so a key builds its own
//! ([`LazyTable`]) only once it has verified as many signatures as the
//! table costs: the ski-rental rule, at worst about twice the best cost, and
//! nothing for a key that verifies once (such as the one in a cold start's
//! first decision). The curves plug in through [`Group`]:
//! [`crate::ed25519`] and [`crate::es256`] verify with these tables.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Rows of a table: 33, for 65 signed digits.
const ROWS: usize = 33;
/// Multiples per row: `1..=8`.
const COLUMNS: usize = 8;

/// A curve's point arithmetic, as the table needs it.
pub(crate) trait Group: Copy {
    /// How the table keeps a point (P-256: affine, for cheaper additions).
    type Stored;
    /// The neutral element.
    fn identity() -> Self;
    /// `2·self`.
    fn double(&self) -> Self;
    /// `self + other`.
    fn add(&self, other: &Self) -> Self;
    /// `self + stored`.
    fn add_stored(&self, stored: &Self::Stored) -> Self;
    /// `self - stored`.
    fn sub_stored(&self, stored: &Self::Stored) -> Self;
    /// The points as the table keeps them.
    fn store(points: &[Self]) -> Vec<Self::Stored>;
}

/// `[j·16^(2i)]P`, row `i`, column `j - 1`.
pub(crate) struct Multiples<G: Group>(Vec<G::Stored>);

impl<G: Group> Multiples<G> {
    /// The table of `point`: 264 additions and 264 doublings.
    pub(crate) fn of(point: &G) -> Self {
        let mut points = Vec::with_capacity(ROWS * COLUMNS);
        let mut base = *point;
        for _ in 0..ROWS {
            let mut multiple = base;
            for _ in 0..COLUMNS {
                points.push(multiple);
                multiple = multiple.add(&base);
            }
            for _ in 0..8 {
                base = base.double();
            }
        }
        Multiples(G::store(&points))
    }

    /// `sum += [digit]·(row's first point)`, for `-8 ≤ digit ≤ 8`.
    fn add_to(&self, sum: &mut G, row: usize, digit: i8) {
        let Some(column) = usize::from(digit.unsigned_abs()).checked_sub(1) else { return };
        if let Some(multiple) = self.0.get(row * COLUMNS + column) {
            *sum = if digit > 0 { sum.add_stored(multiple) } else { sum.sub_stored(multiple) };
        }
    }
}

/// `[a]P + [b]Q` from the tables of `P` and `Q`, with `a` and `b` as
/// little-endian bytes of integers below 2^256. Variable time.
pub(crate) fn sum<G: Group>(p: &Multiples<G>, a: &[u8; 32], q: &Multiples<G>, b: &[u8; 32]) -> G {
    let (a, b) = (radix_16(a), radix_16(b));
    let mut sum = G::identity();
    for half in [1, 0] {
        if half == 0 {
            for _ in 0..4 {
                sum = sum.double();
            }
        }
        let digits = a.chunks(2).zip(b.chunks(2));
        for (row, (a_pair, b_pair)) in digits.enumerate() {
            p.add_to(&mut sum, row, a_pair.get(half).copied().unwrap_or(0));
            q.add_to(&mut sum, row, b_pair.get(half).copied().unwrap_or(0));
        }
    }
    sum
}

/// A little-endian 256-bit integer in signed radix 16: 65 digits in
/// `-8..=8`, least significant first, with `Σ digit·16^i` the integer (the
/// last digit takes the final carry, 0 or 1).
pub(crate) fn radix_16(le: &[u8; 32]) -> [i8; 65] {
    let mut digits = [0i8; 65];
    let mut carry = 0i8;
    for (pair, byte) in digits.chunks_exact_mut(2).zip(le) {
        for (digit, nibble) in pair.iter_mut().zip([byte & 15, byte >> 4]) {
            // nibble + carry is 0..=16; 8 and above become negative with a carry.
            let value = nibble.cast_signed() + carry;
            carry = (value + 8) >> 4;
            *digit = value - (carry << 4);
        }
    }
    if let Some(last) = digits.last_mut() {
        *last = carry;
    }
    digits
}

/// A key's table, built once the key has verified `after` signatures.
/// Thread-safe; a clone of the key shares it through an `Arc`.
#[derive(Default)]
pub(crate) struct LazyTable<G: Group> {
    /// Verifications so far (saturating; only compared with `after`).
    uses: AtomicU32,
    table: OnceLock<Multiples<G>>,
}

impl<G: Group> LazyTable<G> {
    /// The table, if it exists or this verification is the one that
    /// builds it (`build` then runs, once); `None` while the key has
    /// verified fewer than `after` signatures.
    pub(crate) fn for_use(&self, after: u32, build: impl FnOnce() -> Multiples<G>) -> Option<&Multiples<G>> {
        if let Some(table) = self.table.get() {
            return Some(table);
        }
        let uses = self.uses.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        (uses >= after).then(|| self.table.get_or_init(build))
    }

    /// The table, built now if it is not yet.
    pub(crate) fn get_or_build(&self, build: impl FnOnce() -> Multiples<G>) -> &Multiples<G> {
        self.table.get_or_init(build)
    }

    /// Whether the table exists.
    pub(crate) fn is_built(&self) -> bool {
        self.table.get().is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The digits are in range and add up to the integer, for edge values
    /// (all nibbles 8, all 15, 2^256 - 1, 0) and a spread of others.
    #[test]
    fn radix_16_digits_add_up() {
        let mut inputs = vec![[0u8; 32], [0x88; 32], [0xff; 32], [0x77; 32], [0x0f; 32], [0xf0; 32]];
        inputs
            .extend((0u8..32).map(|i| core::array::from_fn(|j| (j as u8).wrapping_mul(37).wrapping_add(i))));
        for le in inputs {
            let digits = radix_16(&le);
            assert!(digits.iter().all(|d| (-8..=8).contains(d)), "{le:?}");
            // Recompose in base 2^8 with signed carries.
            let mut back = [0i32; 33];
            for (i, &d) in digits.iter().enumerate() {
                back[i / 2] += i32::from(d) << (4 * (i % 2));
            }
            let mut carry = 0i32;
            let mut bytes = [0u8; 33];
            for (out, v) in bytes.iter_mut().zip(back) {
                let v = v + carry;
                *out = v.rem_euclid(256) as u8;
                carry = v.div_euclid(256);
            }
            assert_eq!(carry, 0);
            assert_eq!(&bytes[..32], &le);
            assert_eq!(bytes[32], 0);
        }
    }
}
