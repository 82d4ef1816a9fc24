//! Hostile load against one engine, natively:
//!
//! - `tokens`: a flood of distinct, validly signed tokens (every one misses
//!   the verified-token cache and is then cached: the cache fills to its
//!   capacity and evicts);
//! - `forged`: a flood of distinct tokens with random signatures (cache-busting
//!   garbage an attacker can make for free: refused, never cached);
//! - `agents`: a flood of distinct agents (each has its own token, rate-limit
//!   buckets, breaker window and statistics row);
//! - `dpop`: one DPoP-bound token and a flood of distinct proofs, each sent
//!   twice (the replay cache fills to its capacity of live ids; every replay
//!   refused; past the capacity, new proofs are refused as `replay_cache_full`
//!   until the oldest expire, and no live id is ever forgotten);
//! - `breaker`: a flood of distinct agents that each trip the circuit breaker
//!   (one suspension per agent; suspensions are bounded by `state.max_keys`).
//!
//! `tokens` and `agents` also run (and `breaker` only runs) with the host-verified signature path
//! (`+verdict`: `pending_signature` then `decide_with`), which takes the
//! signature check out so the cost of the engine's own state shows.
//!
//! For each scenario and each number of distinct keys N (10^3, 10^4, 10^5),
//! a fresh process builds the engine, sends N requests with N distinct keys,
//! then times a window of 1000 more requests with new keys. It reports the
//! median time per decision in that window (and its ratio to N = 10^3: flat
//! means no cost grows with the keys seen), the resident memory of the engine
//! at rest and after the flood, the entries each bounded structure holds,
//! and whether every decision was the one expected.
//!
//!     cargo run --release --manifest-path bench/hostile/Cargo.toml [-- quick]

// A benchmark fails by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use agentguard::mint::{self, SigningKey};
use agentguard::token::HostVerdict;
use agentguard::{Decision, Engine, ReasonCode, Request};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_767_225_600;
const WINDOW: usize = 1000;

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn keys() -> Value {
    serde_json::from_str(include_str!("../../../tests/vectors/keys.json")).unwrap()
}

fn public(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    jwk.as_object_mut().unwrap().remove("d");
    jwk
}

/// A small xorshift generator: the benchmark is deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn policy(scenario: &str) -> String {
    let k = keys();
    let mut p = json!({
        "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                     "jwks": {"keys": [public(&k["ed25519"])]}, "algorithms": ["EdDSA"], "max_lifetime": "10m"}],
        "delegation": {"max_depth": 2},
        "routes": [{"id": "read", "methods": ["GET"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"]}],
        "network": {"allow": ["10.0.0.0/8"]}
    });
    if scenario.starts_with("agents") {
        // Every per-agent structure in play: two limits, the breaker with route profiles.
        p["limits"] = json!([{"id": "per-agent", "per": "agent", "rate": "120/1m", "burst": 30},
                             {"id": "per-agent-route", "per": "agent_route", "rate": "60/1m"}]);
        p["circuit_breaker"] =
            json!({"window": "10s", "max_requests": 100, "max_deny_ratio": 0.5, "profile_requests": 20});
    }
    if scenario.starts_with("breaker") {
        // The second request of an agent within the window trips the breaker.
        p["circuit_breaker"] = json!({"window": "10s", "max_requests": 1, "cooldown": "15m"});
    }
    if scenario == "dpop" {
        p["issuers"][0]["binding"] = json!("dpop");
    }
    p.to_string()
}

struct Flood {
    issuer: SigningKey,
    holder: SigningKey,
    holder_jwk: Value,
    holder_jkt: String,
    bound_token: String,
    rng: Rng,
}

impl Flood {
    fn new() -> Flood {
        let k = keys();
        let issuer = SigningKey::from_jwk(&k["ed25519"]).unwrap();
        let holder = SigningKey::from_random(agentguard::keys::Alg::EdDSA, &[42; 32]).unwrap();
        let mut holder_jwk = holder.public_jwk("h");
        holder_jwk.as_object_mut().unwrap().retain(|k, _| ["kty", "crv", "x"].contains(&k.as_str()));
        let holder_jkt = agentguard::keys::parse_jwk(&holder_jwk).unwrap().unwrap().thumbprint;
        let mut f = Flood { issuer, holder, holder_jwk, holder_jkt, bound_token: String::new(), rng: Rng(0x9e37_79b9_7f4a_7c15) };
        f.bound_token = f.token(0, "spiffe://test/agents/holder", true);
        f
    }

    fn token(&self, i: usize, agent: &str, bound: bool) -> String {
        let mut c = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": format!("user:{i}"),
            "act": {"sub": agent}, "scope": "crm.read", "iat": NOW - 10, "exp": NOW + 290, "jti": format!("t{i}")});
        if bound {
            c["cnf"] = json!({"jkt": self.holder_jkt});
        }
        mint::sign(&self.issuer, Some("test-ed25519"), "at+jwt", c.as_object().unwrap())
    }

    fn forged(&mut self, i: usize) -> String {
        let header = agentguard::b64::encode(br#"{"alg":"EdDSA","kid":"test-ed25519","typ":"at+jwt"}"#);
        let claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": format!("user:{i}"),
            "iat": NOW - 10, "exp": NOW + 290, "jti": format!("f{i}")});
        let payload = agentguard::b64::encode(claims.to_string().as_bytes());
        // A canonical `s` (below the group order) so every forgery costs a
        // full signature check, the attacker's best case.
        let mut sig = self.rng.bytes(64);
        sig[63] &= 0x0f;
        format!("{header}.{payload}.{}", agentguard::b64::encode(&sig))
    }

    fn proof(&self, i: usize) -> String {
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert("alg".into(), "EdDSA".into());
        header.insert("jwk".into(), self.holder_jwk.clone());
        let c = json!({"jti": format!("p{i}"), "htm": "GET", "htu": "https://api.test/v1/contacts/42", "iat": NOW,
            "ath": agentguard::b64::encode(&Sha256::digest(self.bound_token.as_bytes()))});
        mint::sign_with_header(&self.holder, &header, c.as_object().unwrap())
    }
}

fn request(scheme: &str, token: &str, proof: Option<&str>) -> Request<'static> {
    let mut b = Request::builder("GET", "/v1/contacts/42", NOW)
        .host("api.test")
        .source_ip("10.1.2.3")
        .header("authorization", &format!("{scheme} {token}"));
    if let Some(p) = proof {
        b = b.header("dpop", p);
    }
    b.build().unwrap()
}

/// One case in this process: returns a JSON line.
fn run_case(scenario: &str, n: usize) -> Value {
    // Room for every timing, touched before the baseline is taken.
    let mut times: Vec<u64> = vec![1; n + WINDOW];
    times.clear();
    let rss_start = rss();
    let engine = Engine::from_json(&policy(scenario)).unwrap();
    let rss_engine = rss();
    let mut flood = Flood::new();
    let verdict = scenario.ends_with("+verdict");
    let mut wrong = 0usize;
    let mut refused_replays = 0usize;
    let mut refused_full = 0usize;

    let decide = |engine: &Engine, req: &Request| -> (Decision, u128) {
        if verdict {
            // The host checked the signature (as WebCrypto would); the engine does the rest.
            let check = engine.pending_signature(req);
            let v = check.map(|c| HostVerdict { token_hash: c.token_hash, valid: true });
            let t = Instant::now();
            let d = black_box(engine.decide_with(black_box(req), v.as_ref()));
            (d, t.elapsed().as_nanos())
        } else {
            let t = Instant::now();
            let d = black_box(engine.decide(black_box(req)));
            (d, t.elapsed().as_nanos())
        }
    };

    for i in 0..n + WINDOW {
        let (ns, ok) = match scenario.trim_end_matches("+verdict") {
            "tokens" => {
                let req = request("Bearer", &flood.token(i, "spiffe://test/agents/one", false), None);
                let (d, ns) = decide(&engine, &req);
                (ns, d.is_allowed())
            }
            "forged" => {
                let req = request("Bearer", &flood.forged(i), None);
                let (d, ns) = decide(&engine, &req);
                (ns, d.codes() == [ReasonCode::TokenSignatureInvalid])
            }
            "agents" => {
                let agent = format!("spiffe://test/agents/agent-{i:07}");
                let req = request("Bearer", &flood.token(i, &agent, false), None);
                let (d, ns) = decide(&engine, &req);
                (ns, d.is_allowed())
            }
            "breaker" => {
                let agent = format!("spiffe://test/agents/agent-{i:07}");
                let req = request("Bearer", &flood.token(i, &agent, false), None);
                let (first, _) = decide(&engine, &req);
                let (second, ns) = decide(&engine, &req);
                (ns, first.is_allowed() && second.codes() == [ReasonCode::BreakerBurst])
            }
            "dpop" => {
                let proof = flood.proof(i);
                let req = request("DPoP", &flood.bound_token.clone(), Some(&proof));
                let (first, ns) = decide(&engine, &req);
                let (replay, _) = decide(&engine, &req);
                let replay_refused = replay.codes() == [ReasonCode::DpopProofReplayed];
                refused_replays += usize::from(replay_refused);
                // Past the capacity (all ids live), new proofs are refused outright: fail closed.
                let full = first.codes() == [ReasonCode::ReplayCacheFull]
                    && replay.codes() == [ReasonCode::ReplayCacheFull];
                refused_full += usize::from(full);
                (ns, (first.is_allowed() && replay_refused) || full)
            }
            other => panic!("unknown scenario {other}"),
        };
        wrong += usize::from(!ok);
        times.push(ns as u64);
    }
    let rss_after = rss();
    // After the flood: is the very first proof still refused as a replay?
    let first_proof_refused = (scenario == "dpop").then(|| {
        let req = request("DPoP", &flood.bound_token.clone(), Some(&flood.proof(0)));
        engine.decide(&req).codes() == [ReasonCode::DpopProofReplayed]
    });
    let (flood, window) = times.split_at_mut(n);
    window.sort_unstable();
    flood.sort_unstable();
    let median = window[window.len() / 2] as f64 / 1000.0;
    let mean = window.iter().sum::<u64>() as f64 / window.len() as f64 / 1000.0;
    let flood_median = flood[flood.len() / 2] as f64 / 1000.0;
    json!({
        "scenario": scenario, "n": n,
        "window_median_us": median, "window_mean_us": mean,
        "flood_median_us": flood_median,
        "rss_start": rss_start, "rss_engine": rss_engine, "rss_after": rss_after,
        "cached_tokens": engine.cached_tokens(), "state_keys": engine.state_keys(),
        "stats_agents": engine.stats().agents.len(),
        "wrong": wrong, "refused_replays": refused_replays, "refused_full": refused_full,
        "first_proof_refused": first_proof_refused,
    })
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

fn main() {
    if let Ok(case) = std::env::var("AGENTGUARD_HOSTILE_CASE") {
        let (scenario, n) = case.split_once(',').unwrap();
        println!("{}", run_case(scenario, n.parse().unwrap()));
        return;
    }
    let quick = std::env::args().any(|a| a == "quick");
    let sizes: &[usize] = if quick { &[1_000, 10_000] } else { &[1_000, 10_000, 100_000] };
    let scenarios = ["tokens", "tokens+verdict", "forged", "agents", "agents+verdict", "breaker+verdict", "dpop"];
    println!("agentguard hostile load: one engine, N distinct keys, then a timed window of {WINDOW} more\n");
    println!(
        "{:<16} {:>7} {:>11} {:>9} {:>11} {:>10} {:>10} {:>9} {:>8} {:>8}  {}",
        "scenario", "N", "µs/dec med", "vs 10^3", "flood med", "RSS idle", "RSS after", "growth", "cache", "state", "correct"
    );
    let exe = std::env::current_exe().unwrap();
    for scenario in scenarios {
        let mut base = None;
        let mut cases: Vec<usize> = sizes.to_vec();
        if scenario == "dpop" && !quick {
            // Past the replay cache's default capacity (100000 proof ids).
            cases.push(150_000);
        }
        if scenario == "agents+verdict" && !quick {
            // Well past the state capacity: memory must plateau.
            cases.push(300_000);
        }
        for &n in &cases {
            let out = std::process::Command::new(&exe)
                .env("AGENTGUARD_HOSTILE_CASE", format!("{scenario},{n}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let r: Value = serde_json::from_slice(&out.stdout).unwrap();
            let med = r["window_median_us"].as_f64().unwrap();
            let base_med = *base.get_or_insert(med);
            let u = |k: &str| r[k].as_u64().unwrap();
            let mut correct = if u("wrong") == 0 { "all as expected".to_owned() } else { format!("{} wrong", u("wrong")) };
            if scenario == "dpop" {
                correct.push_str(&format!(
                    "; {} replays refused, {} refused as cache full",
                    u("refused_replays"),
                    u("refused_full")
                ));
                if r["first_proof_refused"] == Value::Bool(false) {
                    correct.push_str("; first proof replayable after eviction");
                } else {
                    correct.push_str("; first proof still refused");
                }
            }
            let held = if scenario.starts_with("agents") || scenario.starts_with("breaker") {
                format!("{}", u("state_keys"))
            } else {
                "-".into()
            };
            println!(
                "{:<16} {:>7} {:>11.2} {:>8.2}× {:>11.2} {:>10} {:>10} {:>9} {:>8} {:>8}  {}",
                scenario,
                n,
                med,
                med / base_med,
                r["flood_median_us"].as_f64().unwrap(),
                mib(u("rss_engine")),
                mib(u("rss_after")),
                mib(u("rss_after").saturating_sub(u("rss_engine"))),
                u("cached_tokens"),
                held,
                correct
            );
        }
    }
    println!("\nµs/dec med: median time of one decision in the window after N distinct keys; vs 10^3: its ratio");
    println!("to N = 1000; flood med: median over the N requests themselves. RSS in MiB (idle: the engine built, nothing decided). cache: verified tokens held");
    println!("(default capacity 10000); state: rate-limit buckets + breaker windows + suspensions held");
    println!("(bounded by state.max_keys, default 100000, each).");
}
