//! Stage 10, part two: conditions on the request body that send a request to
//! the approval gate. A route is high-risk or not; `approval_when` makes one
//! request on a low-risk route need a human when its JSON body says so:
//!
//! ```json
//! {"id": "pay", "methods": ["POST"], "path": "/v1/payments", "scopes": ["payments.write"],
//!  "approval_when": [{"body": "/amount", "gt": 1000},
//!                    {"body": "/currency", "not_in": ["EUR", "USD"]}]}
//! ```
//!
//! Any one condition met is enough. Each names a value by RFC 6901 JSON
//! Pointer and tests it with exactly one of `gt`, `gte`, `lt`, `lte`
//! (numbers), `eq` (a string, number or boolean), `in` or `not_in` (lists of
//! strings, numbers, booleans and `null`).
//!
//! Fail closed, towards the human: a condition whose value is missing or of
//! the wrong type counts as met, and so does every condition when the body
//! was not given to the core, is larger than [`MAX_BODY_BYTES`], is not JSON,
//! or has a duplicate key (`{"amount": 5, "amount": 5000}` means different
//! things to different parsers). The body is hashed into the action digest,
//! so the approval binds to this exact body.

use serde_json::Value;

use crate::keys::clip;
use crate::limits::{MAX_BODY_BYTES, MAX_BODY_JSON_DEPTH, MAX_BODY_JSON_MEMBERS};
use crate::policy::BodyRule;

/// A compiled `approval_when` condition.
#[derive(Debug, Clone)]
pub struct BodyCondition {
    pointer: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Eq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
}

impl BodyCondition {
    /// Compiles one rule; errors name the field relative to the rule.
    pub fn new(rule: &BodyRule) -> Result<BodyCondition, (String, String)> {
        if !rule.body.is_empty() && !rule.body.starts_with('/') {
            return Err((
                "body".into(),
                format!("expected a JSON Pointer such as `/amount`, found `{}`", clip(&rule.body)),
            ));
        }
        let mut tests = Vec::new();
        let number = |name: &str, n: Option<f64>| n.map(|n| (name.to_owned(), n));
        for (name, n) in
            [number("gt", rule.gt), number("gte", rule.gte), number("lt", rule.lt), number("lte", rule.lte)]
                .into_iter()
                .flatten()
        {
            let test = match name.as_str() {
                "gt" => Test::Gt(n),
                "gte" => Test::Gte(n),
                "lt" => Test::Lt(n),
                _ => Test::Lte(n),
            };
            tests.push((name, test));
        }
        if let Some(v) = &rule.eq {
            scalar(v).map_err(|m| ("eq".to_owned(), m))?;
            tests.push(("eq".into(), Test::Eq(v.clone())));
        }
        for (name, list) in [("in", &rule.one_of), ("not_in", &rule.not_in)] {
            let Some(list) = list else { continue };
            if list.is_empty() {
                return Err((name.into(), "expected at least one value".into()));
            }
            for (i, v) in list.iter().enumerate() {
                scalar(v).map_err(|m| (format!("{name}[{i}]"), m))?;
            }
            let test = if name == "in" { Test::In(list.clone()) } else { Test::NotIn(list.clone()) };
            tests.push((name.into(), test));
        }
        let mut tests = tests.into_iter();
        match (tests.next(), tests.next()) {
            (Some((_, test)), None) => Ok(BodyCondition { pointer: rule.body.clone(), test }),
            (None, _) => Err((
                "body".into(),
                "expected exactly one test next to `body`: gt, gte, lt, lte, eq, in or not_in".into(),
            )),
            (Some((a, _)), Some((b, _))) => Err((
                b.clone(),
                format!("one test per condition: `{a}` and `{b}` are both given; write two conditions"),
            )),
        }
    }

    /// Why this condition is met by `body`, or `None` when it is not.
    fn met(&self, body: &Value) -> Option<String> {
        let at =
            || if self.pointer.is_empty() { "the body".to_owned() } else { format!("body {}", self.pointer) };
        let Some(value) = body.pointer(&self.pointer) else {
            return Some(format!("{} is missing", at()));
        };
        let number = |limit: f64, holds: fn(f64, f64) -> bool, words: &str| match value.as_f64() {
            None => Some(format!("{} is not a number", at())),
            Some(n) if holds(n, limit) => Some(format!("{} is {n}, {words} {limit}", at())),
            Some(_) => None,
        };
        match &self.test {
            Test::Gt(l) => number(*l, |n, l| n > l, "more than"),
            Test::Gte(l) => number(*l, |n, l| n >= l, "at least"),
            Test::Lt(l) => number(*l, |n, l| n < l, "less than"),
            Test::Lte(l) => number(*l, |n, l| n <= l, "at most"),
            Test::Eq(want) => same(value, want).then(|| format!("{} is {}", at(), shown(value))),
            Test::In(list) => list
                .iter()
                .any(|w| same(value, w))
                .then(|| format!("{} is {}, one of the listed", at(), shown(value))),
            Test::NotIn(list) => (!list.iter().any(|w| same(value, w)))
                .then(|| format!("{} is {}, none of the listed", at(), shown(value))),
        }
    }
}

/// `in`/`not_in`/`eq` take strings, numbers, booleans and null.
fn scalar(v: &Value) -> Result<(), String> {
    match v {
        Value::Array(_) | Value::Object(_) => Err("expected a string, number, boolean or null".into()),
        _ => Ok(()),
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn shown(v: &Value) -> String {
    clip(&v.to_string())
}

/// The first of `conditions` that `body` meets, as a sentence for the
/// decision; `None` when none is (or there are none). `hashed`: the host gave
/// the body's SHA-256 but not its text (too large or not UTF-8 to pass on).
pub fn first_met(conditions: &[BodyCondition], body: Option<&str>, hashed: bool) -> Option<String> {
    if conditions.is_empty() {
        return None;
    }
    let Some(body) = body else {
        return Some(if hashed {
            "the route has approval conditions on the body and the host gave only the body's SHA-256, \
             not its text (larger than 64 KiB, or not UTF-8)"
                .into()
        } else {
            "the route has approval conditions on the body and the request body was not given".into()
        });
    };
    if body.len() > MAX_BODY_BYTES {
        return Some(format!("the body is {} bytes, more than the {MAX_BODY_BYTES} read", body.len()));
    }
    let value =
        match crate::json::parse_with_limits(body.as_bytes(), MAX_BODY_JSON_DEPTH, MAX_BODY_JSON_MEMBERS) {
            Ok(v) => v,
            Err(e) => return Some(format!("the body is not JSON agentguard reads: {}", clip(&e))),
        };
    conditions.iter().find_map(|c| c.met(&value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn rule(json: Value) -> Result<BodyCondition, (String, String)> {
        BodyCondition::new(&serde_json::from_value(json).unwrap())
    }
    fn met(rules: &[Value], body: Option<&str>) -> Option<String> {
        let c: Vec<_> = rules.iter().map(|r| rule(r.clone()).unwrap()).collect();
        first_met(&c, body, false)
    }

    #[test]
    fn numbers_compare_and_say_why() {
        let gt = [serde_json::json!({"body": "/amount", "gt": 1000})];
        assert_eq!(met(&gt, Some(r#"{"amount": 1500}"#)).unwrap(), "body /amount is 1500, more than 1000");
        assert_eq!(met(&gt, Some(r#"{"amount": 1000}"#)), None);
        assert_eq!(met(&gt, Some(r#"{"amount": 999.5}"#)), None);
        let gte = [serde_json::json!({"body": "/amount", "gte": 1000})];
        assert!(met(&gte, Some(r#"{"amount": 1000}"#)).is_some());
        let lt = [serde_json::json!({"body": "/n", "lt": 0})];
        assert!(met(&lt, Some(r#"{"n": -1}"#)).is_some());
        assert_eq!(met(&lt, Some(r#"{"n": 0}"#)), None);
        let lte = [serde_json::json!({"body": "/n", "lte": 0})];
        assert!(met(&lte, Some(r#"{"n": 0}"#)).is_some());
    }

    #[test]
    fn lists_and_equality() {
        let not_in = [serde_json::json!({"body": "/currency", "not_in": ["EUR", "USD"]})];
        assert_eq!(met(&not_in, Some(r#"{"currency": "EUR"}"#)), None);
        assert_eq!(
            met(&not_in, Some(r#"{"currency": "BTC"}"#)).unwrap(),
            r#"body /currency is "BTC", none of the listed"#
        );
        let one_of = [serde_json::json!({"body": "/payee/country", "in": ["KP", "IR"]})];
        assert!(met(&one_of, Some(r#"{"payee": {"country": "KP"}}"#)).is_some());
        assert_eq!(met(&one_of, Some(r#"{"payee": {"country": "FR"}}"#)), None);
        let eq = [serde_json::json!({"body": "/items/0/sku", "eq": 7})];
        assert!(met(&eq, Some(r#"{"items": [{"sku": 7.0}]}"#)).is_some(), "numbers by value");
        assert_eq!(met(&eq, Some(r#"{"items": [{"sku": "7"}]}"#)), None, "a string is not the number");
        let flag = [serde_json::json!({"body": "/urgent", "eq": true})];
        assert!(met(&flag, Some(r#"{"urgent": true}"#)).is_some());
        assert_eq!(met(&flag, Some(r#"{"urgent": false}"#)), None);
    }

    #[test]
    fn any_condition_is_enough() {
        let rules = [
            serde_json::json!({"body": "/amount", "gt": 1000}),
            serde_json::json!({"body": "/to", "in": ["x"]}),
        ];
        assert_eq!(met(&rules, Some(r#"{"amount": 5, "to": "y"}"#)), None);
        assert!(met(&rules, Some(r#"{"amount": 5, "to": "x"}"#)).unwrap().contains("/to"));
        assert!(met(&rules, Some(r#"{"amount": 5000, "to": "y"}"#)).unwrap().contains("/amount"));
        assert_eq!(met(&[], None), None, "no conditions: nothing to read");
    }

    #[test]
    fn what_cannot_be_judged_goes_to_a_human() {
        let gt = [serde_json::json!({"body": "/amount", "gt": 1000})];
        assert!(met(&gt, None).unwrap().contains("not given"));
        let c = [rule(gt[0].clone()).unwrap()];
        assert!(first_met(&c, None, true).unwrap().contains("only the body's SHA-256"));
        assert_eq!(met(&gt, Some(r#"{"total": 5}"#)).unwrap(), "body /amount is missing");
        assert_eq!(met(&gt, Some(r#"{"amount": "5"}"#)).unwrap(), "body /amount is not a number");
        assert!(met(&gt, Some("amount=5")).unwrap().contains("not JSON"));
        // Duplicate keys: the origin may read the other one.
        assert!(met(&gt, Some(r#"{"amount": 5, "amount": 5000}"#)).unwrap().contains("duplicate"));
        let big = format!(r#"{{"amount": 5, "pad": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert!(met(&gt, Some(&big)).unwrap().contains("more than the 65536 read"));
        let deep = format!("{}{}", "[".repeat(MAX_BODY_JSON_DEPTH + 2), "]".repeat(MAX_BODY_JSON_DEPTH + 2));
        assert!(met(&gt, Some(&deep)).unwrap().contains("not JSON"));
        let in_list = [serde_json::json!({"body": "/to", "in": ["x"]})];
        assert_eq!(met(&in_list, Some("{}")).unwrap(), "body /to is missing", "missing meets `in` too");
    }

    #[test]
    fn a_rule_has_exactly_one_test() {
        assert_eq!(rule(serde_json::json!({"body": "/a"})).unwrap_err().0, "body");
        let (field, message) = rule(serde_json::json!({"body": "/a", "gt": 1, "lt": 5})).unwrap_err();
        assert_eq!(field, "lt");
        assert!(message.contains("`gt` and `lt`"), "{message}");
        assert_eq!(rule(serde_json::json!({"body": "amount", "gt": 1})).unwrap_err().0, "body");
        assert_eq!(rule(serde_json::json!({"body": "/a", "in": []})).unwrap_err().0, "in");
        assert_eq!(rule(serde_json::json!({"body": "/a", "not_in": [1, [2]]})).unwrap_err().0, "not_in[1]");
        assert_eq!(rule(serde_json::json!({"body": "/a", "eq": {"x": 1}})).unwrap_err().0, "eq");
        assert!(rule(serde_json::json!({"body": "", "eq": "x"})).is_ok(), "the whole body");
        // `"eq": null` reads as no `eq` at all (JSON null is "absent"): `in: [null]` says it.
        assert_eq!(rule(serde_json::json!({"body": "/a", "eq": null})).unwrap_err().0, "body");
        assert!(met(&[serde_json::json!({"body": "/a", "in": [null]})], Some(r#"{"a": null}"#)).is_some());
    }
}
