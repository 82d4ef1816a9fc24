//! Durations written as strings in policies: `"30s"`, `"5m"`, `"1h"`, `"7d"`.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A whole number of seconds, written in a policy as `<n><unit>` with the unit
/// one of `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration {
    secs: u64,
}

/// The longest duration a policy may name (one year): anything longer is a typo.
const MAX_SECS: u64 = 366 * 24 * 3600;

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration { secs }
    }

    /// The duration in seconds.
    pub const fn as_secs(self) -> u64 {
        self.secs
    }

    /// The duration in seconds, as a signed number for arithmetic with Unix times.
    pub fn as_secs_i64(self) -> i64 {
        i64::try_from(self.secs).unwrap_or(i64::MAX)
    }

    /// Parses `"30s"`, `"5m"`, `"1h"` or `"7d"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = || format!("expected a duration like `5m`, found `{text}`");
        let unit_at = text.len().checked_sub(1).ok_or_else(expected)?;
        let (number, unit) = (text.get(..unit_at).ok_or_else(expected)?, text.get(unit_at..));
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        let n: u64 = number.parse().map_err(|_| expected())?;
        let scale = match unit {
            Some("s") => 1,
            Some("m") => 60,
            Some("h") => 3600,
            Some("d") => 86_400,
            _ => return Err(expected()),
        };
        let secs = n
            .checked_mul(scale)
            .filter(|s| *s <= MAX_SECS)
            .ok_or_else(|| format!("expected a duration of at most one year (`366d`), found `{text}`"))?;
        Ok(Duration { secs })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like `5m`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(Duration::parse("30s").unwrap().as_secs(), 30);
        assert_eq!(Duration::parse("5m").unwrap().as_secs(), 300);
        assert_eq!(Duration::parse("2h").unwrap().as_secs(), 7200);
        assert_eq!(Duration::parse("1d").unwrap().as_secs(), 86_400);
        assert_eq!(Duration::parse("0s").unwrap().as_secs(), 0);
    }

    #[test]
    fn rejects_other_spellings_with_the_expected_form() {
        for bad in ["5 minutes", "5", "m", "", "-5m", "5M", "1.5h", "+5s", " 5s"] {
            let err = Duration::parse(bad).unwrap_err();
            assert_eq!(err, format!("expected a duration like `5m`, found `{bad}`"));
        }
    }

    #[test]
    fn rejects_absurd_lengths() {
        assert!(Duration::parse("367d").unwrap_err().contains("at most one year"));
        assert!(Duration::parse("99999999999999999999s").is_err());
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        for s in ["30s", "5m", "2h", "3d", "90s", "0s"] {
            assert_eq!(Duration::parse(s).unwrap().to_string(), s);
        }
    }
}
