//! Identifier patterns for actors and subjects:
//! `spiffe://prod.example.com/agents/*`.
//!
//! `*` matches any run of characters without `/`; `**` matches any run of
//! characters including `/`. Everything else is literal. Patterns are compiled
//! once with the policy; matching simulates the pattern as a small automaton,
//! so it costs O(pattern × text) whatever the text (no backtracking blow-up on
//! attacker-chosen identifiers).

/// A compiled identifier pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The literal text before the first star and after the last one: most
    /// patterns (`spiffe://…/agents/*`, exact names) are decided by comparing
    /// these, without running the automaton.
    prefix: String,
    suffix: String,
    /// The tokens between `prefix` and `suffix` (empty when there is no star).
    middle: Vec<Tok>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Char(char),
    /// `*`: anything but `/`.
    Star,
    /// `**`: anything.
    DoubleStar,
}

impl Glob {
    /// Compiles a pattern. Three or more stars in a row are an error.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("expected a non-empty pattern".into());
        }
        if pattern.contains("***") {
            return Err(format!("pattern `{pattern}` has `***`; use `*` (one segment) or `**` (any)"));
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Tok::DoubleStar
                }
                '*' => Tok::Star,
                c => Tok::Char(c),
            });
        }
        let is_star = |t: &Tok| matches!(t, Tok::Star | Tok::DoubleStar);
        let literal = |toks: &[Tok]| -> String {
            toks.iter().filter_map(|t| if let Tok::Char(c) = t { Some(*c) } else { None }).collect()
        };
        let (prefix, suffix, middle) =
            match (tokens.iter().position(is_star), tokens.iter().rposition(is_star)) {
                (Some(first), Some(last)) => (
                    literal(tokens.get(..first).unwrap_or_default()),
                    literal(tokens.get(last + 1..).unwrap_or_default()),
                    tokens.get(first..=last).unwrap_or_default().to_vec(),
                ),
                _ => (pattern.to_owned(), String::new(), Vec::new()),
            };
        Ok(Glob { pattern: pattern.to_owned(), prefix, suffix, middle })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        if self.middle.is_empty() {
            return text == self.prefix;
        }
        // The literal ends must match exactly and must not overlap.
        if text.len() < self.prefix.len() + self.suffix.len()
            || !text.starts_with(&self.prefix)
            || !text.ends_with(&self.suffix)
        {
            return false;
        }
        // Both ends are whole strings, so these offsets are char boundaries.
        let Some(middle) = text.get(self.prefix.len()..text.len() - self.suffix.len()) else {
            return false;
        };
        match self.middle.as_slice() {
            [Tok::Star] => !middle.contains('/'),
            [Tok::DoubleStar] => true,
            _ => self.run(middle),
        }
    }

    /// The automaton over the middle tokens.
    fn run(&self, text: &str) -> bool {
        let n = self.middle.len();
        // active[i]: the first i tokens can match the text read so far.
        let mut active = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        if let Some(first) = active.first_mut() {
            *first = true;
        }
        self.close(&mut active);
        for c in text.chars() {
            next.iter_mut().for_each(|s| *s = false);
            for (i, tok) in self.middle.iter().enumerate() {
                if !active.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let target = match tok {
                    Tok::Char(t) if *t == c => i + 1,
                    Tok::Star if c != '/' => i,
                    Tok::DoubleStar => i,
                    _ => continue,
                };
                if let Some(slot) = next.get_mut(target) {
                    *slot = true;
                }
            }
            self.close(&mut next);
            std::mem::swap(&mut active, &mut next);
            if !active.iter().any(|s| *s) {
                return false;
            }
        }
        active.last().copied().unwrap_or(false)
    }

    /// Stars match the empty string: from an active state before a star, the
    /// state after it is active too.
    fn close(&self, states: &mut [bool]) {
        for (i, tok) in self.middle.iter().enumerate() {
            if matches!(tok, Tok::Star | Tok::DoubleStar) && states.get(i).copied().unwrap_or(false) {
                if let Some(slot) = states.get_mut(i + 1) {
                    *slot = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The naive reference: translate to a regex.
    fn reference(pattern: &str, text: &str) -> bool {
        let mut re = String::from("^");
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '*' {
                if chars.peek() == Some(&'*') {
                    chars.next();
                    re.push_str(".*");
                } else {
                    re.push_str("[^/]*");
                }
            } else {
                re.push_str(&regex::escape(&c.to_string()));
            }
        }
        re.push('$');
        regex::Regex::new(&re).unwrap().is_match(text)
    }

    #[test]
    fn spiffe_examples() {
        let g = Glob::new("spiffe://prod.example.com/agents/*").unwrap();
        assert!(g.matches("spiffe://prod.example.com/agents/crm-bot"));
        assert!(!g.matches("spiffe://prod.example.com/agents/crm/bot"));
        assert!(!g.matches("spiffe://prod.example.com/agentsX/bot"));
        let g = Glob::new("spiffe://prod.example.com/**").unwrap();
        assert!(g.matches("spiffe://prod.example.com/agents/crm/bot"));
        assert!(!g.matches("spiffe://evil.example.com/agents"));
        // The literal ends may not overlap; non-ASCII text splits on char boundaries.
        let g = Glob::new("ab*ba").unwrap();
        assert!(!g.matches("aba"));
        assert!(g.matches("abba"));
        assert!(Glob::new("é*é").unwrap().matches("éxé"));
        assert!(!Glob::new("é*é").unwrap().matches("é"));
        assert!(Glob::new("exact").unwrap().matches("exact"));
        assert!(!Glob::new("exact").unwrap().matches("exact/"));
        assert!(Glob::new("a*b**c").unwrap().matches("axb/y/c"));
        assert!(!Glob::new("a*b**c").unwrap().matches("a/b/c"));
        assert!(Glob::new("a***").is_err());
        assert!(Glob::new("").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn agrees_with_the_regex_reference(
            pattern in "[ab/*é]{1,8}",
            text in "[ab/é]{0,10}",
        ) {
            prop_assume!(!pattern.contains("***"));
            let g = Glob::new(&pattern).unwrap();
            prop_assert_eq!(g.matches(&text), reference(&pattern, &text), "pattern {} text {}", pattern, text);
        }
    }
}
