//! # agentguard
//!
//! Machine-factor authentication for AI agents. agentguard decides, per HTTP
//! request, whether an autonomous agent may proceed — without a human tapping
//! "approve" for every call, and stopping the agent the moment it misbehaves.
//! It is one Rust crate that compiles to WebAssembly and runs at the edge: in a
//! Cloudflare Worker, as an Envoy filter, and in the browser playground.
//!
//! Humans prove who they are with a password and a phone; agents can't. So
//! agentguard checks machine factors instead:
//!
//! | human factor | machine factor | stage (module) |
//! |---|---|---|
//! | password | short-lived, task-scoped JWT access token from a trusted issuer | [`token`], [`keys`], [`jws`] |
//! | phone in hand | proof of possession: DPoP proofs (RFC 9449) or mTLS certificate binding (RFC 8705) | [`dpop`], [`pop`] |
//! | fingerprint | workload attestation: a JWT-SVID or attestation-result token matching the policy | [`attestation`] |
//! | "acting for" | the RFC 8693 `act` delegation chain | [`delegation`] |
//! | "still trusted?" | revocation lists | [`revocation`] |
//! | "does this fit the task?" | scopes and `authorization_details` that cover the route, known networks, normal volume | [`route`], [`intent`], [`network`], [`state`] |
//! | "tap approve" | a human approval for high-risk routes, and for requests whose body meets a route's `approval_when` condition, only | [`approval`], [`approval_rules`] |
//!
//! ## The pipeline
//!
//! [`Engine::decide`] runs one pass per request, stopping at the first stage
//! that refuses and recording every stage, in this order, in the decision's
//! trace:
//!
//! 1. `request` ([`request`]) — normalise: method, host, path
//!    (percent-decoding and dot segments resolved once, ambiguous encodings
//!    refused), headers.
//! 2. `route` ([`route`]) — first matching route (method + path pattern);
//!    none → deny.
//! 3. `network` ([`network`]) — the source IP is inside the allowed CIDRs.
//! 4. `credential` ([`credential`], [`httpsig`]) — exactly one
//!    `Authorization: Bearer|DPoP` header, and/or an RFC 9421 HTTP message
//!    signature (Web Bot Auth), as the policy's `credentials` says; an
//!    operator's fetched key directory counts only with a valid response
//!    signature ([`directory`]).
//! 5. `token` ([`token`], [`jws`], [`keys`], [`cache`]) — strict compact JWS,
//!    issuer by `iss`, `typ`, algorithm from the issuer's allow-list tied to
//!    the key type, key by `kid`, signature (RSA via jwt-compact; EdDSA and
//!    ES256 via ed25519-dalek and p256 until the key has verified a few
//!    signatures, then by the key's own table of multiples: [`ed25519`],
//!    [`es256`]), then claims.
//!    Verified tokens are cached; time and audience are re-checked on every hit.
//! 6. `binding` ([`dpop`], [`pop`]) — a DPoP proof by the token's key
//!    (single-use, bound to method, URL and token) or the same client
//!    certificate; a bound token is never a bearer token.
//! 7. `delegation` ([`delegation`]) — `act` chain depth, allowed actors and subjects.
//! 8. `attestation` ([`attestation`]) — workload evidence (SPIFFE JWT-SVID,
//!    attestation-result token) matching the policy, bound to the token's agent.
//! 9. `revocation` ([`revocation`], [`state`]) — token id, subject, agent,
//!    key id, or a circuit-breaker suspension → `revoked`.
//! 10. `behaviour` ([`state`]) — the behaviour monitor: bursts, deny ratios
//!     and calls outside an agent's usual routes trip the circuit breaker,
//!     which revokes the agent for a cooldown.
//! 11. `scope` ([`intent`]) — scopes and RFC 9396 `authorization_details`
//!     cover the route.
//! 12. `limits` ([`state`]) — token-bucket rate limits per agent, route,
//!     issuer (429 with `Retry-After`).
//! 13. `risk` ([`approval`], [`approval_rules`]) — high-risk routes, and
//!     requests whose JSON body meets one of the route's `approval_when`
//!     conditions, need a human approval token bound to the exact action
//!     digest and the agent, single-use.
//!
//! Per-agent state (buckets, breaker windows, suspensions) sits behind the
//! [`state::StateStore`] trait: in the engine by default, or wherever a host
//! needs it to be global. [`stats`] keeps live counters; [`report`] turns a
//! decision log into a summary and an HTML report. The same core is also an
//! edge token service: [`exchange`] implements RFC 8693 token exchange for
//! workload identity federation, minting through [`mint`]; [`endpoints`]
//! says where a gateway serves it (and RFC 9728 metadata) and answers the
//! documents, so every frontend serves the same ones.
//!
//! Every outcome is a [`Decision`]: `allow` (with identity headers to
//! forward), `deny`, `approval_required` or `revoked`, with stable
//! [`ReasonCode`]s, lowercase human messages, the trace, a ready-made HTTP
//! response ([`decision::HttpResponse`]: status, `WWW-Authenticate`,
//! `application/problem+json`) and a decision-log event. The trace explains;
//! it is not needed to act, so gateways turn it off ([`Engine::set_trace`]):
//! formatting it was a third of a cached decision.
//!
//! ## Design choices
//!
//! - **Fail closed.** No route → deny; any error → deny; a policy can't say
//!   `default: allow`. The pipeline has no error path: [`Engine::decide`]
//!   returns a decision, always. The crate forbids `unwrap`, `expect`,
//!   `panic!` and slice indexing outside tests (see `Cargo.toml` lints).
//! - **Trust lives in the type.** [`jws::UntrustedJws`] only parses; a
//!   [`token::VerifiedToken`] exists only after the signature checked out with
//!   a key the *policy* names, under an algorithm the *policy* allows. `jwk`,
//!   `jku`, `x5u` and `x5c` headers are never used to find a key.
//! - **Strict parsing.** Duplicate JSON keys, padded or non-canonical
//!   base64url, unknown `crit` extensions, JWE, nested JWTs, oversized input:
//!   all refused (limits in [`limits`]).
//! - **No clock, no randomness, no network.** The host passes `now`; hosts
//!   fetch JWKS documents and hand them over ([`Engine::set_issuer_keys`]).
//!   The core is the same on every target, and tests are exact.
//! - **Explanations are data.** Each refusal has one stable code and a
//!   message naming what was found and what was expected.
//! - **One JSON-shaped API** ([`api`]) that every frontend wraps: policy JSON
//!   in, request JSON in, decision JSON out. Hosts that map requests
//!   themselves hand over borrowed [`RequestParts`] instead (Envoy's header
//!   map; the JS package's line form, [`RequestParts::from_lines`]), with
//!   the same normalisation. The normalised [`Request`] borrows from them
//!   wherever normalising changes nothing, so the usual request is decided
//!   without copying its text.
//!
//! ## Non-goals
//!
//! agentguard does not fetch anything, terminate TLS, or proxy requests: the
//! host (Worker, Envoy) does that. It does not accept HMAC-signed tokens
//! (a verifier holding the secret could mint tokens), `alg: none`, or
//! encrypted tokens. ES384 and other curves are not supported yet.
//!
//! ## Features
//!
//! | feature | what it adds | target |
//! |---|---|---|
//! | (none) | the core | native, `wasm32-unknown-unknown`, `wasm32-wasip1` |
//! | `js` | wasm-bindgen bindings for Workers, Node and browsers | `wasm32-unknown-unknown` |
//! | `envoy` | a proxy-wasm HTTP filter | `wasm32-wasip1` |
//! | `component` | the WIT world in `wit/` | `wasm32-wasip2` |
//! | `cli` | the `agentguard` command-line tool | native |
//!
//! ## Example
//!
//! ```
//! use agentguard::{Engine, Outcome, ReasonCode, Request};
//!
//! let policy = r#"{
//!   "issuers": [{
//!     "iss": "https://sts.example.com",
//!     "audiences": ["https://api.example.com"],
//!     "algorithms": ["EdDSA"],
//!     "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
//!                        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}
//!   }],
//!   "routes": [
//!     {"id": "read-contacts", "methods": ["GET"], "path": "/v1/contacts/**", "scopes": ["crm.read"]}
//!   ]
//! }"#;
//! let engine = Engine::from_json(policy).expect("valid policy");
//!
//! // No credential: a 401 with a Bearer challenge.
//! let request = Request::builder("GET", "/v1/contacts/42", 1_700_000_000).build().unwrap();
//! let decision = engine.decide(&request);
//! assert_eq!(decision.decision, Outcome::Deny);
//! assert_eq!(decision.status, 401);
//! assert_eq!(decision.codes(), [ReasonCode::CredentialMissing]);
//!
//! // `..` cannot dodge the route table.
//! let request = Request::builder("GET", "/v1/contacts/../admin", 1_700_000_000).build().unwrap();
//! assert_eq!(engine.decide(&request).codes(), [ReasonCode::RouteNotMatched]);
//!
//! // A bad policy names the JSON path of the problem.
//! let err = Engine::from_json(&policy.replace(r#""algorithms": ["EdDSA"]"#, r#""algorithms": ["HS256"]"#))
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("issuers[0].algorithms[0]: algorithm `HS256` is never accepted"));
//! ```

#![cfg_attr(not(test), warn(missing_docs))]

pub mod api;
pub mod approval;
pub mod approval_rules;
pub mod attestation;
pub mod b64;
pub mod cache;
pub mod credential;
pub mod decision;
pub mod delegation;
pub mod directory;
pub mod dpop;
pub mod duration;
pub mod ed25519;
pub mod endpoints;
pub mod engine;
pub mod es256;
pub mod exchange;
mod fixed_base;
pub mod glob;
pub mod httpsig;
pub mod intent;
pub mod json;
pub mod jws;
pub mod keys;
pub mod limits;
pub mod mint;
pub mod network;
pub mod policy;
pub mod pop;
pub mod reason;
pub mod replay;
pub mod report;
pub mod request;
pub mod revocation;
pub mod route;
pub mod shard;
pub mod state;
pub mod stats;
pub mod token;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "component")]
pub mod component;
#[cfg(feature = "envoy")]
pub mod envoy;
#[cfg(feature = "js")]
pub mod js;

pub use decision::{Decision, Identity, Outcome, Reason};
pub use engine::{BodyUse, Engine};
pub use policy::{Policy, PolicyError, PolicyErrors};
pub use reason::ReasonCode;
pub use request::{Request, RequestInput, RequestParts};
