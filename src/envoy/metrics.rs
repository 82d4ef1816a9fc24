//! Envoy stats for the filter, defined through proxy-wasm metrics.
//!
//! Envoy files Wasm-defined stats under its custom namespace; on the admin
//! `/stats` page they appear as `<stat_prefix>.…` (`agentguard.` by default):
//!
//! | stat | type | counts |
//! |---|---|---|
//! | `decision.allow`, `decision.deny`, `decision.approval_required`, `decision.revoked` | counter | decisions by outcome |
//! | `reason.<code>` (one per [`ReasonCode`]) | counter | refusals by reason code |
//! | `token.cache_hit`, `token.cache_miss` | counter | verified tokens, from the cache or freshly checked |
//! | `decision_time_us` | histogram | time to decide, in microseconds |
//! | `jwks.fetch_ok`, `jwks.fetch_failed` | counter | JWKS fetches by result |
//! | `jwks.waited` | counter | requests held until a JWKS fetch finished |
//!
//! A metric that cannot be updated is skipped silently: stats never change a
//! decision.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::decision::{Decision, Outcome};
use crate::reason::ReasonCode;

/// The ids of every metric the filter updates.
#[derive(Debug, Clone)]
pub struct Metrics {
    outcomes: [u32; 4],
    reasons: Vec<(ReasonCode, u32)>,
    cache_hit: u32,
    cache_miss: u32,
    decision_time_us: u32,
    jwks_ok: u32,
    jwks_failed: u32,
    jwks_waited: u32,
}

/// A JWKS-related event worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksEvent {
    /// A fetch gave usable keys.
    FetchOk,
    /// A fetch failed; the previous keys stay.
    FetchFailed,
    /// A request was held until a fetch finished.
    Waited,
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Allow => 0,
        Outcome::Deny => 1,
        Outcome::ApprovalRequired => 2,
        Outcome::Revoked => 3,
    }
}

impl Metrics {
    /// Defines every metric under `prefix`.
    pub fn define(prefix: &str) -> Result<Metrics, String> {
        let define = |kind: MetricType, name: &str| {
            hostcalls::define_metric(kind, &format!("{prefix}.{name}"))
                .map_err(|s| format!("cannot define metric `{prefix}.{name}`: {s:?}"))
        };
        let counter = |name: &str| define(MetricType::Counter, name);
        let mut outcomes = [0; 4];
        for outcome in [Outcome::Allow, Outcome::Deny, Outcome::ApprovalRequired, Outcome::Revoked] {
            let id = counter(&format!("decision.{}", outcome.as_str()))?;
            if let Some(slot) = outcomes.get_mut(outcome_index(outcome)) {
                *slot = id;
            }
        }
        let mut reasons = Vec::with_capacity(ReasonCode::ALL.len());
        for &code in ReasonCode::ALL {
            reasons.push((code, counter(&format!("reason.{}", code.as_str()))?));
        }
        Ok(Metrics {
            outcomes,
            reasons,
            cache_hit: counter("token.cache_hit")?,
            cache_miss: counter("token.cache_miss")?,
            decision_time_us: define(MetricType::Histogram, "decision_time_us")?,
            jwks_ok: counter("jwks.fetch_ok")?,
            jwks_failed: counter("jwks.fetch_failed")?,
            jwks_waited: counter("jwks.waited")?,
        })
    }

    /// Counts one decision that took `micros` to reach.
    pub fn record(&self, decision: &Decision, micros: u64) {
        let bump = |id: u32| {
            let _ = hostcalls::increment_metric(id, 1);
        };
        if let Some(&id) = self.outcomes.get(outcome_index(decision.decision)) {
            bump(id);
        }
        for reason in &decision.reasons {
            if let Some((_, id)) = self.reasons.iter().find(|(code, _)| *code == reason.code) {
                bump(*id);
            }
        }
        if decision.identity.is_some() {
            bump(if decision.event.cache_hit { self.cache_hit } else { self.cache_miss });
        }
        let _ = hostcalls::record_metric(self.decision_time_us, micros);
    }

    /// Counts a JWKS event.
    pub fn jwks(&self, event: JwksEvent) {
        let id = match event {
            JwksEvent::FetchOk => self.jwks_ok,
            JwksEvent::FetchFailed => self.jwks_failed,
            JwksEvent::Waited => self.jwks_waited,
        };
        let _ = hostcalls::increment_metric(id, 1);
    }
}
