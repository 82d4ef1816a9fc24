//! Strict JSON for untrusted input (token headers and claims, JWKS).
//!
//! `serde_json` keeps the last of two duplicate keys, so `{"alg":"ES256","alg":"none"}`
//! would mean different things to different parsers. Here duplicate keys are an
//! error, and nesting depth and member count are capped (see [`crate::limits`]).
//!
//! Also where a document that does not deserialise went wrong: the JSON path
//! (`routes[2].path`) of a serde_json error, found from its position
//! ([`from_str_with_path`], [`path_of_error`]).

use std::cell::Cell;
use std::fmt::{self, Write as _};

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

/// A document that did not deserialise: where, what, and the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// The JSON path of the value being read (`routes[2].path`), `.` for the
    /// document itself.
    pub path: String,
    /// serde's message without serde_json's " at line L column C".
    pub message: String,
    /// 1-based line of the problem (0 when serde_json gives no position).
    pub line: usize,
    /// 1-based column: the bytes of that line read when the problem was seen.
    pub column: usize,
}

/// Deserialises `text` as one `T` (and nothing after it); an error names the
/// JSON path of the value that was being read.
///
/// Every document read this way (a policy, a request, revocation lists, test
/// files) is a struct written as a JSON object: an array at the top is
/// refused (`.: invalid type: array, expected a JSON object`). serde would
/// otherwise read the struct's fields from it by position, a form no
/// documentation or schema offers.
///
/// The path is found after the fact, from the position serde_json reports:
/// [`path_at`] rescans the text up to there. Tracking the path while
/// deserialising (a wrapping deserializer) would instantiate every derived
/// visitor a second time, a large share of the Wasm module, to serve only
/// documents that are already wrong.
pub fn from_str_with_path<T: de::DeserializeOwned>(text: &str) -> Result<T, PathError> {
    let error = |e: serde_json::Error| {
        let (line, column) = (e.line(), e.column());
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(at) if line > 0 => message.get(..at).unwrap_or(&message).to_owned(),
            _ => message,
        };
        let path = if line > 0 { path_of_error(text, line, column, &message) } else { ".".to_owned() };
        PathError { path, message, line, column }
    };
    let start = text.len() - text.trim_start_matches([' ', '\t', '\n', '\r']).len();
    if text.get(start..).is_some_and(|rest| rest.starts_with('[')) {
        let before = text.get(..start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
        let message = "invalid type: array, expected a JSON object".to_owned();
        return Err(PathError { path: ".".to_owned(), message, line, column });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(&mut de).map_err(error)?;
    de.end().map_err(error)?;
    Ok(value)
}

/// The JSON path of the problem serde_json reported at `line` and `column`
/// of `text` with `message` (without its position).
pub fn path_of_error(text: &str, line: usize, column: usize, message: &str) -> String {
    // serde_json's position often takes in the byte it peeked at (and the
    // whitespace after a `,`). A `,`, `}` or `]` taken in belongs to the value
    // before it, unless the problem is the object or array it closes; an
    // opening bracket taken in belongs to a value that was not expected there.
    let mut offset = offset_of(text, line, column);
    while text.as_bytes().get(offset.wrapping_sub(1)).is_some_and(u8::is_ascii_whitespace) {
        offset -= 1;
    }
    let about_container = message.starts_with("missing field") || message.starts_with("invalid length");
    match text.as_bytes().get(offset.wrapping_sub(1)) {
        Some(b'}' | b']') if about_container => {}
        Some(b'}' | b']') => offset -= 1,
        // A type error is placed before the value, after any `,`.
        Some(b',') if !message.starts_with("invalid type") => offset -= 1,
        Some(b'{' | b'[') if message == "expected value" => offset -= 1,
        _ => {}
    }
    path_at(text, offset)
}

/// The byte offset of serde_json's 1-based line and column (a column counts
/// the bytes of its line read so far).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.bytes().enumerate().filter(|&(_, b)| b == b'\n').nth(line - 2).map_or(text.len(), |(i, _)| i + 1)
    };
    line_start.saturating_add(column).min(text.len())
}

/// The JSON path of the value being read at byte `offset` of `text`, in
/// serde_path_to_error's notation: `issuers[0].jwks.keys[1]`, `.` at the top.
///
/// A lenient scan of `text[..offset]`: each object still open contributes the
/// last key read in it, each array still open the index of the last element
/// begun (or of the next one, when the scan stops between a `[` or `,` and
/// that element). Text after `offset` is never read, so a document that is
/// malformed further on still gets the path.
pub fn path_at(text: &str, offset: usize) -> String {
    enum Open {
        Object { key: Option<String>, expect_key: bool },
        Array { index: Option<usize>, pending: bool },
    }
    let bytes = text.as_bytes().get(..offset.min(text.len())).unwrap_or_default();
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // A value starts here (not a key, punctuation or whitespace): count it
        // as the next element of an enclosing array.
        let is_key = b == b'"' && matches!(stack.last(), Some(Open::Object { expect_key: true, .. }));
        let value_starts = !is_key && !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'}' | b']');
        if value_starts {
            if let Some(Open::Array { index, pending }) = stack.last_mut() {
                *index = Some(index.map_or(0, |n| n + 1));
                *pending = false;
            }
        }
        match b {
            b'{' => stack.push(Open::Object { key: None, expect_key: true }),
            b'[' => stack.push(Open::Array { index: None, pending: true }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                // The member before a `,` stays current until the next key.
                Some(Open::Object { expect_key, .. }) => *expect_key = true,
                Some(Open::Array { pending, .. }) => *pending = true,
                None => {}
            },
            b'"' => {
                let start = i;
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                // A key whose closing quote is past `offset` is not read yet.
                if let (Some(Open::Object { key, expect_key: expect_key @ true }), Some(raw)) =
                    (stack.last_mut(), text.get(start..=i).filter(|_| i < bytes.len()))
                {
                    *key = Some(serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned()));
                    *expect_key = false;
                }
            }
            // The rest of a number or literal.
            _ => {
                while bytes.get(i + 1).is_some_and(|c| !b" \t\n\r,:{}[]\"".contains(c)) {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    let mut path = String::new();
    for open in &stack {
        match open {
            Open::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            // Stopped between `[` or `,` and the next element: that element.
            Open::Array { index, pending: true } => {
                let _ = write!(path, "[{}]", index.map_or(0, |n| n + 1));
            }
            Open::Array { index: Some(index), pending: false } => {
                let _ = write!(path, "[{index}]");
            }
            _ => {}
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    path
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
    fn a_document_is_an_object_never_a_positional_array() {
        use crate::policy::{Policy, RevocationLists};
        use crate::request::RequestInput;
        // serde reads a struct from an array by field order: each of these
        // would otherwise have parsed (the first revokes `j1`).
        let lists = from_str_with_path::<RevocationLists>(r#" [["j1"], [], [], []]"#).unwrap_err();
        assert_eq!(
            (lists.path.as_str(), lists.message.as_str(), lists.line, lists.column),
            (".", "invalid type: array, expected a JSON object", 1, 2)
        );
        let request = r#"["GET", "api.test", "/"]"#;
        assert_eq!(from_str_with_path::<RequestInput>(request).unwrap_err().path, ".");
        let policy = from_str_with_path::<Policy>("\n\n  [1, \"x\"]").unwrap_err();
        assert_eq!((policy.line, policy.column), (3, 3), "where the array starts");
        assert!(policy.message.contains("expected a JSON object"), "{}", policy.message);
        // The object forms still read, and other wrong types keep serde's message.
        assert_eq!(from_str_with_path::<RevocationLists>(r#"{"jti": ["j1"]}"#).unwrap().jti, ["j1"]);
        let number = from_str_with_path::<RevocationLists>("7").unwrap_err();
        assert!(number.message.contains("invalid type: integer `7`"), "{}", number.message);
    }

    #[test]
    fn rejects_trailing_data_and_garbage() {
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        assert!(parse_strict(b"").is_err());
        assert!(parse_strict(b"\xff").is_err());
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;
    use crate::policy::Policy;

    /// Every way of breaking one value of a policy: other types in its place,
    /// an unknown member added, each member removed.
    fn mutations(value: &Value) -> Vec<Value> {
        fn walk(root: &Value, at: &mut Vec<PathStep>, node: &Value, out: &mut Vec<Value>) {
            let replacements =
                [json!(7), json!(-1), json!(1.5), json!("x"), json!(true), json!(null), json!([]), json!({})];
            for r in replacements {
                out.push(replaced(root, at, |v| *v = r.clone()));
            }
            match node {
                Value::Object(map) => {
                    out.push(replaced(root, at, |v| {
                        if let Value::Object(m) = v {
                            m.insert("unexpected_member".into(), json!(1));
                        }
                    }));
                    for (k, child) in map {
                        out.push(replaced(root, at, |v| {
                            if let Value::Object(m) = v {
                                m.remove(k);
                            }
                        }));
                        at.push(PathStep::Key(k.clone()));
                        walk(root, at, child, out);
                        at.pop();
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        at.push(PathStep::Index(i));
                        walk(root, at, child, out);
                        at.pop();
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(value, &mut Vec::new(), value, &mut out);
        out
    }

    #[derive(Clone)]
    enum PathStep {
        Key(String),
        Index(usize),
    }

    fn replaced(root: &Value, at: &[PathStep], change: impl FnOnce(&mut Value)) -> Value {
        let mut copy = root.clone();
        let mut node = &mut copy;
        for step in at {
            node = match step {
                PathStep::Key(k) => node.get_mut(k.as_str()).unwrap(),
                PathStep::Index(i) => node.get_mut(*i).unwrap(),
            };
        }
        change(node);
        copy
    }

    use serde_json::json;

    #[test]
    fn duplicate_keys_and_cut_off_documents_name_their_path() {
        let e = Policy::from_json("{\"issuers\": [], \"routes\": [{\"id\": \"a\",\n \"id\": \"b\"}]}")
            .unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str(), e.line),
            ("routes[0].id", "duplicate key `id`", Some(2))
        );
        let e = Policy::from_json(r#"{"issuers": [{"iss": "https://sts", "audiences": ["a"#).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("issuers[0].audiences[0]", "EOF while parsing a string")
        );
        assert_eq!(path_at("[1, {\"a\\\"b\": [true, ", 19), "[1].a\"b[1]");
        assert_eq!(path_at("{}", 2), ".");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any text, any position (inside a character too): a path, no panic.
        #[test]
        fn path_at_takes_any_text_and_offset(text in ".{0,64}|[\\[\\]{}\",:\\\\ a1]{0,64}", offset in 0usize..80) {
            let path = path_at(&text, offset);
            proptest::prop_assert!(!path.is_empty());
            let line = text.matches('\n').count() + 1;
            let _ = path_of_error(&text, line, offset, "invalid type: x");
            let _ = path_of_error(&text, offset, offset, "missing field `x`");
            if let Err(e) = from_str_with_path::<crate::request::RequestInput>(&text) {
                proptest::prop_assert!(!e.path.is_empty());
            }
        }
    }

    /// Breaks `valid` every way [`mutations`] knows, deserialises each as `T`
    /// pretty-printed and on one line, and returns how many failed and, for
    /// those whose path differs from serde_path_to_error's, both paths.
    fn compare<T: de::DeserializeOwned>(valid: &Value) -> (usize, Vec<String>) {
        let (mut compared, mut differ) = (0, Vec::new());
        for broken in mutations(valid) {
            for text in [serde_json::to_string_pretty(&broken).unwrap(), broken.to_string()] {
                if broken.is_array() {
                    // Refused before serde reads it (serde would read the struct by position).
                    let f = from_str_with_path::<T>(&text).err().unwrap();
                    assert_eq!(
                        (f.path.as_str(), f.message.as_str()),
                        (".", "invalid type: array, expected a JSON object")
                    );
                    continue;
                }
                let mut de = serde_json::Deserializer::from_str(&text);
                let tracked = serde_path_to_error::deserialize::<_, T>(&mut de);
                match (tracked, from_str_with_path::<T>(&text)) {
                    (Ok(_), Ok(_)) => {}
                    (Err(t), Err(f)) => {
                        compared += 1;
                        let t_message = t.inner().to_string();
                        assert!(t_message.starts_with(&f.message), "{t_message} / {}", f.message);
                        if t.path().to_string() != f.path {
                            differ.push(format!("{} != {} ({})", t.path(), f.path, f.message));
                        }
                    }
                    (t, f) => panic!("one failed, one did not: {:?} / {:?}\n{text}", t.err(), f.err()),
                }
            }
        }
        (compared, differ)
    }

    /// The path found after the fact is the one serde_path_to_error tracks
    /// while deserialising, for every broken variant of the example policies
    /// and of a request object.
    #[test]
    fn paths_match_serde_path_to_error() {
        let root = env!("CARGO_MANIFEST_DIR");
        let (mut compared, mut differ) = (0, Vec::new());
        for file in
            ["examples/policy.json", "tests/vectors/policy.json", "tests/fixtures/every-field-policy.json"]
        {
            let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
            let (n, d) = compare::<Policy>(&serde_json::from_str(&text).unwrap());
            compared += n;
            differ.extend(d);
        }
        let request = json!({"method": "POST", "scheme": "https", "host": "api.test", "path": "/v1/x?y=1",
            "headers": {"authorization": "Bearer t", "accept": ["a", "b"]}, "source_ip": "10.0.0.1",
            "client_cert_sha256": "ab", "body_sha256": "cd", "body": "{}", "now": 1.5});
        let (n, d) = compare::<crate::request::RequestInput>(&request);
        assert!(n > 100, "only {n} broken requests compared");
        compared += n;
        differ.extend(d);
        assert!(compared > 3000, "only {compared} broken documents compared");
        differ.sort();
        differ.dedup();
        assert!(differ.is_empty(), "{} paths differ:\n{}", differ.len(), differ.join("\n"));
    }
}
