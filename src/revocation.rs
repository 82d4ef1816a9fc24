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
//!
//! A fetched list may be **signed** (`revocation_list.jwks`): a compact JWS
//! with `typ` `revocation-list+jwt` whose payload is the list plus `iat`.
//! Its age then counts from `iat`, so whoever serves the list (a CDN, a
//! compromised list host, a man in the middle of a plain-`http` cluster)
//! can neither change it nor pass an old list off as current: a list signed
//! before the one in force is refused, and one signed more than
//! `max_stale` ago is too old however recently it was fetched.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::Deserialize;

use crate::jws::{typ_matches, UntrustedJws};
use crate::keys::{Alg, KeySet};
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
        let agent = c.agent_str();
        if self.agents.contains(agent) {
            return Err((ReasonCode::RevokedAgent, format!("agent `{}` is revoked", clip(agent))));
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

/// The `typ` a signed revocation list's JWS header must carry.
pub const SIGNED_LIST_TYP: &str = "revocation-list+jwt";

/// How far in the future a signed list's `iat` may be (the signer's clock
/// running ahead), in seconds.
const SIGNED_LIST_SKEW_SECS: i64 = 60;

/// The payload of a signed list: the list and when it was signed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedList {
    /// When the list was signed (Unix seconds): its age counts from here.
    iat: i64,
    #[serde(default)]
    jti: Vec<String>,
    #[serde(default)]
    sub: Vec<String>,
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    kid: Vec<String>,
}

/// The policy's `revocation_list`, and when its list was last loaded.
#[derive(Debug)]
pub struct ListSource {
    /// The list's URL.
    pub uri: String,
    /// How often the host fetches it, in seconds.
    pub refresh_secs: i64,
    /// The oldest list decisions may rely on, in seconds.
    pub max_stale_secs: i64,
    /// When the list in force was loaded (Unix ms), or [`NEVER`]; for a
    /// signed list, when it was signed (its `iat`).
    loaded_at_ms: AtomicI64,
    /// The keys that sign the list (`revocation_list.jwks`); `None`: the
    /// list is plain JSON, trusted as the host fetched it.
    signers: Option<KeySet>,
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
        let signers = p.jwks.as_ref().map(|jwks| {
            let (keys, _, found) = KeySet::from_policy(
                Some(jwks),
                None,
                ["jwks", "jwks_uri"],
                "signature verification key",
                "revocation_list",
            );
            problems.extend(found);
            keys
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ListSource {
            uri: p.uri.clone(),
            refresh_secs: p.refresh.as_secs_i64(),
            max_stale_secs: p.max_stale.as_secs_i64(),
            loaded_at_ms: AtomicI64::new(NEVER),
            signers,
        })
    }

    /// Whether the list must be signed (`revocation_list.jwks`).
    pub fn is_signed(&self) -> bool {
        self.signers.is_some()
    }

    /// Reads a fetched document at `now_ms` (Unix ms): the lists, and the
    /// time their age counts from — `now_ms` for a plain list, the `iat` of
    /// a signed one, which must verify with a key of `revocation_list.jwks`,
    /// be no older than the list in force and no older than `max_stale`.
    pub fn read(&self, text: &str, now_ms: i64) -> Result<(RevocationLists, i64), String> {
        let Some(signers) = &self.signers else {
            return Ok((self.parse(text)?, now_ms));
        };
        let fail = |what: String| format!("the revocation list from `{}`: {what}", self.uri);
        if text.len() > MAX_REVOCATION_LIST_BYTES {
            return Err(self.too_large(text.len()));
        }
        let jws = UntrustedJws::parse_document(text.trim_matches([' ', '\t', '\n', '\r'])).map_err(|e| {
            fail(format!(
                "expected a signed list (a compact JWS, `revocation_list.jwks` is set): {}",
                e.message()
            ))
        })?;
        match jws.typ() {
            Ok(Some(typ)) if typ_matches(typ, SIGNED_LIST_TYP) => {}
            Ok(found) => {
                return Err(fail(format!(
                    "expected the JWS header `typ` `{SIGNED_LIST_TYP}`, found {}",
                    found.map_or("none".to_owned(), |t| format!("`{}`", crate::keys::clip(t)))
                )))
            }
            Err(e) => return Err(fail(e.message())),
        }
        let verified =
            jws.verify(signers, &Alg::ALL).map_err(|e| fail(format!("signature: {}", e.message())))?;
        let payload =
            std::str::from_utf8(&verified.payload).map_err(|_| fail("payload: not UTF-8".into()))?;
        let signed: SignedList = crate::json::from_str_with_path(payload)
            .map_err(|e| fail(format!("payload {}: {}", e.path, e.message)))?;
        let signed_at_ms = signed.iat.saturating_mul(1000);
        if signed_at_ms > now_ms.saturating_add(SIGNED_LIST_SKEW_SECS * 1000) {
            return Err(fail(format!(
                "signed {} s in the future (`iat` {})",
                signed_at_ms.saturating_sub(now_ms).div_euclid(1000),
                signed.iat
            )));
        }
        if let Some(in_force) = self.loaded_at_ms().filter(|t| signed_at_ms < *t) {
            return Err(fail(format!(
                "signed at {} (`iat`), before the list in force (signed at {}): a signed list never goes back",
                signed.iat,
                in_force.div_euclid(1000)
            )));
        }
        let age_secs = now_ms.saturating_sub(signed_at_ms).div_euclid(1000);
        if age_secs > self.max_stale_secs {
            return Err(fail(format!(
                "signed {age_secs} s ago, longer than `revocation_list.max_stale` ({} s) allows: \
                 the signer must sign a new list at least that often",
                self.max_stale_secs
            )));
        }
        let lists =
            RevocationLists { jti: signed.jti, sub: signed.sub, agents: signed.agents, kid: signed.kid };
        Ok((lists, signed_at_ms))
    }

    fn too_large(&self, bytes: usize) -> String {
        format!(
            "the revocation list from `{}` has {bytes} bytes, more than the {MAX_REVOCATION_LIST_BYTES} allowed",
            self.uri
        )
    }

    /// Reads a fetched list: a JSON document shaped like the policy's
    /// `revoked` (`{"jti": [...], "sub": [...], "agents": [...], "kid": [...]}`).
    /// Errors name the JSON path.
    pub fn parse(&self, text: &str) -> Result<RevocationLists, String> {
        if text.len() > MAX_REVOCATION_LIST_BYTES {
            return Err(self.too_large(text.len()));
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

    /// Records that a list was loaded at `now_ms` (for a signed list: the
    /// time it was signed, from [`ListSource::read`]).
    pub fn loaded(&self, now_ms: i64) {
        self.loaded_at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The host confirmed the list in force is still current (a `304`): a
    /// plain list's age restarts at `now_ms` (never going back); a signed
    /// one's stays counted from its `iat`, since only the signer can make a
    /// list fresher. `false` when no list was loaded.
    pub fn confirmed(&self, now_ms: i64) -> bool {
        let Some(loaded) = self.loaded_at_ms() else { return false };
        if self.signers.is_none() {
            self.loaded(loaded.max(now_ms));
        }
        true
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
            let how = if self.signers.is_some() { "signed" } else { "loaded" };
            return Err((
                ReasonCode::StateUnavailable,
                format!(
                    "the revocation list from `{}` was {how} {age_secs} s ago, longer than \
                     `revocation_list.max_stale` ({} s) allows",
                    self.uri, self.max_stale_secs
                ),
            ));
        }
        Ok(())
    }
}
