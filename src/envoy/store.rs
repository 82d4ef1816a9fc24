//! Per-agent state shared by Envoy's worker threads: a [`StateStore`] over
//! proxy-wasm shared data.
//!
//! Envoy runs one Wasm VM per worker thread, and each would otherwise keep
//! its own rate-limit buckets, breaker windows, suspensions and replay caches
//! (an agent could make N × its rate with N workers, and replay a DPoP proof
//! on another connection). Shared data is a key/value map per `vm_id` that
//! every VM of the Envoy process sees, with compare-and-swap (CAS) on writes.
//!
//! ## Layout: fixed slot tables
//!
//! Shared data in proxy-wasm 0.2 has no delete: every key ever written stays
//! for the life of the Envoy process. So state is never one key per agent
//! (a flood of distinct agents would grow memory without bound). Each kind of
//! state is a table of a fixed number of **slots**, each slot one key whose
//! value holds up to a few entries:
//!
//! | table | entry | per slot | slots |
//! |---|---|---|---|
//! | buckets (`limits`) | bucket key hash, tokens, last refill | 8 | `state.max_keys / 8` |
//! | windows (`circuit_breaker`) | agent hash, 10 window slots, route profile | 4 | `state.max_keys / 4` |
//! | suspensions | agent, until, why | 8 | `min(state.max_keys, 16384) / 8` |
//! | replay, per space (DPoP proofs, approvals, signature nonces) | 32-byte id, expiry | 16 | `replay_cache / 8` |
//!
//! An entry's slot is a keyed SHA-256 of its key (the key is a random secret
//! per Envoy, in shared data), so a client cannot aim its entries at one slot.
//! A full slot evicts the entry used longest ago (buckets, windows,
//! suspensions: as the in-memory store's LRU does, per slot instead of
//! globally), except a replay slot: it never forgets a live id and refuses a
//! new one (`replay_cache_full`) until one expires. Replay slots have room for
//! twice the configured capacity, so refusals before it are rare (at the
//! configured number of live ids, a new id meets a full slot with probability
//! ~0.8%; at half of it ~0.0005%).
//!
//! Slot keys are created, empty, when the first VM configures (a marker key
//! records it), because a write to a key that does not exist yet cannot be
//! made conditional: from then on every change is read → modify → CAS write,
//! retried on a CAS mismatch, so two workers never both accept one DPoP proof.
//! The creation itself (and that of the slot-hash secret) relies on Envoy
//! configuring the main thread's VM before the workers' VMs, as Envoy 1.40 does
//! (its `policy loaded` line always comes first in the tests);
//! two VMs creating the same tables at the same instant could each keep
//! their own secret for the slot hashes (each still bounded and fail-closed,
//! but not shared). tests/envoy/state.test.mjs checks the sharing with four
//! workers.
//! The memory this takes is bounded by the table sizes (see docs/envoy.md).
//!
//! Every failure fails closed: a host error or a CAS that keeps failing is a
//! rate-limited request, a replay cache that is "full", or a 1-second
//! suspension — never an allowed request with nothing recorded.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::duration::Duration;
use crate::policy::Policy;
use crate::replay::FirstUse;
use crate::state::{BreakerConfig, Rate, ReplaySpace, StateStore, Suspension, Take, TripKind};

/// The host's shared data: get with a CAS token, set if the token still holds.
pub trait SharedData: fmt::Debug + Send + Sync {
    /// The value of `key` and its CAS token; `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String>;
    /// Writes `key` if its CAS token is still `cas` (`None`: unconditionally).
    /// `Ok(false)`: someone wrote it meanwhile.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String>;
}

/// Format version of slot values (part of every key, so a filter with
/// another layout never reads these).
const VERSION: u8 = 1;
/// CAS attempts before an operation gives up (and fails closed).
const ATTEMPTS: usize = 32;
/// Window slots per agent (as in the in-memory store).
const WINDOW_SLOTS: usize = 10;
/// Routes remembered per agent profile (as in the in-memory store).
const MAX_PROFILE: usize = 64;
/// Longest agent id kept for listing suspensions (lookups use the hash).
const MAX_AGENT_BYTES: usize = 512;

const BUCKETS_PER_SLOT: usize = 8;
const WINDOWS_PER_SLOT: usize = 4;
const SUSPENSIONS_PER_SLOT: usize = 8;
const MAX_SUSPENSIONS: usize = 16_384;
const REPLAY_PER_SLOT: usize = 16;

/// One table: `slots` keys named `<prefix>.<index>`.
#[derive(Debug, Clone)]
struct Table {
    prefix: String,
    slots: u64,
    per_slot: usize,
}

impl Table {
    fn new(ns: &str, name: &str, slots: usize, per_slot: usize) -> Table {
        let slots = slots.max(1);
        Table { prefix: format!("{ns}.v{VERSION}.{name}.{slots}"), slots: slots as u64, per_slot }
    }

    fn key(&self, slot: u64) -> String {
        format!("{}.{slot}", self.prefix)
    }
}

/// The tables a policy needs, sized from it.
#[derive(Debug, Clone)]
pub struct Layout {
    buckets: Option<Table>,
    windows: Option<Table>,
    suspensions: Table,
    /// One per [`ReplaySpace`] the policy can use (DPoP: always, since any
    /// token may carry `cnf.jkt`).
    replay: [Option<Table>; 3],
    marker: String,
    secret_key: String,
}

impl Layout {
    /// Sizes the tables for `policy`, under namespace `ns` (the plugin name:
    /// filters with the same `vm_id` and name share state).
    pub fn new(ns: &str, policy: &Policy) -> Layout {
        let max_keys = policy.state.max_keys.clamp(1, crate::limits::MAX_STATE_KEYS);
        let replay = |n: usize| n.clamp(1, crate::limits::MAX_REPLAY_ENTRIES).div_ceil(REPLAY_PER_SLOT / 2);
        let dpop = policy.dpop.as_ref().map_or(crate::limits::DEFAULT_REPLAY_ENTRIES, |d| d.replay_cache);
        let approval = policy.approval.as_ref().map_or(1, |a| a.replay_cache);
        // Buckets for the policy's limits and for the token service's per-client limit.
        let token_limit = policy.token_service.as_ref().is_some_and(|ts| ts.rate_limit.is_some());
        let limits = !policy.limits.is_empty() || token_limit;
        let breaker = policy.circuit_breaker.is_some();
        let spaces = ReplaySpace::ALL.map(|space| {
            let capacity = match space {
                ReplaySpace::DpopProof => Some(dpop),
                ReplaySpace::Approval => policy.approval.is_some().then_some(approval),
                ReplaySpace::SignatureNonce => {
                    policy.signature_agents.is_some().then_some(crate::limits::DEFAULT_REPLAY_ENTRIES)
                }
            }?;
            Some(Table::new(ns, &format!("r.{}", space.as_str()), replay(capacity), REPLAY_PER_SLOT))
        });
        let suspensions = max_keys.min(MAX_SUSPENSIONS).div_ceil(SUSPENSIONS_PER_SLOT);
        let layout = Layout {
            buckets: limits
                .then(|| Table::new(ns, "b", max_keys.div_ceil(BUCKETS_PER_SLOT), BUCKETS_PER_SLOT)),
            windows: breaker
                .then(|| Table::new(ns, "w", max_keys.div_ceil(WINDOWS_PER_SLOT), WINDOWS_PER_SLOT)),
            suspensions: Table::new(ns, "s", suspensions, SUSPENSIONS_PER_SLOT),
            replay: spaces,
            marker: String::new(),
            secret_key: format!("{ns}.v{VERSION}.secret"),
        };
        let marker = format!("{ns}.v{VERSION}.ready.{}", layout.signature());
        Layout { marker, ..layout }
    }

    /// Every table, for creating and counting.
    fn tables(&self) -> Vec<&Table> {
        let mut all: Vec<&Table> = self.buckets.iter().chain(self.windows.iter()).collect();
        all.push(&self.suspensions);
        all.extend(self.replay.iter().flatten());
        all
    }

    fn signature(&self) -> String {
        let names: Vec<&str> = self.tables().iter().map(|t| t.prefix.as_str()).collect();
        let digest = Sha256::digest(names.join("|").as_bytes());
        crate::b64::encode(digest.get(..12).unwrap_or_default())
    }

    /// Keys the tables hold at most (slots), for the docs and tests.
    pub fn slot_keys(&self) -> u64 {
        self.tables().iter().map(|t| t.slots).sum()
    }

    /// Entries the tables hold at most.
    pub fn capacity(&self) -> u64 {
        self.tables().iter().map(|t| t.slots * t.per_slot as u64).sum()
    }
}

/// Per-agent state in shared data.
#[derive(Debug)]
pub struct SharedStore<H: SharedData> {
    host: H,
    layout: Layout,
    /// Keys slot hashes, so clients cannot aim entries at one slot.
    secret: [u8; 32],
}

// ------------------------------------------------------------------ entries

/// A little-endian reader that never panics.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.bytes.get(..n)?, self.bytes.get(n..)?);
        self.bytes = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array()?))
    }
    fn i128(&mut self) -> Option<i128> {
        Some(i128::from_le_bytes(self.array()?))
    }
    fn text(&mut self) -> Option<String> {
        let n = usize::from(self.u16()?);
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(MAX_AGENT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let clipped = text.get(..end).unwrap_or("");
    out.extend_from_slice(&(clipped.len() as u16).to_le_bytes());
    out.extend_from_slice(clipped.as_bytes());
}

/// An entry of a slot value.
trait Entry: Sized {
    fn read(r: &mut Reader<'_>) -> Option<Self>;
    fn write(&self, out: &mut Vec<u8>);
}

fn decode<E: Entry>(bytes: &[u8]) -> Option<Vec<E>> {
    let mut r = Reader { bytes };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    if r.u8()? != VERSION {
        return None;
    }
    let n = r.u8()?;
    let mut entries = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        entries.push(E::read(&mut r)?);
    }
    r.bytes.is_empty().then_some(entries)
}

fn encode<E: Entry>(entries: &[E]) -> Vec<u8> {
    let mut out = vec![VERSION, u8::try_from(entries.len()).unwrap_or(u8::MAX)];
    for e in entries.iter().take(usize::from(u8::MAX)) {
        e.write(&mut out);
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct BucketEntry {
    hash: u64,
    units: i128,
    last_ms: i64,
}

impl Entry for BucketEntry {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(BucketEntry { hash: r.u64()?, units: r.i128()?, last_ms: r.i64()? })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.to_le_bytes());
        out.extend_from_slice(&self.units.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct WindowSlot {
    index: i64,
    requests: u32,
    refused: u32,
    unusual: u32,
}

#[derive(Debug, Clone)]
struct WindowEntry {
    hash: u64,
    last_ms: i64,
    seen: u32,
    slots: [WindowSlot; WINDOW_SLOTS],
    profile: Vec<u32>,
}

impl WindowEntry {
    fn new(hash: u64, now_ms: i64) -> WindowEntry {
        WindowEntry {
            hash,
            last_ms: now_ms,
            seen: 0,
            slots: [WindowSlot::default(); WINDOW_SLOTS],
            profile: Vec::new(),
        }
    }

    fn slot(&mut self, now_ms: i64, window: Duration) -> Option<&mut WindowSlot> {
        let width = slot_width(window);
        let index = now_ms.div_euclid(width);
        let slot = self.slots.get_mut(usize::try_from(index.rem_euclid(WINDOW_SLOTS as i64)).ok()?)?;
        if slot.index != index {
            *slot = WindowSlot { index, ..WindowSlot::default() };
        }
        Some(slot)
    }

    fn totals(&self, now_ms: i64, window: Duration) -> (u32, u32, u32) {
        let current = now_ms.div_euclid(slot_width(window));
        self.slots.iter().filter(|s| s.index > current - WINDOW_SLOTS as i64 && s.index <= current).fold(
            (0u32, 0u32, 0u32),
            |(r, d, u), s| {
                (r.saturating_add(s.requests), d.saturating_add(s.refused), u.saturating_add(s.unusual))
            },
        )
    }
}

fn slot_width(window: Duration) -> i64 {
    (window.as_secs_i64().saturating_mul(1000) / WINDOW_SLOTS as i64).max(1)
}

impl Entry for WindowEntry {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let hash = r.u64()?;
        let last_ms = r.i64()?;
        let seen = r.u32()?;
        let mut slots = [WindowSlot::default(); WINDOW_SLOTS];
        for s in &mut slots {
            *s = WindowSlot { index: r.i64()?, requests: r.u32()?, refused: r.u32()?, unusual: r.u32()? };
        }
        let n = r.u8()?;
        let mut profile = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            profile.push(r.u32()?);
        }
        Some(WindowEntry { hash, last_ms, seen, slots, profile })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out.extend_from_slice(&self.seen.to_le_bytes());
        for s in &self.slots {
            out.extend_from_slice(&s.index.to_le_bytes());
            out.extend_from_slice(&s.requests.to_le_bytes());
            out.extend_from_slice(&s.refused.to_le_bytes());
            out.extend_from_slice(&s.unusual.to_le_bytes());
        }
        let profile = self.profile.get(..self.profile.len().min(MAX_PROFILE)).unwrap_or_default();
        out.push(u8::try_from(profile.len()).unwrap_or(u8::MAX));
        for route in profile {
            out.extend_from_slice(&route.to_le_bytes());
        }
    }
}

#[derive(Debug, Clone)]
struct SuspensionEntry {
    hash: u64,
    until_ms: i64,
    kind: TripKind,
    agent: String,
    detail: String,
}

impl Entry for SuspensionEntry {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let hash = r.u64()?;
        let until_ms = r.i64()?;
        let kind = match r.u8()? {
            0 => TripKind::Burst,
            1 => TripKind::DenyRatio,
            _ => TripKind::UnusualRoutes,
        };
        Some(SuspensionEntry { hash, until_ms, kind, agent: r.text()?, detail: r.text()? })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.to_le_bytes());
        out.extend_from_slice(&self.until_ms.to_le_bytes());
        out.push(match self.kind {
            TripKind::Burst => 0,
            TripKind::DenyRatio => 1,
            TripKind::UnusualRoutes => 2,
        });
        put_text(out, &self.agent);
        put_text(out, &self.detail);
    }
}

impl SuspensionEntry {
    fn suspension(&self) -> Suspension {
        Suspension { until_ms: self.until_ms, kind: self.kind, detail: self.detail.clone() }
    }
}

#[derive(Debug, Clone, Copy)]
struct ReplayEntry {
    key: [u8; 32],
    until: i64,
}

impl Entry for ReplayEntry {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(ReplayEntry { key: r.array()?, until: r.i64()? })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.until.to_le_bytes());
    }
}

// ------------------------------------------------------------------ the store

/// Why an update did not happen.
#[derive(Debug)]
enum Failure {
    /// The host refused, the value was unreadable, or the CAS kept failing.
    Store(String),
}

impl<H: SharedData> SharedStore<H> {
    /// A store over `host` with `layout`. Creates the slot keys if no VM has
    /// yet (see the module docs) and reads or creates the slot-hash secret.
    pub fn open(host: H, layout: Layout) -> Result<SharedStore<H>, String> {
        let secret = shared_secret(&host, &layout.secret_key)?;
        let store = SharedStore { host, layout, secret };
        store.create_slots()?;
        Ok(store)
    }

    fn create_slots(&self) -> Result<(), String> {
        if self.host.get(&self.layout.marker)?.is_some() {
            return Ok(());
        }
        for table in self.layout.tables() {
            for slot in 0..table.slots {
                let key = table.key(slot);
                if self.host.get(&key)?.is_none() {
                    self.host.set(&key, &[], None)?;
                }
            }
        }
        self.host.set(&self.layout.marker, &[1], None)?;
        Ok(())
    }

    /// A keyed hash of `key` in table `kind`.
    fn hash(&self, kind: &str, key: &[u8]) -> u64 {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(key);
        let digest = h.finalize();
        u64::from_le_bytes(digest.get(..8).and_then(|b| b.try_into().ok()).unwrap_or_default())
    }

    /// Reads slot `slot` of `table`, lets `f` change its entries (and say what
    /// to answer, and whether anything changed), and writes it back with CAS,
    /// retrying when another worker wrote it meanwhile.
    fn update<E: Entry, R>(
        &self,
        table: &Table,
        slot: u64,
        mut f: impl FnMut(&mut Vec<E>) -> (R, bool),
    ) -> Result<R, Failure> {
        let key = table.key(slot);
        for _ in 0..ATTEMPTS {
            let (bytes, cas) = match self.host.get(&key).map_err(Failure::Store)? {
                Some((bytes, cas)) => (bytes, Some(cas)),
                // Only when the slots were never created (see the module docs).
                None => (Vec::new(), None),
            };
            let mut entries: Vec<E> =
                decode(&bytes).ok_or_else(|| Failure::Store(format!("unreadable shared data at `{key}`")))?;
            let (answer, changed) = f(&mut entries);
            if !changed {
                return Ok(answer);
            }
            if self.host.set(&key, &encode(&entries), cas).map_err(Failure::Store)? {
                return Ok(answer);
            }
        }
        Err(Failure::Store(format!("shared data at `{key}` kept changing")))
    }

    /// Reads slot `slot` of `table`.
    fn read<E: Entry>(&self, table: &Table, slot: u64) -> Result<Vec<E>, Failure> {
        let key = table.key(slot);
        match self.host.get(&key).map_err(Failure::Store)? {
            None => Ok(Vec::new()),
            Some((bytes, _)) => {
                decode(&bytes).ok_or_else(|| Failure::Store(format!("unreadable shared data at `{key}`")))
            }
        }
    }

    fn locate(&self, table: &Table, kind: &str, key: &[u8]) -> (u64, u64) {
        let hash = self.hash(kind, key);
        // The entry id and the slot come from different bits of one keyed hash.
        (hash, hash.rotate_left(32) % table.slots)
    }

    fn suspend(&self, agent: &str, s: Suspension) -> Suspension {
        let table = &self.layout.suspensions;
        let (hash, slot) = self.locate(table, "s", agent.as_bytes());
        let per_slot = table.per_slot;
        let entry = SuspensionEntry {
            hash,
            until_ms: s.until_ms,
            kind: s.kind,
            agent: agent.to_owned(),
            detail: s.detail.clone(),
        };
        let written = self.update(table, slot, |entries: &mut Vec<SuspensionEntry>| {
            entries.retain(|e| e.hash != hash);
            if entries.len() >= per_slot {
                // The suspension that ends first makes room.
                if let Some(i) =
                    (0..entries.len()).min_by_key(|&i| entries.get(i).map_or(i64::MAX, |e| e.until_ms))
                {
                    entries.remove(i);
                }
            }
            entries.push(entry.clone());
            ((), true)
        });
        if let Err(Failure::Store(e)) = written {
            log::warn!("cannot record the suspension of `{agent}` in shared data: {e}");
        }
        s
    }

    fn drop_window(&self, agent: &str) {
        if let Some(table) = &self.layout.windows {
            let (hash, slot) = self.locate(table, "w", agent.as_bytes());
            let _ = self.update(table, slot, |entries: &mut Vec<WindowEntry>| {
                let before = entries.len();
                entries.retain(|e| e.hash != hash);
                ((), entries.len() != before)
            });
        }
    }
}

/// Evicts the entry used longest ago when `entries` has no room for one more.
fn make_room<E>(entries: &mut Vec<E>, per_slot: usize, last_used: impl Fn(&E) -> i64) {
    while entries.len() >= per_slot.max(1) {
        let oldest = (0..entries.len()).min_by_key(|&i| entries.get(i).map_or(i64::MAX, &last_used));
        match oldest {
            Some(i) => {
                entries.remove(i);
            }
            None => break,
        }
    }
}

/// A 1-second suspension standing in for state that cannot be read (fail closed).
fn unreadable(now_ms: i64, e: &str) -> Suspension {
    log::warn!("shared state unavailable ({e}); the request is refused");
    Suspension {
        until_ms: now_ms.saturating_add(1000),
        kind: TripKind::Burst,
        detail: "shared state unavailable; retry shortly".into(),
    }
}

impl<H: SharedData> StateStore for SharedStore<H> {
    fn take(&self, key: &str, now_ms: i64, rate: Rate, burst: u32) -> Take {
        let Some(table) = &self.layout.buckets else {
            // The policy has no limits, so the engine never asks; refuse if it does.
            return Take::Limited { retry_after_ms: 1000 };
        };
        let (hash, slot) = self.locate(table, "b", key.as_bytes());
        let per_slot = table.per_slot;
        let token = i128::from(rate.period.as_secs()) * 1000;
        let capacity = i128::from(burst.max(1)) * token;
        let n = i128::from(rate.n);
        let result = self.update(table, slot, |entries: &mut Vec<BucketEntry>| {
            let at = match entries.iter().position(|e| e.hash == hash) {
                Some(at) => at,
                None => {
                    make_room(entries, per_slot, |e| e.last_ms);
                    entries.push(BucketEntry { hash, units: capacity, last_ms: now_ms });
                    entries.len().saturating_sub(1)
                }
            };
            let Some(bucket) = entries.get_mut(at) else {
                return (Take::Limited { retry_after_ms: 1000 }, false);
            };
            // A clock that moves backwards refills nothing.
            let elapsed = i128::from(now_ms.saturating_sub(bucket.last_ms).max(0));
            bucket.units = bucket.units.saturating_add(elapsed.saturating_mul(n)).min(capacity);
            bucket.last_ms = bucket.last_ms.max(now_ms);
            let take = if bucket.units >= token {
                bucket.units -= token;
                Take::Allowed { remaining: u32::try_from(bucket.units / token).unwrap_or(u32::MAX) }
            } else {
                let missing = token - bucket.units;
                let retry_after_ms = u64::try_from((missing + n - 1) / n).unwrap_or(u64::MAX).max(1);
                Take::Limited { retry_after_ms }
            };
            (take, true)
        });
        result.unwrap_or_else(|Failure::Store(e)| {
            log::warn!("rate limit state unavailable ({e}); the request is refused");
            Take::Limited { retry_after_ms: 1000 }
        })
    }

    fn observe(&self, agent: &str, route: usize, now_ms: i64, cfg: &BreakerConfig) -> Option<Suspension> {
        let table = self.layout.windows.as_ref()?;
        let (hash, slot) = self.locate(table, "w", agent.as_bytes());
        let per_slot = table.per_slot;
        let route = u32::try_from(route).unwrap_or(u32::MAX);
        let result = self.update(table, slot, |entries: &mut Vec<WindowEntry>| {
            let at = match entries.iter().position(|e| e.hash == hash) {
                Some(at) => at,
                None => {
                    make_room(entries, per_slot, |e| e.last_ms);
                    entries.push(WindowEntry::new(hash, now_ms));
                    entries.len().saturating_sub(1)
                }
            };
            let Some(w) = entries.get_mut(at) else { return (None, false) };
            w.last_ms = w.last_ms.max(now_ms);
            let unusual = match cfg.profile_requests {
                Some(learn) if w.seen >= learn => !w.profile.contains(&route),
                Some(_) => {
                    if !w.profile.contains(&route) && w.profile.len() < MAX_PROFILE {
                        w.profile.push(route);
                    }
                    false
                }
                None => false,
            };
            w.seen = w.seen.saturating_add(1);
            if let Some(slot) = w.slot(now_ms, cfg.window) {
                slot.requests = slot.requests.saturating_add(1);
                slot.unusual = slot.unusual.saturating_add(u32::from(unusual));
            }
            let (requests, _, unusual_total) = w.totals(now_ms, cfg.window);
            let trip = match cfg.max_requests {
                Some(max) if requests > max => {
                    Some((TripKind::Burst, format!("{requests} requests in {} (max {max})", cfg.window)))
                }
                _ if cfg.profile_requests.is_some() && unusual_total > cfg.max_unusual => Some((
                    TripKind::UnusualRoutes,
                    format!(
                        "{unusual_total} calls outside its usual routes in {} (max {})",
                        cfg.window, cfg.max_unusual
                    ),
                )),
                _ => None,
            };
            (trip, true)
        });
        let (kind, detail) = match result {
            Ok(trip) => trip?,
            Err(Failure::Store(e)) => {
                log::warn!("breaker state unavailable ({e}); this request is not counted");
                return None;
            }
        };
        let until_ms = now_ms.saturating_add(cfg.cooldown.as_secs_i64().saturating_mul(1000));
        Some(self.suspend(agent, Suspension { until_ms, kind, detail }))
    }

    fn outcome(&self, agent: &str, refused: bool, now_ms: i64, cfg: &BreakerConfig) -> Option<Suspension> {
        let table = self.layout.windows.as_ref()?;
        let (hash, slot) = self.locate(table, "w", agent.as_bytes());
        let result = self.update(table, slot, |entries: &mut Vec<WindowEntry>| {
            let Some(w) = entries.iter_mut().find(|e| e.hash == hash) else { return (None, false) };
            if refused {
                if let Some(slot) = w.slot(now_ms, cfg.window) {
                    slot.refused = slot.refused.saturating_add(1);
                }
            }
            (Some(w.totals(now_ms, cfg.window)), refused)
        });
        let (requests, refused_total, _) = match result {
            Ok(totals) => totals?,
            Err(Failure::Store(e)) => {
                log::warn!("breaker state unavailable ({e}); this outcome is not counted");
                return None;
            }
        };
        let max = cfg.max_deny_ratio?;
        if requests < cfg.min_requests || f64::from(refused_total) <= max * f64::from(requests) {
            return None;
        }
        let detail =
            format!("{refused_total} of {requests} requests refused in {} (max ratio {max})", cfg.window);
        let until_ms = now_ms.saturating_add(cfg.cooldown.as_secs_i64().saturating_mul(1000));
        Some(self.suspend(agent, Suspension { until_ms, kind: TripKind::DenyRatio, detail }))
    }

    fn suspension(&self, agent: &str, now_ms: i64) -> Option<Suspension> {
        let table = &self.layout.suspensions;
        let (hash, slot) = self.locate(table, "s", agent.as_bytes());
        let entries: Vec<SuspensionEntry> = match self.read(table, slot) {
            Ok(entries) => entries,
            Err(Failure::Store(e)) => return Some(unreadable(now_ms, &e)),
        };
        let found = entries.iter().find(|e| e.hash == hash)?;
        if found.until_ms > now_ms {
            return Some(found.suspension());
        }
        // Cooldown over: the agent starts again with a clean window.
        let _ = self.update(table, slot, |entries: &mut Vec<SuspensionEntry>| {
            let before = entries.len();
            entries.retain(|e| !(e.hash == hash && e.until_ms <= now_ms));
            ((), entries.len() != before)
        });
        self.drop_window(agent);
        None
    }

    fn lift(&self, agent: &str) -> bool {
        let table = &self.layout.suspensions;
        let (hash, slot) = self.locate(table, "s", agent.as_bytes());
        self.drop_window(agent);
        self.update(table, slot, |entries: &mut Vec<SuspensionEntry>| {
            let before = entries.len();
            entries.retain(|e| e.hash != hash);
            let lifted = entries.len() != before;
            (lifted, lifted)
        })
        .unwrap_or(false)
    }

    fn suspended(&self, now_ms: i64) -> Vec<(String, Suspension)> {
        let table = &self.layout.suspensions;
        let mut list: Vec<(String, Suspension)> = (0..table.slots)
            .filter_map(|slot| self.read::<SuspensionEntry>(table, slot).ok())
            .flatten()
            .filter(|e| e.until_ms > now_ms)
            .map(|e| (e.agent.clone(), e.suspension()))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    fn keys_held(&self) -> usize {
        let count = |table: &Table, f: &dyn Fn(u64) -> usize| (0..table.slots).map(f).sum::<usize>();
        let mut held = 0;
        if let Some(t) = &self.layout.buckets {
            held += count(t, &|s| self.read::<BucketEntry>(t, s).map_or(0, |e| e.len()));
        }
        if let Some(t) = &self.layout.windows {
            held += count(t, &|s| self.read::<WindowEntry>(t, s).map_or(0, |e| e.len()));
        }
        let t = &self.layout.suspensions;
        held + count(t, &|s| self.read::<SuspensionEntry>(t, s).map_or(0, |e| e.len()))
    }

    fn first_use(&self, space: ReplaySpace, key: [u8; 32], now: i64, expires_at: i64) -> FirstUse {
        let Some(table) = ReplaySpace::ALL
            .iter()
            .position(|s| *s == space)
            .and_then(|i| self.layout.replay.get(i))
            .and_then(Option::as_ref)
        else {
            return FirstUse::Full { retry_after_secs: 1 };
        };
        let (_, slot) = self.locate(table, space.as_str(), &key);
        let per_slot = table.per_slot;
        let result = self.update(table, slot, |entries: &mut Vec<ReplayEntry>| {
            let before = entries.len();
            if entries.iter().any(|e| e.key == key && now < e.until) {
                return (FirstUse::Replayed, false);
            }
            // Expired ids (and an expired copy of this one) make room.
            entries.retain(|e| now < e.until && e.key != key);
            if entries.len() >= per_slot {
                let soonest = entries.iter().map(|e| e.until).min().unwrap_or(now);
                let wait = u64::try_from(soonest.saturating_sub(now)).unwrap_or(u64::MAX).max(1);
                return (FirstUse::Full { retry_after_secs: wait }, entries.len() != before);
            }
            entries.push(ReplayEntry { key, until: expires_at });
            (FirstUse::Fresh, true)
        });
        result.unwrap_or_else(|Failure::Store(e)| {
            log::warn!("replay cache unavailable ({e}); the id is refused");
            FirstUse::Full { retry_after_secs: 1 }
        })
    }
}

/// The 32-byte secret at `key` in shared data, created (random) by the first VM.
pub fn shared_secret(host: &dyn SharedData, key: &str) -> Result<[u8; 32], String> {
    for _ in 0..3 {
        match host.get(key)? {
            Some((value, _)) => {
                if let Ok(secret) = <[u8; 32]>::try_from(value.as_slice()) {
                    return Ok(secret);
                }
                // Malformed: replace it, conditionally.
                let mut fresh = [0u8; 32];
                getrandom::getrandom(&mut fresh).map_err(|e| format!("no randomness: {e}"))?;
                let cas = host.get(key)?.map(|(_, cas)| cas);
                if host.set(key, &fresh, cas)? {
                    return Ok(fresh);
                }
            }
            None => {
                let mut fresh = [0u8; 32];
                getrandom::getrandom(&mut fresh).map_err(|e| format!("no randomness: {e}"))?;
                host.set(key, &fresh, None)?;
                // Read back: if another VM created it at the same moment, one value wins for all.
            }
        }
    }
    Err("the shared secret kept changing".into())
}

/// Envoy's shared data (proxy-wasm host calls).
#[derive(Debug, Clone, Copy)]
pub struct Host;

impl SharedData for Host {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        let (value, cas) = proxy_wasm::hostcalls::get_shared_data(key).map_err(|s| format!("{s:?}"))?;
        Ok(match (value, cas) {
            (None, None) => None,
            (value, cas) => Some((value.unwrap_or_default(), cas.unwrap_or(0))),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        match proxy_wasm::hostcalls::set_shared_data(key, Some(value), cas.filter(|c| *c != 0)) {
            Ok(()) => Ok(true),
            Err(proxy_wasm::types::Status::CasMismatch) => Ok(false),
            Err(s) => Err(format!("{s:?}")),
        }
    }
}

#[cfg(test)]
pub mod mock {
    //! An in-memory [`SharedData`] with Envoy's semantics (a CAS token per
    //! key, bumped on every write; a write to a missing key always succeeds).
    use super::SharedData;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// The mock host; `Arc` it to share between stores (VMs).
    #[derive(Debug, Default)]
    pub struct MockHost {
        data: Mutex<HashMap<String, (Vec<u8>, u32)>>,
        next: Mutex<u32>,
    }

    impl MockHost {
        pub fn keys(&self) -> usize {
            self.data.lock().unwrap().len()
        }
        pub fn bytes(&self) -> usize {
            self.data.lock().unwrap().iter().map(|(k, (v, _))| k.len() + v.len()).sum()
        }
    }

    impl SharedData for std::sync::Arc<MockHost> {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
            Ok(self.data.lock().unwrap().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
            let mut data = self.data.lock().unwrap();
            let mut next = self.next.lock().unwrap();
            if let (Some(cas), Some((_, current))) = (cas, data.get(key)) {
                if cas != *current {
                    return Ok(false);
                }
            }
            *next += 1;
            data.insert(key.to_owned(), (value.to_vec(), *next));
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mock::MockHost;
    use super::*;
    use crate::state::MemoryStore;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn policy(extra: &str) -> Policy {
        Policy::from_json(&format!(
            r#"{{"issuers": [{{"iss": "https://sts", "audiences": ["a"], "algorithms": ["EdDSA"],
                "jwks": {{"keys": []}}}}], "routes": [] {extra}}}"#
        ))
        .unwrap()
    }

    fn full_policy(max_keys: usize) -> Policy {
        policy(&format!(
            r#", "limits": [{{"per": "agent", "rate": "5/1m"}}], "circuit_breaker": {{"max_requests": 5}},
               "state": {{"max_keys": {max_keys}}}, "dpop": {{"replay_cache": 64}}"#
        ))
    }

    fn store(host: &Arc<MockHost>, p: &Policy) -> SharedStore<Arc<MockHost>> {
        SharedStore::open(Arc::clone(host), Layout::new("agentguard", p)).unwrap()
    }

    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn two_vms_share_one_bucket() {
        let host = Arc::new(MockHost::default());
        let p = full_policy(1000);
        let (a, b) = (store(&host, &p), store(&host, &p));
        let r = rate("5/1m");
        let allowed = (0..12)
            .filter(|i| {
                let vm = if i % 2 == 0 { &a } else { &b };
                matches!(vm.take("agent-1", 1000, r, 5), Take::Allowed { .. })
            })
            .count();
        assert_eq!(allowed, 5, "one limit across both VMs");
        assert!(matches!(b.take("agent-2", 1000, r, 5), Take::Allowed { remaining: 4 }));
    }

    #[test]
    fn the_token_services_client_limit_has_buckets_without_other_limits() {
        let host = Arc::new(MockHost::default());
        let token_service = r#", "token_service": {"issuer": "https://edge", "signing_kid": "e",
            "rate_limit": {"rate": "2/1m"}, "federation": [{"id": "ci", "scopes": ["x"], "audiences": ["a"],
              "issuer": {"iss": "https://ci", "audiences": ["https://edge"], "algorithms": ["EdDSA"],
                "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "c",
                                   "x": "3xBdjTlen6YEqELHPR3AhJwPG5XsWGa8_t1p4YSg5og"}]}}}]}"#;
        let p = policy(token_service);
        assert!(p.limits.is_empty());
        let (a, b) = (store(&host, &p), store(&host, &p));
        let r = rate("2/1m");
        assert!(matches!(a.take("token:198.51.100.7", 1000, r, 2), Take::Allowed { remaining: 1 }));
        assert!(matches!(b.take("token:198.51.100.7", 1000, r, 2), Take::Allowed { remaining: 0 }));
        assert!(
            matches!(a.take("token:198.51.100.7", 1000, r, 2), Take::Limited { .. }),
            "one bucket for both"
        );
        // Without limits of any kind there is no table, and a take is refused.
        let none = store(&host, &policy(""));
        assert!(matches!(none.take("token:198.51.100.7", 1000, r, 2), Take::Limited { .. }));
    }

    #[test]
    fn a_replayed_id_is_refused_by_the_other_vm() {
        let host = Arc::new(MockHost::default());
        let p = full_policy(1000);
        let (a, b) = (store(&host, &p), store(&host, &p));
        assert_eq!(a.first_use(ReplaySpace::DpopProof, [7; 32], 100, 160), FirstUse::Fresh);
        assert_eq!(b.first_use(ReplaySpace::DpopProof, [7; 32], 101, 160), FirstUse::Replayed);
        // The policy has no approvals, so no table for them: asked anyway, it refuses.
        assert_eq!(
            b.first_use(ReplaySpace::Approval, [7; 32], 101, 160),
            FirstUse::Full { retry_after_secs: 1 }
        );
        assert_eq!(b.first_use(ReplaySpace::DpopProof, [7; 32], 160, 220), FirstUse::Fresh, "expired");
    }

    #[test]
    fn a_full_replay_slot_refuses_instead_of_forgetting() {
        let host = Arc::new(MockHost::default());
        // replay_cache 1 → one slot of 16.
        let p = policy(r#", "dpop": {"replay_cache": 1}"#);
        let s = store(&host, &p);
        for i in 0..16u8 {
            assert_eq!(s.first_use(ReplaySpace::DpopProof, [i; 32], 0, 100 + i64::from(i)), FirstUse::Fresh);
        }
        assert_eq!(
            s.first_use(ReplaySpace::DpopProof, [99; 32], 40, 200),
            FirstUse::Full { retry_after_secs: 60 }
        );
        for i in 0..16u8 {
            assert_eq!(s.first_use(ReplaySpace::DpopProof, [i; 32], 41, 300), FirstUse::Replayed);
        }
        assert_eq!(
            s.first_use(ReplaySpace::DpopProof, [99; 32], 100, 200),
            FirstUse::Fresh,
            "room once one expires"
        );
    }

    #[test]
    fn suspensions_are_shared_listed_and_lifted() {
        let host = Arc::new(MockHost::default());
        let p = full_policy(1000);
        let (a, b) = (store(&host, &p), store(&host, &p));
        let cfg: BreakerConfig =
            serde_json::from_str(r#"{"window": "10s", "max_requests": 3, "cooldown": "1m"}"#).unwrap();
        let mut tripped = None;
        for i in 0..4 {
            let vm = if i % 2 == 0 { &a } else { &b };
            tripped = tripped.or(vm.observe("agent-x", 0, 1000 + i, &cfg));
        }
        let s = tripped.expect("4 requests > 3 across both VMs trip the breaker");
        assert_eq!(s.kind, TripKind::Burst);
        assert_eq!(a.suspension("agent-x", 2000).map(|s| s.until_ms), Some(61_003));
        assert_eq!(b.suspended(2000).len(), 1);
        assert_eq!(b.suspended(2000)[0].0, "agent-x");
        assert!(b.lift("agent-x"));
        assert!(a.suspension("agent-x", 2000).is_none(), "lifted for every VM");
        assert!(!a.lift("agent-x"));
        // A clean window after the lift.
        assert!(a.observe("agent-x", 0, 3000, &cfg).is_none());
    }

    #[test]
    fn memory_is_bounded_by_the_layout() {
        let host = Arc::new(MockHost::default());
        let p = full_policy(64);
        let layout = Layout::new("agentguard", &p);
        let s = SharedStore::open(Arc::clone(&host), layout.clone()).unwrap();
        let keys_after_open = host.keys();
        assert_eq!(
            keys_after_open as u64,
            layout.slot_keys() + 2,
            "slots + secret + marker, created up front"
        );
        let cfg: BreakerConfig = serde_json::from_str(r#"{"max_requests": 1000}"#).unwrap();
        for i in 0..5000 {
            let agent = format!("agent-{i}");
            s.take(&agent, i, rate("5/1m"), 5);
            s.observe(&agent, 1, i, &cfg);
        }
        assert_eq!(host.keys(), keys_after_open, "no key is ever added after the tables exist");
        assert!(s.keys_held() <= 64 + 64 + 64, "{}", s.keys_held());
        // Bucket entries 32 B, windows ~290 B, suspensions, plus the key names.
        let bound = 64 * 32 + 64 * 300 + layout.slot_keys() as usize * 40 + 512;
        assert!(host.bytes() < bound, "{} >= {bound}", host.bytes());
    }

    #[test]
    fn slot_hashes_are_keyed_per_envoy() {
        let p = full_policy(1000);
        let a = store(&Arc::new(MockHost::default()), &p);
        let b = store(&Arc::new(MockHost::default()), &p);
        let table = a.layout.buckets.clone().unwrap();
        let slots = |s: &SharedStore<Arc<MockHost>>| {
            (0..32).map(|i| s.locate(&table, "b", format!("k{i}").as_bytes()).1).collect::<Vec<_>>()
        };
        assert_ne!(slots(&a), slots(&b), "two Envoys place keys differently");
    }

    #[test]
    fn unreadable_values_fail_closed() {
        let host = Arc::new(MockHost::default());
        let p = full_policy(1);
        let s = store(&host, &p);
        let garbage = [9u8, 9, 9];
        for table in s.layout.tables() {
            for slot in 0..table.slots {
                host.set(&table.key(slot), &garbage, None).unwrap();
            }
        }
        assert!(matches!(s.take("a", 0, rate("5/1m"), 5), Take::Limited { .. }));
        assert_eq!(
            s.first_use(ReplaySpace::DpopProof, [1; 32], 0, 10),
            FirstUse::Full { retry_after_secs: 1 }
        );
        assert!(s.suspension("a", 0).is_some(), "unreadable suspensions refuse");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Take(u8, i64),
        Observe(u8, u8, i64),
        Outcome(u8, bool, i64),
        Suspension(u8, i64),
        Lift(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4, 0i64..300).prop_map(|(k, t)| Op::Take(k, t)),
            (0u8..4, 0u8..6, 0i64..300).prop_map(|(a, r, t)| Op::Observe(a, r, t)),
            (0u8..4, any::<bool>(), 0i64..300).prop_map(|(a, r, t)| Op::Outcome(a, r, t)),
            (0u8..4, 0i64..300).prop_map(|(a, t)| Op::Suspension(a, t)),
            (0u8..4).prop_map(Op::Lift),
        ]
    }

    proptest! {
        /// Below capacity, the shared store answers exactly as the in-memory
        /// store (the reference) does, for any sequence of operations.
        #[test]
        fn agrees_with_the_memory_store(ops in proptest::collection::vec(op(), 1..120)) {
            let host = Arc::new(MockHost::default());
            let p = full_policy(1000);
            let shared = store(&host, &p);
            let memory = MemoryStore::new(1000);
            let cfg: BreakerConfig = serde_json::from_str(
                r#"{"window": "2s", "max_requests": 6, "max_deny_ratio": 0.5, "min_requests": 3,
                    "profile_requests": 3, "max_unusual": 1, "cooldown": "3s"}"#).unwrap();
            let r = rate("3/1s");
            let mut now = 0i64;
            for op in ops {
                match op {
                    Op::Take(k, dt) => {
                        now += dt * 10;
                        let key = format!("bucket-{k}");
                        prop_assert_eq!(shared.take(&key, now, r, 2), memory.take(&key, now, r, 2));
                    }
                    Op::Observe(a, route, dt) => {
                        now += dt * 10;
                        let agent = format!("agent-{a}");
                        prop_assert_eq!(
                            shared.observe(&agent, route.into(), now, &cfg),
                            memory.observe(&agent, route.into(), now, &cfg)
                        );
                    }
                    Op::Outcome(a, refused, dt) => {
                        now += dt * 10;
                        let agent = format!("agent-{a}");
                        prop_assert_eq!(
                            shared.outcome(&agent, refused, now, &cfg),
                            memory.outcome(&agent, refused, now, &cfg)
                        );
                    }
                    Op::Suspension(a, dt) => {
                        now += dt * 10;
                        let agent = format!("agent-{a}");
                        prop_assert_eq!(shared.suspension(&agent, now), memory.suspension(&agent, now));
                    }
                    Op::Lift(a) => {
                        let agent = format!("agent-{a}");
                        prop_assert_eq!(shared.lift(&agent), memory.lift(&agent));
                    }
                }
                prop_assert_eq!(shared.suspended(now), memory.suspended(now));
            }
        }
    }
}
