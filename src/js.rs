//! JavaScript frontend (feature `js`, target `wasm32-unknown-unknown`):
//! wasm-bindgen bindings over [`crate::api`] for Cloudflare Workers, Node and
//! browsers.
//!
//! The boundary is deliberately thin and string-shaped: policy text and
//! decision JSON cross it as strings (one `JSON.parse` on the JS side is
//! faster and far smaller than a serde-to-JS-object bridge). Requests cross
//! as JSON or, from the `js/` package, in the line form
//! ([`RequestParts::from_lines`]): one field per line, nothing to escape or
//! parse, borrowed straight into the core's request (a cached decision in
//! Node 14–27% cheaper than through JSON, `bench/js/ab.sh`). There is no policy logic here; the
//! `js/` package maps a Fetch `Request` to the request and the decision back
//! to a `Response`.
//!
//! - A bad policy is a programmer mistake: [`Guard::new`] throws a `JsError`
//!   whose message lists every problem as `json.path: message`; [`check`]
//!   returns the same problems as data.
//! - Deciding never throws: a malformed request is a `deny` decision.
//! - The engine has no clock and fetches nothing: the JS host passes `now`
//!   and hands over JWKS documents it fetched ([`Guard::set_issuer_keys`]).
//! - Host-verified signatures: [`Guard::decide_or_check`] hands the host the
//!   one signature a fresh token needs (key, algorithm, signed bytes), the
//!   host verifies it with WebCrypto (native code, several times faster than
//!   Wasm for ECDSA and RSA) and [`Guard::decide_with`] finishes with the
//!   verdict, tied to the token's hash. Every other check stays in the core.
//!
//! | export (JS name) | what |
//! |---|---|
//! | `new Guard(policy)` | compile; throws with every `path: message` |
//! | `decide(request)` | decision JSON, every signature in Wasm |
//! | `bodyUse(method, target)`, `readsBodies()` | `"text"`, `"digest"` or `"none"`: what to read of the body first; whether any route reads one |
//! | `decideOrCheck(request, algs)` / `decideWith(request, verdict)` | the two halves of a host-verified decision |
//! | `decideLines`, `decideOrCheckLines`, `decideWithLines` | the same for a request in the line form (`RequestParts::from_lines`), which the `js/` package sends |
//! | `jwksUris()`, `setIssuerKeys(iss, jwks)` | keys the host fetches |
//! | `setRevocations`, `liftSuspension`, `suspendedAgents` | operator controls |
//! | `setTrace(on)` | per-stage trace in decisions (on by default) |
//! | `setDpopNonceSecret`, `dpopNonce` | DPoP server nonces |
//! | `stats`, `cachedTokens`, `stateKeys` | counters |
//! | `check(policy)`, `mint(jwk, claims, typ)`, `verifySignature`, `version` | helpers |

use std::cell::RefCell;
use std::collections::VecDeque;

use serde_json::{Map, Value};
use wasm_bindgen::prelude::*;

use crate::api;
use crate::endpoints;
use crate::engine::Engine;
use crate::keys::{self, Alg};
use crate::mint::{self, SigningKey};
use crate::policy::RevocationLists;
use crate::reason::ReasonCode;
use crate::request::{Request, RequestParts};

/// Turns any displayable error into the exception JS sees. The one conversion
/// of the boundary: every fallible export goes through it.
fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Key problems as JSON `[{"index", "message", "skipped"}]`.
fn problems_json(problems: &[keys::KeyProblem]) -> String {
    let list: Vec<Value> = problems
        .iter()
        .map(|p| serde_json::json!({ "index": p.index, "message": p.message, "skipped": p.skipped }))
        .collect();
    Value::Array(list).to_string()
}

fn parse_json(what: &str, text: &str) -> Result<Value, JsError> {
    serde_json::from_str(text).map_err(|e| js_error(format!("{what}: {e}")))
}

/// A compiled policy with its per-isolate state (verified-token cache, keys).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Guard {
    engine: Engine,
    /// Requests parsed by [`Guard::decide_or_check`] that are waiting for the
    /// host's verdicts (a few: an isolate interleaves requests across that
    /// await), so [`Guard::decide_with`] does not parse them again.
    awaiting: RefCell<VecDeque<(AwaitKey<String>, Request<'static>)>>,
}

/// How many parsed requests wait for verdicts; an older one is parsed again.
const AWAITING: usize = 8;

/// The text a request awaiting the host's verdicts came as: the second half
/// of the decision finds its parsed request by it. Kept owned
/// (`AwaitKey<String>`), looked up borrowed (`AwaitKey<&str>`).
#[derive(Debug, PartialEq)]
enum AwaitKey<S> {
    Json(S),
    /// Lines, body, and the time's bits.
    Lines(S, Option<S>, u64),
}

impl AwaitKey<&str> {
    fn owned(&self) -> AwaitKey<String> {
        match *self {
            AwaitKey::Json(json) => AwaitKey::Json(json.to_owned()),
            AwaitKey::Lines(lines, body, now) => {
                AwaitKey::Lines(lines.to_owned(), body.map(str::to_owned), now)
            }
        }
    }
}

impl AwaitKey<String> {
    fn borrowed(&self) -> AwaitKey<&str> {
        match self {
            AwaitKey::Json(json) => AwaitKey::Json(json),
            AwaitKey::Lines(lines, body, now) => AwaitKey::Lines(lines, body.as_deref(), *now),
        }
    }
}

/// A request ready to decide (borrowing from the host's text), or the
/// refusal of one that is not.
type Parsed<'r> = Result<Request<'r>, Box<crate::Decision>>;

impl Guard {
    /// Normalises request JSON read by `api::parse_request`.
    fn parse_json<'r>(&self, input: &'r Result<crate::request::RequestInput, String>) -> Parsed<'r> {
        let input = input.as_ref().map_err(|message| self.unreadable(message))?;
        Request::from_input(input).map_err(|_| Box::new(self.engine.decide_input(input)))
    }

    /// Normalises the line form read by [`RequestParts::from_lines`].
    fn parse_lines<'r>(&self, parts: &'r Result<RequestParts<'_>, String>) -> Parsed<'r> {
        let parts = parts.as_ref().map_err(|message| self.unreadable(message))?;
        Request::from_parts(parts).map_err(|_| Box::new(self.engine.decide_parts(parts)))
    }

    /// The refusal of a request the host's text does not describe.
    fn unreadable(&self, message: &str) -> Box<crate::Decision> {
        Box::new(self.engine.refuse_unparsed(ReasonCode::RequestInvalid, message.to_owned()))
    }

    fn decide_or_check_parsed(&self, key: AwaitKey<&str>, parsed: Parsed<'_>, host_algs: &str) -> String {
        let request = match parsed {
            Ok(request) => request,
            Err(refusal) => return api::to_json(&refusal),
        };
        let checks =
            self.engine.pending_signatures_for(&request, |alg| host_algs.split(',').any(|a| a.trim() == alg));
        if checks.is_empty() {
            return api::to_json(&self.engine.decide(&request));
        }
        let mut awaiting = self.awaiting.borrow_mut();
        if awaiting.len() == AWAITING {
            awaiting.pop_front();
        }
        awaiting.push_back((key.owned(), request.into_owned()));
        crate::token::SignatureCheck::list_json(&checks)
    }

    /// The parsed request that [`Guard::decide_or_check_parsed`] left
    /// waiting for the host's verdicts under `key`, if it is still there.
    fn take_waiting(&self, key: AwaitKey<&str>) -> Option<Request<'static>> {
        let mut awaiting = self.awaiting.borrow_mut();
        let found = awaiting.iter().position(|(k, _)| k.borrowed() == key);
        found.and_then(|i| awaiting.remove(i)).map(|(_, request)| request)
    }

    fn decide_with_parsed(&self, parsed: Parsed<'_>, verdict_json: &str) -> String {
        match parsed {
            Ok(request) => {
                api::to_json(&self.engine.decide_with_verdicts(&request, &api::parse_verdicts(verdict_json)))
            }
            Err(refusal) => api::to_json(&refusal),
        }
    }
}

#[wasm_bindgen]
impl Guard {
    /// Compiles policy JSON; throws with every problem (`path: message`, one per line).
    #[wasm_bindgen(constructor)]
    pub fn new(policy_json: &str) -> Result<Guard, JsError> {
        let engine = api::compile(policy_json).map_err(js_error)?;
        Ok(Guard { engine, awaiting: RefCell::default() })
    }

    /// Turns the decision's per-stage `trace` on (the default) or off; off,
    /// a decision costs less and its `trace` is `[]`.
    #[wasm_bindgen(js_name = setTrace)]
    pub fn set_trace(&mut self, on: bool) {
        self.engine.set_trace(on);
    }

    /// What the host should read of the body of `method target` before
    /// deciding: `"text"` (give it as `body`: the route has `approval_when`
    /// conditions), `"digest"` (give `body_sha256`: the route is high-risk)
    /// or `"none"`. Never throws (a target the core cannot read needs no body).
    #[wasm_bindgen(js_name = bodyUse)]
    pub fn body_use(&self, method: &str, target: &str) -> String {
        if !self.engine.reads_bodies() {
            return "none".into();
        }
        let use_ = Request::builder(method, target, 0)
            .build()
            .map_or(crate::BodyUse::None, |request| self.engine.body_use(&request));
        match use_ {
            crate::BodyUse::None => "none",
            crate::BodyUse::Digest => "digest",
            crate::BodyUse::Text => "text",
        }
        .into()
    }

    /// Whether any route of the policy reads request bodies (if not,
    /// `bodyUse` is `"none"` for every request: a host can skip asking).
    #[wasm_bindgen(js_name = readsBodies)]
    pub fn reads_bodies(&self) -> bool {
        self.engine.reads_bodies()
    }

    /// Decides a request (request JSON) and returns the decision JSON. Never throws.
    pub fn decide(&self, request_json: &str) -> String {
        api::decide_json(&self.engine, request_json)
    }

    /// [`Guard::decide`] for a request in the line form
    /// ([`RequestParts::from_lines`]), with its body text (if any) and the
    /// time beside it: what the `js/` package sends, JSON being several times
    /// dearer to write and read for the same request. Never throws.
    #[wasm_bindgen(js_name = decideLines)]
    pub fn decide_lines(&self, lines: &str, body: Option<String>, now: f64) -> String {
        let parts = RequestParts::from_lines(lines, body.as_deref(), now);
        match self.parse_lines(&parts) {
            Ok(request) => api::to_json(&self.engine.decide(&request)),
            Err(refusal) => api::to_json(&refusal),
        }
    }

    /// The first half of a host-verified decision. Returns either the
    /// decision JSON (no signature to check, a cached token without a DPoP
    /// proof, a refusal before the signature matters, or only algorithms not
    /// in `host_algs`) or `{"checks": [{token_hash, alg, jwk, signing_input,
    /// signature}, …]}`: the token's signature and/or the DPoP proof's. The
    /// host verifies them with platform crypto (WebCrypto) and calls
    /// [`Guard::decide_with`]. `host_algs` is a comma-separated list, e.g.
    /// `ES256`. Never throws.
    #[wasm_bindgen(js_name = decideOrCheck)]
    pub fn decide_or_check(&self, request_json: &str, host_algs: &str) -> String {
        let input = api::parse_request(request_json);
        self.decide_or_check_parsed(AwaitKey::Json(request_json), self.parse_json(&input), host_algs)
    }

    /// [`Guard::decide_or_check`] for a request in the line form (see [`Guard::decide_lines`]).
    #[wasm_bindgen(js_name = decideOrCheckLines)]
    pub fn decide_or_check_lines(
        &self,
        lines: &str,
        body: Option<String>,
        now: f64,
        host_algs: &str,
    ) -> String {
        let parts = RequestParts::from_lines(lines, body.as_deref(), now);
        let parsed = self.parse_lines(&parts);
        let key = AwaitKey::Lines(lines, body.as_deref(), now.to_bits());
        self.decide_or_check_parsed(key, parsed, host_algs)
    }

    /// The second half: decides with the host's verdicts, JSON `[{"token_hash":
    /// "…", "valid": true|false}, …]` (or one such object). A verdict for
    /// another token or proof is ignored and that signature is checked in
    /// Wasm. Never throws.
    #[wasm_bindgen(js_name = decideWith)]
    pub fn decide_with(&self, request_json: &str, verdict_json: &str) -> String {
        let input;
        let parsed = match self.take_waiting(AwaitKey::Json(request_json)) {
            Some(request) => Ok(request),
            None => {
                input = api::parse_request(request_json);
                self.parse_json(&input)
            }
        };
        self.decide_with_parsed(parsed, verdict_json)
    }

    /// [`Guard::decide_with`] for a request in the line form (see [`Guard::decide_lines`]).
    #[wasm_bindgen(js_name = decideWithLines)]
    pub fn decide_with_lines(
        &self,
        lines: &str,
        body: Option<String>,
        now: f64,
        verdict_json: &str,
    ) -> String {
        let parts;
        let parsed = match self.take_waiting(AwaitKey::Lines(lines, body.as_deref(), now.to_bits())) {
            Some(request) => Ok(request),
            None => {
                parts = RequestParts::from_lines(lines, body.as_deref(), now);
                self.parse_lines(&parts)
            }
        };
        self.decide_with_parsed(parsed, verdict_json)
    }

    /// Issuers whose keys the host must fetch, as JSON `[{"iss": …, "jwks_uri": …}]`.
    #[wasm_bindgen(js_name = jwksUris)]
    pub fn jwks_uris(&self) -> String {
        let list: Vec<Value> = self
            .engine
            .jwks_uris()
            .iter()
            .map(|(iss, uri)| serde_json::json!({ "iss": iss, "jwks_uri": uri }))
            .collect();
        Value::Array(list).to_string()
    }

    /// Replaces an issuer's keys with a fetched JWKS (JSON text, size-capped
    /// and parsed strictly by the core). Returns the skipped keys as JSON
    /// `[{"index", "message", "skipped"}]`; throws when the document has no
    /// usable key (the previous keys stay).
    #[wasm_bindgen(js_name = setIssuerKeys)]
    pub fn set_issuer_keys(&self, iss: &str, jwks_json: &str) -> Result<String, JsError> {
        let problems = self.engine.set_issuer_keys_json(iss, jwks_json).map_err(js_error)?;
        Ok(problems_json(&problems))
    }

    /// Replaces a Web Bot Auth operator's keys with its fetched key directory
    /// (JSON text) and the response's `Signature-Input`, `Signature` and
    /// `Content-Digest` headers (`undefined` when absent), at `now` (Unix
    /// seconds). Unless the policy sets `signature_agents.directory_signatures:
    /// "unchecked"`, only keys a valid directory signature covers are kept
    /// (the others come back as problems, like `setIssuerKeys`'); throws when
    /// the directory is refused (the previous keys stay).
    #[wasm_bindgen(js_name = setDirectoryKeys)]
    pub fn set_directory_keys(
        &self,
        operator: &str,
        text: &str,
        signature_input: Option<String>,
        signature: Option<String>,
        content_digest: Option<String>,
        now: f64,
    ) -> Result<String, JsError> {
        let response = crate::directory::DirectoryResponse {
            text,
            signature_input: signature_input.as_deref(),
            signature: signature.as_deref(),
            content_digest: content_digest.as_deref(),
        };
        let problems = self.engine.set_directory_keys(operator, &response, now as i64).map_err(js_error)?;
        Ok(problems_json(&problems))
    }

    /// Sets the secret DPoP nonces are derived from (random bytes from the
    /// host; share one secret across instances so their nonces agree).
    #[wasm_bindgen(js_name = setDpopNonceSecret)]
    pub fn set_dpop_nonce_secret(&self, secret: &[u8]) {
        self.engine.set_dpop_nonce_secret(secret);
    }

    /// The DPoP nonce to hand out at `now` (Unix seconds), when the policy turns nonces on.
    #[wasm_bindgen(js_name = dpopNonce)]
    pub fn dpop_nonce(&self, now: f64) -> Option<String> {
        self.engine.dpop_nonce(now as i64)
    }

    /// Lifts a circuit-breaker suspension; `true` if the agent was suspended.
    #[wasm_bindgen(js_name = liftSuspension)]
    pub fn lift_suspension(&self, agent: &str) -> bool {
        self.engine.lift_suspension(agent)
    }

    /// Puts a breaker suspension back in force (JSON `{"until_ms", "kind",
    /// "detail"}`, as `suspendedAgents` lists them), e.g. after a Durable
    /// Object restarts; never shortens one in force. Throws on bad JSON.
    #[wasm_bindgen(js_name = restoreSuspension)]
    pub fn restore_suspension(&self, agent: &str, suspension_json: &str) -> Result<bool, JsError> {
        let suspension =
            serde_json::from_str(suspension_json).map_err(|e| js_error(format!("suspension: {e}")))?;
        Ok(self.engine.restore_suspension(agent, suspension))
    }

    /// Agents suspended at `now` (Unix seconds), as JSON
    /// `[{"agent", "until_ms", "kind", "detail"}]`.
    #[wasm_bindgen(js_name = suspendedAgents)]
    pub fn suspended_agents(&self, now: f64) -> String {
        let list: Vec<Value> = self
            .engine
            .suspended_agents(now as i64)
            .into_iter()
            .map(|(agent, s)| {
                let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("agent".into(), agent.into());
                }
                v
            })
            .collect();
        Value::Array(list).to_string()
    }

    /// Live statistics as JSON: `{decisions, outcomes, reasons, routes, agents, agents_evicted}`.
    pub fn stats(&self) -> String {
        serde_json::to_string(&self.engine.stats()).unwrap_or_else(|_| "{}".into())
    }

    /// Entries held in the per-agent state (rate buckets, breaker windows, suspensions).
    #[wasm_bindgen(js_name = stateKeys)]
    pub fn state_keys(&self) -> usize {
        self.engine.state_keys()
    }

    /// Replaces the revocation lists (JSON `{"jti": [], "sub": [], "agents": [], "kid": []}`).
    #[wasm_bindgen(js_name = setRevocations)]
    pub fn set_revocations(&self, lists_json: &str) -> Result<(), JsError> {
        let lists: RevocationLists = crate::json::from_str_with_path(lists_json)
            .map_err(|e| js_error(format!("revocations.{}: {}", e.path, e.message)))?;
        self.engine.set_revocations(&lists);
        Ok(())
    }

    /// The policy's `revocation_list`, for the host to fetch: JSON
    /// `{"uri", "refresh_s", "max_stale_s", "signed", "loaded_at_ms"}`
    /// (`signed`: the list must be a signed JWS, `revocation_list.jwks`;
    /// `loaded_at_ms` `null` until a list is loaded, for a signed list the
    /// time it was signed), or `undefined` without one.
    #[wasm_bindgen(js_name = revocationList)]
    pub fn revocation_list(&self) -> Option<String> {
        self.engine.revocation_list().map(|l| {
            serde_json::json!({"uri": l.uri, "refresh_s": l.refresh_secs, "max_stale_s": l.max_stale_secs,
                               "signed": l.is_signed(), "loaded_at_ms": l.loaded_at_ms()})
            .to_string()
        })
    }

    /// Puts a revocation list fetched from `revocation_list.uri` (JSON text)
    /// in force, loaded at `now_ms` (Unix ms); returns its number of entries.
    /// Throws (with the JSON path) for a document it cannot read: the
    /// previous list stays, as old as it was.
    #[wasm_bindgen(js_name = setListedRevocations)]
    pub fn set_listed_revocations(&self, text: &str, now_ms: f64) -> Result<usize, JsError> {
        self.engine.set_listed_revocations(text, now_ms as i64).map_err(js_error)
    }

    /// The list host answered `304 Not Modified`: the fetched list in force
    /// stays, and `now_ms` (Unix ms) becomes its load time (never earlier
    /// than it was), without parsing its text again; returns its number of
    /// entries. Throws when no list was loaded (a `304` cannot vouch for a
    /// list the engine never accepted).
    #[wasm_bindgen(js_name = confirmListedRevocations)]
    pub fn confirm_listed_revocations(&self, now_ms: f64) -> Result<usize, JsError> {
        self.engine.confirm_listed_revocations(now_ms as i64).map_err(js_error)
    }

    /// The record a host with durable storage keeps of the approval in a
    /// request that was allowed with one (request JSON, as `decide` takes),
    /// so that it stays used after a restart: JSON `{"id", "expires_at"}`
    /// (`id` the base64url replay key, `expires_at` Unix seconds past which
    /// it cannot be valid), or `undefined` (no approval in the request, or no
    /// approval gate in the policy).
    #[wasm_bindgen(js_name = approvalRecord)]
    pub fn approval_record(&self, request_json: &str) -> Option<String> {
        let input = api::parse_request(request_json).ok()?;
        let request = crate::request::Request::from_input(&input).ok()?;
        let (key, expires_at) = self.engine.approval_record(&request)?;
        Some(serde_json::json!({"id": crate::b64::encode(&key), "expires_at": expires_at}).to_string())
    }

    /// Puts a kept approval record back (`approvalRecord`'s `id` and
    /// `expires_at`), at `now` (Unix seconds): a request with that approval
    /// is `approval_replayed` until then. `false` when the replay cache has
    /// no room; throws for an `id` that is not a base64url 32-byte key.
    #[wasm_bindgen(js_name = restoreApproval)]
    pub fn restore_approval(&self, id: &str, expires_at: f64, now: f64) -> Result<bool, JsError> {
        let key: [u8; 32] = crate::b64::decode(id).ok().and_then(|k| k.try_into().ok()).ok_or_else(|| {
            js_error(format!(
                "approval record id `{}`: expected 32 bytes of base64url",
                crate::keys::clip(id)
            ))
        })?;
        Ok(self.engine.restore_approval(key, expires_at as i64, now as i64))
    }

    /// Number of tokens in the verified-token cache.
    #[wasm_bindgen(js_name = cachedTokens)]
    pub fn cached_tokens(&self) -> usize {
        self.engine.cached_tokens()
    }
}

/// Validates policy JSON: JSON `[{"path", "message", "line"?, "column"?}]`, empty when valid.
#[wasm_bindgen]
pub fn check(policy_json: &str) -> String {
    serde_json::to_string(&api::check(policy_json)).unwrap_or_else(|_| "[]".into())
}

/// Signs `claims_json` (a JSON object) with a private JWK (JSON text, `d`
/// present) as a compact JWS with header `{alg, typ, kid}`. A random `jti`
/// (from `crypto.getRandomValues`) is added when absent; `iat`/`exp` are the
/// caller's to set (the core reads no clock).
#[wasm_bindgen]
pub fn mint(private_jwk_json: &str, claims_json: &str, typ: Option<String>) -> Result<String, JsError> {
    let jwk = parse_json("private JWK", private_jwk_json)?;
    let key = SigningKey::from_jwk(&jwk).map_err(js_error)?;
    let mut claims: Map<String, Value> = match parse_json("claims", claims_json)? {
        Value::Object(map) => map,
        _ => return Err(js_error("claims: expected a JSON object")),
    };
    if !claims.contains_key("jti") {
        let mut raw = [0u8; 16];
        getrandom::getrandom(&mut raw).map_err(|e| js_error(format!("no randomness: {e}")))?;
        claims.insert("jti".into(), crate::b64::encode(&raw).into());
    }
    let kid = jwk.get("kid").and_then(Value::as_str);
    Ok(mint::sign(&key, kid, typ.as_deref().unwrap_or("at+jwt"), &claims))
}

/// Verifies one JWS signature in Wasm: `alg` (`EdDSA`, `ES256`, …), a public
/// JWK (JSON text), the signing input and the base64url signature. For
/// benchmarks and the playground; decisions never need it.
#[wasm_bindgen(js_name = verifySignature)]
pub fn verify_signature(
    alg: &str,
    jwk_json: &str,
    signing_input: &str,
    signature: &str,
) -> Result<bool, JsError> {
    let alg = Alg::parse(alg).map_err(js_error)?;
    let jwk = keys::parse_jwk(&parse_json("JWK", jwk_json)?)
        .map_err(js_error)?
        .ok_or_else(|| js_error("JWK: not a signature verification key"))?;
    let signature = crate::b64::decode(signature).map_err(|e| js_error(format!("signature: {e}")))?;
    Ok(keys::verify_signature(alg, &jwk.key, signing_input.as_bytes(), &signature).is_ok())
}

/// The crate version, e.g. `0.1.0`.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

// ---------------------------------------------------------------------------
// The gateway's own endpoints: RFC 9728 protected-resource metadata, and the
// edge token service (RFC 8693 token exchange, its JWKS, RFC 8414 metadata).
// The core builds every document and every response; the JS host only routes
// the request here and wraps the `{status, headers, body}` it gets back.

fn response_json(r: &crate::decision::HttpResponse) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| {
        r#"{"status":500,"headers":{"content-type":"application/json","cache-control":"no-store"},"body":"{\"error\":\"server_error\"}"}"#.into()
    })
}

/// Where the gateway serves its endpoints, from the policy (JSON text):
/// `{"resource_metadata": [paths], "token": path?, "jwks": path?,
/// "authorization_server": [paths]}` ([`endpoints::Endpoints`]). Throws for policy
/// JSON that does not parse.
#[wasm_bindgen(js_name = gatewayEndpoints)]
pub fn gateway_endpoints(policy_json: &str) -> Result<String, JsError> {
    let policy: crate::policy::Policy =
        serde_json::from_str(policy_json).map_err(|e| js_error(format!("policy: {e}")))?;
    serde_json::to_string(&endpoints::Endpoints::of(&policy)).map_err(js_error)
}

#[wasm_bindgen]
impl Guard {
    /// RFC 9728 protected-resource metadata (JSON), when the policy has a `resource` section.
    #[wasm_bindgen(js_name = resourceMetadata)]
    pub fn resource_metadata(&self) -> Option<String> {
        self.engine.resource_metadata().map(|doc| doc.to_string())
    }

    /// RFC 8414 metadata of the token service (JSON), when the policy has a `token_service`.
    #[wasm_bindgen(js_name = tokenServiceMetadata)]
    pub fn token_service_metadata(&self) -> Option<String> {
        self.engine.token_service_metadata().map(|doc| doc.to_string())
    }

    /// The response (JSON `{status, headers, body}`) of the document
    /// endpoint at `path` (protected-resource metadata, the token service's
    /// JWKS or its RFC 8414 metadata; see `gatewayEndpoints`) to `method`:
    /// `undefined` when `path` is none of them (the token endpoint included).
    #[wasm_bindgen(js_name = endpointResponse)]
    pub fn endpoint_response(&self, path: &str, method: &str) -> Option<String> {
        let endpoint = self.engine.endpoints().at(path)?;
        endpoints::document_response(&self.engine, endpoint, method).map(|r| response_json(&r))
    }

    /// The token service's public JWKS (every loaded signing key, private parts removed).
    #[wasm_bindgen(js_name = tokenServiceJwks)]
    pub fn token_service_jwks(&self) -> String {
        self.engine.token_service_jwks().to_string()
    }

    /// Loads the token service's private signing keys: a JWK Set (JSON text)
    /// whose keys carry `d` and a `kid`, one of them the policy's
    /// `signing_kid`. Returns how many were loaded; throws (keeping the
    /// previous keys) for anything else. From a secret, never the policy.
    #[wasm_bindgen(js_name = setSigningKeys)]
    pub fn set_signing_keys(&self, private_jwks_json: &str) -> Result<usize, JsError> {
        self.engine
            .set_signing_keys_json(private_jwks_json)
            .map_err(|e| js_error(format!("signing keys: {e}")))
    }

    /// RFC 8693 token exchange: the token request (request JSON as for
    /// `decide`, with its `content-type` and any `DPoP` header) and its raw
    /// body → the response as JSON `{status, headers, body}`: the RFC 8693
    /// §2.2.1 success or an RFC 6749 §5.2 error, `Cache-Control: no-store`.
    /// The minted token's `jti` is 128 random bits from
    /// `crypto.getRandomValues`. Never throws: every failure is an error response.
    pub fn exchange(&self, request_json: &str, body: &str) -> String {
        self.exchange_once(request_json, body, false)
    }

    /// `exchange` once more after a key refresh (see `Engine::exchange_again`):
    /// the first attempt already counted against `token_service.rate_limit`.
    #[wasm_bindgen(js_name = exchangeAgain)]
    pub fn exchange_again(&self, request_json: &str, body: &str) -> String {
        self.exchange_once(request_json, body, true)
    }
}

impl Guard {
    fn exchange_once(&self, request_json: &str, body: &str, again: bool) -> String {
        let fail = |error: &'static str, m: String| {
            response_json(&crate::exchange::OAuthError::new(error, m).response())
        };
        let input = api::parse_request(request_json);
        let request = match input.as_ref().map(Request::from_input) {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => return fail("invalid_request", e.message),
            Err(m) => return fail("invalid_request", m.clone()),
        };
        let mut raw = [0u8; 16];
        if let Err(e) = getrandom::getrandom(&mut raw) {
            return fail("server_error", format!("no randomness: {e}"));
        }
        let jti = crate::b64::encode(&raw);
        let ctx = crate::exchange::ExchangeContext { request: &request, body, jti: &jti };
        response_json(&if again { self.engine.exchange_again(ctx) } else { self.engine.exchange(ctx) })
    }
}

// ---------------------------------------------------------------------------
// Shared state: where an agent's state lives (js/src/durable.js).

/// The agent a request (request JSON) claims to be, **unverified**, for
/// routing it to the agent's shared state (a Durable Object): see
/// [`crate::shard`]. `credentials` is the policy's `credentials` mode
/// (`token`, `signature`, `either`, `both`; anything else is `token`).
/// `undefined` when the request names no agent. Never used for a decision.
#[wasm_bindgen(js_name = routingKey)]
pub fn routing_key(request_json: &str, credentials: &str) -> Option<String> {
    use crate::policy::CredentialMode;
    let mode = match credentials {
        "signature" => CredentialMode::Signature,
        "either" => CredentialMode::Either,
        "both" => CredentialMode::Both,
        _ => CredentialMode::Token,
    };
    let input = api::parse_request(request_json).ok()?;
    let request = Request::from_input(&input).ok()?;
    crate::shard::routing_key(&request, mode)
}

// ---------------------------------------------------------------------------
// Reports: the CLI's `agentguard report`, for the playground's log view.

/// The agent-activity report of a decision log (JSON Lines of decision
/// events) as a self-contained HTML page (inline CSS and SVG, no scripts):
/// the same page `agentguard report --html` writes.
#[wasm_bindgen(js_name = reportHtml)]
pub fn report_html(jsonl: &str) -> String {
    crate::report::Report::from_jsonl(jsonl).html()
}

/// The same report's totals as JSON: `{events, bad_lines, first_ms, last_ms,
/// outcomes, reasons, routes, agents, hours}`.
#[wasm_bindgen(js_name = reportJson)]
pub fn report_json(jsonl: &str) -> String {
    serde_json::to_string(&crate::report::Report::from_jsonl(jsonl)).unwrap_or_else(|_| "{}".into())
}
