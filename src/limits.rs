//! Hard limits on every input the core looks at.
//!
//! Each limit is checked before the work it bounds, so an oversized input is a
//! clear deny (or a clear policy error), never a slow path. The same table is
//! in `docs/limits.md`; a test checks the two agree.

/// Longest access token accepted, in bytes of its compact serialisation.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Deepest nesting of arrays and objects in a token's header or claims.
pub const MAX_JSON_DEPTH: usize = 16;
/// Most members (object keys plus array items, counted over the whole value)
/// in a token's header or claims.
pub const MAX_JSON_MEMBERS: usize = 512;
/// Longest request target (path and query) the core normalises.
pub const MAX_PATH_BYTES: usize = 4 * 1024;
/// Most request headers the core looks at; more is a malformed request.
pub const MAX_HEADERS: usize = 128;
/// Longest single header value the core looks at.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest policy document, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Most keys in one JWKS.
pub const MAX_JWKS_KEYS: usize = 64;
/// Largest JWKS document, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Largest fetched revocation list (`revocation_list.uri`), in bytes.
pub const MAX_REVOCATION_LIST_BYTES: usize = 4 * 1024 * 1024;
/// Deepest `act` (delegation) chain the core will walk, whatever the policy says.
pub const MAX_ACT_DEPTH: usize = 8;
/// Default capacity of the verified-token cache (entries); the policy can lower or raise it
/// up to [`MAX_TOKEN_CACHE_ENTRIES`].
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 10_000;
/// Upper bound on the verified-token cache capacity a policy may ask for.
pub const MAX_TOKEN_CACHE_ENTRIES: usize = 1_000_000;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bigger keys only cost CPU).
pub const MAX_RSA_BITS: usize = 8192;
/// Default capacity of the DPoP proof replay cache (proof ids).
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;
/// Upper bound on replay-cache capacities a policy may ask for.
pub const MAX_REPLAY_ENTRIES: usize = 1_000_000;
/// Default bound on rate-limit buckets and on agent windows (each).
pub const DEFAULT_STATE_KEYS: usize = 100_000;
/// Upper bound on `state.max_keys`.
pub const MAX_STATE_KEYS: usize = 10_000_000;
/// Largest request body `approval_when` conditions look into; a larger body
/// meets every condition (the request goes to a human).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Deepest nesting in a request body `approval_when` conditions look into.
pub const MAX_BODY_JSON_DEPTH: usize = 32;
/// Most members (object keys plus array items) in such a body.
pub const MAX_BODY_JSON_MEMBERS: usize = 10_000;
/// Tokens parsed for a host-verified signature check, kept until the host's
/// verdict comes back (a Workers isolate interleaves requests across that
/// await). Beyond this, the oldest is parsed again when its verdict arrives.
pub const MAX_PREPARED_TOKENS: usize = 64;
