//! The JSON-shaped API every frontend wraps: policy JSON in, request JSON in,
//! decision JSON out. Deciding never fails: a malformed request is a `deny`
//! decision naming the field, like any other refusal.

use crate::decision::Decision;
use crate::engine::Engine;
use crate::policy::PolicyErrors;
use crate::reason::ReasonCode;
use crate::request::RequestInput;

/// Compiles policy JSON (the same as [`Engine::from_json`]).
pub fn compile(policy_json: &str) -> Result<Engine, PolicyErrors> {
    Engine::from_json(policy_json)
}

/// Validates policy JSON: every problem with its JSON path, or none.
pub fn check(policy_json: &str) -> Vec<crate::policy::PolicyError> {
    match Engine::from_json(policy_json) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0,
    }
}

/// Parses a request object; the error names the JSON path of the problem.
pub fn parse_request(request_json: &str) -> Result<RequestInput, String> {
    crate::json::from_str_with_path::<RequestInput>(request_json).map_err(|e| {
        if e.path == "." {
            format!("request: {}", e.message)
        } else {
            format!("request.{}: {}", e.path, e.message)
        }
    })
}

/// Decides a request given as JSON. Never fails.
pub fn decide(engine: &Engine, request_json: &str) -> Decision {
    match parse_request(request_json) {
        Ok(input) => engine.decide_input(&input),
        Err(message) => engine.refuse_unparsed(ReasonCode::RequestInvalid, message),
    }
}

/// Decides a request given as JSON and returns the decision as JSON. Never fails.
pub fn decide_json(engine: &Engine, request_json: &str) -> String {
    to_json(&decide(engine, request_json))
}

/// Serialises a decision (the same JSON as `serde_json::to_string`, written
/// directly: see [`Decision::to_json`]).
pub fn to_json(decision: &Decision) -> String {
    decision.to_json()
}

/// The signature check deciding this request needs (see
/// The host's verdicts: one `{"token_hash", "valid"}` object or a list;
/// anything else counts as none (every signature is then checked in Wasm).
pub fn parse_verdicts(verdict_json: &str) -> Vec<crate::token::HostVerdict> {
    serde_json::from_str(verdict_json)
        .or_else(|_| serde_json::from_str(verdict_json).map(|v| vec![v]))
        .unwrap_or_default()
}

/// [`Engine::pending_signature`]) as JSON, or `null`.
pub fn pending_signature_json(engine: &Engine, request_json: &str) -> String {
    let input = parse_request(request_json).ok();
    let check = input
        .as_ref()
        .and_then(|input| crate::request::Request::from_input(input).ok())
        .and_then(|request| engine.pending_signature(&request));
    serde_json::to_string(&check).unwrap_or_else(|_| "null".to_owned())
}

/// Decides a request given as JSON with the host's signature verdict
/// (`{"token_hash": "...", "valid": true}`) as JSON. Never fails; a verdict
/// that does not parse is ignored (the signature is then checked in Wasm).
pub fn decide_with_verdict(engine: &Engine, request_json: &str, verdict_json: &str) -> Decision {
    let verdicts = parse_verdicts(verdict_json);
    match parse_request(request_json) {
        Ok(input) => match crate::request::Request::from_input(&input) {
            Ok(request) => engine.decide_with_verdicts(&request, &verdicts),
            Err(_) => engine.decide_input(&input),
        },
        Err(message) => engine.refuse_unparsed(ReasonCode::RequestInvalid, message),
    }
}
