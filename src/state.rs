//! Per-agent state: rate-limit buckets, the behaviour monitor (circuit
//! breaker), suspensions and single-use ids (DPoP proofs, approvals,
//! message-signature nonces) — behind one trait, so a host can keep it where
//! it must live for its consistency needs.
//!
//! [`MemoryStore`] (the default) keeps it in the engine: per isolate in
//! Workers, per VM in Envoy. A host with a globally consistent store (a
//! Durable Object per agent, proxy-wasm shared data across worker threads)
//! implements [`StateStore`] and hands it to [`crate::Engine::with_store`].
//! Time is always passed in (milliseconds), so tests are exact.
//!
//! Everything is bounded: buckets and agent windows live in LRU maps of
//! `max_keys` entries, so a flood of distinct agents evicts idle ones instead
//! of growing memory.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use lru::LruCache;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::Duration;
use crate::reason::ReasonCode;
pub use crate::replay::FirstUse;
use crate::replay::ReplayCache;

/// A rate: `n` requests per `period`, written `"100/1m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub n: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// Parses `"100/1m"`, `"5/1s"`, `"1000/1h"`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let expected = || format!("expected a rate like `100/1m`, found `{text}`");
        let (n, period) = text.split_once('/').ok_or_else(expected)?;
        let n: u32 = n.parse().ok().filter(|n| *n > 0).ok_or_else(expected)?;
        let period = Duration::parse(period).map_err(|_| expected())?;
        if period.as_secs() == 0 {
            return Err(expected());
        }
        Ok(Rate { n, period })
    }

    /// The period in milliseconds: one token is this many bucket units, and
    /// each millisecond refills `n` units — exact integer arithmetic.
    fn period_ms(self) -> i128 {
        i128::from(self.period.as_secs()) * 1000
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.n, self.period)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rate::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the circuit breaker watches, per agent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// The sliding window. Default `10s`.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Trip when an agent makes more requests than this in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Trip when more than this share of an agent's requests in the window are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deny_ratio: Option<f64>,
    /// Requests in the window before the deny ratio counts. Default 10.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// Learn an agent's usual routes from its first this-many requests; afterwards
    /// calls to other routes are unusual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_requests: Option<u32>,
    /// Trip when an agent makes more unusual calls than this in the window. Default 3.
    #[serde(default = "default_max_unusual")]
    pub max_unusual: u32,
    /// How long a tripped agent stays revoked. Default `15m`.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
}

fn default_window() -> Duration {
    Duration::from_secs(10)
}
fn default_min_requests() -> u32 {
    10
}
fn default_max_unusual() -> u32 {
    3
}
fn default_cooldown() -> Duration {
    Duration::from_secs(900)
}

/// Why the breaker tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripKind {
    /// Too many requests in the window.
    Burst,
    /// Too many refusals in the window.
    DenyRatio,
    /// Too many calls outside the agent's usual routes.
    UnusualRoutes,
}

/// An agent revoked by the breaker until `until_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspension {
    /// Unix milliseconds the suspension ends.
    pub until_ms: i64,
    /// What tripped the breaker.
    pub kind: TripKind,
    /// The numbers behind it, e.g. "612 requests in 10s (max 500)".
    pub detail: String,
}

/// Outcome of taking from a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Allowed; this many requests remain right now.
    Allowed {
        /// Whole tokens left.
        remaining: u32,
    },
    /// Over the limit; retry after this many milliseconds.
    Limited {
        /// Milliseconds until a token is available.
        retry_after_ms: u64,
    },
}

/// A namespace of single-use ids, each with its own replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplaySpace {
    /// DPoP proof `jti`s (RFC 9449), bound to the proof key.
    DpopProof,
    /// Approval tokens.
    Approval,
    /// HTTP message-signature nonces (RFC 9421).
    SignatureNonce,
}

impl ReplaySpace {
    /// Every space, in a fixed order.
    pub const ALL: [ReplaySpace; 3] =
        [ReplaySpace::DpopProof, ReplaySpace::Approval, ReplaySpace::SignatureNonce];

    fn index(self) -> usize {
        match self {
            ReplaySpace::DpopProof => 0,
            ReplaySpace::Approval => 1,
            ReplaySpace::SignatureNonce => 2,
        }
    }

    /// Stable name, for stores that key shared data by it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaySpace::DpopProof => "dpop",
            ReplaySpace::Approval => "approval",
            ReplaySpace::SignatureNonce => "signature",
        }
    }

    /// The reason code for a replayed id of this space.
    pub fn replayed_code(self) -> ReasonCode {
        match self {
            ReplaySpace::DpopProof => ReasonCode::DpopProofReplayed,
            ReplaySpace::Approval => ReasonCode::ApprovalReplayed,
            ReplaySpace::SignatureNonce => ReasonCode::SignatureReplayed,
        }
    }
}

/// Where per-agent state lives.
pub trait StateStore: fmt::Debug + Send + Sync {
    /// Takes one request from bucket `key` (capacity `burst`, refilled at `rate`).
    fn take(&self, key: &str, now_ms: i64, rate: Rate, burst: u32) -> Take;
    /// Records a request by `agent` to route `route` and says whether the
    /// breaker trips on it (bursts, unusual routes). A trip suspends the agent.
    fn observe(&self, agent: &str, route: usize, now_ms: i64, cfg: &BreakerConfig) -> Option<Suspension>;
    /// Records whether the request was refused; may trip on the deny ratio.
    fn outcome(&self, agent: &str, refused: bool, now_ms: i64, cfg: &BreakerConfig) -> Option<Suspension>;
    /// The agent's suspension, if one is in force at `now_ms`.
    fn suspension(&self, agent: &str, now_ms: i64) -> Option<Suspension>;
    /// Lifts a suspension (an operator's call); `true` if there was one.
    fn lift(&self, agent: &str) -> bool;
    /// Puts a suspension in force, e.g. one a host kept in durable storage
    /// and restores after a restart; `false` if this store cannot (the
    /// default). Never shortens one already in force.
    fn restore(&self, _agent: &str, _suspension: Suspension) -> bool {
        false
    }
    /// Suspensions in force at `now_ms`.
    fn suspended(&self, now_ms: i64) -> Vec<(String, Suspension)>;
    /// Number of agents and buckets held (for capacity checks).
    fn keys_held(&self) -> usize;
    /// Records single-use id `key` of `space` until `expires_at` (Unix
    /// seconds). A store must never forget a live id (that would allow a
    /// replay): when it has no room it answers [`FirstUse::Full`].
    fn first_use(&self, space: ReplaySpace, key: [u8; 32], now: i64, expires_at: i64) -> FirstUse;
}

const SLOTS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which slot-sized interval since the epoch this slot counts.
    index: i64,
    requests: u32,
    refused: u32,
    unusual: u32,
}

#[derive(Debug, Clone, Default)]
struct AgentWindow {
    slots: [Slot; SLOTS],
    /// Routes seen while learning the profile.
    profile: Vec<usize>,
    seen: u32,
}

impl AgentWindow {
    fn slot(&mut self, now_ms: i64, window: Duration) -> Option<&mut Slot> {
        let width = slot_width(window);
        let index = now_ms.div_euclid(width);
        let slot = self.slots.get_mut(index.rem_euclid(SLOTS as i64) as usize)?;
        if slot.index != index {
            *slot = Slot { index, ..Slot::default() };
        }
        Some(slot)
    }

    fn totals(&self, now_ms: i64, window: Duration) -> (u32, u32, u32) {
        let width = slot_width(window);
        let current = now_ms.div_euclid(width);
        self.slots
            .iter()
            .filter(|s| s.index > current - SLOTS as i64 && s.index <= current)
            .fold((0, 0, 0), |(r, d, u), s| (r + s.requests, d + s.refused, u + s.unusual))
    }
}

fn slot_width(window: Duration) -> i64 {
    (window.as_secs_i64() * 1000 / SLOTS as i64).max(1)
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens × period in ms (see [`Rate::period_ms`]).
    units: i128,
    last_ms: i64,
}

#[derive(Debug)]
struct Inner {
    buckets: LruCache<String, Bucket>,
    agents: LruCache<String, AgentWindow>,
    /// Suspensions, bounded like everything else (O(1) insert; a flood of
    /// distinct tripping agents evicts the least recently seen suspension).
    suspended: LruCache<String, Suspension>,
}

/// The default store: in the engine, bounded.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// One replay cache per [`ReplaySpace`], by its index.
    replay: [Mutex<ReplayCache>; 3],
}

impl MemoryStore {
    /// A store holding at most `max_keys` buckets and `max_keys` agent windows.
    pub fn new(max_keys: usize) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner {
                buckets: crate::cache::lru(max_keys),
                agents: crate::cache::lru(max_keys),
                suspended: crate::cache::lru(max_keys),
            }),
            replay: ReplaySpace::ALL
                .map(|_| Mutex::new(ReplayCache::new(crate::limits::DEFAULT_REPLAY_ENTRIES))),
        }
    }

    /// Sets how many live ids of `space` are remembered (at least one).
    pub fn with_replay_capacity(mut self, space: ReplaySpace, capacity: usize) -> MemoryStore {
        if let Some(slot) = self.replay.get_mut(space.index()) {
            *slot = Mutex::new(ReplayCache::new(capacity));
        }
        self
    }

    /// Ids of `space` remembered now.
    pub fn replay_len(&self, space: ReplaySpace) -> usize {
        self.replay.get(space.index()).map_or(0, |c| c.lock().unwrap_or_else(PoisonError::into_inner).len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn suspend(&mut self, agent: &str, s: Suspension, _now_ms: i64) -> Suspension {
        self.suspended.put(agent.to_owned(), s.clone());
        s
    }
}

impl StateStore for MemoryStore {
    fn take(&self, key: &str, now_ms: i64, rate: Rate, burst: u32) -> Take {
        let mut inner = self.lock();
        let token = rate.period_ms();
        let capacity = i128::from(burst.max(1)) * token;
        if !inner.buckets.contains(key) {
            inner.buckets.put(key.to_owned(), Bucket { units: capacity, last_ms: now_ms });
        }
        let Some(bucket) = inner.buckets.get_mut(key) else {
            return Take::Limited { retry_after_ms: 1000 };
        };
        // A clock that moves backwards refills nothing (and never panics).
        let elapsed = i128::from(now_ms.saturating_sub(bucket.last_ms).max(0));
        bucket.units = bucket.units.saturating_add(elapsed.saturating_mul(i128::from(rate.n))).min(capacity);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.units >= token {
            bucket.units -= token;
            Take::Allowed { remaining: u32::try_from(bucket.units / token).unwrap_or(u32::MAX) }
        } else {
            let missing = token - bucket.units;
            let n = i128::from(rate.n);
            let retry_after_ms = u64::try_from((missing + n - 1) / n).unwrap_or(u64::MAX).max(1);
            Take::Limited { retry_after_ms }
        }
    }

    fn observe(&self, agent: &str, route: usize, now_ms: i64, cfg: &BreakerConfig) -> Option<Suspension> {
        let mut inner = self.lock();
        if !inner.agents.contains(agent) {
            inner.agents.put(agent.to_owned(), AgentWindow::default());
        }
        let w = inner.agents.get_mut(agent)?;
        let unusual = match cfg.profile_requests {
            Some(learn) if w.seen >= learn => !w.profile.contains(&route),
            Some(_) => {
                if !w.profile.contains(&route) && w.profile.len() < 64 {
                    w.profile.push(route);
                }
                false
            }
            None => false,
        };
        w.seen = w.seen.saturating_add(1);
        let slot = w.slot(now_ms, cfg.window)?;
        slot.requests += 1;
        slot.unusual += u32::from(unusual);
        let (requests, _, unusual_total) = w.totals(now_ms, cfg.window);
        let trip = if cfg.max_requests.is_some_and(|max| requests > max) {
            Some((
                TripKind::Burst,
                format!(
                    "{requests} requests in {} (max {})",
                    cfg.window,
                    cfg.max_requests.unwrap_or_default()
                ),
            ))
        } else if cfg.profile_requests.is_some() && unusual_total > cfg.max_unusual {
            Some((
                TripKind::UnusualRoutes,
                format!(
                    "{unusual_total} calls outside its usual routes in {} (max {})",
                    cfg.window, cfg.max_unusual
                ),
            ))
        } else {
            None
        }?;
        let until_ms = now_ms.saturating_add(cfg.cooldown.as_secs_i64() * 1000);
        Some(inner.suspend(agent, Suspension { until_ms, kind: trip.0, detail: trip.1 }, now_ms))
    }

    fn outcome(&self, agent: &str, refused: bool, now_ms: i64, cfg: &BreakerConfig) -> Option<Suspension> {
        let mut inner = self.lock();
        let w = inner.agents.get_mut(agent)?;
        if refused {
            w.slot(now_ms, cfg.window)?.refused += 1;
        }
        let (requests, refused_total, _) = w.totals(now_ms, cfg.window);
        let max = cfg.max_deny_ratio?;
        if requests < cfg.min_requests || f64::from(refused_total) <= max * f64::from(requests) {
            return None;
        }
        let detail =
            format!("{refused_total} of {requests} requests refused in {} (max ratio {max})", cfg.window);
        let until_ms = now_ms.saturating_add(cfg.cooldown.as_secs_i64() * 1000);
        Some(inner.suspend(agent, Suspension { until_ms, kind: TripKind::DenyRatio, detail }, now_ms))
    }

    fn suspension(&self, agent: &str, now_ms: i64) -> Option<Suspension> {
        let mut inner = self.lock();
        match inner.suspended.get(agent) {
            Some(s) if s.until_ms > now_ms => Some(s.clone()),
            Some(_) => {
                // Cooldown over: the agent starts again with a clean window.
                inner.suspended.pop(agent);
                inner.agents.pop(agent);
                None
            }
            None => None,
        }
    }

    fn lift(&self, agent: &str) -> bool {
        let mut inner = self.lock();
        inner.agents.pop(agent);
        inner.suspended.pop(agent).is_some()
    }

    fn suspended(&self, now_ms: i64) -> Vec<(String, Suspension)> {
        let inner = self.lock();
        // Sorted by agent through a map (no sort instance in the Wasm module).
        let mut sorted = BTreeMap::new();
        sorted.extend(inner.suspended.iter().filter(|(_, s)| s.until_ms > now_ms));
        sorted.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn keys_held(&self) -> usize {
        let inner = self.lock();
        inner.buckets.len() + inner.agents.len() + inner.suspended.len()
    }

    fn restore(&self, agent: &str, suspension: Suspension) -> bool {
        let mut inner = self.lock();
        let longer = inner.suspended.peek(agent).is_none_or(|s| s.until_ms < suspension.until_ms);
        if longer {
            inner.suspended.put(agent.to_owned(), suspension);
        }
        true
    }

    fn first_use(&self, space: ReplaySpace, key: [u8; 32], now: i64, expires_at: i64) -> FirstUse {
        match self.replay.get(space.index()) {
            Some(cache) => {
                cache.lock().unwrap_or_else(PoisonError::into_inner).first_use(key, now, expires_at)
            }
            // Unreachable (every space has a cache); refuse rather than accept unrecorded.
            None => FirstUse::Full { retry_after_secs: 1 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_suspension_is_in_force_and_never_shortens_one() {
        let store = MemoryStore::new(10);
        let s = |until_ms| Suspension { until_ms, kind: TripKind::Burst, detail: "restored".into() };
        assert!(store.restore("a", s(10_000)));
        assert_eq!(store.suspension("a", 5_000), Some(s(10_000)));
        assert!(store.restore("a", s(7_000)));
        assert_eq!(store.suspension("a", 8_000).map(|x| x.until_ms), Some(10_000), "not shortened");
        assert!(store.restore("a", s(20_000)));
        assert_eq!(store.suspension("a", 15_000).map(|x| x.until_ms), Some(20_000));
        assert_eq!(store.suspension("a", 20_000), None, "over at its end");
    }
    use proptest::prelude::*;

    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn rates_parse() {
        assert_eq!(rate("100/1m"), Rate { n: 100, period: Duration::from_secs(60) });
        for bad in ["100", "0/1m", "x/1m", "10/0s", "10/minute"] {
            assert!(Rate::parse(bad).unwrap_err().contains("expected a rate like `100/1m`"), "{bad}");
        }
    }

    #[test]
    fn bucket_allows_burst_then_refills() {
        let s = MemoryStore::new(10);
        let r = rate("60/1m"); // one per second
        for i in 0..5 {
            assert_eq!(s.take("a", 0, r, 5), Take::Allowed { remaining: 4 - i });
        }
        assert_eq!(s.take("a", 0, r, 5), Take::Limited { retry_after_ms: 1000 });
        assert_eq!(s.take("a", 999, r, 5), Take::Limited { retry_after_ms: 1 });
        assert_eq!(s.take("a", 1000, r, 5), Take::Allowed { remaining: 0 });
        // Other keys are independent; a clock going backwards does not refill.
        assert_eq!(s.take("b", 0, r, 5), Take::Allowed { remaining: 4 });
        assert!(matches!(s.take("a", -5000, r, 5), Take::Limited { .. }));
    }

    /// The naive reference: refill one millisecond at a time, in whole
    /// thousandths of a token per millisecond (rates here are `n` per second).
    fn reference(times: &[i64], n: u32, burst: u32) -> Vec<bool> {
        let full = u64::from(burst) * 1000;
        let mut milli_tokens = full;
        let mut last = times.first().copied().unwrap_or(0);
        let mut out = Vec::new();
        for &t in times {
            while last < t {
                milli_tokens = (milli_tokens + u64::from(n)).min(full);
                last += 1;
            }
            if milli_tokens >= 1000 {
                milli_tokens -= 1000;
                out.push(true);
            } else {
                out.push(false);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn bucket_agrees_with_stepwise_reference(
            gaps in proptest::collection::vec(0i64..400, 1..60),
            n in 1u32..20,
            burst in 1u32..8,
        ) {
            let r = Rate { n, period: Duration::from_secs(1) };
            let mut t = 0;
            let times: Vec<i64> = gaps.iter().map(|g| { t += g; t }).collect();
            let s = MemoryStore::new(4);
            let got: Vec<bool> = times.iter().map(|&t| matches!(s.take("k", t, r, burst), Take::Allowed { .. })).collect();
            prop_assert_eq!(got, reference(&times, n, burst));
        }
    }

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            max_requests: Some(5),
            max_deny_ratio: Some(0.5),
            min_requests: 4,
            profile_requests: None,
            max_unusual: 3,
            cooldown: Duration::from_secs(60),
        }
    }

    #[test]
    fn breaker_trips_on_bursts_and_cools_down() {
        let s = MemoryStore::new(10);
        for t in 0..5 {
            assert!(s.observe("a", 0, t * 100, &cfg()).is_none());
        }
        let trip = s.observe("a", 0, 600, &cfg()).unwrap();
        assert_eq!(trip.kind, TripKind::Burst);
        assert_eq!(trip.detail, "6 requests in 10s (max 5)");
        assert!(s.suspension("a", 60_599).is_some());
        assert!(s.suspension("a", 60_600).is_none(), "cooldown over");
        // The window slides: 5 requests every 10 s never trip.
        let s = MemoryStore::new(10);
        for t in 0..50 {
            assert!(s.observe("b", 0, t * 2000, &cfg()).is_none(), "t={t}");
        }
    }

    #[test]
    fn breaker_trips_on_deny_ratio_after_min_requests() {
        let s = MemoryStore::new(10);
        let c = BreakerConfig { max_requests: None, ..cfg() };
        for t in 0..3 {
            s.observe("a", 0, t, &c);
            assert!(s.outcome("a", true, t, &c).is_none(), "below min_requests");
        }
        s.observe("a", 0, 3, &c);
        assert_eq!(s.outcome("a", true, 3, &c).unwrap().kind, TripKind::DenyRatio);
        assert!(s.lift("a"));
        assert!(s.suspension("a", 4).is_none());
        assert!(!s.lift("a"));
    }

    #[test]
    fn breaker_trips_on_unusual_routes() {
        let s = MemoryStore::new(10);
        let c = BreakerConfig { max_requests: None, profile_requests: Some(3), max_unusual: 1, ..cfg() };
        for (t, route) in [(0, 1), (1, 2), (2, 1), (3, 1), (4, 2)] {
            assert!(s.observe("a", route, t, &c).is_none());
        }
        assert!(s.observe("a", 7, 5, &c).is_none(), "one unusual call is allowed");
        assert_eq!(s.observe("a", 8, 6, &c).unwrap().kind, TripKind::UnusualRoutes);
    }

    #[test]
    fn state_is_bounded() {
        let s = MemoryStore::new(100);
        for i in 0..10_000 {
            s.take(&format!("agent-{i}"), 0, rate("10/1s"), 5);
            s.observe(&format!("agent-{i}"), 0, 0, &cfg());
        }
        assert_eq!(s.keys_held(), 200);
    }
}
