//! Stage 2: route matching — method and path pattern → what the route requires.
//!
//! Patterns are split into segments once, at policy load: a literal segment,
//! `*` (exactly one non-empty segment), `{name}` (one non-empty segment,
//! captured), and `**` (any number of segments, last only). Routes are tried
//! in policy order and the first match wins, like firewall rules.

use crate::policy::Risk;

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's id from the policy.
    pub id: String,
    /// Index in the policy's `routes`.
    pub index: usize,
    methods: Methods,
    pattern: PathPattern,
    /// Scopes the token must carry.
    pub scopes: Vec<String>,
    /// Risk level.
    pub risk: Risk,
    /// Source networks for this route, on top of the policy's.
    pub network: Option<crate::network::NetworkList>,
    /// RFC 9396 rule for this route.
    pub authorization_details: Option<crate::policy::AuthorizationDetailsRule>,
    /// Body conditions that send a request on this route to the approval gate.
    pub approval_when: Vec<crate::approval_rules::BodyCondition>,
}

#[derive(Debug, Clone)]
enum Methods {
    Any,
    List(Vec<String>),
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Ends with `/**`.
    rest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Star,
    Param(String),
}

/// A route that matched, with its `{param}` captures.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    /// The route.
    pub route: &'a Route,
    /// `{name}` captures, in pattern order.
    pub params: Vec<(String, String)>,
}

impl Route {
    /// Compiles a route; errors name the field (`methods[1]`, `path`) relative to the route.
    pub fn new(
        index: usize,
        id: &str,
        methods: &[String],
        path: &str,
        scopes: Vec<String>,
        risk: Risk,
    ) -> Result<Route, (String, String)> {
        if id.is_empty() {
            return Err(("id".into(), "expected a non-empty route id".into()));
        }
        if methods.is_empty() {
            return Err(("methods".into(), "expected at least one method, or `[\"*\"]` for any".into()));
        }
        let methods = if methods.iter().any(|m| m == "*") {
            if methods.len() > 1 {
                return Err(("methods".into(), "`*` already means every method; list nothing else".into()));
            }
            Methods::Any
        } else {
            for (i, m) in methods.iter().enumerate() {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err((
                        format!("methods[{i}]"),
                        format!("expected an upper-case HTTP method like `GET`, found `{m}`"),
                    ));
                }
            }
            Methods::List(methods.to_vec())
        };
        let pattern = PathPattern::new(path).map_err(|m| ("path".to_owned(), m))?;
        for (i, s) in scopes.iter().enumerate() {
            if s.is_empty() || s.contains(' ') {
                return Err((
                    format!("scopes[{i}]"),
                    format!("expected a scope without spaces, found `{s}`"),
                ));
            }
        }
        Ok(Route {
            id: id.to_owned(),
            index,
            methods,
            pattern,
            scopes,
            risk,
            network: None,
            authorization_details: None,
            approval_when: Vec::new(),
        })
    }

    /// Matches a normalised method and path.
    pub fn matches(&self, method: &str, path: &str) -> Option<RouteMatch<'_>> {
        let method_ok = match &self.methods {
            Methods::Any => true,
            Methods::List(list) => list.iter().any(|m| m == method),
        };
        if !method_ok {
            return None;
        }
        let params = self.pattern.matches(path)?;
        Some(RouteMatch { route: self, params })
    }
}

impl PathPattern {
    /// Compiles a pattern like `/v1/contacts/{id}` or `/v1/files/**`.
    pub fn new(pattern: &str) -> Result<PathPattern, String> {
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(format!("expected a path pattern starting with `/`, found `{pattern}`"));
        };
        let raw: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::new();
        let mut rest = false;
        let mut names: Vec<&str> = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            let last = i + 1 == raw.len();
            match *seg {
                "**" if last => rest = true,
                "**" => return Err("`**` may only be the last segment".into()),
                "*" => segments.push(Segment::Star),
                "." | ".." => {
                    return Err(format!("`{seg}` segments never match: paths are normalised before matching"))
                }
                s if s.starts_with('{') && s.ends_with('}') => {
                    let name = s.get(1..s.len() - 1).unwrap_or("");
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(format!("`{s}`: a parameter name is letters, digits and `_`"));
                    }
                    if names.contains(&name) {
                        return Err(format!("parameter `{name}` appears twice"));
                    }
                    names.push(name);
                    segments.push(Segment::Param(name.to_owned()));
                }
                s if s.is_empty() && !last => {
                    return Err(
                        "empty segment (`//`) never matches: paths are normalised before matching".into()
                    )
                }
                s => {
                    if s.contains(['*', '{', '}', '?', '#', '\\']) {
                        return Err(format!("segment `{s}`: `*` and `{{…}}` must be a whole segment; `?`, `#` and `\\` are not allowed"));
                    }
                    let segment = format!("/{s}");
                    let (normal, _) = crate::request::normalise_target(&segment)
                        .map_err(|e| format!("segment `{s}`: {e}"))?;
                    if normal != segment {
                        return Err(format!(
                            "segment `{s}` never matches: requests are normalised to `{}`",
                            normal.trim_start_matches('/')
                        ));
                    }
                    segments.push(Segment::Literal(s.to_owned()));
                }
            }
        }
        Ok(PathPattern { segments, rest })
    }

    /// Matches a normalised path; returns the captures.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut params = Vec::new();
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(lit) if lit == part => {}
                Segment::Star if !part.is_empty() => {}
                Segment::Param(name) if !part.is_empty() => params.push((name.clone(), part.to_owned())),
                _ => return None,
            }
        }
        if self.rest || parts.next().is_none() {
            Some(params)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The deliberately naive reference: a regex per pattern.
    fn reference(pattern: &str, path: &str) -> bool {
        let mut re = String::from("^");
        let body = pattern.strip_prefix('/').unwrap();
        let segs: Vec<&str> = body.split('/').collect();
        for (i, s) in segs.iter().enumerate() {
            if *s == "**" && i + 1 == segs.len() {
                re.push_str("(/.*)?");
                continue;
            }
            re.push('/');
            if *s == "*" || (s.starts_with('{') && s.ends_with('}')) {
                re.push_str("[^/]+");
            } else {
                re.push_str(&regex::escape(s));
            }
        }
        re.push('$');
        regex::Regex::new(&re).unwrap().is_match(path)
    }

    #[test]
    fn captures_params() {
        let p = PathPattern::new("/v1/contacts/{id}/notes/{note}").unwrap();
        let caps = p.matches("/v1/contacts/42/notes/7").unwrap();
        assert_eq!(caps, vec![("id".into(), "42".into()), ("note".into(), "7".into())]);
        assert!(p.matches("/v1/contacts/42/notes").is_none());
        assert!(p.matches("/v1/contacts/42/notes/7/x").is_none());
    }

    #[test]
    fn double_star_covers_zero_or_more_segments() {
        let p = PathPattern::new("/v1/contacts/**").unwrap();
        assert!(p.matches("/v1/contacts").is_some());
        assert!(p.matches("/v1/contacts/").is_some());
        assert!(p.matches("/v1/contacts/a/b/c").is_some());
        assert!(p.matches("/v1/contactsX").is_none());
        assert!(p.matches("/v1").is_none());
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, want) in [
            ("v1", "starting with `/`"),
            ("/a/**/b", "last segment"),
            ("/a/../b", "never match"),
            ("/a//b", "empty segment"),
            ("/a*", "whole segment"),
            ("/{a}/{a}", "twice"),
            ("/{a-b}", "parameter name"),
            ("/%7Euser", "normalised to `~user`"),
        ] {
            let err = PathPattern::new(p).unwrap_err();
            assert!(err.contains(want), "{p}: {err}");
        }
    }

    #[test]
    fn methods_are_checked() {
        assert!(Route::new(0, "r", &["get".into()], "/", vec![], Risk::Low).is_err());
        assert!(Route::new(0, "r", &["*".into(), "GET".into()], "/", vec![], Risk::Low).is_err());
        let r = Route::new(0, "r", &["GET".into(), "HEAD".into()], "/x", vec![], Risk::Low).unwrap();
        assert!(r.matches("HEAD", "/x").is_some());
        assert!(r.matches("POST", "/x").is_none());
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        let seg = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("*".to_string()),
            Just("{p}".to_string()),
            Just("{q}".to_string())
        ];
        (proptest::collection::vec(seg, 0..4), any::<bool>()).prop_map(|(segs, rest)| {
            // Parameter names must be unique: rename in order.
            let mut n = 0;
            let mut out = String::new();
            for s in segs {
                out.push('/');
                if s.starts_with('{') {
                    n += 1;
                    out.push_str(&format!("{{p{n}}}"));
                } else {
                    out.push_str(&s);
                }
            }
            if rest || out.is_empty() {
                out.push_str("/**");
            }
            out
        })
    }

    proptest! {
        #[test]
        fn agrees_with_the_naive_reference(pattern in pattern_strategy(), path in "(/[ab]{0,2}){1,5}") {
            let compiled = PathPattern::new(&pattern).unwrap();
            prop_assert_eq!(compiled.matches(&path).is_some(), reference(&pattern, &path), "pattern {} path {}", pattern, path);
        }
    }
}
