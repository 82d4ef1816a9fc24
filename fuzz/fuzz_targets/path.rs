//! Path normalisation and matching: `request::normalise_target`, then
//! `route::PathPattern::new` / `matches`, checked against a deliberately
//! naive reference matcher.
//!
//! Input: `pattern` NUL `target` (without a NUL, the whole input is the
//! target and the pattern is `/**`).
//!
//! Invariants: no panic; a normalised path starts with `/`, has no empty,
//! `.` or `..` segment, no `?`, `#`, `\`, control or non-ASCII byte, no
//! encoded `/`, `\` or unreserved character, and normalising it again gives
//! it back unchanged (so no second decoding pass can change which route
//! matches); the query is the text after the first `?`; the compiled
//! pattern agrees with the reference on every normalised path, and its
//! captures are the path's segments.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::request::normalise_target;
use agentguard::route::PathPattern;
use libfuzzer_sys::fuzz_target;

/// The naive reference: segment lists compared one by one, recursively.
fn reference(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let pat: Vec<&str> = pattern.strip_prefix('/')?.split('/').collect();
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    fn go(pat: &[&str], segs: &[&str], caps: &mut Vec<(String, String)>) -> bool {
        match (pat.first(), segs.first()) {
            // `**` last: any number of segments, including none.
            (Some(&"**"), _) if pat.len() == 1 => true,
            (None, None) => true,
            (None, Some(_)) | (Some(_), None) => false,
            (Some(p), Some(s)) => {
                let ok = if *p == "*" {
                    !s.is_empty()
                } else if p.starts_with('{') && p.ends_with('}') && p.len() >= 2 {
                    if s.is_empty() {
                        false
                    } else {
                        caps.push((p[1..p.len() - 1].to_owned(), (*s).to_owned()));
                        true
                    }
                } else {
                    p == s
                };
                ok && go(&pat[1..], &segs[1..], caps)
            }
        }
    }
    let mut caps = Vec::new();
    go(&pat, &segs, &mut caps).then_some(caps)
}

fn check_normalised(target: &str, path: &str, query: Option<&str>) {
    assert!(path.starts_with('/'), "{path:?}");
    let body = &path[1..];
    let segments: Vec<&str> = body.split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!s.is_empty() || last, "empty segment in {path:?} from {target:?}");
        assert!(*s != "." && *s != "..", "dot segment in {path:?} from {target:?}");
    }
    assert!(
        path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'?' && b != b'#' && b != b'\\'),
        "bad byte in {path:?} from {target:?}"
    );
    let upper = path.to_ascii_uppercase();
    for enc in ["%2F", "%5C", "%2E", "%7E", "%2D", "%5F"] {
        assert!(!upper.contains(enc), "{enc} left in {path:?} from {target:?}");
    }
    // Idempotent: a second pass (another proxy, the upstream) sees the same path.
    let (again, q2) = normalise_target(path).unwrap_or_else(|e| panic!("{path:?} from {target:?}: {e}"));
    assert_eq!(again, path, "normalising {path:?} again changed it (from {target:?})");
    assert!(q2.is_none());
    assert_eq!(query, target.split_once('?').map(|(_, q)| q));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, target) = text.split_once('\0').unwrap_or(("/**", text));
    let normalised = normalise_target(target);
    if let Ok((path, query)) = &normalised {
        check_normalised(target, path, query.as_deref());
    }
    let Ok(compiled) = PathPattern::new(pattern) else { return };
    // The route compiles with the same pattern.
    assert!(agentguard::route::Route::new(0, "r", &["GET".into()], pattern, vec![], agentguard::policy::Risk::Low).is_ok());
    let mut paths = vec![];
    if let Ok((path, _)) = normalised {
        paths.push(path);
    }
    // The pattern's own text, with the wildcards filled in, is a path it should match.
    let filled: String = pattern
        .strip_prefix('/')
        .unwrap_or("")
        .split('/')
        .map(|s| if s == "*" || s == "**" || (s.starts_with('{') && s.ends_with('}')) { "x" } else { s })
        .fold(String::new(), |acc, s| acc + "/" + s);
    if let Ok((path, _)) = normalise_target(&filled) {
        paths.push(path);
    }
    for path in paths {
        let got = compiled.matches(&path);
        let want = reference(pattern, &path);
        assert_eq!(got, want, "pattern {pattern:?} path {path:?}");
        if let Some(caps) = got {
            let segments: Vec<&str> = path.split('/').collect();
            for (_, value) in caps {
                assert!(segments.contains(&value.as_str()), "capture {value:?} is not a segment of {path:?}");
            }
        }
    }
});
