//! Stage 6: delegation — the RFC 8693 `act` chain.
//!
//! The token's `sub` is the principal (often a human) the agent acts for; the
//! outermost `act.sub` is the agent acting now, and nested `act`s are earlier
//! actors. The policy limits the chain's depth, which agents may act, and
//! (optionally) whose behalf they may act on.

use crate::glob::Glob;
use crate::policy::DelegationPolicy;
use crate::reason::ReasonCode;
use crate::token::{Claims, TokenError};

/// Compiled delegation rules.
#[derive(Debug, Clone)]
pub struct Delegation {
    max_depth: usize,
    actors: Option<Vec<Glob>>,
    subjects: Option<Vec<Glob>>,
    require_actor: bool,
}

impl Default for Delegation {
    /// Without a `delegation` section: one level of `act`, any actor, any subject.
    fn default() -> Self {
        Delegation { max_depth: 1, actors: None, subjects: None, require_actor: false }
    }
}

impl Delegation {
    /// Compiles the policy section; errors are `(field, message)`.
    pub fn new(p: &DelegationPolicy) -> Result<Delegation, (String, String)> {
        if p.max_depth > crate::limits::MAX_ACT_DEPTH {
            return Err((
                "max_depth".into(),
                format!("expected at most {}, found {}", crate::limits::MAX_ACT_DEPTH, p.max_depth),
            ));
        }
        let compile =
            |field: &str, list: &Option<Vec<String>>| -> Result<Option<Vec<Glob>>, (String, String)> {
                list.as_ref()
                    .map(|l| {
                        l.iter()
                            .enumerate()
                            .map(|(i, pattern)| Glob::new(pattern).map_err(|e| (format!("{field}[{i}]"), e)))
                            .collect()
                    })
                    .transpose()
            };
        Ok(Delegation {
            max_depth: p.max_depth,
            actors: compile("actors", &p.actors)?,
            subjects: compile("subjects", &p.subjects)?,
            require_actor: p.require_actor,
        })
    }

    /// Checks the chain; `Ok` carries a trace detail.
    pub fn check(&self, claims: &Claims) -> Result<(), TokenError> {
        if let (Some(subjects), Some(sub)) = (&self.subjects, &claims.sub) {
            if !subjects.iter().any(|g| g.matches(sub)) {
                return Err((
                    ReasonCode::DelegationSubjectNotAllowed,
                    format!("subject `{}` is not one agents may act for", crate::keys::clip(sub)),
                ));
            }
        } else if self.subjects.is_some() {
            return Err((ReasonCode::DelegationSubjectNotAllowed, "token has no `sub` to check".into()));
        }
        let Some(current) = claims.actors.first() else {
            if self.require_actor {
                return Err((
                    ReasonCode::DelegationRequired,
                    "token has no `act` claim: agents must present a delegated token".into(),
                ));
            }
            return Ok(());
        };
        if claims.actors.len() > self.max_depth {
            return Err((
                ReasonCode::DelegationTooDeep,
                format!(
                    "`act` chain has {} actors, more than the allowed {}",
                    claims.actors.len(),
                    self.max_depth
                ),
            ));
        }
        if let Some(actors) = &self.actors {
            if !actors.iter().any(|g| g.matches(current)) {
                return Err((
                    ReasonCode::DelegationActorNotAllowed,
                    format!("agent `{}` is not an allowed actor", crate::keys::clip(current)),
                ));
            }
        }
        Ok(())
    }

    /// What a passed [`Delegation::check`] found, for the trace.
    pub fn describe(claims: &Claims) -> String {
        match claims.actors.first() {
            None => "no delegation".into(),
            Some(current) => format!(
                "`{}` acts for `{}` ({} actor(s))",
                crate::keys::clip(current),
                claims.sub.as_deref().map(crate::keys::clip).unwrap_or_default(),
                claims.actors.len()
            ),
        }
    }
}
