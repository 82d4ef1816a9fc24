//! Decision logs, live statistics and the activity report.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::mint::{self, SigningKey};
use agentguard::report::Report;
use agentguard::{Engine, Request};
use serde_json::{json, Value};

const T0: i64 = 1_767_225_600;
const MARKER: &str = "SECRET-MARKER-7c1f";

fn keys() -> Value {
    serde_json::from_str(include_str!("vectors/keys.json")).unwrap()
}

fn engine(log: Value) -> Engine {
    let mut jwk = keys()["ed25519"].clone();
    jwk.as_object_mut().unwrap().remove("d");
    Engine::from_json(
        &json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"], "jwks": {"keys": [jwk]},
                         "algorithms": ["EdDSA"], "max_lifetime": "1h"}],
            "routes": [{"id": "read", "methods": ["GET"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"]},
                       {"id": "write", "methods": ["POST"], "path": "/v1/contacts", "scopes": ["crm.write"]}],
            "circuit_breaker": {"window": "10s", "max_requests": 30, "cooldown": "1m"},
            "log": log
        })
        .to_string(),
    )
    .unwrap()
}

fn token(agent: &str) -> String {
    let claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "user:alice", "client_id": agent,
        "scope": "crm.read", "iat": T0, "exp": T0 + 3000, "jti": format!("jti-{agent}"), "tenant": "acme",
        "note": MARKER});
    let key = SigningKey::from_jwk(&keys()["ed25519"]).unwrap();
    mint::sign(&key, Some("test-ed25519"), "at+jwt", claims.as_object().unwrap())
}

fn request(method: &str, path: &str, token: &str, now_ms: i64) -> Request<'static> {
    let mut input = agentguard::RequestInput {
        method: method.into(),
        host: "api.test".into(),
        path: path.into(),
        now: now_ms as f64 / 1000.0,
        ..Default::default()
    };
    use agentguard::request::HeaderValue::One;
    input.headers.insert("authorization".into(), One(format!("Bearer {token}")));
    input.headers.insert("dpop".into(), One(format!("{MARKER}.x.y")));
    input.headers.insert("user-agent".into(), One("crm-bot/1.2".into()));
    input.headers.insert("cookie".into(), One(MARKER.into()));
    Request::from_input(&input).unwrap().into_owned()
}

#[test]
fn events_never_carry_tokens_or_credential_headers() {
    let e = engine(json!({"claims": ["tenant"], "headers": ["user-agent"]}));
    let t = token("agent-a");
    for (method, path) in
        [("GET", "/v1/contacts/1?secret=SECRET-MARKER-7c1f"), ("POST", "/v1/contacts"), ("GET", "/nope")]
    {
        let d = e.decide(&request(method, path, &t, T0 * 1000));
        let line = serde_json::to_string(&d.event).unwrap();
        assert!(!line.contains(MARKER), "{line}");
        assert!(!line.contains(&t[20..60]), "token leaked: {line}");
        assert!(!line.contains(t.rsplit('.').next().unwrap()), "signature leaked");
        if d.event.agent.is_some() {
            assert_eq!(d.event.claims["tenant"], "acme");
            assert!(!d.event.claims.contains_key("note"), "only listed claims");
        }
        assert_eq!(d.event.headers["user-agent"], "crm-bot/1.2");
        assert!(!d.event.headers.contains_key("authorization") && !d.event.headers.contains_key("cookie"));
        assert!(!d.event.path.contains('?'), "query values are never logged");
    }
    // Credential headers can't be configured into the log.
    let bad = std::panic::catch_unwind(|| engine(json!({"headers": ["authorization"]})));
    assert!(bad.is_err());
}

#[test]
fn outcome_filter_and_sampling() {
    let e = engine(json!({"outcomes": ["deny", "revoked"]}));
    let t = token("agent-b");
    assert!(!e.decide(&request("GET", "/v1/contacts/1", &t, T0 * 1000)).log, "allow is filtered out");
    assert!(e.decide(&request("POST", "/v1/contacts", &t, T0 * 1000)).log);
    let e = engine(json!({"sample": 0.25}));
    let logged = (0..2000)
        .filter(|i| e.decide(&request("GET", &format!("/v1/contacts/{i}"), &t, T0 * 1000 + i)).log)
        .count();
    assert!((350..650).contains(&logged), "about a quarter sampled: {logged}");
    // Deterministic: the same request gives the same answer.
    let a = e.decide(&request("GET", "/v1/contacts/9", &t, T0 * 1000 + 5)).log;
    assert_eq!(a, e.decide(&request("GET", "/v1/contacts/9", &t, T0 * 1000 + 5)).log);
}

#[test]
fn live_stats_count_per_agent_and_route() {
    let e = engine(json!({}));
    let (a, b) = (token("agent-a"), token("agent-b"));
    for i in 0..5 {
        e.decide(&request("GET", "/v1/contacts/1", &a, T0 * 1000 + i));
    }
    e.decide(&request("POST", "/v1/contacts", &a, T0 * 1000 + 10));
    e.decide(&request("GET", "/v1/contacts/2", &b, T0 * 1000 + 11));
    e.decide(&request("GET", "/elsewhere", &b, T0 * 1000 + 12));
    // agent-a bursts past the breaker's 30 requests in 10 s.
    for i in 0..30 {
        e.decide(&request("GET", "/v1/contacts/1", &a, T0 * 1000 + 100 + i));
    }
    let s = e.stats();
    assert_eq!(s.decisions, 38);
    let sa = &s.agents["agent-a"];
    assert_eq!(sa.requests, 36);
    assert_eq!(sa.allowed, 29);
    assert_eq!(sa.denied["scope_insufficient"], 1);
    assert_eq!(sa.revocations, 6, "the trip and five suspended requests");
    assert_eq!(sa.routes["read"], 35);
    assert_eq!(s.agents["agent-b"].requests, 1, "the unmatched request has no verified agent");
    assert_eq!(s.routes["read"], 36);
    assert_eq!(s.reasons["route_not_matched"], 1);
    assert_eq!(s.outcomes["revoked"], 6);
}

#[test]
fn live_stats_keep_the_most_recently_active_agents_and_count_the_evicted() {
    let e = engine(json!({"stats_agents": 2}));
    let (a, b, c) = (token("agent-a"), token("agent-b"), token("agent-c"));
    for (i, t) in [&a, &b, &a, &c, &a].into_iter().enumerate() {
        e.decide(&request("GET", "/v1/contacts/1", t, T0 * 1000 + i as i64));
    }
    let s = e.stats();
    // agent-b was the least recently active when agent-c came; known agents evict nobody.
    assert_eq!(s.agents.keys().collect::<Vec<_>>(), ["agent-a", "agent-c"]);
    assert_eq!(s.agents_evicted, 1);
    assert_eq!((s.agents["agent-a"].requests, s.agents["agent-c"].requests), (3, 1));
}

#[test]
fn an_engine_without_stats_decides_the_same_and_counts_nothing() {
    let (counting, mut quiet) = (engine(json!({})), engine(json!({})));
    quiet.disable_stats();
    let t = token("agent-a");
    for (i, (method, path)) in
        [("GET", "/v1/contacts/1"), ("POST", "/v1/contacts"), ("GET", "/nope")].iter().enumerate()
    {
        let r = request(method, path, &t, T0 * 1000 + i as i64);
        let (a, b) = (counting.decide(&r), quiet.decide(&r));
        assert_eq!((a.decision, a.status, &a.reasons), (b.decision, b.status, &b.reasons), "{method} {path}");
    }
    assert_eq!(counting.stats().decisions, 3);
    assert_eq!(quiet.stats(), agentguard::stats::StatsSnapshot::default());
}

#[test]
fn report_totals_match_an_independent_count() {
    // A realistic log from the engine, then 100,000 synthetic events.
    let e = engine(json!({}));
    let mut lines = Vec::new();
    let agents: Vec<String> = (0..8).map(|i| token(&format!("agent-{i}"))).collect();
    for i in 0..400i64 {
        let t = &agents[(i % 8) as usize];
        let path = if i % 13 == 0 { "/nope".to_owned() } else { format!("/v1/contacts/{i}") };
        let method = if i % 7 == 0 { "POST" } else { "GET" };
        let d = e.decide(&request(method, &path, t, T0 * 1000 + i * 60_000));
        lines.push(serde_json::to_string(&d.event).unwrap());
    }
    let outcomes = ["allow", "deny", "approval_required", "revoked"];
    for i in 0..100_000u64 {
        let outcome = outcomes[(i % 4) as usize];
        let reasons = if outcome == "allow" { json!([]) } else { json!(["rate_limited"]) };
        lines.push(
            json!({"v": 1, "time_ms": T0 * 1000 + i as i64 * 1000, "decision": outcome, "status": 200, "reasons": reasons,
                   "route": format!("r{}", i % 3), "method": "GET", "host": "h", "path": "/", "cache_hit": true,
                   "agent": {"issuer": "i", "agent": format!("synthetic-{}", i % 50), "actors": [], "token_hash": "AAAAAAAAAAAAAAAA"}})
            .to_string(),
        );
    }
    lines.push("not json".into());
    let text = lines.join("\n");
    let started = std::time::Instant::now();
    let r = Report::from_jsonl(&text);
    let html = r.html();
    let summary = r.text();
    eprintln!("report over {} events took {:?}", r.events, started.elapsed());
    // Independent counts, from the lines themselves.
    let events: Vec<Value> = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let count = |f: &dyn Fn(&Value) -> bool| events.iter().filter(|e| f(e)).count() as u64;
    assert_eq!(r.events, events.len() as u64);
    assert_eq!(r.bad_lines, 1);
    for o in outcomes {
        assert_eq!(r.outcomes.get(o).copied().unwrap_or(0), count(&|e| e["decision"] == o), "{o}");
    }
    assert_eq!(r.agents["synthetic-7"].requests, count(&|e| e["agent"]["agent"] == "synthetic-7"));
    assert_eq!(r.agents["agent-3"].requests, count(&|e| e["agent"]["agent"] == "agent-3"));
    assert_eq!(r.routes["read"], count(&|e| e["route"] == "read"));
    // Deny reasons count refusals (deny, revoked), not approval challenges.
    let refused_for = |e: &Value, reason: &str| {
        (e["decision"] == "deny" || e["decision"] == "revoked")
            && e["reasons"].as_array().unwrap().iter().any(|x| x == reason)
    };
    assert_eq!(r.reasons["rate_limited"], count(&|e| refused_for(e, "rate_limited")));
    assert!(summary.contains(&format!("{} decisions", r.events)));
    assert!(html.contains(&format!(r#"<b id="total-events">{}</b>"#, r.events)));
    assert!(html.starts_with("<!doctype html>") && !html.contains("<script"), "self-contained, no scripts");
}
