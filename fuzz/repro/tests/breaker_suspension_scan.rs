//! Once the circuit breaker holds `state.max_keys` live suspensions, every
//! new one scans all of them twice (`MemoryStore::suspend` in src/state.rs:
//! `retain` over the map, then `min_by_key` to find the one ending soonest),
//! so the cost of a trip grows with the number of agents suspended: a slow
//! path under hostile load. bench/hostile measures it end to end:
//! `breaker+verdict` takes 7.8 µs per decision after 10^3 suspended agents
//! and 293 µs (37×) after 10^5 (the default `state.max_keys`).
//!
//! This test compares the time of 1000 trips into a store that is full of
//! live suspensions with 1000 trips into an empty one; anything near O(1)
//! passes with a wide margin, the current O(capacity) scan does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Instant;

use agentguard::duration::Duration;
use agentguard::state::{BreakerConfig, MemoryStore, StateStore};

const CAPACITY: usize = 20_000;
const TRIPS: usize = 1_000;

fn cfg() -> BreakerConfig {
    BreakerConfig {
        window: Duration::from_secs(10),
        max_requests: Some(0), // the first request in the window trips
        max_deny_ratio: None,
        min_requests: 10,
        profile_requests: None,
        max_unusual: 3,
        cooldown: Duration::from_secs(900),
    }
}

fn trips(store: &MemoryStore, from: usize) -> std::time::Duration {
    let cfg = cfg();
    let t = Instant::now();
    for i in from..from + TRIPS {
        assert!(store.observe(&format!("agent-{i}"), 0, 1_000, &cfg).is_some());
    }
    t.elapsed()
}

#[test]
fn a_trip_costs_the_same_with_many_agents_suspended() {
    let empty = MemoryStore::new(CAPACITY);
    let baseline = trips(&empty, 0);

    let full = MemoryStore::new(CAPACITY);
    let cfg = cfg();
    for i in 0..CAPACITY {
        full.observe(&format!("filler-{i}"), 0, 1_000, &cfg);
    }
    assert_eq!(full.suspended(1_000).len(), CAPACITY);
    let loaded = trips(&full, 0);

    let ratio = loaded.as_secs_f64() / baseline.as_secs_f64();
    assert!(
        ratio < 5.0,
        "{TRIPS} trips took {loaded:?} with {CAPACITY} agents suspended, {baseline:?} with none ({ratio:.0}×)"
    );
}
