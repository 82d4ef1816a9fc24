//! Memory held by per-agent state: 100,000 distinct agents through the rate
//! limiter and the circuit breaker, measured as the growth of the process's
//! resident memory (what an operator sees), Linux only.
//!
//!     cargo bench --bench memory

// A benchmark fails by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
use agentguard::duration::Duration;
use agentguard::state::{BreakerConfig, MemoryStore, Rate, StateStore};

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let cfg = BreakerConfig {
        window: Duration::from_secs(10),
        max_requests: Some(1000),
        max_deny_ratio: Some(0.5),
        min_requests: 10,
        profile_requests: Some(20),
        max_unusual: 3,
        cooldown: Duration::from_secs(900),
    };
    let rate = Rate::parse("100/1m").unwrap();
    // Each case runs in a fresh process, so freed memory of one case can't
    // hide the growth of the next.
    let case: Option<(usize, usize)> = std::env::var("AGENTGUARD_MEMORY_CASE").ok().and_then(|v| {
        let (a, m) = v.split_once(',')?;
        Some((a.parse().ok()?, m.parse().ok()?))
    });
    let Some(case) = case else {
        println!("agentguard per-agent state memory (resident set growth)\n");
        for case in ["100000,100000", "1000000,100000", "1000000,10000"] {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe).env("AGENTGUARD_MEMORY_CASE", case).output().unwrap();
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        return;
    };
    for (agents, max_keys) in [case] {
        let before = rss();
        let store = MemoryStore::new(max_keys);
        for i in 0..agents {
            // Realistic agent keys: limit id, subject and a SPIFFE ID.
            let agent = format!("spiffe://prod.example.com/agents/agent-{i:07}");
            store.take(&format!("per-agent|a|user:{i}|{agent}"), 1_000, rate, 20);
            store.observe(&agent, i % 7, 1_000, &cfg);
            store.outcome(&agent, false, 1_000, &cfg);
        }
        let held = rss().saturating_sub(before);
        let kept_agents = store.keys_held() / 2;
        println!(
            "{agents:>9} distinct agents, state.max_keys {max_keys}: {kept_agents} agents kept, {:.1} MiB, ~{:.0} bytes per agent",
            held as f64 / (1024.0 * 1024.0),
            held as f64 / kept_agents.max(1) as f64
        );
        drop(store);
    }
}
