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
//! | `jwks.fetch_ok`, `jwks.fetch_failed` | counter | JWKS fetches by result |
//! | `jwks.waited` | counter | requests held until a JWKS fetch finished |
//! | `revocations.fetch_ok`, `revocations.fetch_failed` | counter | revocation-list fetches by result |
//! | `revocations.waited` | counter | requests held until the first revocation list arrived |
//! | `revocations.fresh_for_s` | gauge | with a `revocation_list`: seconds until the list in force is older than `max_stale` (0: none fresh enough, requests with a token get 503); set every tick |
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
    jwks_ok: u32,
    jwks_failed: u32,
    jwks_waited: u32,
    /// `revocations.fetch_ok`, `fetch_failed`, `waited`.
    revocations: [u32; 3],
    /// `revocations.fresh_for_s`, defined only for a policy with a `revocation_list`.
    list_fresh_for: Option<u32>,
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
    /// when the policy fetches a revocation list: `with_list`).
    pub fn define(prefix: &str, with_list: bool) -> Result<Metrics, String> {
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
            jwks_ok: counter("jwks.fetch_ok")?,
            jwks_failed: counter("jwks.fetch_failed")?,
            jwks_waited: counter("jwks.waited")?,
            revocations: [
                counter("revocations.fetch_ok")?,
                counter("revocations.fetch_failed")?,
                counter("revocations.waited")?,
            ],
            list_fresh_for: if with_list {
                Some(define(MetricType::Gauge, "revocations.fresh_for_s")?)
            } else {
                None
            },
            decisions: Cell::new(0),
        })
    }

    /// Sets `revocations.fresh_for_s`: how long the list in force may still
    /// be relied on, in seconds (0 when none is loaded or it is too old).
    pub fn list_fresh_for(&self, loaded_at_ms: Option<i64>, max_stale_secs: i64, now_ms: i64) {
        let Some(id) = self.list_fresh_for else { return };
        let left = loaded_at_ms
            .map_or(0, |at| max_stale_secs.saturating_sub(now_ms.saturating_sub(at).div_euclid(1000)).max(0));
        let _ = hostcalls::record_metric(id, u64::try_from(left).unwrap_or(0));
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
        let [ok, failed, waited] = match kind {
            Fetched::Keys => [self.jwks_ok, self.jwks_failed, self.jwks_waited],
            Fetched::RevocationList { .. } => self.revocations,
        };
        let id = match event {
            FetchEvent::FetchOk => ok,
            FetchEvent::FetchFailed => failed,
            FetchEvent::Waited => waited,
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
