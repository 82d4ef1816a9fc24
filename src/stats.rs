//! Live statistics: what agents do, kept in the engine, bounded.
//!
//! Per agent: requests, allowed, refused by reason, approvals requested,
//! revocations, last seen; per route: requests; totals by outcome and reason.
//! Agents are kept in an LRU map of bounded size, so a flood of distinct
//! agents evicts the idle ones. Hosts expose a snapshot
//! ([`crate::Engine::stats`]) through their own API (the Workers
//! `/_agentguard/stats` route, the component's `stats`). Envoy counts
//! decisions in its own metrics instead and turns these off
//! ([`crate::Engine::disable_stats`]).

use std::collections::BTreeMap;

use lru::LruCache;
use serde::Serialize;

use crate::decision::{Decision, Outcome};

/// Counters for one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentStats {
    /// Requests seen.
    pub requests: u64,
    /// Allowed.
    pub allowed: u64,
    /// Refused, by reason code.
    pub denied: BTreeMap<String, u64>,
    /// `approval_required` answers.
    pub approvals_requested: u64,
    /// `revoked` answers.
    pub revocations: u64,
    /// Requests per route id.
    pub routes: BTreeMap<String, u64>,
    /// Unix milliseconds of the last request.
    pub last_seen_ms: i64,
}

/// A snapshot of the engine's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Every decision counted.
    pub decisions: u64,
    /// By outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Refusals by reason code.
    pub reasons: BTreeMap<String, u64>,
    /// Requests per route id (unmatched requests are not counted here).
    pub routes: BTreeMap<String, u64>,
    /// Per agent (the most recently active, up to the bound).
    pub agents: BTreeMap<String, AgentStats>,
    /// Agents evicted from the per-agent table since the engine started.
    pub agents_evicted: u64,
}

/// The engine's statistics.
#[derive(Debug)]
pub struct Stats {
    decisions: u64,
    outcomes: BTreeMap<&'static str, u64>,
    reasons: BTreeMap<&'static str, u64>,
    routes: BTreeMap<String, u64>,
    agents: LruCache<String, AgentStats>,
    evicted: u64,
}

impl Stats {
    /// Statistics keeping at most `max_agents` agents.
    pub fn new(max_agents: usize) -> Stats {
        Stats {
            decisions: 0,
            outcomes: BTreeMap::new(),
            reasons: BTreeMap::new(),
            routes: BTreeMap::new(),
            agents: crate::cache::lru(max_agents),
            evicted: 0,
        }
    }

    /// Counts one decision. Routes are counted only once matched (route ids
    /// come from the policy, so the route table is bounded by it).
    pub fn record(&mut self, d: &Decision) {
        self.decisions = self.decisions.saturating_add(1);
        *self.outcomes.entry(d.decision.as_str()).or_default() += 1;
        for r in &d.reasons {
            *self.reasons.entry(r.code.as_str()).or_default() += 1;
        }
        if let Some(route) = &d.route {
            bump(&mut self.routes, route);
        }
        let Some(identity) = &d.identity else { return };
        // One lookup, whether the agent is known or new.
        let full = self.agents.len() == self.agents.cap().get();
        let evicted = &mut self.evicted;
        let a = self.agents.get_or_insert_mut_ref(identity.agent.as_str(), || {
            if full {
                *evicted = evicted.saturating_add(1);
            }
            AgentStats::default()
        });
        a.requests += 1;
        a.last_seen_ms = d.event.time_ms;
        match d.decision {
            Outcome::Allow => a.allowed += 1,
            Outcome::ApprovalRequired => a.approvals_requested += 1,
            Outcome::Revoked => a.revocations += 1,
            Outcome::Deny => {}
        }
        if !matches!(d.decision, Outcome::Allow | Outcome::ApprovalRequired) {
            for r in &d.reasons {
                *a.denied.entry(r.code.as_str().to_owned()).or_default() += 1;
            }
        }
        if let Some(route) = &d.route {
            bump(&mut a.routes, route);
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        // `extend`, not `collect` (which sorts first: a sort instance per
        // map type in the Wasm module, for keys that come sorted or few).
        let (mut outcomes, mut reasons, mut agents) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        outcomes.extend(self.outcomes.iter().map(|(k, v)| ((*k).to_owned(), *v)));
        reasons.extend(self.reasons.iter().map(|(k, v)| ((*k).to_owned(), *v)));
        agents.extend(self.agents.iter().map(|(k, v)| (k.clone(), v.clone())));
        StatsSnapshot {
            decisions: self.decisions,
            outcomes,
            reasons,
            routes: self.routes.clone(),
            agents,
            agents_evicted: self.evicted,
        }
    }
}

/// Counts one more for `key` without copying it when it is already counted.
fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n = n.saturating_add(1),
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}
