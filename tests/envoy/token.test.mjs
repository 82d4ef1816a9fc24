// The gateway's own endpoints in the real Envoy filter, answered before any
// decision: the edge token service (RFC 8693 token exchange at `POST /token`,
// the service's JWKS and RFC 8414 metadata) and RFC 9728 protected-resource
// metadata. A local test IdP (a CI system's OIDC keys,
// served from a JWKS server on 127.0.0.1 through an Envoy cluster) issues the
// subject tokens; the edge's private signing key reaches the VM through an
// environment variable (`vm_config.environment_variables.host_env_keys`),
// never the configuration. npm `jose` verifies the minted tokens against the
// JWKS the filter publishes, and the minted token opens a route through the
// same filter.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

import { createLocalJWKSet, jwtVerify } from "../../js/node_modules/jose/dist/webapi/index.js";

import { generateKey, signJwt } from "../vectors/mint.mjs";
import {
  bootstrap,
  wasmFilter,
  startEnvoy,
  startUpstream,
  startJwksServer,
  expectEnvoyToRefuse,
  send,
  stats,
  nowSecs,
  eventually,
  upstreamSaw,
  dpopKey,
  dpopProof,
} from "./harness.mjs";

const EDGE = "https://edge.test";
const API = "https://api.test";
const CI = "https://ci.test";
const GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";
const CI_SUB = "repo:acme/agents:ref:refs/heads/main";
const FORM = "application/x-www-form-urlencoded";

/** A policy whose token service trusts the CI issuer's keys at `jwks_uri`. */
function policyWith(edgePublic) {
  return {
    realm: "api.test",
    issuers: [{ iss: EDGE, audiences: [API], jwks: { keys: edgePublic }, algorithms: ["EdDSA"], max_lifetime: "15m" }],
    routes: [
      { id: "logs", methods: ["GET"], path: "/v1/logs", scopes: ["logs.read"] },
      { id: "deploy", methods: ["POST"], path: "/v1/deploy", scopes: ["deploy.write"] },
    ],
    // DPoP proofs must carry a server nonce (RFC 9449 §8), at the token endpoint too.
    dpop: { nonce: true },
    token_service: {
      issuer: EDGE,
      signing_kid: "edge-1",
      default_lifetime: "5m",
      // Buckets in the shared per-agent state (a policy without other limits).
      rate_limit: { rate: "100/1m" },
      federation: [
        {
          id: "ci-main",
          issuer: { iss: CI, audiences: [EDGE], jwks_uri: `${CI}/.well-known/jwks`, algorithms: ["ES256"] },
          subjects: ["repo:acme/*:ref:refs/heads/main"],
          scopes: ["deploy.write", "logs.read"],
          audiences: [API],
          max_lifetime: "10m",
        },
      ],
    },
  };
}

let upstream;
let idp; // the CI system's JWKS server
let envoy;
let ci; // the CI system's current signing key
let edgeActive;
let edgeOld;

before(async () => {
  ci = await generateKey("ES256", "ci-1");
  edgeOld = await generateKey("EdDSA", "edge-0");
  edgeActive = await generateKey("EdDSA", "edge-1");
  upstream = await startUpstream();
  idp = await startJwksServer({ keys: [ci.publicJwk] });
  const configuration = {
    policy: policyWith([edgeOld.publicJwk, edgeActive.publicJwk]),
    jwks_cluster: "idp",
    jwks_cooldown: "1s",
  };
  envoy = await startEnvoy(
    bootstrap({
      httpFilters: [wasmFilter(JSON.stringify(configuration), { hostEnvKeys: ["AGENTGUARD_SIGNING_KEYS"] })],
      upstreamPort: upstream.port,
      clusters: { idp: idp.port },
    }),
    { env: { AGENTGUARD_SIGNING_KEYS: JSON.stringify({ keys: [edgeOld.privateJwk, edgeActive.privateJwk] }) } },
  );
  // The federation issuer's keys are fetched like any issuer's, by both VMs.
  const loaded = /^\[\w+\]\[wasm\]\[(\d+)\] .*loaded the JWKS of `https:\/\/ci\.test` from /gm;
  await eventually(() => new Set([...envoy.output().matchAll(loaded)].map((m) => m[1])).size >= 2, {
    what: "both VMs to load the CI issuer's JWKS",
  }).catch((e) => assert.fail(`${e.message}\n${envoy.output().slice(-3000)}`));
});

after(async () => {
  await envoy?.stop();
  await upstream?.close();
  await idp?.close();
});

/** A CI job's OIDC token (claims override the defaults), signed by `key`. */
const ciToken = (claims = {}, key = ci.privateJwk) => {
  const now = nowSecs();
  return signJwt(key, { iss: CI, aud: EDGE, sub: CI_SUB, iat: now - 5, exp: now + 600, ...claims }, "JWT");
};

const exchange = (params, { method = "POST", contentType = FORM, body, headers = {} } = {}) =>
  send(envoy.port, {
    method,
    path: "/token",
    headers: { "content-type": contentType, ...headers },
    body: method === "GET" ? undefined : (body ?? new URLSearchParams({ grant_type: GRANT, subject_token_type: JWT_TYPE, ...params }).toString()),
  });

/** An agentguard counter from the admin `/stats` (0 before it first moves). */
const counter = async (name) => (await stats(envoy)).values[`wasmcustom.agentguard.${name}`] ?? 0;

/** The token service's JWKS, as the filter publishes it, for jose. */
async function publishedKeys() {
  const res = await send(envoy.port, { path: "/.well-known/jwks.json" });
  assert.equal(res.status, 200, res.body);
  return createLocalJWKSet(res.json);
}

test("RFC 8414 metadata and the JWKS are served by the filter: every key, no private parts", async () => {
  const meta = await send(envoy.port, { path: "/.well-known/oauth-authorization-server" });
  assert.equal(meta.status, 200, meta.body);
  assert.equal(meta.headers["content-type"], "application/json");
  assert.equal(meta.headers["access-control-allow-origin"], "*");
  assert.equal(meta.json.issuer, EDGE);
  assert.equal(meta.json.token_endpoint, `${EDGE}/token`);
  assert.equal(meta.json.jwks_uri, `${EDGE}/.well-known/jwks.json`);
  assert.deepEqual(meta.json.grant_types_supported, [GRANT]);
  assert.equal(upstreamSaw(meta).method, undefined, "answered by the filter, not the upstream");

  const keys = await send(envoy.port, { path: "/.well-known/jwks.json?x=1" });
  assert.equal(keys.status, 200, keys.body);
  assert.equal(keys.headers["content-type"], "application/jwk-set+json");
  assert.deepEqual(keys.json.keys.map((k) => k.kid).sort(), ["edge-0", "edge-1"]);
  for (const k of keys.json.keys) assert.equal(k.d, undefined, "no private key material");

  const head = await send(envoy.port, { method: "HEAD", path: "/.well-known/jwks.json" });
  assert.equal(head.status, 200);
  assert.equal(head.body, "");
  const post = await send(envoy.port, { method: "POST", path: "/.well-known/jwks.json", body: "x" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, "GET, HEAD");
});

test("a CI token is exchanged for a short-lived agent token that opens the route, and only it", async () => {
  const res = await exchange({ subject_token: await ciToken(), scope: "logs.read", audience: API });
  assert.equal(res.status, 200, res.body);
  assert.equal(res.headers["cache-control"], "no-store");
  assert.equal(res.json.token_type, "Bearer");
  assert.equal(res.json.issued_token_type, "urn:ietf:params:oauth:token-type:access_token");
  assert.equal(res.json.scope, "logs.read");
  assert.ok(res.json.expires_in > 0 && res.json.expires_in <= 300, `expires_in ${res.json.expires_in}`);
  const { payload, protectedHeader } = await jwtVerify(res.json.access_token, await publishedKeys(), {
    issuer: EDGE,
    audience: API,
    typ: "at+jwt",
  });
  assert.equal(protectedHeader.kid, "edge-1", "signed with the active key");
  assert.equal(payload.sub, CI_SUB);
  assert.equal(payload.client_id, "ci-main");
  assert.match(payload.jti, /^[A-Za-z0-9_-]{22}$/, "128 random bits");

  const ok = await send(envoy.port, { path: "/v1/logs", headers: { authorization: `Bearer ${res.json.access_token}` } });
  assert.equal(ok.status, 200, ok.body);
  const seen = upstreamSaw(ok).headers;
  assert.deepEqual(seen.get("x-agentguard-issuer"), [EDGE]);
  assert.deepEqual(seen.get("x-agentguard-subject"), [CI_SUB]);
  assert.deepEqual(seen.get("x-agentguard-scopes"), ["logs.read"]);
  const deploy = await send(envoy.port, {
    method: "POST",
    path: "/v1/deploy",
    headers: { authorization: `Bearer ${res.json.access_token}` },
    body: "{}",
  });
  assert.equal(deploy.status, 403, deploy.body);
  assert.equal(deploy.json.reason, "scope_insufficient");

  // Two requests, two tokens: each `jti` is fresh.
  const again = await exchange({ subject_token: await ciToken(), scope: "logs.read" });
  assert.equal(again.status, 200, again.body);
  const second = await jwtVerify(again.json.access_token, await publishedKeys(), { issuer: EDGE, audience: API });
  assert.notEqual(second.payload.jti, payload.jti);
});

test("with a DPoP proof (and the server's nonce) the minted token is bound to the agent's key", async () => {
  const agent = await dpopKey();
  const other = await dpopKey();
  const params = { subject_token: await ciToken(), scope: "logs.read" };
  const ask = async (nonce) =>
    exchange(params, { headers: { dpop: await dpopProof(agent, { htm: "POST", htu: "https://api.test/token", nonce }) } });
  // RFC 9449 §8: a proof without the nonce is answered with one to retry with.
  const first = await ask();
  assert.equal(first.status, 400, first.body);
  assert.equal(first.json.error, "use_dpop_nonce");
  const nonce = first.headers["dpop-nonce"];
  assert.ok(nonce, JSON.stringify(first.headers));
  const res = await ask(nonce);
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.token_type, "DPoP");
  assert.ok(res.headers["dpop-nonce"], "the next nonce comes with the token");
  const token = res.json.access_token;
  const { payload } = await jwtVerify(token, await publishedKeys(), { issuer: EDGE, audience: API });
  assert.equal(payload.cnf.jkt, agent.thumbprint);
  const call = async (key, scheme = "DPoP") =>
    send(envoy.port, {
      path: "/v1/logs",
      headers: {
        authorization: `${scheme} ${token}`,
        dpop: await dpopProof(key, { htu: "https://api.test/v1/logs", token, nonce: res.headers["dpop-nonce"] }),
      },
    });
  const ok = await call(agent);
  assert.equal(ok.status, 200, ok.body);
  const stolen = await call(other);
  assert.equal(stolen.status, 401, stolen.body);
  assert.equal(stolen.json.reason, "dpop_key_mismatch");
  const bearer = await send(envoy.port, { path: "/v1/logs", headers: { authorization: `Bearer ${token}` } });
  assert.equal(bearer.status, 401, bearer.body);
});

test("bad token requests get RFC 6749 errors and mint nothing", async () => {
  const refused = await counter("token_exchange.refused");
  const cases = [
    [await exchange({ subject_token: await ciToken(), grant_type: "client_credentials" }), "unsupported_grant_type"],
    [await exchange({}, { method: "GET" }), "invalid_request"],
    [await exchange({ subject_token: await ciToken() }, { contentType: "application/json" }), "invalid_request"],
    [await exchange({ subject_token: await ciToken({ exp: nowSecs() - 120 }) }), "invalid_grant"],
    [await exchange({ subject_token: await ciToken({ sub: "repo:evil/x:ref:refs/heads/main" }) }), "invalid_grant"],
    [await exchange({ subject_token: await ciToken(), scope: "admin" }), "invalid_scope"],
  ];
  for (const [res, error] of cases) {
    assert.equal(res.status, 400, res.body);
    assert.equal(res.json.error, error, res.body);
    assert.equal(res.json.access_token, undefined);
    assert.equal(res.headers["cache-control"], "no-store");
  }
  assert.equal((await counter("token_exchange.refused")) - refused, cases.length);
  assert.equal(await counter("token_exchange.issued"), 3, "the three tokens minted before");
});

test("a subject token under a key the IdP published since the last fetch: held, keys refetched, minted", async () => {
  const rotated = await generateKey("ES256", "ci-2");
  // Signed by a key the IdP does not publish: held for a fetch, still unknown, refused.
  const stranger = await exchange({ subject_token: await ciToken({}, rotated.privateJwk) });
  assert.equal(stranger.status, 400, stranger.body);
  assert.equal(stranger.json.error, "invalid_grant");
  assert.match(stranger.json.error_description, /ci-2/);

  await sleep(1100); // past `jwks_cooldown`
  const hits = idp.hits;
  const waited = await counter("jwks.waited");
  idp.set({ keys: [ci.publicJwk, rotated.publicJwk] });
  const res = await exchange({ subject_token: await ciToken({}, rotated.privateJwk), scope: "logs.read" });
  assert.equal(res.status, 200, res.body);
  assert.ok(idp.hits > hits, "the JWKS was fetched again for it");
  assert.equal(await counter("jwks.waited"), waited + 1, "the token request was held once");
  const ok = await send(envoy.port, { path: "/v1/logs", headers: { authorization: `Bearer ${res.json.access_token}` } });
  assert.equal(ok.status, 200, ok.body);
});

test("only the exact endpoint paths are the filter's: other paths are decided as usual", async () => {
  for (const path of ["/tokens", "/token/", "/x/.well-known/jwks.json"]) {
    const res = await send(envoy.port, { method: "POST", path, headers: { "content-type": FORM }, body: "x=1" });
    assert.equal(res.status, 403, res.body);
    assert.equal(res.json.reason, "route_not_matched", path);
  }
});

test("a token service without its signing keys is refused, saying where they come from", async () => {
  const configuration = { policy: policyWith([edgeActive.publicJwk]), jwks_cluster: "idp" };
  const config = bootstrap({
    httpFilters: [wasmFilter(JSON.stringify(configuration), { hostEnvKeys: ["AGENTGUARD_SIGNING_KEYS"] })],
    clusters: { idp: idp.port },
  });
  const { output } = await expectEnvoyToRefuse(config, { env: { AGENTGUARD_SIGNING_KEYS: "" } });
  assert.match(output, /signing_keys: the policy has a `token_service`, so the filter serves `POST \/token`/);
  assert.match(output, /AGENTGUARD_SIGNING_KEYS/);
  // Keys without the active `signing_kid`: refused too.
  const wrong = await expectEnvoyToRefuse(config, {
    env: { AGENTGUARD_SIGNING_KEYS: JSON.stringify({ keys: [edgeOld.privateJwk] }) },
  });
  assert.match(wrong.output, /no key has the active `signing_kid` `edge-1`/);
  // Turned off: the same policy loads without keys, and /token is decided like any path.
  const off = { ...configuration, serve_token_service: false };
  const quiet = await startEnvoy(
    bootstrap({ httpFilters: [wasmFilter(JSON.stringify(off))], upstreamPort: upstream.port, clusters: { idp: idp.port } }),
  );
  try {
    const res = await send(quiet.port, { method: "POST", path: "/token", headers: { "content-type": FORM }, body: "x=1" });
    assert.equal(res.status, 403, res.body);
    assert.equal(res.json.reason, "route_not_matched");
    const jwks = await send(quiet.port, { path: "/.well-known/jwks.json" });
    assert.equal(jwks.json.reason, "route_not_matched");
  } finally {
    await quiet.stop();
  }
});

test("RFC 9728: the protected-resource metadata the 401 challenge names is served by the filter", async () => {
  const policy = {
    issuers: [{ iss: EDGE, audiences: ["https://api.test/mcp"], jwks: { keys: [edgeActive.publicJwk] }, algorithms: ["EdDSA"] }],
    routes: [{ id: "mcp", methods: ["POST"], path: "/mcp", scopes: ["mcp:tools"] }],
    resource: {
      identifier: "https://api.test/mcp",
      metadata_url: "https://api.test/.well-known/oauth-protected-resource/mcp",
      authorization_servers: [EDGE],
      name: "Test MCP server",
    },
  };
  const mcp = await startEnvoy(
    bootstrap({ httpFilters: [wasmFilter(JSON.stringify(policy))], upstreamPort: upstream.port }),
  );
  try {
    const challenge = await send(mcp.port, { method: "POST", path: "/mcp", body: "{}" });
    assert.equal(challenge.status, 401, challenge.body);
    const m = /resource_metadata="([^"]+)"/.exec(challenge.headers["www-authenticate"]);
    assert.ok(m, challenge.headers["www-authenticate"]);
    for (const path of [new URL(m[1]).pathname, "/.well-known/oauth-protected-resource"]) {
      const doc = await send(mcp.port, { path });
      assert.equal(doc.status, 200, `${path}: ${doc.body}`);
      assert.equal(doc.headers["content-type"], "application/json");
      assert.equal(upstreamSaw(doc).method, undefined, "answered by the filter");
      assert.equal(doc.json.resource, "https://api.test/mcp");
      assert.deepEqual(doc.json.authorization_servers, [EDGE]);
      assert.deepEqual(doc.json.scopes_supported, ["mcp:tools"]);
    }
    // No token service in this policy: its paths are decided like any other.
    const token = await send(mcp.port, { method: "POST", path: "/token", headers: { "content-type": FORM }, body: "x=1" });
    assert.equal(token.json.reason, "route_not_matched");
  } finally {
    await mcp.stop();
  }
});
