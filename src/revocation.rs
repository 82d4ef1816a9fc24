//! Stage 8: revocation lists — token ids, subjects, agents and signing keys.
//!
//! A hit is a `revoked` decision. The lists in force are the union of three
//! sources, each replaceable at run time without recompiling the policy:
//!
//! - the policy's `revoked` lists (or what [`crate::Engine::set_revocations`]
//!   put in their place);
//! - entries pushed at run time ([`crate::Engine::set_pushed_revocations`]:
//!   Envoy's operator endpoint);
//! - the list the host fetches from the policy's `revocation_list.uri`
//!   ([`crate::Engine::set_listed_revocations`]). With one configured, the
//!   engine also refuses to decide on a token while it has no list younger
//!   than `max_stale` (`state_unavailable`): a revocation must not be lost
//!   because the list host is down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::limits::MAX_REVOCATION_LIST_BYTES;
use crate::policy::{RevocationListPolicy, RevocationLists};
use crate::reason::ReasonCode;
use crate::token::{TokenError, VerifiedToken};

/// Compiled revocation lists.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    jti: HashSet<String>,
    sub: HashSet<String>,
    agents: HashSet<String>,
    kid: HashSet<String>,
}

impl Revocations {
    /// Compiles the lists.
    pub fn new(lists: &RevocationLists) -> Revocations {
        let set = |l: &Vec<String>| l.iter().cloned().collect();
        Revocations {
            jti: set(&lists.jti),
            sub: set(&lists.sub),
            agents: set(&lists.agents),
            kid: set(&lists.kid),
        }
    }

    /// Number of entries over all lists.
    pub fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.agents.len() + self.kid.len()
    }

    /// Whether all lists are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a verified token.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), TokenError> {
        let c = &token.claims;
        let clip = crate::keys::clip;
        if let Some(jti) = c.jti.as_ref().filter(|j| self.jti.contains(*j)) {
            return Err((ReasonCode::RevokedToken, format!("token `{}` is revoked", clip(jti))));
        }
        if let Some(sub) = c.sub.as_ref().filter(|s| self.sub.contains(*s)) {
            return Err((ReasonCode::RevokedSubject, format!("subject `{}` is revoked", clip(sub))));
        }
        let agent = c.agent();
        if self.agents.contains(&agent) {
            return Err((ReasonCode::RevokedAgent, format!("agent `{}` is revoked", clip(&agent))));
        }
        if let Some(actor) = c.actors.iter().find(|a| self.agents.contains(*a)) {
            return Err((
                ReasonCode::RevokedAgent,
                format!("agent `{}` in the `act` chain is revoked", clip(actor)),
            ));
        }
        if let Some(kid) = token.kid.as_ref().filter(|k| self.kid.contains(*k)) {
            return Err((ReasonCode::RevokedKey, format!("signing key `{}` is revoked", clip(kid))));
        }
        Ok(())
    }
}

/// The three sources of the lists in force (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The policy's `revoked`, or their replacement.
    pub base: RevocationLists,
    /// Pushed at run time.
    pub pushed: RevocationLists,
    /// Fetched from `revocation_list.uri`.
    pub listed: RevocationLists,
}

impl Sources {
    /// The lists in force: every source's entries.
    pub fn compile(&self) -> Revocations {
        let mut lists = self.base.clone();
        lists.extend(&self.pushed);
        lists.extend(&self.listed);
        Revocations::new(&lists)
    }
}

/// Sentinel for "no list loaded yet".
const NEVER: i64 = i64::MIN;

/// The policy's `revocation_list`, and when its list was last loaded.
#[derive(Debug)]
pub struct ListSource {
    /// The list's URL.
    pub uri: String,
    /// How often the host fetches it, in seconds.
    pub refresh_secs: i64,
    /// The oldest list decisions may rely on, in seconds.
    pub max_stale_secs: i64,
    /// When the list in force was loaded (Unix ms), or [`NEVER`].
    loaded_at_ms: AtomicI64,
}

impl ListSource {
    /// Validates the policy's `revocation_list`; problems as `(path, message)`.
    pub fn from_policy(p: &RevocationListPolicy) -> Result<ListSource, Vec<(String, String)>> {
        let mut problems = Vec::new();
        if let Some(problem) = crate::policy::url_problem(&p.uri) {
            problems.push(("revocation_list.uri".into(), problem));
        }
        if p.refresh.as_secs() == 0 {
            problems
                .push(("revocation_list.refresh".into(), "expected a positive duration like `1m`".into()));
        }
        if p.max_stale.as_secs() < p.refresh.as_secs() {
            problems.push((
                "revocation_list.max_stale".into(),
                format!("expected at least `refresh` (`{}`), found `{}`", p.refresh, p.max_stale),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ListSource {
            uri: p.uri.clone(),
            refresh_secs: p.refresh.as_secs_i64(),
            max_stale_secs: p.max_stale.as_secs_i64(),
            loaded_at_ms: AtomicI64::new(NEVER),
        })
    }

    /// Reads a fetched list: a JSON document shaped like the policy's
    /// `revoked` (`{"jti": [...], "sub": [...], "agents": [...], "kid": [...]}`).
    /// Errors name the JSON path.
    pub fn parse(&self, text: &str) -> Result<RevocationLists, String> {
        if text.len() > MAX_REVOCATION_LIST_BYTES {
            return Err(format!(
                "the revocation list from `{}` has {} bytes, more than the {MAX_REVOCATION_LIST_BYTES} allowed",
                self.uri,
                text.len()
            ));
        }
        // Only an object: serde would also read a struct from a positional
        // array (`[["j1"], [], [], []]`), which no list host means to send.
        if !text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
            return Err(format!(
                "the revocation list from `{}`: .: expected a JSON object like `{{\"jti\": [...], \"agents\": [...]}}`",
                self.uri
            ));
        }
        crate::json::from_str_with_path(text)
            .map_err(|e| format!("the revocation list from `{}`: {}: {}", self.uri, e.path, e.message))
    }

    /// Records that a list was loaded at `now_ms`.
    pub fn loaded(&self, now_ms: i64) {
        self.loaded_at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When the list in force was loaded (Unix ms), if one was.
    pub fn loaded_at_ms(&self) -> Option<i64> {
        Some(self.loaded_at_ms.load(Ordering::Relaxed)).filter(|t| *t != NEVER)
    }

    /// Whether the list in force may be relied on at `now_ms`.
    pub fn check_fresh(&self, now_ms: i64) -> Result<(), (ReasonCode, String)> {
        let Some(loaded) = self.loaded_at_ms() else {
            return Err((
                ReasonCode::StateUnavailable,
                format!("the revocation list from `{}` has not been loaded yet", self.uri),
            ));
        };
        let age_secs = now_ms.saturating_sub(loaded).div_euclid(1000);
        if age_secs > self.max_stale_secs {
            return Err((
                ReasonCode::StateUnavailable,
                format!(
                    "the revocation list from `{}` was loaded {age_secs} s ago, longer than \
                     `revocation_list.max_stale` ({} s) allows",
                    self.uri, self.max_stale_secs
                ),
            ));
        }
        Ok(())
    }
}
