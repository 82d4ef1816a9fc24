//! Envoy frontend (feature `envoy`, target `wasm32-wasip1`): agentguard as a
//! proxy-wasm HTTP filter.
//!
//! ```text
//! on_configure     plugin configuration ──▶ config::load ──▶ Engine (one per VM, shared by every request)
//! on_http_request_headers
//!                  headers, source.address, peer cert digest, host clock
//!                      ──▶ mapping::request_parts ──▶ Engine::decide ──▶ Decision
//!                  allow        ──▶ strip inbound `x-agentguard-*`, add the identity headers, continue
//!                  anything else ──▶ send the core's response (status, WWW-Authenticate, problem+json)
//! on_tick / on_http_call_response
//!                  jwks::Schedule ──▶ dispatch_http_call(jwks cluster) ──▶ Engine::set_issuer_keys
//!                                     (If-None-Match: ETag in force)   └─▶ Engine::set_listed_revocations
//!                                                              304 ──▶ Engine::confirm_listed_revocations
//! ```
//!
//! Build: `bash scripts/build-envoy.sh` (→ `target/envoy/agentguard.wasm`);
//! deploy: `docs/envoy.md`; example: `examples/envoy/envoy.yaml`.
//!
//! ## Behaviour
//!
//! - **Configuration.** The plugin `configuration` is the policy JSON, or a
//!   wrapper `{"policy": {...}, "jwks_cluster": "...", ...}` with Envoy-only
//!   settings ([`config`]). It is compiled once per VM in `on_configure`. A bad
//!   configuration logs every problem with its JSON path and `on_configure`
//!   returns `false`, so Envoy rejects the filter (at startup Envoy exits; on an
//!   xDS update the listener update is refused and the old one keeps serving).
//!   There is never a filter that allows everything.
//! - **One engine per VM.** Envoy runs one Wasm VM per worker thread; each VM
//!   has one root context holding an `Rc` of the compiled engine, its
//!   verified-token cache and the JWKS schedule, shared by all HTTP contexts.
//!   The token cache stays per worker.
//! - **Per-agent state across workers** ([`store`]): rate-limit buckets,
//!   breaker windows, suspensions and the replay caches (DPoP proofs,
//!   approvals, signature nonces) live in proxy-wasm shared data, in fixed
//!   slot tables sized from the policy and updated with compare-and-swap, so
//!   one limit holds for all workers and a proof used on one is refused on
//!   the others (`"shared_state": false` keeps them per worker).
//! - **Operator endpoints** (off unless the wrapper names their routes):
//!   `GET /_agentguard/suspensions`,
//!   `POST /_agentguard/suspensions/lift?agent=…` and
//!   `POST /_agentguard/revocations?jti=…&sub=…&agent=…&kid=…`, answered by
//!   the filter once the request is allowed by that route (which must require
//!   a scope). Pushed revocations reach every worker through shared data
//!   within a tick, without rebuilding the engine ([`revocations`]).
//! - **Request mapping** ([`mapping`]): `:method`, `:scheme`, `:authority`,
//!   `:path` (the raw path: the core normalises it), every header (repeated
//!   ones stay separate), the `source.address` property (the downstream peer,
//!   or the client address Envoy derived from `X-Forwarded-For` when the
//!   connection manager is set to trust it), the
//!   `connection.sha256_peer_certificate_digest` property (for RFC 8705
//!   certificate-bound tokens) and Envoy's clock (`get_current_time`). Each
//!   property is a host call, so it is read only when it can matter
//!   ([`mapping::Needs`]): the address when the policy restricts networks
//!   (else only for a decision-log event that is written), the certificate
//!   when an issuer requires mTLS or the token may carry `cnf.x5t#S256`.
//! - **Callbacks.** The build does not export the proxy-wasm callbacks the
//!   filter leaves to the SDK's defaults (`on_log`, `on_response_body`,
//!   `on_response_trailers`), so Envoy skips them instead of entering the VM
//!   on every request (`scripts/build-envoy.sh`).
//! - **Bodies** ([`body`]; the engine's `body_use` says which). Approvals
//!   bind to the body's SHA-256. A request with a body to a `high`/`critical`
//!   route, or to a route with `approval_when` conditions, is held at its
//!   headers (`Action::Pause`, which with the plugin's
//!   `allow_on_headers_stop_iteration: true` lets Envoy keep the headers
//!   editable and hand over the body), buffered by Envoy, read in 64 KiB
//!   chunks, hashed, and decided once the body has ended; for `approval_when`
//!   the core also gets the text (at most 64 KiB of UTF-8; a larger or binary
//!   body gets only its digest, and the core then asks for an approval).
//!   Without that setting Envoy never hands over the body; such a request is
//!   refused (500 `internal_error`, logged with the fix) after `body_wait`. A
//!   request to a `high`/`critical` route that declares `Content-Digest`
//!   (RFC 9530, `sha-256`) is decided at once on the declared digest; if
//!   allowed, its body is held until complete and checked against the
//!   declaration (a mismatch is refused `request_invalid` before the body
//!   reaches the upstream). For `approval_when` routes a declaration does not
//!   spare the read (the conditions need the values); it must match the body
//!   read (`request_invalid` otherwise). Other requests are never buffered.
//! - **The gateway's own endpoints** ([`crate::endpoints`]), answered
//!   before any decision, at exactly the paths the policy implies: RFC 9728
//!   protected-resource metadata (a policy with `resource`), and with a
//!   `token_service` its token endpoint (RFC 8693 token exchange), JWKS and
//!   RFC 8414 metadata. A token request's body is read like an approval's
//!   (the plugin needs `allow_on_headers_stop_iteration: true`), at most
//!   64 KiB. The `jti` of a minted token is 128 bits of WASI randomness. The
//!   private signing keys come from the VM's environment variable
//!   `AGENTGUARD_SIGNING_KEYS` (or the wrapper's `signing_keys`); a policy
//!   with a `token_service` and no keys is refused (`"serve_token_service":
//!   false` turns the service off). The federation issuers' keys by URL are
//!   fetched like any other's; a subject token signed with a key not loaded
//!   yet holds the token request for a fetch (within the cooldown), then it
//!   is tried once more without counting against `token_service.rate_limit`.
//! - **Responses.** The core formats every refusal; the filter sends it
//!   verbatim with `send_http_response`. On allow, inbound headers with the
//!   identity prefix are removed first, then the identity headers are added.
//! - **JWKS by URL** ([`jwks`]): for issuers with a `jwks_uri`, keys are
//!   fetched through the configured Envoy cluster at configuration time,
//!   refreshed every `jwks_refresh`, and re-fetched (at most once per
//!   `jwks_cooldown`) when a token names an unknown key. A failed fetch keeps
//!   the last good keys. A request whose key is not known while a fetch is
//!   under way (the first requests after start-up, the first token signed
//!   with a rotated-in key) is **held** until the fetch ends (at most
//!   `jwks_timeout`), then decided; if the keys still do not fit, it is denied
//!   `token_key_not_found`. Web Bot Auth key directories (operators with a
//!   `directory_uri`) are fetched the same way, asked for as
//!   `application/http-message-signatures-directory+json`, and handed with
//!   the response's `Signature-Input` / `Signature` / `Content-Digest` to
//!   [`Engine::set_directory_keys`], which checks the directory's own
//!   signature; a signature by an unknown key (`signature_key_unknown`) holds
//!   and re-fetches like an unknown token key. Approval and attestation keys
//!   by URL are fetched the same way; a refused approval or attestation is
//!   not held (stateful stages come before it) but has the next tick fetch
//!   the keys again, so a retry finds a rotated-in key.
//! - **Conditional fetches** ([`jwks`]): the `ETag` of a JWKS or revocation
//!   list the engine *accepted* is remembered per source (per VM), at most
//!   256 printable ASCII bytes (anything else is ignored), and sent as
//!   `If-None-Match` on the next fetch of that source, periodic or on
//!   demand. A `304 Not Modified` to such a request means the document in
//!   force is current: JWKS keys stay as they are (same key generation, so
//!   the verified-token cache is kept) and the fetch counts as good for the
//!   schedule; the revocation list is confirmed with
//!   [`Engine::confirm_listed_revocations`] (nothing is parsed; a plain
//!   list's load time moves to now, so `max_stale` counts from the 304; a
//!   signed list's age keeps counting from its `iat`). A document the
//!   engine refuses never has its `ETag` remembered (the last good one is
//!   kept, so a 304 can only vouch for the document in force); one without
//!   a usable `ETag` clears it. A 304 to a request without `If-None-Match`
//!   is a failed fetch, as any status but 200. Counted in
//!   `jwks.fetch_not_modified` / `revocations.fetch_not_modified`. Key
//!   directories are always fetched whole: each answer's response signature
//!   is checked at the time of the fetch, and a 304 has no body for it.
//! - **Revocation list by URL**: the policy's `revocation_list` is one more
//!   source on the same schedule ([`jwks`]), through the cluster
//!   `jwks_clusters.revocation_list` (else `jwks_cluster`; none is a
//!   configuration error), fetched at configuration time and every
//!   `revocation_list.refresh` (after a failure again after `jwks_cooldown`
//!   or `refresh`, whichever is shorter), never on demand, and handed with
//!   Envoy's clock to [`Engine::set_listed_revocations`] (asked for with
//!   `Cache-Control: no-cache`, since its answer restarts a plain list's age; a
//!   304 confirms the list in force, above). A failed fetch
//!   keeps the last list (one warning naming the URL and the cause;
//!   `revocations.fetch_failed`). Without a list younger than `max_stale`
//!   the core refuses token-bearing requests (503 `state_unavailable`); a
//!   request with a credential that arrives while the VM's *first* list is
//!   being fetched is held (before deciding, so nothing is recorded twice)
//!   until the fetch ends. Every VM fetches for itself, as for JWKS.
//! - **DPoP nonces.** When the policy wants them, the engine gets a nonce
//!   secret: the wrapper's `dpop_nonce_secret`, else one created per Envoy
//!   (WASI randomness) and shared by its VMs through proxy-wasm shared data.
//!   Responses that went upstream carry the current `DPoP-Nonce`.
//! - **Fail closed.** Every decision error is a deny (the core). A host call
//!   that fails (headers unreadable, a header edit refused) is a 500
//!   `internal_error` refusal, never a pass. A panic is a bug: it is logged
//!   (critical) and the VM stops; Envoy then applies the plugin's
//!   `failure_policy` — use `FAIL_CLOSED` (requests get 503) or `FAIL_RELOAD`,
//!   never `FAIL_OPEN` for an authorization filter.
//! - **Metrics** ([`metrics`]): counters by outcome and reason code, cache
//!   hits, JWKS and revocation-list fetches (loaded, not modified, failed),
//!   the revocation list's freshness gauge (handed to Envoy only when it
//!   changes) and a decision-time histogram, on the admin `/stats`.
//! - **Decision log.** Each decision's event (`schema/decision-event.schema.json`)
//!   is logged as JSON at `debug` (configurable: `decision_log`). The filter
//!   follows Envoy's log level for the `wasm` component, re-read every second,
//!   and formats nothing Envoy would drop.
//!
//! ## Not done here
//!
//! - State across Envoy processes (replicas): shared data is per process
//!   (pushed revocations too; the fetched revocation list reaches every
//!   replica, each fetching it).

mod body;
mod config;
mod jwks;
mod mapping;
mod metrics;
mod revocations;
mod store;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, Status};

use self::body::{BodyReader, Plan, ReadBody};
use self::config::{DecisionLog, Fetched, JwksSource, Loaded, Settings};
use self::jwks::Schedule;
use self::mapping::{
    body_digest, declared_body_sha256, headers_to_strip, hex, ip_of, may_be_certificate_bound, query_param,
    request_parts, response_headers, Needs,
};
use self::metrics::{FetchEvent, Metrics};
use crate::decision::{Decision, HttpResponse};
use crate::endpoints::{self, Endpoint, Endpoints};
use crate::engine::{BodyUse, Engine};
use crate::exchange::{ExchangeContext, OAuthError};
use crate::reason::ReasonCode;
use crate::request::Request;

/// Most requests held at once (per VM) while a JWKS (or first revocation
/// list) fetch is under way; more are decided at once with what is at hand.
const MAX_WAITING: usize = 1024;

/// How often the root context wakes up: stats, JWKS schedule, log level.
const TICK: Duration = Duration::from_secs(1);

/// The proxy-wasm entry point, in its own module so `_initialize` (exported
/// by `#[no_mangle]`) is not part of the crate's documented API.
mod entry {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        std::panic::set_hook(Box::new(|info| {
            let _ = hostcalls::log(
                LogLevel::Critical,
                &format!("agentguard: bug: {info}; this Wasm VM stops and the plugin's failure_policy applies"),
            );
        }));
        proxy_wasm::set_root_context(|id| Box::new(Root { id, filter: None }));
    }}
}

/// Envoy's clock, in nanoseconds since the Unix epoch.
fn now_ns() -> Option<u64> {
    let time = hostcalls::get_current_time().ok()?;
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_nanos()).ok()
}

fn ns_to_ms(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

/// Makes the `log` crate follow Envoy's level for the `wasm` component, so
/// nothing is formatted that Envoy would drop.
fn follow_host_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

/// Where a request is when the filter decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Its headers have arrived; `end_of_stream`: it has no body.
    Headers { end_of_stream: bool },
    /// Its whole body has been read (for an approval-gated route or one with
    /// body conditions): the body's SHA-256 (`None` for an empty body) and,
    /// for body conditions, its text when it fits ([`body`]).
    Body(ReadBody),
    /// A token request (to the token service's endpoint) whose body has
    /// been read: its text, `None` when it is not UTF-8 or over 64 KiB.
    Token(Option<String>),
}

/// A request whose body is being read before the decision.
#[derive(Debug, Clone, Copy)]
struct Reading {
    context_id: u32,
    /// Since when (ms).
    since_ms: i64,
    /// Whether any of the body has reached the filter yet.
    seen: bool,
    /// Whether the core gets the body's text (`approval_when`), not only its digest.
    text: bool,
    /// A token request: the body goes to the token exchange, not to a decision.
    token: bool,
}

/// `POST` here lifts a breaker suspension (`?agent=`), when `lift_route` is set.
const LIFT_PATH: &str = "/_agentguard/suspensions/lift";
/// `GET` here lists the suspensions in force, when `suspensions_route` is set.
const SUSPENSIONS_PATH: &str = "/_agentguard/suspensions";
/// `POST` here adds revocations (`?jti=&sub=&agent=&kid=`), when `revoke_route` is set.
const REVOKE_PATH: &str = "/_agentguard/revocations";

/// An operator endpoint a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    /// Not an operator request (or the endpoint is off, or the request was refused).
    None,
    /// Allowed, but by another route than the endpoint's.
    WrongRoute(String),
    /// Lift a suspension.
    Lift,
    /// List suspensions.
    List,
    /// Add revocations.
    Revoke,
}

/// What one VM shares between its root context and its HTTP contexts.
struct Filter {
    engine: Engine,
    settings: Settings,
    metrics: Metrics,
    schedule: RefCell<Schedule>,
    /// HTTP contexts held until the JWKS fetch under way ends, and where
    /// their request was.
    waiting: RefCell<Vec<(u32, Stage)>>,
    /// An approval or attestation was refused since the last tick: fetch the
    /// keys again on the next one (see `should_refetch`).
    refetch: Cell<bool>,
    /// Requests whose body is being read before the decision.
    reading: RefCell<Vec<Reading>>,
    /// Allowed requests whose body must match the `Content-Digest` they declared.
    bodies: RefCell<Vec<(u32, [u8; 32])>>,
    /// Whether the policy asks for DPoP nonces (handed out on every response).
    dpop_nonces: bool,
    /// Which connection properties every request needs read before deciding.
    needs: Needs,
    /// The gateway endpoints answered before any decision (none for most policies).
    endpoints: Endpoints,
    /// The shared-data key of pushed revocations, and the version in force here.
    revocations_key: String,
    revocations_cas: std::cell::Cell<Option<u32>>,
    /// Entries of the fetched revocation list last loaded, `None` after a
    /// failed fetch: a load that changes nothing is logged at `debug` only.
    list_entries: Cell<Option<usize>>,
}

impl Filter {
    /// Decides the request of the current HTTP context and acts on it — or,
    /// for a request with a body to an approval-gated route, starts reading
    /// the body first. `may_wait`: whether an unknown key may hold the request
    /// for a JWKS fetch.
    fn on_request(&self, context_id: u32, stage: Stage, may_wait: bool) -> Action {
        let start_ns = now_ns();
        let headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(headers) => headers,
            Err(status) => {
                return self
                    .refuse_internal(format!("cannot read the request headers ({status:?})"), start_ns)
            }
        };
        let Some(start) = start_ns else {
            return self.refuse_internal("cannot read the host clock".into(), start_ns);
        };
        let (end_of_stream, read, text) = match &stage {
            Stage::Headers { end_of_stream } => {
                // The gateway's own endpoints are answered before any decision.
                let endpoint =
                    (!self.endpoints.is_empty()).then(|| self.endpoints.at(request_path(&headers)));
                if let Some(endpoint) = endpoint.flatten() {
                    return self.serve_endpoint(context_id, endpoint, &headers, *end_of_stream, start);
                }
                (*end_of_stream, None, None)
            }
            Stage::Body(body) => (true, body.digest, body.text.as_deref()),
            Stage::Token(body) => {
                return self.exchange(context_id, &headers, body.as_deref(), start, may_wait)
            }
        };
        let declared = match declared_body_sha256(&headers) {
            Ok(declared) => declared,
            Err(message) => return self.refuse(ReasonCode::RequestInvalid, message, start_ns),
        };
        // The body is complete (none, or read here): it must be the one declared.
        let complete = end_of_stream.then_some(read);
        if let (Some(declared), Some(complete)) = (declared, complete) {
            if declared != complete.unwrap_or_else(|| body_digest(b"")) {
                let message = match complete {
                    None => "`Content-Digest` does not match the request's empty body",
                    Some(_) => "the request body does not match its `Content-Digest`",
                };
                return self.refuse(ReasonCode::RequestInvalid, message.to_owned(), start_ns);
            }
        }
        // Each property is a host call: read only what the decision can use.
        let property = |path: Vec<&str>| hostcalls::get_property(path).ok().flatten();
        let source = self.needs.source_address.then(|| property(vec!["source", "address"])).flatten();
        let cached = |token: &str| self.engine.cached_token_wants_certificate(token);
        let cert = (self.needs.peer_certificate || may_be_certificate_bound(&headers, cached))
            .then(|| property(vec!["connection", "sha256_peer_certificate_digest"]))
            .flatten();
        // f64 seconds keep sub-microsecond precision for the next few centuries.
        let now = start as f64 / 1e9;
        // An empty body binds like no body, whichever way the digest came.
        let body_sha256 = read.or(declared.filter(|d| *d != body_digest(b""))).as_ref().map(hex);
        let mut parts = request_parts(&headers, source.as_deref(), cert.as_deref(), body_sha256, now);
        // The core hashes the text too and refuses the request if it differs from `body_sha256`.
        parts.body = text.map(Cow::Borrowed);
        let request = Request::from_parts(&parts);
        if !end_of_stream {
            let body_use = match &request {
                Ok(r) => self.engine.body_use(r),
                Err(_) => BodyUse::None,
            };
            if let Plan::Read { text } = body::plan(body_use, declared.is_some()) {
                // Hold the headers (Envoy keeps them editable) until the body is in.
                let since_ms = ns_to_ms(start);
                self.reading.borrow_mut().push(Reading {
                    context_id,
                    since_ms,
                    seen: false,
                    text,
                    token: false,
                });
                return Action::Pause;
            }
        }
        // Before deciding, so nothing is recorded (a DPoP proof's `jti`…) for a
        // request that is decided again once the list is in.
        if may_wait && self.wait_for_first_list(context_id, &stage, &headers) {
            self.metrics.revocations(FetchEvent::Waited);
            return Action::Pause;
        }
        let decision = match request {
            Ok(request) => self.engine.decide(&request),
            Err(e) => self.engine.refuse_invalid(&parts.method, &parts.host, &parts.path, parts.now, e),
        };

        if may_wait && self.should_wait(&decision) && self.hold(context_id, stage.clone(), ns_to_ms(start)) {
            self.metrics.jwks(FetchEvent::Waited);
            return Action::Pause;
        }
        if self.should_refetch(&decision) {
            self.refetch.set(true);
        }
        let operator = match self.operator(&decision) {
            Operator::None => None,
            Operator::WrongRoute(message) => {
                return self.refuse(ReasonCode::RouteNotMatched, message, start_ns)
            }
            serve => Some(serve),
        };
        self.finish(&decision, start_ns, !self.needs.source_address);
        if let Some(operator) = operator {
            return self.serve_operator(operator, &headers, ns_to_ms(start));
        }
        let action = self.act(&decision, &headers, start_ns);
        if let (Action::Continue, false, Some(digest)) = (action, end_of_stream, declared) {
            self.bodies.borrow_mut().push((context_id, digest));
        }
        action
    }

    /// Answers one of the gateway's own endpoints before any decision: a
    /// document, or a token request (its body read first).
    // Off the per-request path: kept out of `on_request`'s code.
    #[cold]
    #[inline(never)]
    fn serve_endpoint(
        &self,
        context_id: u32,
        endpoint: Endpoint,
        headers: &[(String, Vec<u8>)],
        end_of_stream: bool,
        start: u64,
    ) -> Action {
        let method = header_text(headers, ":method");
        if endpoint == Endpoint::Token {
            if method == "POST" && !end_of_stream {
                // Held until the body is in (`on_body_read`), like an approval-gated request.
                let since_ms = ns_to_ms(start);
                self.reading.borrow_mut().push(Reading {
                    context_id,
                    since_ms,
                    seen: false,
                    text: true,
                    token: true,
                });
                return Action::Pause;
            }
            // No body: the core answers (`POST` needed, or no `grant_type`).
            return self.exchange(context_id, headers, Some(""), start, true);
        }
        match endpoints::document_response(&self.engine, endpoint, method) {
            Some(response) => send(&response),
            // Only a path the engine's own endpoints listed gets here.
            None => self.refuse_internal(format!("no document for the endpoint {endpoint:?}"), Some(start)),
        }
    }

    /// Answers a token request (RFC 8693 token exchange) whose body was read
    /// (`body`; `None`: not UTF-8 form data within 64 KiB). A subject or
    /// actor token signed with a key not loaded yet, while keys come from
    /// URLs, holds the request for a fetch (`may_wait`), after which it is
    /// tried once more (`may_wait` false: not counted again against
    /// `token_service.rate_limit`).
    // Off the per-request path: kept out of `on_request`'s code.
    #[cold]
    #[inline(never)]
    fn exchange(
        &self,
        context_id: u32,
        headers: &[(String, Vec<u8>)],
        body: Option<&str>,
        start: u64,
        may_wait: bool,
    ) -> Action {
        let refuse = |error: &'static str, message: String| {
            self.metrics.exchanged(false);
            send(&OAuthError::new(error, message).response())
        };
        let Some(body) = body else {
            let max = crate::limits::MAX_BODY_BYTES;
            return refuse("invalid_request", format!("expected a UTF-8 form body of at most {max} bytes"));
        };
        // The client's address keys `token_service.rate_limit`.
        let source = hostcalls::get_property(vec!["source", "address"]).ok().flatten();
        let parts = request_parts(headers, source.as_deref(), None, None, start as f64 / 1e9);
        let request = match Request::from_parts(&parts) {
            Ok(request) => request,
            Err(e) => return refuse("invalid_request", e.message),
        };
        let mut raw = [0u8; 16];
        if let Err(e) = getrandom::getrandom(&mut raw) {
            error!("no randomness for a minted token's jti: {e}");
            return refuse("server_error", "no randomness for the token's `jti`".into());
        }
        let jti = crate::b64::encode(&raw);
        let out =
            self.engine.exchange_checked(ExchangeContext { request: &request, body, jti: &jti }, may_wait);
        if out.key_unknown
            && may_wait
            && self.schedule.borrow().fetches_keys()
            && self.hold(context_id, Stage::Token(Some(body.to_owned())), ns_to_ms(start))
        {
            self.metrics.jwks(FetchEvent::Waited);
            return Action::Pause;
        }
        self.metrics.exchanged(out.response.status == 200);
        // With server nonces (RFC 9449 §8), `on_http_response_headers` adds
        // the current one to this answer too: Envoy passes a local reply
        // through the filter's response callbacks.
        send(&out.response)
    }

    /// Whether the request is for an operator endpoint, and may use it.
    fn operator(&self, decision: &Decision) -> Operator {
        let (route, serve) = match (decision.event.method.as_str(), decision.event.path.as_str()) {
            ("POST", LIFT_PATH) => (&self.settings.lift_route, Operator::Lift),
            ("GET", SUSPENSIONS_PATH) => (&self.settings.suspensions_route, Operator::List),
            ("POST", REVOKE_PATH) => (&self.settings.revoke_route, Operator::Revoke),
            _ => return Operator::None,
        };
        // Off unless configured; refused requests get the core's answer as any other.
        let Some(route) = route.as_ref().filter(|_| decision.is_allowed()) else { return Operator::None };
        if decision.route.as_deref() == Some(route.as_str()) {
            return serve;
        }
        Operator::WrongRoute(format!(
            "the operator endpoint needs the policy route `{route}`, but `{}` matched",
            decision.route.as_deref().unwrap_or("none")
        ))
    }

    /// Answers an operator request (already allowed by its own route).
    fn serve_operator(&self, operator: Operator, headers: &[(String, Vec<u8>)], now_ms: i64) -> Action {
        let scope = if self.settings.shared_state { "envoy" } else { "worker" };
        let (status, body) = match operator {
            Operator::Lift => {
                let path =
                    headers.iter().find(|(n, _)| n == ":path").map(|(_, v)| String::from_utf8_lossy(v));
                match path.as_deref().and_then(|p| query_param(p, "agent")).filter(|a| !a.is_empty()) {
                    Some(agent) => {
                        let lifted = self.engine.lift_suspension(&agent);
                        info!("operator request: suspension of `{agent}` lifted: {lifted}");
                        (200, serde_json::json!({"scope": scope, "agent": agent, "lifted": lifted}))
                    }
                    None => (
                        400,
                        serde_json::json!({"type": "https://agentguard.dev/problems/request_invalid",
                            "title": "Bad Request", "status": 400, "reason": "request_invalid",
                            "detail": "expected the agent as `?agent=<percent-encoded agent id>`"}),
                    ),
                }
            }
            Operator::List => {
                let now = now_ms.div_euclid(1000);
                let suspended: Vec<serde_json::Value> = self
                    .engine
                    .suspended_agents(now)
                    .into_iter()
                    .map(|(agent, s)| serde_json::json!({"agent": agent, "suspension": s}))
                    .collect();
                (200, serde_json::json!({"scope": scope, "suspended": suspended}))
            }
            Operator::Revoke => {
                let path =
                    headers.iter().find(|(n, _)| n == ":path").map(|(_, v)| String::from_utf8_lossy(v));
                let problem = |status: u32, reason: &str, detail: String| {
                    (
                        status,
                        serde_json::json!({"type": format!("https://agentguard.dev/problems/{reason}"),
                            "title": if status == 400 { "Bad Request" } else { "Service Unavailable" },
                            "status": status, "reason": reason, "detail": detail}),
                    )
                };
                match path.as_deref().and_then(revocations::from_query) {
                    None => problem(
                        400,
                        "request_invalid",
                        "expected one or more of `?jti=`, `?sub=`, `?agent=`, `?kid=` (percent-encoded, repeatable)"
                            .into(),
                    ),
                    Some(more) => match revocations::push(&self.revocations_key, &more) {
                        Ok(pushed) => {
                            info!("operator request: {} revocation(s) pushed", more.len());
                            self.sync_revocations();
                            (200, serde_json::json!({"scope": "envoy", "pushed": pushed}))
                        }
                        Err(e) => {
                            warn!("operator request: revocations not pushed: {e}");
                            problem(503, "state_unavailable", e)
                        }
                    },
                }
            }
            Operator::None | Operator::WrongRoute(_) => return Action::Continue,
        };
        let content_type = if status == 200 { "application/json" } else { "application/problem+json" };
        let sent = hostcalls::send_http_response(
            status,
            vec![("content-type", content_type), ("cache-control", "no-store")],
            Some(body.to_string().as_bytes()),
        );
        if let Err(status) = sent {
            error!("cannot send the operator response ({status:?})");
        }
        Action::Pause
    }

    /// Whether the filter is reading the body of `context_id` before deciding.
    fn is_reading(&self, context_id: u32) -> bool {
        self.reading.borrow().iter().any(|r| r.context_id == context_id)
    }

    /// Whether `context_id` is held undecided (keys or the first revocation
    /// list being fetched). Its body and trailers must not resume it: with
    /// `allow_on_headers_stop_iteration`, a `Continue` from a body or
    /// trailers callback sends the held headers upstream, undecided.
    fn is_waiting(&self, context_id: u32) -> bool {
        self.waiting.borrow().iter().any(|(id, _)| *id == context_id)
    }

    /// Part of the body of `context_id` arrived (more is coming).
    fn body_seen(&self, context_id: u32) {
        for r in self.reading.borrow_mut().iter_mut() {
            r.seen |= r.context_id == context_id;
        }
    }

    /// Refuses the requests held for their body that none of the body reached
    /// within `body_wait`. Envoy delivers the body to a filter that holds the
    /// headers only with the plugin's `allow_on_headers_stop_iteration: true`;
    /// without it such a request would hang until a timeout, so it is refused
    /// here, saying why.
    fn expire_reading(&self, now_ms: i64) {
        let wait_ms = i64::try_from(self.settings.body_wait_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let stuck: Vec<u32> = self
            .reading
            .borrow()
            .iter()
            .filter(|r| !r.seen && now_ms.saturating_sub(r.since_ms) >= wait_ms)
            .map(|r| r.context_id)
            .collect();
        for context_id in stuck {
            self.reading.borrow_mut().retain(|r| r.context_id != context_id);
            if hostcalls::set_effective_context(context_id).is_err() {
                continue;
            }
            let message = format!(
                "no request body reached the filter within {}s; approval-gated routes and routes with \
                 `approval_when` need it: set \
                 `allow_on_headers_stop_iteration: true` in the plugin config (Envoy 1.35 or later)",
                self.settings.body_wait_secs
            );
            let _ = self.refuse_internal(message, now_ns());
        }
    }

    /// The whole body of `context_id` is in: hash it (keeping its text for
    /// body conditions) and decide.
    fn on_body_read(&self, context_id: u32, body_size: usize) -> Action {
        let reading = self.reading.borrow().iter().find(|r| r.context_id == context_id).copied();
        self.reading.borrow_mut().retain(|r| r.context_id != context_id);
        let (text, token) = reading.map_or((false, false), |r| (r.text, r.token));
        match read_body(body_size, text || token) {
            // A token request's form: empty (no digest), its text, or none that fits.
            Ok(body) if token => {
                let form = if body.digest.is_none() { Some(String::new()) } else { body.text };
                self.on_request(context_id, Stage::Token(form), true)
            }
            // An empty body binds like no body, however the client framed it.
            Ok(body) => self.on_request(context_id, Stage::Body(body), true),
            Err(status) => {
                self.refuse_internal(format!("cannot read the request body ({status:?})"), now_ns())
            }
        }
    }

    /// The digest the body of `context_id` must have, if it declared one and was allowed.
    fn expected_body(&self, context_id: u32) -> Option<[u8; 32]> {
        self.bodies.borrow().iter().find(|(id, _)| *id == context_id).map(|(_, d)| *d)
    }

    /// Checks the buffered body against its declared digest: on a match it
    /// goes upstream, otherwise the request is refused.
    fn verify_body(&self, context_id: u32, expected: [u8; 32], body_size: usize) -> Action {
        self.bodies.borrow_mut().retain(|(id, _)| *id != context_id);
        let start_ns = now_ns();
        let body = match read_body(body_size, false) {
            Ok(body) => body,
            Err(status) => {
                return self.refuse_internal(format!("cannot read the request body ({status:?})"), start_ns)
            }
        };
        if body.digest.unwrap_or_else(|| body_digest(b"")) == expected {
            return Action::Continue;
        }
        let message = "the request body does not match its `Content-Digest`".to_owned();
        self.refuse(ReasonCode::RequestInvalid, message, start_ns)
    }

    /// Records and logs a decision. `source_unread`: the decision was made
    /// without reading `source.address` (the policy restricts no networks),
    /// so the logged event gets it here.
    fn finish(&self, decision: &Decision, start_ns: Option<u64>, source_unread: bool) {
        let micros = match (self.metrics.time_this_one(), start_ns) {
            (true, Some(start)) => now_ns().map(|end| end.saturating_sub(start) / 1000),
            _ => None,
        };
        self.metrics.record(decision, micros);
        let level = match self.settings.decision_log {
            DecisionLog::Off => return,
            DecisionLog::Debug => log::Level::Debug,
            DecisionLog::Info => log::Level::Info,
        };
        // `decision.log`: the policy's `log` settings (outcome filter, sampling).
        if decision.log && log::log_enabled!(level) {
            let mut event = decision.event.clone();
            if source_unread {
                let source = hostcalls::get_property(vec!["source", "address"]).ok().flatten();
                event.source_ip = source.and_then(|a| ip_of(&String::from_utf8_lossy(&a)));
            }
            let measured = || Some(now_ns()?.saturating_sub(start_ns?) / 1000);
            event.duration_us = event.duration_us.or(micros).or_else(measured);
            match serde_json::to_string(&event) {
                Ok(event) => log::log!(level, "decision {event}"),
                Err(e) => warn!("cannot serialise the decision event: {e}"),
            }
        }
    }

    /// Carries out a decision on the current HTTP context.
    fn act(&self, decision: &Decision, headers: &[(String, Vec<u8>)], start_ns: Option<u64>) -> Action {
        if let Some(response) = &decision.response {
            return send(response);
        }
        if !decision.is_allowed() {
            return self.refuse_internal("refusal without a response".into(), start_ns);
        }
        for name in headers_to_strip(headers, &decision.strip_header_prefix) {
            if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None) {
                return self.refuse_internal(format!("cannot remove header `{name}` ({status:?})"), start_ns);
            }
        }
        // One add per identity header: measured cheaper for Envoy than one
        // `set_http_request_headers` call, which rebuilds the whole header map.
        for (name, value) in &decision.forward_headers {
            // Every inbound header with the prefix is gone, so adding is enough
            // (and cheaper for Envoy than replacing); anything else is replaced.
            let set = if name.starts_with(&*decision.strip_header_prefix) {
                hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
            } else {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
            };
            if let Err(status) = set {
                return self.refuse_internal(format!("cannot set header `{name}` ({status:?})"), start_ns);
            }
        }
        Action::Continue
    }

    /// Refuses the current request with the core's `internal_error` response.
    fn refuse_internal(&self, message: String, start_ns: Option<u64>) -> Action {
        error!("{message}; request refused");
        self.refuse(ReasonCode::InternalError, message, start_ns)
    }

    /// Refuses the current request with the core's response for `code`.
    fn refuse(&self, code: ReasonCode, message: String, start_ns: Option<u64>) -> Action {
        let decision = self.engine.refuse_unparsed(code, message);
        self.finish(&decision, start_ns, false);
        self.act(&decision, &[], start_ns)
    }

    /// Whether the refusal is "no key for this token" (or "no trusted
    /// directory has this signature's key") while keys come from URLs.
    /// Such a refusal comes before every stage that keeps state (rate limits,
    /// breaker, replay caches: a signature is checked before its nonce is
    /// recorded and before any token), so deciding the request again later
    /// counts nothing twice.
    fn should_wait(&self, decision: &Decision) -> bool {
        decision
            .reasons
            .first()
            .is_some_and(|r| matches!(r.code, ReasonCode::TokenKeyNotFound | ReasonCode::SignatureKeyUnknown))
            && self.schedule.borrow().fetches_keys()
    }

    /// Whether the refusal is an approval or attestation that did not verify
    /// while keys come from URLs: it may be signed by a key its issuer
    /// published since the last fetch. Such a request is not held and decided
    /// again (those stages come after the rate limits and the breaker, which
    /// would count it twice), but the next tick fetches the keys again, within
    /// the cooldown, so that the agent's retry finds the new key. (From the
    /// root context: a fetch started by a request that ends at once would
    /// answer to a context that no longer exists.)
    fn should_refetch(&self, decision: &Decision) -> bool {
        decision
            .reasons
            .first()
            .is_some_and(|r| matches!(r.code, ReasonCode::ApprovalInvalid | ReasonCode::AttestationInvalid))
            && self.schedule.borrow().fetches_keys()
    }

    /// Starts the on-demand fetches the cooldown allows.
    fn fetch_on_demand(&self, now_ms: i64) {
        let picks = self.schedule.borrow().on_demand(now_ms);
        for index in picks {
            self.fetch(index, now_ms);
        }
    }

    /// Starts the on-demand fetches the cooldown allows and holds the request
    /// if any fetch is under way. `false`: decide now.
    fn hold(&self, context_id: u32, stage: Stage, now_ms: i64) -> bool {
        self.fetch_on_demand(now_ms);
        if !self.schedule.borrow().in_flight() {
            return false;
        }
        let mut waiting = self.waiting.borrow_mut();
        if waiting.len() >= MAX_WAITING {
            return false;
        }
        waiting.push((context_id, stage));
        true
    }

    /// Holds a request with a credential that arrives before the first
    /// revocation list while that list is being fetched (the first requests
    /// after start-up), until the fetch ends; `false`: decide now. Without a
    /// list the core refuses every token-bearing request (503
    /// `state_unavailable`), so holding spares those a refusal; requests
    /// without an `Authorization` header do not need the list.
    fn wait_for_first_list(&self, context_id: u32, stage: &Stage, headers: &[(String, Vec<u8>)]) -> bool {
        let first = self.engine.revocation_list().is_some_and(|l| l.loaded_at_ms().is_none());
        if !first
            || !self.schedule.borrow().list_in_flight()
            || !headers.iter().any(|(name, _)| name == "authorization")
        {
            return false;
        }
        let mut waiting = self.waiting.borrow_mut();
        if waiting.len() >= MAX_WAITING {
            return false;
        }
        waiting.push((context_id, stage.clone()));
        true
    }

    /// What `source` publishes, for log lines: a Web Bot Auth key directory
    /// (by operator), an issuer's JWKS, or the revocation list.
    fn document(&self, source: &JwksSource) -> &'static str {
        if let Fetched::RevocationList { .. } = source.kind {
            "revocation list"
        } else if self.is_directory(source) {
            "key directory"
        } else {
            "JWKS"
        }
    }

    /// What stays in force after a failed fetch of `source`, for its warning.
    fn keeping(&self, source: &JwksSource) -> String {
        let Fetched::RevocationList { .. } = source.kind else { return "keeping the current keys".into() };
        let Some(list) = self.engine.revocation_list() else { return String::new() };
        match (list.loaded_at_ms(), now_ns().map(ns_to_ms)) {
            (Some(at), Some(now)) => format!(
                "keeping the list loaded {} s ago (once it is older than `max_stale`, {} s, requests with a \
                 token are refused: 503 `state_unavailable`)",
                now.saturating_sub(at).div_euclid(1000),
                list.max_stale_secs
            ),
            _ => "no list loaded yet: requests with a token are refused (503 `state_unavailable`)".into(),
        }
    }

    /// Whether `source` is a Web Bot Auth key directory. Its fetches are
    /// never conditional (`If-None-Match`), unlike those of a JWKS or the
    /// revocation list: every answer carries a response signature the core
    /// checks at the time ([`jwks`]), and a 304 has none.
    fn is_directory(&self, source: &JwksSource) -> bool {
        matches!(source.kind, Fetched::Keys) && self.engine.is_directory_operator(&source.iss)
    }

    /// Starts fetching the JWKS (key directory, revocation list) of source
    /// `index`; with `If-None-Match` when the document in force has an `ETag`.
    fn fetch(&self, index: usize, now_ms: i64) {
        let Some(source) = self.schedule.borrow().source(index).cloned() else { return };
        let directory = self.is_directory(&source);
        let etag = if directory { None } else { self.schedule.borrow().etag(index).map(str::to_owned) };
        let headers = jwks::request_headers(&source, directory, etag.as_deref());
        let timeout = Duration::from_secs(self.settings.jwks_timeout_secs);
        let what = self.document(&source);
        let of =
            if let Fetched::Keys = source.kind { format!(" of `{}`", source.iss) } else { String::new() };
        match hostcalls::dispatch_http_call(&source.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                debug!("fetching the {what}{of} from `{}` (callout {token})", source.uri);
                self.schedule.borrow_mut().started(index, token, now_ms, etag.is_some());
            }
            Err(status) => {
                warn!(
                    "cannot fetch the {what}{of} from `{}` through cluster `{}` ({status:?}); {}",
                    source.uri,
                    source.cluster,
                    self.keeping(&source)
                );
                self.metrics.fetched(source.kind, FetchEvent::FetchFailed);
                self.schedule.borrow_mut().refused(index, now_ms);
            }
        }
    }

    /// Handles the answer to callout `token`, if it is one of the schedule's
    /// fetches (JWKS, key directory, revocation list). A document the engine
    /// takes has its `ETag` remembered for the next fetch; a `304` to a
    /// conditional fetch confirms the document in force.
    fn on_fetched(&self, token: u32, body_size: usize) {
        let Some(index) = self.schedule.borrow().pending(token) else { return };
        let Some(source) = self.schedule.borrow().source(index).cloned() else { return };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
        let ok = if jwks::is_not_modified(status.as_deref(), self.schedule.borrow().conditional(index)) {
            self.not_modified(index, &source)
        } else {
            let ok = match source.kind {
                Fetched::Keys => self.load_keys(&source, status.as_deref(), body_size),
                Fetched::RevocationList { .. } => self.load_list(&source, status.as_deref(), body_size),
            };
            // Only the ETag of a document the engine took: a refused one's
            // would have a later 304 vouch for it.
            if ok {
                let etag = if !self.is_directory(&source) {
                    let value = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, "etag");
                    jwks::usable_etag(value.ok().flatten().as_deref())
                } else {
                    None
                };
                self.schedule.borrow_mut().remember_etag(index, etag);
            }
            ok
        };
        self.schedule.borrow_mut().finished(token, ok);
        self.release_if_idle();
    }

    /// The source answered `304 Not Modified` to `If-None-Match` with the
    /// `ETag` of the document in force: it is still current. The keys stay
    /// as they are (same generation: the verified-token cache stays valid);
    /// the revocation list is confirmed ([`Engine::confirm_listed_revocations`]):
    /// a plain list's load time moves on, so `max_stale` counts from now (a
    /// signed list's age keeps counting from its `iat`). Whether that counts
    /// as a good fetch.
    fn not_modified(&self, index: usize, source: &JwksSource) -> bool {
        let recovered = !self.schedule.borrow().last_ok(index);
        let Fetched::RevocationList { .. } = source.kind else {
            let what = self.document(source);
            let line =
                format!("the {what} of `{}` from `{}` is unchanged (304); keys kept", source.iss, source.uri);
            if recovered {
                info!("{line}");
            } else {
                debug!("{line}");
            }
            self.metrics.fetched(source.kind, FetchEvent::NotModified);
            return true;
        };
        let now = now_ns().map(ns_to_ms).ok_or_else(|| "Envoy's clock is not available".to_owned());
        match now.and_then(|now| self.engine.confirm_listed_revocations(now)) {
            Ok(entries) => {
                let noun = if entries == 1 { "entry" } else { "entries" };
                let signed = self.engine.revocation_list().is_some_and(|l| l.is_signed());
                let age = if signed { "its age still counts from its `iat`" } else { "its age restarts" };
                let line = format!(
                    "the revocation list from `{}` is unchanged (304): {entries} {noun}, {age}",
                    source.uri
                );
                if self.list_entries.replace(Some(entries)) == Some(entries) {
                    debug!("{line}");
                } else {
                    info!("{line}");
                }
                self.metrics.fetched(source.kind, FetchEvent::NotModified);
                true
            }
            Err(message) => {
                // Nothing for the ETag to vouch for: the next fetch is a plain one.
                self.schedule.borrow_mut().remember_etag(index, None);
                self.list_entries.set(None);
                warn!(
                    "the revocation list from `{}`: 304 not taken: {message}; {}",
                    source.uri,
                    self.keeping(source)
                );
                self.metrics.fetched(source.kind, FetchEvent::FetchFailed);
                false
            }
        }
    }

    /// Hands fetched keys (a JWKS or a key directory) to the core; whether they were taken.
    fn load_keys(&self, source: &JwksSource, status: Option<&str>, body_size: usize) -> bool {
        let body = if body_size == 0 {
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten()
        };
        let what = self.document(source);
        let result = jwks::response_text(status, body.as_deref()).and_then(|text| {
            if self.is_directory(source) {
                self.load_directory(&source.iss, text)
            } else {
                self.engine.set_issuer_keys_json(&source.iss, text)
            }
        });
        match result {
            Ok(problems) => {
                for p in problems.iter().filter(|p| !p.skipped) {
                    warn!("{what} of `{}`: keys[{}]: {}; key ignored", source.iss, p.index, p.message);
                }
                info!("loaded the {what} of `{}` from `{}`", source.iss, source.uri);
                self.metrics.jwks(FetchEvent::FetchOk);
                true
            }
            Err(message) => {
                // The core's refusals mostly say already that the previous keys stay.
                let tail = if message.contains("keeping the previous keys") {
                    ""
                } else {
                    "; keeping the current keys"
                };
                warn!("{what} of `{}` from `{}`: {message}{tail}", source.iss, source.uri);
                self.metrics.jwks(FetchEvent::FetchFailed);
                false
            }
        }
    }

    /// Hands a fetched revocation list, with Envoy's clock, to the core
    /// ([`Engine::set_listed_revocations`]); whether it was taken. A failure
    /// keeps the list in force, as old as it is.
    fn load_list(&self, source: &JwksSource, status: Option<&str>, body_size: usize) -> bool {
        let max = crate::limits::MAX_REVOCATION_LIST_BYTES;
        let result = jwks::check_status(status).and_then(|()| {
            // Refused before it is copied into the VM.
            if body_size > max {
                return Err(format!("the document has {body_size} bytes, more than the {max} allowed"));
            }
            let body = match body_size {
                0 => None,
                _ => hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .map_err(|status| format!("cannot read the response body ({status:?})"))?,
            };
            let text = jwks::response_text(Some("200"), body.as_deref())?;
            let now = now_ns().map(ns_to_ms).ok_or("Envoy's clock is not available")?;
            self.engine.set_listed_revocations(text, now)
        });
        match result {
            Ok(entries) => {
                let noun = if entries == 1 { "entry" } else { "entries" };
                if self.list_entries.replace(Some(entries)) == Some(entries) {
                    debug!("loaded the revocation list from `{}`: {entries} {noun} (unchanged)", source.uri);
                } else {
                    info!("loaded the revocation list from `{}`: {entries} {noun}", source.uri);
                }
                self.metrics.fetched(source.kind, FetchEvent::FetchOk);
                true
            }
            Err(message) => {
                self.list_entries.set(None);
                // The core's errors name the URL already.
                let message = if message.contains(&source.uri) {
                    message
                } else {
                    format!("the revocation list from `{}`: {message}", source.uri)
                };
                warn!("{message}; {}", self.keeping(source));
                self.metrics.fetched(source.kind, FetchEvent::FetchFailed);
                false
            }
        }
    }

    /// Hands a fetched Web Bot Auth key directory, with the signature
    /// headers of its response and Envoy's clock, to the core, which checks
    /// the response signature (unless the policy says `unchecked`).
    fn load_directory(&self, operator: &str, text: &str) -> Result<Vec<crate::keys::KeyProblem>, String> {
        let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
            .map_err(|status| format!("cannot read the response headers ({status:?})"))?;
        let fields = jwks::directory_headers(&headers)?;
        let now_secs = now_ns().ok_or("Envoy's clock is not available")? / 1_000_000_000;
        let now = i64::try_from(now_secs).map_err(|_| "Envoy's clock is out of range")?;
        let response = crate::directory::DirectoryResponse {
            text,
            signature_input: fields.signature_input.as_deref(),
            signature: fields.signature.as_deref(),
            content_digest: fields.content_digest.as_deref(),
        };
        self.engine.set_directory_keys(operator, &response, now)
    }

    /// Puts the pushed revocations in force when they changed since the last
    /// look (on every tick, and right after a push on this worker).
    fn sync_revocations(&self) {
        match revocations::read(&self.revocations_key) {
            Ok((pushed, cas)) if cas != self.revocations_cas.get() => {
                self.engine.set_pushed_revocations(&pushed);
                self.revocations_cas.set(cas);
            }
            Ok(_) => {}
            // The lists in force stay; the next tick tries again.
            Err(e) => warn!("{e}"),
        }
    }

    /// Periodic work: flush the stats, pick up pushed revocations, expire
    /// stuck fetches, start due ones, release waiters.
    fn on_tick(&self) {
        self.metrics.flush();
        self.sync_revocations();
        let Some(now) = now_ns().map(ns_to_ms) else { return };
        if let Some(list) = self.engine.revocation_list() {
            self.metrics.list_fresh_for(list.loaded_at_ms(), list.max_stale_secs, now);
        }
        let expired = self.schedule.borrow_mut().expire(now);
        for index in &expired {
            let Some(source) = self.schedule.borrow().source(*index).cloned() else { continue };
            if let Fetched::RevocationList { .. } = source.kind {
                self.list_entries.set(None);
                warn!(
                    "the revocation list fetch from `{}` never answered; {}",
                    source.uri,
                    self.keeping(&source)
                );
            } else {
                warn!(
                    "{} fetch for `{}` from `{}` never answered",
                    self.document(&source),
                    source.iss,
                    source.uri
                );
            }
            self.metrics.fetched(source.kind, FetchEvent::FetchFailed);
        }
        let due = self.schedule.borrow().due(now);
        for index in due {
            self.fetch(index, now);
        }
        if self.refetch.take() {
            self.fetch_on_demand(now);
        }
        self.expire_reading(now);
        if !expired.is_empty() {
            self.release_if_idle();
        }
    }

    /// Once no fetch is under way, decides every held request.
    fn release_if_idle(&self) {
        if self.schedule.borrow().in_flight() {
            return;
        }
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for (context_id, stage) in waiting {
            // A context that ended meanwhile cannot be switched to: skip it.
            if hostcalls::set_effective_context(context_id).is_err() {
                continue;
            }
            if self.on_request(context_id, stage, false) == Action::Continue {
                if let Err(status) = hostcalls::resume_http_request() {
                    warn!("cannot resume a held request ({status:?})");
                }
            }
        }
    }

    /// Adds the current DPoP nonce to a response that has none (RFC 9449 §8:
    /// the client learns the next nonce from successful responses too).
    fn add_dpop_nonce(&self) {
        let has_one =
            hostcalls::get_map_value(MapType::HttpResponseHeaders, "dpop-nonce").ok().flatten().is_some();
        let now = now_ns().map(|ns| i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX));
        if let (false, Some(nonce)) = (has_one, now.and_then(|now| self.engine.dpop_nonce(now))) {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, "dpop-nonce", &nonce);
        }
    }

    /// Forgets a request whose stream ended.
    fn forget(&self, context_id: u32) {
        self.waiting.borrow_mut().retain(|(id, _)| *id != context_id);
        self.reading.borrow_mut().retain(|r| r.context_id != context_id);
        self.bodies.borrow_mut().retain(|(id, _)| *id != context_id);
    }
}

/// Sends `response` (status, headers, body) instead of the upstream's: the
/// request goes no further.
fn send(response: &HttpResponse) -> Action {
    let sent = hostcalls::send_http_response(
        u32::from(response.status),
        response_headers(&response.headers),
        Some(response.body.as_bytes()),
    );
    if let Err(status) = sent {
        error!("cannot send the {} response ({status:?})", response.status);
    }
    Action::Pause
}

/// The first value of header `name` as text (`""` when there is none, or
/// it is not UTF-8).
fn header_text<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> &'a str {
    let value = headers.iter().find(|(n, _)| n == name).map_or(&[][..], |(_, v)| v.as_slice());
    std::str::from_utf8(value).unwrap_or("")
}

/// The request's `:path` without its query (`""` when there is none).
fn request_path(headers: &[(String, Vec<u8>)]) -> &str {
    let path = header_text(headers, ":path");
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// Reads the buffered request body (`body_size` bytes, or up to the end of
/// Envoy's buffer), [`body::CHUNK`] bytes per host call, so the VM never
/// holds more of it than the core may get as text plus one chunk.
fn read_body(body_size: usize, keep_text: bool) -> Result<ReadBody, Status> {
    let mut reader = BodyReader::new(keep_text);
    while reader.len() < body_size {
        let want = body::CHUNK.min(body_size.saturating_sub(reader.len()));
        let chunk =
            hostcalls::get_buffer(BufferType::HttpRequestBody, reader.len(), want)?.unwrap_or_default();
        reader.update(&chunk);
        if chunk.len() < want {
            // The end of Envoy's buffer (`body_size` is `usize::MAX` after trailers).
            break;
        }
    }
    Ok(reader.finish())
}

/// Where the VMs of one Envoy keep the DPoP nonce secret they share (proxy-wasm
/// shared data spans the worker threads), so a nonce handed out by one worker
/// is good on all. The main thread configures first and creates it.
const NONCE_SECRET_KEY: &str = "agentguard.dpop_nonce_secret.v1";

/// The Envoy-wide DPoP nonce secret: the one already shared, or 32 fresh
/// random bytes (WASI `random_get`) shared from now on.
fn shared_dpop_nonce_secret() -> Result<Vec<u8>, String> {
    for _ in 0..3 {
        let (value, cas) = hostcalls::get_shared_data(NONCE_SECRET_KEY).map_err(|s| format!("{s:?}"))?;
        if let Some(secret) = value.filter(|v| v.len() >= 32) {
            return Ok(secret);
        }
        let mut fresh = [0u8; 32];
        getrandom::getrandom(&mut fresh).map_err(|e| format!("no randomness: {e}"))?;
        match hostcalls::set_shared_data(NONCE_SECRET_KEY, Some(&fresh), cas) {
            Ok(()) => return Ok(fresh.to_vec()),
            Err(Status::CasMismatch) => continue,
            Err(s) => return Err(format!("{s:?}")),
        }
    }
    Err("the shared secret kept changing".into())
}

/// The root context: one per plugin configuration per VM.
struct Root {
    id: u32,
    filter: Option<Rc<Filter>>,
}

/// The filter exports no `proxy_on_done` (see scripts/build-envoy.sh): what
/// a context leaves behind is cleared when the SDK drops it, on
/// `proxy_on_delete`, which Envoy calls for every context it created.
impl Drop for Root {
    fn drop(&mut self) {
        if let Some(filter) = &self.filter {
            filter.metrics.flush();
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(filter) = &self.filter {
            filter.on_fetched(token, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        follow_host_log_level();
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                error!("cannot read the plugin configuration ({status:?})");
                return false;
            }
        };
        // Per-agent state in Envoy's shared data, namespaced by the plugin's
        // name: every worker (and filters with the same vm_id and name) sees one.
        let name = hostcalls::get_property(vec!["plugin_name"]).ok().flatten();
        let ns = name.map(|n| String::from_utf8_lossy(&n).into_owned()).filter(|n| !n.is_empty());
        let ns = ns.unwrap_or_else(|| "agentguard".into());
        let open = |policy: &crate::policy::Policy| -> Result<Box<dyn crate::state::StateStore>, String> {
            let layout = store::Layout::new(&ns, policy);
            let (slots, capacity) = (layout.slot_keys(), layout.capacity());
            let shared = store::SharedStore::open(store::Host, layout)?;
            info!("per-agent state shared by every worker: {slots} shared-data keys, room for {capacity} entries");
            Ok(Box::new(shared))
        };
        // The token service's private keys, when Envoy passes them to the VM
        // (`vm_config.environment_variables.host_env_keys`).
        let signing_keys =
            std::env::var(config::SIGNING_KEYS_ENV).ok().filter(|keys| !keys.trim().is_empty());
        let Loaded { engine, settings, needs, endpoints } =
            match config::load(&bytes, &open, signing_keys.as_deref()) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    for e in &errors.0 {
                        error!("invalid configuration: {e}");
                    }
                    error!(
                        "configuration refused ({} problem(s)); the filter is not installed",
                        errors.0.len()
                    );
                    return false;
                }
            };
        let serves_tokens = endpoints.token.is_some();
        let metrics =
            match Metrics::define(&settings.stat_prefix, engine.revocation_list().is_some(), serves_tokens) {
                Ok(m) => m,
                Err(e) => {
                    error!("{e}");
                    return false;
                }
            };
        let keys = settings.jwks.iter().filter(|s| s.kind == Fetched::Keys).count();
        let list = match engine.revocation_list() {
            Some(l) => format!(", revocation list from `{}` every {} s", l.uri, l.refresh_secs),
            None => String::new(),
        };
        info!("policy loaded (root context {}, {keys} issuer(s) with keys by URL{list})", self.id);
        match settings.dpop_nonce_secret.clone().map_or_else(shared_dpop_nonce_secret, Ok) {
            Ok(secret) => engine.set_dpop_nonce_secret(&secret),
            // Only policies with `dpop.nonce` need it; they then refuse DPoP requests (fail closed).
            Err(e) => warn!("no DPoP nonce secret: {e}"),
        }
        let dpop_nonces = engine.dpop_nonce(0).is_some();
        let filter = Rc::new(Filter {
            schedule: RefCell::new(Schedule::new(&settings)),
            engine,
            settings,
            metrics,
            waiting: RefCell::new(Vec::new()),
            refetch: Cell::new(false),
            reading: RefCell::new(Vec::new()),
            bodies: RefCell::new(Vec::new()),
            dpop_nonces,
            needs,
            endpoints,
            revocations_key: revocations::key(&ns),
            revocations_cas: std::cell::Cell::new(None),
            list_entries: Cell::new(None),
        });
        filter.sync_revocations();
        if let Some(now) = now_ns().map(ns_to_ms) {
            let due = filter.schedule.borrow().due(now);
            for index in due {
                filter.fetch(index, now);
            }
        }
        if let Err(status) = hostcalls::set_tick_period(TICK) {
            warn!("no tick ({status:?}): keys will only be refreshed on demand");
        }
        self.filter = Some(filter);
        true
    }

    fn on_tick(&mut self) {
        follow_host_log_level();
        if let Some(filter) = &self.filter {
            filter.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { id: context_id, filter: self.filter.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request.
struct Http {
    id: u32,
    filter: Option<Rc<Filter>>,
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        // A JWKS fetch started while deciding this request answers here.
        if let Some(filter) = &self.filter {
            filter.on_fetched(token, body_size);
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(filter) = &self.filter {
            filter.forget(self.id);
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        match &self.filter {
            Some(filter) => filter.on_request(self.id, Stage::Headers { end_of_stream }, true),
            None => {
                // Envoy creates no HTTP context for a refused configuration; fail closed anyway.
                let _ = hostcalls::send_http_response(
                    500,
                    vec![("content-type", "text/plain")],
                    Some(b"agentguard: filter not configured\n"),
                );
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(filter) = &self.filter else { return Action::Pause };
        if filter.is_waiting(self.id) {
            // Held undecided: buffer; the decision resumes the request or refuses it.
            return Action::Pause;
        }
        if filter.is_reading(self.id) {
            // Buffer until the whole body is in, then decide.
            if end_of_stream {
                return filter.on_body_read(self.id, body_size);
            }
            filter.body_seen(self.id);
            return Action::Pause;
        }
        match (filter.expected_body(self.id), end_of_stream) {
            (None, _) => Action::Continue,
            // Buffer until the whole body is in.
            (Some(_), false) => Action::Pause,
            (Some(expected), true) => filter.verify_body(self.id, expected, body_size),
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some(filter) = self.filter.as_ref().filter(|f| f.dpop_nonces) {
            filter.add_dpop_nonce();
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        let Some(filter) = &self.filter else { return Action::Pause };
        if filter.is_waiting(self.id) {
            return Action::Pause;
        }
        if filter.is_reading(self.id) {
            // The body ended with trailers: it is all buffered now.
            return filter.on_body_read(self.id, usize::MAX);
        }
        match filter.expected_body(self.id) {
            None => Action::Continue,
            // The body ended with trailers: it is all buffered now.
            Some(expected) => filter.verify_body(self.id, expected, usize::MAX),
        }
    }
}
