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
//! | `decision_time_us` | histogram | time to decide, in microseconds (one decision in eight) |
//! | `jwks.fetch_ok`, `jwks.fetch_not_modified`, `jwks.fetch_failed` | counter | JWKS fetches by result: keys loaded, a `304` confirming the keys in force, failed |
//! | `jwks.waited` | counter | requests held until a JWKS fetch finished |
//! | `revocations.fetch_ok`, `revocations.fetch_not_modified`, `revocations.fetch_failed` | counter | revocation-list fetches by result: list loaded, a `304` confirming the list in force, failed |
//! | `revocations.waited` | counter | requests held until the first revocation list arrived |
//! | `revocations.fresh_for_s` | gauge | with a `revocation_list`: seconds until the list in force is older than `max_stale` (0: none fresh enough, requests with a token get 503); computed every tick, handed to Envoy when it changes |
//! | `token_exchange.issued`, `token_exchange.refused` | counter | with a served `token_service`: token requests (`POST` to its token endpoint) answered with a minted token, or with an error |
//!
//! Decision counters are kept in the VM and handed to Envoy once a second
//! (on the root context's tick), so a request costs no metric host call; the
//! histogram samples one decision in eight. A metric that cannot be updated
//! is skipped silently: stats never change a decision.

use std::cell::{Cell, RefCell};

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use super::config::Fetched;
use crate::decision::{Decision, Outcome};
use crate::reason::ReasonCode;

/// `revocations.fresh_for_s`: seconds until a list loaded (or confirmed by
/// a `304`) at `loaded_at_ms` is older than `max_stale_secs` at `now_ms`;
/// 0 when none is loaded or it is too old.
pub fn fresh_for_secs(loaded_at_ms: Option<i64>, max_stale_secs: i64, now_ms: i64) -> u64 {
    let left = loaded_at_ms
        .map_or(0, |at| max_stale_secs.saturating_sub(now_ms.saturating_sub(at).div_euclid(1000)).max(0));
    u64::try_from(left).unwrap_or(0)
}

/// One decision in this many has its time recorded in the histogram.
pub const TIME_SAMPLE_EVERY: u32 = 8;

/// The ids of every metric the filter updates, and the decision counts not
/// yet handed to Envoy.
#[derive(Debug)]
pub struct Metrics {
    /// Counter ids: outcomes, then reasons (in [`ReasonCode::ALL`] order), then cache hit and miss.
    counters: Vec<u32>,
    /// Counts since the last [`Metrics::flush`], one per entry of `counters`.
    pending: RefCell<Vec<u64>>,
    decision_time_us: u32,
    /// `jwks.fetch_ok`, `fetch_failed`, `waited`, `fetch_not_modified`.
    jwks: [u32; 4],
    /// `revocations.fetch_ok`, `fetch_failed`, `waited`, `fetch_not_modified`.
    revocations: [u32; 4],
    /// `revocations.fresh_for_s`, defined only for a policy with a
    /// `revocation_list`, and the value last handed to Envoy.
    list_fresh_for: Option<(u32, Cell<Option<u64>>)>,
    /// `token_exchange.issued`, `token_exchange.refused`, defined only when
    /// the filter serves a `token_service`.
    exchanges: Option<[u32; 2]>,
    decisions: Cell<u32>,
}

/// A fetch-related event worth counting (JWKS and key directories, or the
/// revocation list: see [`Metrics::fetched`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEvent {
    /// A fetch gave a usable document.
    FetchOk,
    /// A fetch failed; the previous keys (list) stay.
    FetchFailed,
    /// A request was held until a fetch finished.
    Waited,
    /// A `304 Not Modified` to `If-None-Match`: the document in force is current.
    NotModified,
}

const OUTCOMES: [Outcome; 4] = [Outcome::Allow, Outcome::Deny, Outcome::ApprovalRequired, Outcome::Revoked];
const REASONS_AT: usize = OUTCOMES.len();

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Allow => 0,
        Outcome::Deny => 1,
        Outcome::ApprovalRequired => 2,
        Outcome::Revoked => 3,
    }
}

impl Metrics {
    /// Defines every metric under `prefix` (`revocations.fresh_for_s` only
    /// when the policy fetches a revocation list: `with_list`; the
    /// `token_exchange.*` counters only when the filter serves a token
    /// service: `with_token_service`).
    pub fn define(prefix: &str, with_list: bool, with_token_service: bool) -> Result<Metrics, String> {
        let define = |kind: MetricType, name: &str| {
            hostcalls::define_metric(kind, &format!("{prefix}.{name}"))
                .map_err(|s| format!("cannot define metric `{prefix}.{name}`: {s:?}"))
        };
        let counter = |name: &str| define(MetricType::Counter, name);
        let mut counters = Vec::new();
        for outcome in OUTCOMES {
            counters.push(counter(&format!("decision.{}", outcome.as_str()))?);
        }
        for code in ReasonCode::ALL {
            counters.push(counter(&format!("reason.{}", code.as_str()))?);
        }
        counters.push(counter("token.cache_hit")?);
        counters.push(counter("token.cache_miss")?);
        Ok(Metrics {
            pending: RefCell::new(vec![0; counters.len()]),
            counters,
            decision_time_us: define(MetricType::Histogram, "decision_time_us")?,
            jwks: [
                counter("jwks.fetch_ok")?,
                counter("jwks.fetch_failed")?,
                counter("jwks.waited")?,
                counter("jwks.fetch_not_modified")?,
            ],
            revocations: [
                counter("revocations.fetch_ok")?,
                counter("revocations.fetch_failed")?,
                counter("revocations.waited")?,
                counter("revocations.fetch_not_modified")?,
            ],
            list_fresh_for: if with_list {
                Some((define(MetricType::Gauge, "revocations.fresh_for_s")?, Cell::new(None)))
            } else {
                None
            },
            exchanges: if with_token_service {
                Some([counter("token_exchange.issued")?, counter("token_exchange.refused")?])
            } else {
                None
            },
            decisions: Cell::new(0),
        })
    }

    /// Counts a token request (rare next to decisions: straight to Envoy):
    /// answered with a minted token (`issued`) or with an error.
    pub fn exchanged(&self, issued: bool) {
        if let Some([ok, refused]) = self.exchanges {
            let _ = hostcalls::increment_metric(if issued { ok } else { refused }, 1);
        }
    }

    /// Sets `revocations.fresh_for_s`: how long the list in force may still
    /// be relied on, in seconds (0 when none is loaded or it is too old).
    /// Called every tick; the host call is made only when the value changed
    /// (or the last call failed). It counts down every second while a list
    /// ages, but stays still at 0 while no list is fresh enough (no list
    /// host) and while a list is reloaded or confirmed every tick.
    pub fn list_fresh_for(&self, loaded_at_ms: Option<i64>, max_stale_secs: i64, now_ms: i64) {
        let Some((id, last)) = &self.list_fresh_for else { return };
        let left = fresh_for_secs(loaded_at_ms, max_stale_secs, now_ms);
        if last.get() == Some(left) {
            return;
        }
        let recorded = hostcalls::record_metric(*id, left).is_ok();
        last.set(recorded.then_some(left));
    }

    /// Whether the next decision's time should be measured (one in [`TIME_SAMPLE_EVERY`]).
    pub fn time_this_one(&self) -> bool {
        let n = self.decisions.get().wrapping_add(1);
        self.decisions.set(n);
        n.is_multiple_of(TIME_SAMPLE_EVERY)
    }

    /// Counts one decision; `micros` is its time when it was measured.
    /// Counts reach Envoy at the next [`Metrics::flush`].
    pub fn record(&self, decision: &Decision, micros: Option<u64>) {
        let mut pending = self.pending.borrow_mut();
        let mut bump = |index: usize| {
            if let Some(n) = pending.get_mut(index) {
                *n += 1;
            }
        };
        bump(outcome_index(decision.decision));
        for reason in &decision.reasons {
            if let Some(i) = ReasonCode::ALL.iter().position(|c| *c == reason.code) {
                bump(REASONS_AT + i);
            }
        }
        if decision.identity.is_some() {
            let cache = REASONS_AT + ReasonCode::ALL.len();
            bump(if decision.event.cache_hit { cache } else { cache + 1 });
        }
        if let Some(micros) = micros {
            let _ = hostcalls::record_metric(self.decision_time_us, micros);
        }
    }

    /// Hands the pending decision counts to Envoy (every tick: one host call
    /// per counter that moved, instead of several per request).
    pub fn flush(&self) {
        let mut pending = self.pending.borrow_mut();
        for (id, n) in self.counters.iter().zip(pending.iter_mut()) {
            if *n > 0 {
                let _ = hostcalls::increment_metric(*id, i64::try_from(*n).unwrap_or(i64::MAX));
                *n = 0;
            }
        }
    }

    /// Counts a fetch event (rare: straight to Envoy): `jwks.*` for keys,
    /// `revocations.*` for the revocation list.
    pub fn fetched(&self, kind: Fetched, event: FetchEvent) {
        let [ok, failed, waited, not_modified] = match kind {
            Fetched::Keys => self.jwks,
            Fetched::RevocationList { .. } => self.revocations,
        };
        let id = match event {
            FetchEvent::FetchOk => ok,
            FetchEvent::FetchFailed => failed,
            FetchEvent::Waited => waited,
            FetchEvent::NotModified => not_modified,
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    /// Counts a JWKS (or key directory) event.
    pub fn jwks(&self, event: FetchEvent) {
        self.fetched(Fetched::Keys, event);
    }

    /// Counts a revocation-list event.
    pub fn revocations(&self, event: FetchEvent) {
        self.fetched(Fetched::RevocationList { refresh_secs: 0 }, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_for_counts_down_from_max_stale_and_stays_still_between_loads() {
        assert_eq!(fresh_for_secs(None, 5, 1_000), 0, "nothing loaded");
        assert_eq!(fresh_for_secs(Some(10_000), 5, 10_000), 5);
        assert_eq!(fresh_for_secs(Some(10_000), 5, 10_999), 5, "whole seconds");
        assert_eq!(fresh_for_secs(Some(10_000), 5, 11_000), 4);
        assert_eq!(fresh_for_secs(Some(10_000), 5, 15_000), 0);
        assert_eq!(fresh_for_secs(Some(10_000), 5, 99_000), 0, "never negative");
        assert_eq!(fresh_for_secs(Some(10_000), 5, 9_000), 6, "a clock step back");
        // A list reloaded (or confirmed) every tick: the value does not move,
        // so the gauge costs no host call.
        let ticks: Vec<u64> = (0..5).map(|t| fresh_for_secs(Some(t * 1_000), 60, t * 1_000 + 300)).collect();
        assert!(ticks.iter().all(|v| *v == 60), "{ticks:?}");
    }
}
