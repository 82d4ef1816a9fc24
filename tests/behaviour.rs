//! Intent signals, rate limits, the circuit breaker and the approval gate,
//! with time injected so every scenario is exact.

// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::mint::{self, SigningKey};
use agentguard::{Decision, Engine, Outcome, ReasonCode, Request};
use serde_json::{json, Value};

const T0: i64 = 1_767_225_600;

fn keys() -> Value {
    serde_json::from_str(include_str!("vectors/keys.json")).unwrap()
}

fn public(name: &str) -> Value {
    let mut jwk = keys()[name].clone();
    jwk.as_object_mut().unwrap().remove("d");
    jwk
}

fn engine(extra: Value) -> Engine {
    let mut policy = json!({
        "issuers": [{"iss": "https://sts.test", "audiences": ["https://api.test"],
                     "jwks": {"keys": [public("ed25519")]}, "algorithms": ["EdDSA"], "max_lifetime": "1h"}],
        "routes": [
            {"id": "read", "methods": ["GET"], "path": "/v1/contacts/{id}", "scopes": ["crm.read"],
             "authorization_details": {"type": "contact", "actions": ["read"], "identifier": "{id}"}},
            {"id": "list", "methods": ["GET"], "path": "/v1/contacts", "scopes": ["crm.read"]},
            {"id": "notes", "methods": ["GET"], "path": "/v1/notes", "scopes": ["crm.read"]},
            {"id": "admin", "methods": ["GET"], "path": "/v1/admin/**", "scopes": ["crm.read"],
             "network": {"allow": ["10.9.0.0/16"]}},
            {"id": "pay", "methods": ["POST"], "path": "/v1/payments", "scopes": ["payments.write"], "risk": "high"}
        ],
        "approval": {"issuer": "https://approvals.test", "jwks": {"keys": [public("approver")]}, "algorithms": ["EdDSA"],
                     "audiences": ["https://api.test"], "endpoint": "https://approvals.test/bc-authorize"}
    });
    for (k, v) in extra.as_object().unwrap() {
        policy[k] = v.clone();
    }
    Engine::from_json(&policy.to_string()).unwrap()
}

fn token(agent: &str, extra: Value) -> String {
    let mut claims = json!({"iss": "https://sts.test", "aud": "https://api.test", "sub": "user:alice",
        "client_id": agent, "scope": "crm.read payments.write", "iat": T0 - 10, "exp": T0 + 3000, "jti": agent,
        "authorization_details": [{"type": "contact", "actions": ["read", "write"], "identifier": ["42"]}]});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let key = SigningKey::from_jwk(&keys()["ed25519"]).unwrap();
    mint::sign(&key, Some("test-ed25519"), "at+jwt", claims.as_object().unwrap())
}

fn get(e: &Engine, path: &str, token: &str, now_ms: i64, ip: &str) -> Decision {
    let mut input = agentguard::RequestInput {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.test".into(),
        path: path.into(),
        source_ip: Some(ip.into()),
        now: now_ms as f64 / 1000.0,
        ..Default::default()
    };
    input
        .headers
        .insert("authorization".into(), agentguard::request::HeaderValue::One(format!("Bearer {token}")));
    e.decide_input(&input)
}

#[test]
fn authorization_details_narrow_a_token_to_one_contact() {
    let e = engine(json!({}));
    let t = token("a", json!({}));
    assert!(get(&e, "/v1/contacts/42", &t, T0 * 1000, "10.0.0.1").is_allowed());
    let d = get(&e, "/v1/contacts/43", &t, T0 * 1000, "10.0.0.1");
    assert_eq!(d.codes(), [ReasonCode::AuthorizationDetailsMismatch]);
    assert!(d.reasons[0].message.contains("is for `42`, not `43`"), "{}", d.reasons[0].message);
    // Without any grant of the type, or without the action.
    let none = token("b", json!({"authorization_details": []}));
    assert_eq!(
        get(&e, "/v1/contacts/42", &none, T0 * 1000, "10.0.0.1").codes(),
        [ReasonCode::AuthorizationDetailsMismatch]
    );
    let write_only = token(
        "c",
        json!({"authorization_details": [{"type": "contact", "actions": ["write"], "identifier": "42"}]}),
    );
    let d = get(&e, "/v1/contacts/42", &write_only, T0 * 1000, "10.0.0.1");
    assert!(d.reasons[0].message.contains("lacks the action `read`"), "{}", d.reasons[0].message);
    // Routes without a rule ignore the claim.
    assert!(get(&e, "/v1/contacts", &none, T0 * 1000, "10.0.0.1").is_allowed());
}

#[test]
fn networks_policy_wide_and_per_route() {
    let e = engine(json!({"network": {"allow": ["10.0.0.0/8", "2001:db8::/32"]}}));
    let t = token("a", json!({}));
    assert!(get(&e, "/v1/contacts", &t, T0 * 1000, "10.1.2.3").is_allowed());
    assert!(get(&e, "/v1/contacts", &t, T0 * 1000, "2001:db8::7").is_allowed());
    assert!(get(&e, "/v1/contacts", &t, T0 * 1000, "::ffff:10.1.2.3").is_allowed(), "IPv4-mapped");
    let d = get(&e, "/v1/contacts", &t, T0 * 1000, "203.0.113.5");
    assert_eq!(d.codes(), [ReasonCode::NetworkNotAllowed]);
    assert_eq!(d.status, 403);
    // The admin route narrows further.
    assert!(get(&e, "/v1/admin/x", &t, T0 * 1000, "10.9.1.1").is_allowed());
    assert_eq!(get(&e, "/v1/admin/x", &t, T0 * 1000, "10.1.2.3").codes(), [ReasonCode::NetworkNotAllowed]);
    // No source IP while networks are restricted: refused.
    let req = Request::builder("GET", "/v1/contacts", T0)
        .header("authorization", &format!("Bearer {t}"))
        .build()
        .unwrap();
    assert_eq!(e.decide(&req).codes(), [ReasonCode::NetworkNotAllowed]);
}

#[test]
fn an_agent_in_a_loop_is_rate_limited_then_revoked_then_let_back() {
    let e = engine(json!({
        "limits": [{"id": "per-agent", "per": "agent", "rate": "10/1s", "burst": 10}],
        "circuit_breaker": {"window": "10s", "max_requests": 50, "cooldown": "1m"}
    }));
    let t = token("looping-agent", json!({}));
    let mut outcomes = Vec::new();
    // 100 requests per second (every 10 ms) for one second.
    for i in 0..100 {
        let d = get(&e, "/v1/contacts", &t, T0 * 1000 + i * 10, "10.0.0.1");
        outcomes.push((d.decision, d.codes(), d.response.map(|r| r.headers)));
    }
    let allowed = outcomes.iter().filter(|o| o.0 == Outcome::Allow).count();
    let limited = outcomes.iter().filter(|o| o.1 == [ReasonCode::RateLimited]).count();
    // The burst of 10 plus one refill per 100 ms.
    assert!((10..=20).contains(&allowed), "allowed {allowed}");
    assert!(limited > 20, "limited {limited}");
    let first_limited = outcomes.iter().find(|o| o.1 == [ReasonCode::RateLimited]).unwrap();
    let headers = first_limited.2.as_ref().unwrap();
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["ratelimit-remaining"], "0");
    // The 51st request in the window trips the breaker; the rest are revoked.
    assert_eq!(outcomes[50].1, [ReasonCode::BreakerBurst]);
    assert_eq!(outcomes[50].0, Outcome::Revoked);
    assert!(outcomes[51..].iter().all(|o| o.0 == Outcome::Revoked && o.1 == [ReasonCode::AgentSuspended]));
    let suspended = e.suspended_agents(T0 + 1);
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].0, "looping-agent");
    assert_eq!(suspended[0].1.detail, "51 requests in 10s (max 50)");
    // Other agents are unaffected.
    assert!(
        get(&e, "/v1/contacts", &token("calm-agent", json!({})), T0 * 1000 + 500, "10.0.0.1").is_allowed()
    );
    // Still revoked just before the cooldown ends; allowed after it.
    let trip_ms = T0 * 1000 + 500;
    let d = get(&e, "/v1/contacts", &t, trip_ms + 59_999, "10.0.0.1");
    assert_eq!(d.codes(), [ReasonCode::AgentSuspended]);
    assert_eq!(d.response.as_ref().unwrap().headers["retry-after"], "1");
    assert!(get(&e, "/v1/contacts", &t, trip_ms + 60_000, "10.0.0.1").is_allowed());
}

#[test]
fn the_breaker_trips_on_deny_ratio_and_operators_can_lift_it() {
    let e = engine(
        json!({"circuit_breaker": {"window": "10s", "max_deny_ratio": 0.5, "min_requests": 6, "cooldown": "15m"}}),
    );
    let t = token("prober", json!({}));
    // Probing contacts it has no grant for; the sixth refusal tips the ratio.
    for i in 0..6 {
        let d = get(&e, &format!("/v1/contacts/{}", 100 + i), &t, T0 * 1000 + i * 100, "10.0.0.1");
        if i < 5 {
            assert_eq!(d.codes(), [ReasonCode::AuthorizationDetailsMismatch]);
        } else {
            assert_eq!(d.codes(), [ReasonCode::BreakerDenyRatio]);
            assert_eq!(d.decision, Outcome::Revoked);
            assert!(
                d.reasons[0].message.contains("this request: token's `authorization_details`"),
                "{}",
                d.reasons[0].message
            );
            let b = d.event.breaker.as_ref().expect("the event says the breaker tripped");
            assert_eq!(b.kind, agentguard::state::TripKind::DenyRatio);
            let step = d.trace.iter().find(|s| s.stage == "behaviour").unwrap();
            assert_eq!(step.result, agentguard::decision::StageResult::Fail);
        }
    }
    let d = get(&e, "/v1/contacts/42", &t, T0 * 1000 + 700, "10.0.0.1");
    assert_eq!(d.codes(), [ReasonCode::AgentSuspended]);
    assert!(d.reasons[0].message.contains("6 of 6 requests refused"), "{}", d.reasons[0].message);
    assert!(e.lift_suspension("prober"));
    assert!(get(&e, "/v1/contacts/42", &t, T0 * 1000 + 800, "10.0.0.1").is_allowed());
}

#[test]
fn the_breaker_trips_on_calls_outside_the_usual_routes() {
    let e = engine(
        json!({"circuit_breaker": {"window": "1m", "profile_requests": 5, "max_unusual": 1, "cooldown": "5m"}}),
    );
    let t = token("reader", json!({}));
    for i in 0..5 {
        assert!(get(&e, "/v1/contacts", &t, T0 * 1000 + i, "10.0.0.1").is_allowed());
    }
    assert!(get(&e, "/v1/notes", &t, T0 * 1000 + 10, "10.0.0.1").is_allowed(), "one unusual call is fine");
    let d = get(&e, "/v1/admin/users", &t, T0 * 1000 + 20, "10.9.0.1");
    assert_eq!(d.codes(), [ReasonCode::BreakerUnusualRoutes]);
    assert_eq!(d.decision, Outcome::Revoked);
}

#[test]
fn limits_by_route_issuer_and_agent_route() {
    let e = engine(json!({"limits": [
        {"id": "list-shared", "per": "route", "rate": "2/1m", "routes": ["list"]},
        {"id": "issuer", "per": "issuer", "rate": "100/1m"},
        {"id": "notes-per-agent", "per": "agent_route", "rate": "1/1m", "routes": ["notes"]}
    ]}));
    let (a, b) = (token("a", json!({})), token("b", json!({})));
    assert!(get(&e, "/v1/contacts", &a, T0 * 1000, "10.0.0.1").is_allowed());
    assert!(get(&e, "/v1/contacts", &b, T0 * 1000, "10.0.0.1").is_allowed());
    let d = get(&e, "/v1/contacts", &a, T0 * 1000, "10.0.0.1");
    assert_eq!(d.codes(), [ReasonCode::RateLimited], "the route's bucket is shared");
    assert_eq!(d.event.limit.as_deref(), Some("list-shared"));
    assert!(get(&e, "/v1/notes", &a, T0 * 1000, "10.0.0.1").is_allowed());
    assert!(get(&e, "/v1/notes", &b, T0 * 1000, "10.0.0.1").is_allowed(), "per agent and route");
    assert_eq!(get(&e, "/v1/notes", &a, T0 * 1000, "10.0.0.1").codes(), [ReasonCode::RateLimited]);
}

#[test]
fn state_for_many_distinct_agents_stays_bounded() {
    let e = engine(json!({"limits": [{"per": "agent", "rate": "10/1s"}],
                         "circuit_breaker": {"max_requests": 100}, "state": {"max_keys": 300}}));
    // Distinct agents need distinct valid tokens; sign a few thousand.
    for i in 0..1200 {
        let d = get(&e, "/v1/contacts", &token(&format!("agent-{i}"), json!({})), T0 * 1000, "10.0.0.1");
        assert!(d.is_allowed());
    }
    assert_eq!(e.state_keys(), 600, "300 buckets + 300 agent windows");
}

// --- the approval gate -------------------------------------------------------

fn post_pay(e: &Engine, t: &str, now: i64, approval: Option<&str>, body: &str) -> Decision {
    let mut b = Request::builder("POST", "/v1/payments?invoice=981", now)
        .host("api.test")
        .header("authorization", &format!("Bearer {t}"))
        .body_sha256(body);
    if let Some(a) = approval {
        b = b.header("x-agent-approval", a);
    }
    e.decide(&b.build().unwrap())
}

fn approval_token(digest: &str, agent: &str, iat: i64, exp: i64, jti: &str) -> String {
    let key = SigningKey::from_jwk(&keys()["approver"]).unwrap();
    let claims = json!({"iss": "https://approvals.test", "aud": "https://api.test", "sub": "user:cfo",
        "agent": agent, "action_digest": digest, "iat": iat, "exp": exp, "jti": jti});
    mint::sign(&key, keys()["approver"]["kid"].as_str(), "approval+jwt", claims.as_object().unwrap())
}

#[test]
fn the_approval_loop() {
    let e = engine(json!({}));
    let t = token("payer", json!({}));
    let body = "11".repeat(32);
    let d = post_pay(&e, &t, T0, None, &body);
    assert_eq!(d.decision, Outcome::ApprovalRequired);
    let challenge = d.approval.clone().unwrap();
    assert_eq!(challenge.agent, "payer");
    assert_eq!(challenge.approval_endpoint.as_deref(), Some("https://approvals.test/bc-authorize"));
    assert_eq!(d.event.approval_digest.as_deref(), Some(challenge.action_digest.as_str()));
    let body_json: Value = serde_json::from_str(&d.response.as_ref().unwrap().body).unwrap();
    assert_eq!(body_json["action_digest"], challenge.action_digest);
    assert_eq!(body_json["approval_endpoint"], "https://approvals.test/bc-authorize");

    let ok = approval_token(&challenge.action_digest, "payer", T0, T0 + 300, "ap-1");
    let d = post_pay(&e, &t, T0 + 5, Some(&ok), &body);
    assert!(d.is_allowed(), "{:?}", d.reasons);
    assert!(d.trace.iter().any(|s| s.stage == "risk"
        && s.detail == "route `pay` is high-risk; approved by user:cfo for this exact action"));
    // Single use.
    assert_eq!(post_pay(&e, &t, T0 + 6, Some(&ok), &body).codes(), [ReasonCode::ApprovalReplayed]);
    // Bound to the body: the same approval for another body is refused.
    let ok2 = approval_token(&challenge.action_digest, "payer", T0, T0 + 300, "ap-2");
    assert_eq!(
        post_pay(&e, &t, T0 + 7, Some(&ok2), &"22".repeat(32)).codes(),
        [ReasonCode::ApprovalDigestMismatch]
    );
    // Bound to the agent.
    let other = approval_token(&challenge.action_digest, "someone-else", T0, T0 + 300, "ap-3");
    assert_eq!(post_pay(&e, &t, T0 + 8, Some(&other), &body).codes(), [ReasonCode::ApprovalAgentMismatch]);
    // Short-lived.
    let old = approval_token(&challenge.action_digest, "payer", T0 - 700, T0 - 100, "ap-4");
    assert_eq!(post_pay(&e, &t, T0 + 9, Some(&old), &body).codes(), [ReasonCode::ApprovalExpired]);
    // Signed by someone else (here: the access-token issuer).
    let forged = {
        let key = SigningKey::from_jwk(&keys()["ed25519"]).unwrap();
        let claims = json!({"iss": "https://approvals.test", "aud": "https://api.test", "agent": "payer",
            "action_digest": challenge.action_digest, "iat": T0, "exp": T0 + 300, "jti": "ap-5"});
        mint::sign(&key, keys()["approver"]["kid"].as_str(), "approval+jwt", claims.as_object().unwrap())
    };
    assert_eq!(post_pay(&e, &t, T0 + 10, Some(&forged), &body).codes(), [ReasonCode::ApprovalInvalid]);
}

#[test]
fn a_used_approval_kept_by_the_host_stays_used_in_a_new_engine() {
    // A Durable Object keeps the record of each approval used and restores it
    // into the engine of its next isolate: the approval stays single-use.
    let policy = json!({});
    let t = token("payer", json!({}));
    let body = "11".repeat(32);
    let e = engine(policy.clone());
    let digest = post_pay(&e, &t, T0, None, &body).approval.unwrap().action_digest;
    let ok = approval_token(&digest, "payer", T0, T0 + 300, "ap-1");
    let request = Request::builder("POST", "/v1/payments?invoice=981", T0 + 5)
        .host("api.test")
        .header("authorization", &format!("Bearer {t}"))
        .header("x-agent-approval", &ok)
        .body_sha256(&body)
        .build()
        .unwrap();
    assert!(e.decide(&request).is_allowed());
    let (key, until) = e.approval_record(&request).unwrap();
    // Keyed on the signed part: a re-encoded signature is the same approval.
    assert_eq!(key, agentguard::token::token_hash(ok.rsplit_once('.').unwrap().0));
    // Past anything an approval presented at T0 + 5 can live: max_lifetime (default 10m) + clock skew.
    let gate_lifetime = 600 + 30;
    assert_eq!(until, T0 + 5 + gate_lifetime);

    // A new engine (a restarted isolate) does not know it: the approval would pass again.
    assert!(engine(policy.clone()).decide(&request).is_allowed(), "the gap a host closes by keeping records");
    // Restored, it is a replay.
    let restarted = engine(policy);
    assert!(restarted.restore_approval(key, until, T0 + 6));
    assert_eq!(restarted.decide(&request).codes(), [ReasonCode::ApprovalReplayed]);

    // Nothing to record without an approval header, or without an approval gate.
    let plain = Request::builder("GET", "/v1/contacts", T0).host("api.test").build().unwrap();
    assert_eq!(e.approval_record(&plain), None);
}

// --- approval conditions on the body -------------------------------------------

fn transfer_engine() -> Engine {
    engine(json!({"routes": [
        {"id": "transfer", "methods": ["POST"], "path": "/v1/transfers", "scopes": ["payments.write"],
         "approval_when": [{"body": "/amount", "gt": 1000}, {"body": "/currency", "not_in": ["EUR", "USD"]}]}
    ]}))
}

fn post_transfer(e: &Engine, t: &str, now: i64, approval: Option<&str>, body: Option<&str>) -> Decision {
    let mut b = Request::builder("POST", "/v1/transfers", now)
        .host("api.test")
        .header("authorization", &format!("Bearer {t}"));
    if let Some(body) = body {
        b = b.body(body);
    }
    if let Some(a) = approval {
        b = b.header("x-agent-approval", a);
    }
    e.decide(&b.build().unwrap())
}

#[test]
fn body_conditions_send_a_large_transfer_to_a_human() {
    let e = transfer_engine();
    let t = token("payer", json!({}));
    let small = r#"{"amount": 250, "currency": "EUR"}"#;
    let d = post_transfer(&e, &t, T0, None, Some(small));
    assert!(d.is_allowed(), "{:?}", d.reasons);
    assert!(d
        .trace
        .iter()
        .any(|s| s.stage == "risk" && s.detail.contains("meets none of its approval conditions")));

    let large = r#"{"amount": 1500, "currency": "EUR"}"#;
    let d = post_transfer(&e, &t, T0, None, Some(large));
    assert_eq!(d.decision, Outcome::ApprovalRequired);
    assert_eq!(d.codes(), [ReasonCode::ApprovalRequired]);
    assert!(
        d.reasons[0]
            .message
            .starts_with("on route `transfer`, body /amount is 1500, more than 1000: a human must approve"),
        "{}",
        d.reasons[0].message
    );
    let digest = d.approval.clone().unwrap().action_digest;
    // The same amount in another currency: the second condition.
    let d = post_transfer(&e, &t, T0, None, Some(r#"{"amount": 5, "currency": "BTC"}"#));
    assert!(
        d.reasons[0].message.contains(r#"body /currency is "BTC", none of the listed"#),
        "{}",
        d.reasons[0].message
    );

    // Approved for this exact body: allowed once.
    let ok = approval_token(&digest, "payer", T0, T0 + 300, "tr-1");
    let d = post_transfer(&e, &t, T0 + 5, Some(&ok), Some(large));
    assert!(d.is_allowed(), "{:?}", d.reasons);
    assert_eq!(post_transfer(&e, &t, T0 + 6, Some(&ok), Some(large)).codes(), [ReasonCode::ApprovalReplayed]);
    // The body is in the digest: an approval for 1500 does not cover 150000.
    let ok2 = approval_token(&digest, "payer", T0, T0 + 300, "tr-2");
    let d = post_transfer(&e, &t, T0 + 7, Some(&ok2), Some(r#"{"amount": 150000, "currency": "EUR"}"#));
    assert_eq!(d.codes(), [ReasonCode::ApprovalDigestMismatch]);
}

#[test]
fn the_host_is_told_which_bodies_to_read() {
    use agentguard::BodyUse;
    let e = engine(json!({"routes": [
        {"id": "transfer", "methods": ["POST"], "path": "/v1/transfers", "approval_when": [{"body": "/amount", "gt": 1}]},
        {"id": "pay", "methods": ["POST"], "path": "/v1/payments", "risk": "high"},
        {"id": "read", "methods": ["GET"], "path": "/v1/**"}
    ]}));
    let body_use =
        |method: &str, target: &str| e.body_use(&Request::builder(method, target, T0).build().unwrap());
    assert_eq!(body_use("POST", "/v1/transfers?x=1"), BodyUse::Text);
    assert_eq!(body_use("POST", "/v1/payments"), BodyUse::Digest);
    assert_eq!(body_use("GET", "/v1/transfers"), BodyUse::None);
    assert_eq!(body_use("DELETE", "/nowhere"), BodyUse::None);
    assert!(e.reads_bodies());
    let plain = engine(json!({"routes": [{"id": "read", "methods": ["GET"], "path": "/v1/**"}]}));
    assert!(!plain.reads_bodies(), "no high-risk route, no approval_when: no body is ever read");
}

#[test]
fn a_body_agentguard_cannot_read_needs_a_human() {
    let e = transfer_engine();
    let t = token("payer", json!({}));
    for (body, why) in [
        (None, "the request body was not given"),
        (Some("amount=5&currency=EUR"), "not JSON"),
        (Some(r#"{"amount": 5, "amount": 5000, "currency": "EUR"}"#), "duplicate key `amount`"),
        (Some(r#"{"currency": "EUR"}"#), "body /amount is missing"),
        (Some(r#"{"amount": "5", "currency": "EUR"}"#), "body /amount is not a number"),
    ] {
        let d = post_transfer(&e, &t, T0, None, body);
        assert_eq!(d.decision, Outcome::ApprovalRequired, "{body:?}");
        assert!(d.reasons[0].message.contains(why), "{body:?}: {}", d.reasons[0].message);
    }
    // A body and a body digest that disagree: the request is malformed.
    let b = Request::builder("POST", "/v1/transfers", T0)
        .host("api.test")
        .body("{}")
        .body_sha256(&"11".repeat(32));
    let err = b.build().unwrap_err();
    assert_eq!(err.field, "body_sha256");
    assert!(err.message.contains("does not match"), "{}", err.message);
}

#[test]
fn body_conditions_are_checked_when_the_policy_loads() {
    let policy = |rules: Value, approval: bool| {
        let mut p = json!({
            "issuers": [{"iss": "https://sts.test", "audiences": ["a"], "jwks": {"keys": [public("ed25519")]}, "algorithms": ["EdDSA"]}],
            "routes": [{"id": "t", "methods": ["POST"], "path": "/t", "approval_when": rules}],
        });
        if approval {
            p["approval"] = json!({"issuer": "https://approvals.test", "jwks": {"keys": [public("approver")]},
                "algorithms": ["EdDSA"], "audiences": ["a"], "endpoint": "https://approvals.test/x"});
        }
        Engine::from_json(&p.to_string()).map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(policy(json!([{"body": "/amount", "gt": 1}]), true), Ok(()));
    let err = policy(json!([{"body": "/amount", "gt": 1}]), false).unwrap_err();
    assert!(err.contains("routes[0].approval_when: approval conditions need an `approval` section"), "{err}");
    let err = policy(json!([{"body": "/a", "gt": 1}, {"body": "/a", "gt": 1, "lte": 9}]), true).unwrap_err();
    assert!(err.contains("routes[0].approval_when[1].lte: one test per condition: `gt` and `lte`"), "{err}");
    let err = policy(json!([{"body": "amount", "in": ["x"]}]), true).unwrap_err();
    assert!(
        err.contains("routes[0].approval_when[0].body: expected a JSON Pointer such as `/amount`"),
        "{err}"
    );
    let err = policy(json!([{"body": "/a", "greater": 1}]), true).unwrap_err();
    assert!(err.contains("routes[0].approval_when[0]"), "{err}");
    assert!(err.contains("greater"), "{err}");
}

#[test]
fn high_risk_routes_need_an_approval_section() {
    let policy = json!({
        "issuers": [{"iss": "https://sts.test", "audiences": ["a"], "jwks": {"keys": [public("ed25519")]}, "algorithms": ["EdDSA"]}],
        "routes": [{"id": "pay", "methods": ["POST"], "path": "/pay", "risk": "critical"}],
        "limits": [{"per": "agent", "rate": "10/minute", "routes": ["nope"]}]
    });
    let err = Engine::from_json(&policy.to_string()).unwrap_err().to_string();
    assert!(err.contains("limits[0].rate: expected a rate like `100/1m`, found `10/minute`"), "{err}");
    let mut policy = policy;
    policy["limits"] = json!([{"per": "agent", "rate": "10/1m", "routes": ["nope"]}]);
    policy["network"] = json!({"allow": ["10.0.0.1/8"]});
    let err = Engine::from_json(&policy.to_string()).unwrap_err().to_string();
    assert!(err.contains("routes[0].risk: a high-risk route needs an `approval` section"), "{err}");
    assert!(err.contains("limits[0].routes[0]: no route has the id `nope`"), "{err}");
    assert!(
        err.contains("network.allow[0]: `10.0.0.1/8` has host bits set; did you mean `10.0.0.0/8`?"),
        "{err}"
    );
}
