//! Strict JSON for untrusted input (token headers and claims, JWKS).
//!
//! `serde_json` keeps the last of two duplicate keys, so `{"alg":"ES256","alg":"none"}`
//! would mean different things to different parsers. Here duplicate keys are an
//! error, and nesting depth and member count are capped (see [`crate::limits`]).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::limits::{MAX_JSON_DEPTH, MAX_JSON_MEMBERS};

/// Parses `bytes` as one JSON value, rejecting duplicate object keys, nesting
/// deeper than [`MAX_JSON_DEPTH`] and more than [`MAX_JSON_MEMBERS`] members.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    parse_with_limits(bytes, MAX_JSON_DEPTH, MAX_JSON_MEMBERS)
}

/// [`parse_strict`] with explicit limits (JWKS documents are larger than tokens).
pub fn parse_with_limits(bytes: &[u8], max_depth: usize, max_members: usize) -> Result<Value, String> {
    let budget = Cell::new(max_members);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value =
        Strict { depth_left: max_depth, budget: &budget }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

struct Strict<'a> {
    depth_left: usize,
    budget: &'a Cell<usize>,
}

impl Strict<'_> {
    fn nested<E: de::Error>(&self) -> Result<Strict<'_>, E> {
        let depth_left = self.depth_left.checked_sub(1).ok_or_else(|| E::custom("JSON nested too deeply"))?;
        Ok(Strict { depth_left, budget: self.budget })
    }

    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let left = self.budget.get().checked_sub(1).ok_or_else(|| E::custom("JSON has too many members"))?;
        self.budget.set(left);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("JSON number out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        loop {
            inner.spend()?;
            match seq.next_element_seed(Strict { depth_left: inner.depth_left, budget: inner.budget })? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            inner.spend()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(Strict { depth_left: inner.depth_left, budget: inner.budget })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict(br#"{"a":[1,2,{"b":null}],"c":"d","e":1.5,"f":-3}"#).unwrap();
        assert_eq!(v["a"][2]["b"], Value::Null);
        assert_eq!(v["f"], Value::from(-3));
    }

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        let err = parse_strict(br#"{"alg":"ES256","alg":"none"}"#).unwrap_err();
        assert!(err.contains("duplicate key `alg`"), "{err}");
        assert!(parse_strict(br#"{"a":{"b":1,"b":2}}"#).unwrap_err().contains("duplicate key `b`"));
        // Escapes that decode to the same key are the same key.
        assert!(parse_strict(br#"{"alg":1,"\u0061lg":2}"#).unwrap_err().contains("duplicate"));
    }

    #[test]
    fn caps_depth() {
        let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(parse_strict(ok.as_bytes()).is_ok());
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert!(parse_strict(deep.as_bytes()).unwrap_err().contains("nested too deeply"));
    }

    #[test]
    fn caps_members() {
        let many = format!("[{}]", vec!["1"; MAX_JSON_MEMBERS + 1].join(","));
        assert!(parse_strict(many.as_bytes()).unwrap_err().contains("too many members"));
    }

    #[test]
    fn rejects_trailing_data_and_garbage() {
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        assert!(parse_strict(b"").is_err());
        assert!(parse_strict(b"\xff").is_err());
    }
}
