# Local run of the gateway in workerd (the open-source Workers runtime):
#
#   AGENTGUARD_POLICY="$(cat policy.json)" workerd serve js/worker/workerd.capnp \
#     --socket-addr http=127.0.0.1:8787 --external-addr origin=127.0.0.1:8788
#
# scripts/demo-gateway.sh does this for you. Module names mirror the paths in
# js/ so the relative imports of worker.js, js/src/ and js/dist/ resolve as
# they do under wrangler. Build js/dist/ first: bash scripts/build-js.sh
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .gateway),
    # The protected API; --external-addr origin=HOST:PORT overrides the address.
    (name = "origin", external = (address = "127.0.0.1:8788", http = ())),
    # Outbound fetch() (JWKS documents, revocation lists) may reach loopback addresses in local runs.
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "main")],
);

const gateway :Workerd.Worker = (
  modules = [
    (name = "worker/worker.js", esModule = embed "worker.js"),
    (name = "src/workers.js", esModule = embed "../src/workers.js"),
    (name = "src/agentguard.js", esModule = embed "../src/agentguard.js"),
    (name = "src/jwks.js", esModule = embed "../src/jwks.js"),
    (name = "src/revocations.js", esModule = embed "../src/revocations.js"),
    (name = "src/directory.js", esModule = embed "../src/directory.js"),
    (name = "src/durable.js", esModule = embed "../src/durable.js"),
    (name = "src/webcrypto.js", esModule = embed "../src/webcrypto.js"),
    (name = "src/refusal.js", esModule = embed "../src/refusal.js"),
    (name = "dist/agentguard.js", esModule = embed "../dist/agentguard.js"),
    (name = "dist/agentguard_bg.wasm", wasm = embed "../dist/agentguard_bg.wasm"),
  ],
  bindings = [
    (name = "ORIGIN", service = "origin"),
    (name = "AGENTGUARD_POLICY", fromEnvironment = "AGENTGUARD_POLICY"),
    # The token service's private signing keys (a JWK Set with `d`), for
    # policies with a `token_service`; unset: /token answers server_error.
    (name = "AGENTGUARD_SIGNING_KEYS", fromEnvironment = "AGENTGUARD_SIGNING_KEYS"),
    # Shared by every instance so DPoP nonces agree (policies with dpop.nonce).
    (name = "AGENTGUARD_DPOP_NONCE_SECRET", fromEnvironment = "AGENTGUARD_DPOP_NONCE_SECRET"),
    # "true": hash every request's body (approval routes' bodies are read anyway).
    (name = "AGENTGUARD_HASH_BODY", fromEnvironment = "AGENTGUARD_HASH_BODY"),
  ],
  globalOutbound = "net",
  compatibilityDate = "2025-01-01",
);
