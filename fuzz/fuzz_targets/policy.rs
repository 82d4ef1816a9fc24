//! Policy parsing and compilation: `Engine::from_json` (and `api::check`) on
//! fuzzed text.
//!
//! Invariants: no panic; a refused policy has at least one error, each with a
//! JSON path and a message; `api::check` agrees with `Engine::from_json`; a
//! policy that compiles decides a few fixed requests within the decision
//! invariants (and, having no verified token, never allows).
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use agentguard::{api, Engine, Request};
use agentguard_fuzz::check_decision;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let compiled = Engine::from_json(text);
    let problems = api::check(text);
    match &compiled {
        Ok(_) => assert!(problems.is_empty(), "check found problems in a policy that compiles"),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refused policy with no error");
            assert_eq!(errors.0.len(), problems.len());
            for e in &errors.0 {
                assert!(!e.path.is_empty() && !e.message.is_empty(), "an error without a path or message: {e:?}");
            }
        }
    }
    let Ok(engine) = compiled else { return };
    for (method, path) in [("GET", "/"), ("GET", "/v1/contacts/42"), ("POST", "/v1/invoices/1/pay"), ("DELETE", "/a/../admin")] {
        let request = Request::builder(method, path, 1_767_261_600)
            .host("api.example.com")
            .source_ip("10.1.2.3")
            .header("authorization", "Bearer e30.e30.AAAA")
            .build()
            .unwrap();
        let d = engine.decide(&request);
        check_decision(&d);
        assert!(!d.is_allowed(), "a policy allowed a request with an unsigned token");
    }
});
