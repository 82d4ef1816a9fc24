//! Stage 8: revocation lists — token ids, subjects, agents and signing keys.
//!
//! A hit is a `revoked` decision. The lists start from the policy and can be
//! replaced at run time ([`crate::Engine::set_revocations`]) without
//! recompiling the policy.

use std::collections::HashSet;

use crate::policy::RevocationLists;
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
