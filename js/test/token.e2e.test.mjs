// The gateway's own endpoints in the real Workers runtime (workerd), served
// by `withAgentGuard` before any decision:
// - RFC 9728 protected-resource metadata (bare and path-suffixed forms);
// - the edge token service (RFC 8693 token exchange at POST /token, its
//   JWKS, RFC 8414 metadata): a local test IdP (a key this test owns, served
//   from a JWKS endpoint on 127.0.0.1) issues a CI-style OIDC token, the
//   gateway exchanges it for a short-lived agent token, and that token opens
//   the protected route through the same gateway. npm `jose` verifies the
//   minted tokens against the gateway's published JWKS.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";

import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

import { signJwt } from "../../tests/vectors/mint.mjs";
import { dpopKey, formBody, generateKey, send, startGateway, startJwksServer, startOrigin } from "./helpers.mjs";

const nowS = () => Math.floor(Date.now() / 1000);
const json = (res) => JSON.parse(res.text);

describe("RFC 9728 protected-resource metadata", () => {
  let origin;
  let gateway;
  const policy = {
    realm: "api.test",
    issuers: [
      {
        iss: "https://as.test",
        audiences: ["https://api.test/mcp"],
        jwks: { keys: [] },
        algorithms: ["EdDSA"],
      },
    ],
    routes: [
      { id: "mcp", methods: ["GET", "POST"], path: "/mcp", scopes: ["mcp.tools"] },
      { id: "notes", methods: ["GET"], path: "/v1/notes/**", scopes: ["notes.read"] },
    ],
    resource: {
      identifier: "https://api.test/mcp",
      metadata_url: "https://api.test/.well-known/oauth-protected-resource/mcp",
      authorization_servers: ["https://as.test"],
      name: "Test MCP server",
    },
  };

  before(async () => {
    const key = await generateKey("EdDSA", "as-1");
    policy.issuers[0].jwks.keys.push(key.publicJwk);
    origin = await startOrigin();
    gateway = await startGateway({ policyText: JSON.stringify(policy), originPort: origin.port });
  });
  after(async () => {
    await gateway?.stop();
    await origin?.close();
  });

  const expected = {
    resource: "https://api.test/mcp",
    authorization_servers: ["https://as.test"],
    scopes_supported: ["mcp.tools", "notes.read"],
    bearer_methods_supported: ["header"],
    resource_name: "Test MCP server",
  };

  for (const path of ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]) {
    test(`GET ${path} serves the document generated from the policy`, async () => {
      const seen = origin.seen.length;
      const res = await send(gateway.url + path, { headers: { host: "api.test" } });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers["content-type"], "application/json");
      assert.equal(res.headers["access-control-allow-origin"], "*");
      const doc = json(res);
      for (const [k, v] of Object.entries(expected)) assert.deepEqual(doc[k], v, k);
      assert.ok(doc.dpop_signing_alg_values_supported.includes("ES256"));
      assert.equal(origin.seen.length, seen, "served by the gateway, not the origin");
    });
  }

  test("the 401 challenge points to a URL the gateway serves", async () => {
    const res = await send(`${gateway.url}/mcp`, { headers: { host: "api.test" } });
    assert.equal(res.status, 401);
    const m = /resource_metadata="([^"]+)"/.exec(res.headers["www-authenticate"]);
    assert.ok(m, res.headers["www-authenticate"]);
    const url = new URL(m[1]);
    assert.equal(url.href, policy.resource.metadata_url);
    const doc = await send(gateway.url + url.pathname, { headers: { host: "api.test" } });
    assert.equal(doc.status, 200);
    assert.equal(json(doc).resource, "https://api.test/mcp");
  });

  test("other methods get 405, HEAD has no body, other suffixes are decided as usual", async () => {
    const post = await send(`${gateway.url}/.well-known/oauth-protected-resource`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, "GET, HEAD");
    const head = await send(`${gateway.url}/.well-known/oauth-protected-resource`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.text, "");
    const other = await send(`${gateway.url}/.well-known/oauth-protected-resource/other`, { headers: { host: "api.test" } });
    assert.notEqual(other.status, 200);
    assert.equal(other.headers["content-type"], "application/problem+json");
  });

  test("without a token service, /token and the JWKS path are not endpoints", async () => {
    const res = await send(`${gateway.url}/token`, {
      method: "POST",
      headers: { host: "api.test", "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=x",
    });
    assert.equal(res.headers["content-type"], "application/problem+json");
    const jwks = await send(`${gateway.url}/.well-known/jwks.json`, { headers: { host: "api.test" } });
    assert.equal(jwks.headers["content-type"], "application/problem+json");
  });
});

describe("RFC 8693 token service in the gateway", () => {
  const EDGE = "https://edge.test";
  const API = "https://api.test";
  const GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
  const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";
  const CI_SUB = "repo:acme/agents:ref:refs/heads/main";
  let origin;
  let ciJwks; // the test IdP's JWKS endpoint (a CI system's OIDC keys)
  let gateway;
  let ci; // the test IdP's key: issues CI-style OIDC tokens
  let edgeOld;
  let edgeActive;

  before(async () => {
    ci = await generateKey("ES256", "ci-1");
    edgeOld = await generateKey("ES256", "edge-0");
    edgeActive = await generateKey("EdDSA", "edge-1");
    origin = await startOrigin();
    ciJwks = await startJwksServer([ci.publicJwk]);
    const policy = {
      realm: "api.test",
      issuers: [
        {
          iss: EDGE,
          audiences: [API],
          jwks: { keys: [edgeOld.publicJwk, edgeActive.publicJwk] },
          algorithms: ["EdDSA", "ES256"],
          max_lifetime: "15m",
        },
      ],
      routes: [
        { id: "logs", methods: ["GET"], path: "/v1/logs", scopes: ["logs.read"] },
        { id: "deploy", methods: ["POST"], path: "/v1/deploy", scopes: ["deploy.write"] },
      ],
      token_service: {
        issuer: EDGE,
        signing_kid: "edge-1",
        default_lifetime: "5m",
        federation: [
          {
            id: "ci-main",
            issuer: { iss: "https://ci.test", audiences: [EDGE], jwks_uri: ciJwks.url, algorithms: ["ES256"] },
            subjects: ["repo:acme/*:ref:refs/heads/main"],
            claims: { repository_owner: ["acme"] },
            actors: ["spiffe://acme.test/agents/*"],
            scopes: ["deploy.write", "logs.read"],
            audiences: [API],
            max_lifetime: "10m",
          },
        ],
      },
    };
    gateway = await startGateway({
      policyText: JSON.stringify(policy),
      originPort: origin.port,
      // Two published keys, `signing_kid` picks the active one: from a secret, not the policy.
      env: { AGENTGUARD_SIGNING_KEYS: JSON.stringify({ keys: [edgeOld.privateJwk, edgeActive.privateJwk] }) },
    });
  });
  after(async () => {
    await gateway?.stop();
    await Promise.all([origin?.close(), ciJwks?.close()]);
  });

  /** A CI job's OIDC token from the test IdP (claims override the defaults). */
  const ciToken = (claims = {}, key = ci.privateJwk) => {
    const now = nowS();
    return signJwt(
      key,
      { iss: "https://ci.test", aud: EDGE, sub: CI_SUB, repository_owner: "acme", iat: now - 5, exp: now + 600, ...claims },
      "JWT",
    );
  };
  const exchange = (params, { headers = {}, contentType = "application/x-www-form-urlencoded", body } = {}) =>
    send(`${gateway.url}/token`, {
      method: "POST",
      headers: { host: "api.test", "content-type": contentType, ...headers },
      body: body ?? formBody({ grant_type: GRANT, subject_token_type: JWT_TYPE, ...params }),
    });
  const jwks = () => createRemoteJWKSet(new URL(`${gateway.url}/.well-known/jwks.json`));

  test("RFC 8414 metadata and the JWKS are published (every key, no private parts)", async () => {
    const meta = await send(`${gateway.url}/.well-known/oauth-authorization-server`);
    assert.equal(meta.status, 200, meta.text);
    assert.deepEqual(json(meta), {
      issuer: EDGE,
      token_endpoint: `${EDGE}/token`,
      jwks_uri: `${EDGE}/.well-known/jwks.json`,
      grant_types_supported: [GRANT],
      token_endpoint_auth_methods_supported: ["none"],
      dpop_signing_alg_values_supported: json(meta).dpop_signing_alg_values_supported,
    });
    const keys = await send(`${gateway.url}/.well-known/jwks.json`);
    assert.equal(keys.status, 200);
    assert.equal(keys.headers["content-type"], "application/jwk-set+json");
    const doc = json(keys);
    assert.deepEqual(doc.keys.map((k) => k.kid).sort(), ["edge-0", "edge-1"]);
    for (const k of doc.keys) assert.equal(k.d, undefined, "no private key material");
  });

  test("a CI token is exchanged for a short-lived agent token that opens the route", async () => {
    const res = await exchange({ subject_token: await ciToken(), scope: "logs.read", audience: API });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers["cache-control"], "no-store");
    assert.equal(res.headers["content-type"], "application/json");
    const out = json(res);
    assert.equal(out.token_type, "Bearer");
    assert.equal(out.issued_token_type, "urn:ietf:params:oauth:token-type:access_token");
    assert.equal(out.scope, "logs.read");
    assert.ok(out.expires_in > 0 && out.expires_in <= 300, `expires_in ${out.expires_in}`);
    // npm jose verifies it against the gateway's own published JWKS.
    const { payload, protectedHeader } = await jwtVerify(out.access_token, jwks(), {
      issuer: EDGE,
      audience: API,
      typ: "at+jwt",
    });
    assert.equal(protectedHeader.kid, "edge-1", "signed with the active key");
    assert.equal(protectedHeader.alg, "EdDSA");
    assert.equal(payload.sub, CI_SUB);
    assert.equal(payload.client_id, "ci-main");
    assert.equal(payload.scope, "logs.read");
    assert.equal(payload.exp - payload.iat, out.expires_in);
    assert.equal(payload.cnf, undefined);

    const seen = origin.seen.length;
    const ok = await send(`${gateway.url}/v1/logs`, {
      headers: { host: "api.test", authorization: `Bearer ${out.access_token}` },
    });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(origin.seen.length, seen + 1);
    const identity = json(ok).headers;
    assert.equal(identity["x-agentguard-issuer"], EDGE);
    assert.equal(identity["x-agentguard-subject"], CI_SUB);
    assert.equal(identity["x-agentguard-client-id"], "ci-main");
    assert.equal(identity["x-agentguard-scopes"], "logs.read");
    // The intersected scope holds: this token cannot deploy.
    const deploy = await send(`${gateway.url}/v1/deploy`, {
      method: "POST",
      headers: { host: "api.test", authorization: `Bearer ${out.access_token}` },
      body: "{}",
    });
    assert.equal(deploy.status, 403, deploy.text);
    assert.equal(JSON.parse(deploy.text).reason, "scope_insufficient");
    assert.equal(origin.seen.length, seen + 1);
  });

  test("without `scope`, the rule's scopes are granted; the audience defaults to the rule's one", async () => {
    const res = await exchange({ subject_token: await ciToken() });
    assert.equal(res.status, 200, res.text);
    const out = json(res);
    assert.equal(out.scope, "deploy.write logs.read");
    const { payload } = await jwtVerify(out.access_token, jwks(), { issuer: EDGE, audience: API });
    assert.equal(payload.scope, "deploy.write logs.read");
    const deploy = await send(`${gateway.url}/v1/deploy`, {
      method: "POST",
      headers: { host: "api.test", authorization: `Bearer ${out.access_token}` },
      body: "{}",
    });
    assert.equal(deploy.status, 200, deploy.text);
  });

  test("with an actor token, the workload becomes act.sub and the gateway's agent", async () => {
    const actor = await ciToken({ sub: "spiffe://acme.test/agents/deployer" });
    const res = await exchange({
      subject_token: await ciToken(),
      actor_token: actor,
      actor_token_type: JWT_TYPE,
      scope: "logs.read",
    });
    assert.equal(res.status, 200, res.text);
    const token = json(res).access_token;
    const { payload } = await jwtVerify(token, jwks(), { issuer: EDGE, audience: API });
    assert.deepEqual(payload.act, { sub: "spiffe://acme.test/agents/deployer" });
    const ok = await send(`${gateway.url}/v1/logs`, { headers: { host: "api.test", authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(json(ok).headers["x-agentguard-agent"], "spiffe://acme.test/agents/deployer");
    const outsider = await exchange({
      subject_token: await ciToken(),
      actor_token: await ciToken({ sub: "spiffe://other.test/agents/x" }),
      actor_token_type: JWT_TYPE,
    });
    assert.equal(outsider.status, 400, outsider.text);
    assert.equal(json(outsider).error, "invalid_grant");
  });

  test("with DPoP, the minted token is bound to the proof key and works only with its proofs", async () => {
    const agent = await dpopKey();
    const other = await dpopKey();
    const res = await exchange(
      { subject_token: await ciToken(), scope: "logs.read" },
      { headers: { dpop: await agent.proof({ htm: "POST", htu: "http://api.test/token" }) } },
    );
    assert.equal(res.status, 200, res.text);
    const out = json(res);
    assert.equal(out.token_type, "DPoP");
    const { payload } = await jwtVerify(out.access_token, jwks(), { issuer: EDGE, audience: API });
    assert.equal(payload.cnf.jkt, agent.thumbprint);

    const call = async (key, scheme = "DPoP") =>
      send(`${gateway.url}/v1/logs`, {
        headers: {
          host: "api.test",
          authorization: `${scheme} ${out.access_token}`,
          dpop: await key.proof({ htm: "GET", htu: "http://api.test/v1/logs", token: out.access_token }),
        },
      });
    const ok = await call(agent);
    assert.equal(ok.status, 200, ok.text);
    const stolen = await call(other);
    assert.equal(stolen.status, 401, stolen.text);
    assert.equal(JSON.parse(stolen.text).reason, "dpop_key_mismatch");
    const asBearer = await send(`${gateway.url}/v1/logs`, {
      headers: { host: "api.test", authorization: `Bearer ${out.access_token}` },
    });
    assert.equal(asBearer.status, 401, asBearer.text);
  });

  const negatives = [
    ["untrusted issuer", async () => ({ subject_token: await signJwt((await generateKey("ES256", "evil")).privateJwk, { iss: "https://evil.test", aud: EDGE, sub: CI_SUB, repository_owner: "acme", iat: nowS(), exp: nowS() + 60 }, "JWT") }), "invalid_grant"],
    ["trusted issuer, key it never published", async () => ({ subject_token: await ciToken({}, (await generateKey("ES256", "ci-1")).privateJwk) }), "invalid_grant"],
    ["subject matching no federation rule", async () => ({ subject_token: await ciToken({ sub: "repo:acme/agents:ref:refs/heads/feature" }) }), "invalid_grant"],
    ["claim not allowed by the rule", async () => ({ subject_token: await ciToken({ repository_owner: "mallory" }) }), "invalid_grant"],
    ["expired subject token", async () => ({ subject_token: await ciToken({ iat: nowS() - 700, exp: nowS() - 100 }) }), "invalid_grant"],
    ["scope escalation", async () => ({ subject_token: await ciToken(), scope: "logs.read admin" }), "invalid_scope"],
    ["audience not allowed", async () => ({ subject_token: await ciToken(), audience: "https://other.test" }), "invalid_target"],
    ["unsupported grant type", async () => ({ subject_token: await ciToken(), grant_type: "client_credentials" }), "unsupported_grant_type"],
    ["missing subject token", async () => ({}), "invalid_request"],
  ];
  for (const [name, params, error] of negatives) {
    test(`refused: ${name} → ${error}, nothing minted`, async () => {
      const res = await exchange(await params());
      assert.equal(res.status, 400, res.text);
      assert.equal(res.headers["cache-control"], "no-store");
      const out = json(res);
      assert.equal(out.error, error, res.text);
      assert.equal(typeof out.error_description, "string");
      assert.equal(out.access_token, undefined);
      assert.deepEqual(Object.keys(out).sort(), ["error", "error_description"]);
    });
  }

  test("refused: malformed form body and wrong content type → invalid_request", async () => {
    const subject = await ciToken();
    const cases = [
      { body: `grant_type=${encodeURIComponent(GRANT)}&subject_token=%zz` },
      { body: `grant_type=${encodeURIComponent(GRANT)}&grant_type=${encodeURIComponent(GRANT)}&subject_token=${subject}` },
      { contentType: "application/json", body: JSON.stringify({ grant_type: GRANT, subject_token: subject }) },
      { body: "x".repeat(70 * 1024) },
    ];
    for (const c of cases) {
      const res = await exchange({}, c);
      assert.equal(res.status, 400, res.text);
      assert.equal(json(res).error, "invalid_request", res.text);
      assert.equal(res.headers["cache-control"], "no-store");
    }
    const get = await send(`${gateway.url}/token`, { headers: { host: "api.test" } });
    assert.equal(get.status, 400);
    assert.equal(json(get).error, "invalid_request");
  });

  test("200 mints give 200 distinct jti values", async () => {
    const subject = await ciToken();
    const jtis = new Set();
    for (let batch = 0; batch < 10; batch++) {
      const results = await Promise.all(
        Array.from({ length: 20 }, () => exchange({ subject_token: subject, scope: "logs.read" })),
      );
      for (const res of results) {
        assert.equal(res.status, 200, res.text);
        const token = json(res).access_token;
        assert.equal(decodeProtectedHeader(token).kid, "edge-1");
        jtis.add(JSON.parse(Buffer.from(token.split(".")[1], "base64url")).jti);
      }
    }
    assert.equal(jtis.size, 200);
    for (const jti of jtis) assert.ok(jti.length >= 16, jti);
  });
});

describe("token service without signing keys", () => {
  test("fails closed: /token answers server_error, the JWKS is empty", async () => {
    const ci = await generateKey("ES256", "ci-1");
    const origin = await startOrigin();
    const policy = {
      issuers: [{ iss: "https://edge.test", audiences: ["https://api.test"], jwks: { keys: [ci.publicJwk] }, algorithms: ["ES256"] }],
      routes: [{ id: "logs", methods: ["GET"], path: "/v1/logs", scopes: ["logs.read"] }],
      token_service: {
        issuer: "https://edge.test",
        signing_kid: "edge-1",
        federation: [
          {
            id: "ci",
            issuer: { iss: "https://ci.test", audiences: ["https://edge.test"], jwks: { keys: [ci.publicJwk] }, algorithms: ["ES256"] },
            scopes: ["logs.read"],
            audiences: ["https://api.test"],
          },
        ],
      },
    };
    const gw = await startGateway({ policyText: JSON.stringify(policy), originPort: origin.port });
    try {
      const now = nowS();
      const subject = await signJwt(ci.privateJwk, { iss: "https://ci.test", aud: "https://edge.test", sub: "x", iat: now, exp: now + 60 }, "JWT");
      const res = await send(`${gw.url}/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: formBody({ grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: subject, subject_token_type: "urn:ietf:params:oauth:token-type:jwt" }),
      });
      assert.equal(res.status, 500, res.text);
      assert.equal(json(res).error, "server_error");
      assert.equal(json(res).access_token, undefined);
      const keys = await send(`${gw.url}/.well-known/jwks.json`);
      assert.deepEqual(json(keys), { keys: [] });
    } finally {
      await gw.stop();
      await origin.close();
    }
  });
});

/**
 * A gateway whose token service trades tokens of the `https://ci.test` issuer
 * (`ciKeys`: `{ jwks }` or `{ jwks_uri }`) under `rateLimit`, minting with `edge`.
 */
async function startRateLimitedTokenService({ edge, ciKeys, rateLimit }) {
  const origin = await startOrigin();
  const policy = {
    issuers: [{ iss: "https://edge.test", audiences: ["https://api.test"], jwks: { keys: [edge.publicJwk] }, algorithms: ["EdDSA"] }],
    routes: [{ id: "logs", methods: ["GET"], path: "/v1/logs", scopes: ["logs.read"] }],
    token_service: {
      issuer: "https://edge.test",
      signing_kid: "edge-1",
      rate_limit: rateLimit,
      federation: [
        {
          id: "ci",
          issuer: { iss: "https://ci.test", audiences: ["https://edge.test"], ...ciKeys, algorithms: ["ES256"] },
          scopes: ["logs.read"],
          audiences: ["https://api.test"],
        },
      ],
    },
  };
  const gw = await startGateway({
    policyText: JSON.stringify(policy),
    originPort: origin.port,
    env: { AGENTGUARD_SIGNING_KEYS: JSON.stringify({ keys: [edge.privateJwk] }) },
  });
  return {
    url: gw.url,
    /** `POST /token` trading a fresh subject token signed by the CI key `ci`. */
    exchange: async (ci) => {
      const now = nowS();
      const subject = await signJwt(ci.privateJwk, { iss: "https://ci.test", aud: "https://edge.test", sub: "x", iat: now, exp: now + 60 }, "JWT");
      return send(`${gw.url}/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: formBody({ grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: subject, subject_token_type: "urn:ietf:params:oauth:token-type:jwt" }),
      });
    },
    stop: async () => {
      await gw.stop();
      await origin.close();
    },
  };
}

describe("token service rate limit (token_service.rate_limit)", () => {
  test("a client over its rate gets 429 rate_limited with Retry-After; nothing is minted", async () => {
    const ci = await generateKey("ES256", "ci-1");
    const edge = await generateKey("EdDSA", "edge-1");
    const gw = await startRateLimitedTokenService({ edge, ciKeys: { jwks: { keys: [ci.publicJwk] } }, rateLimit: { rate: "3/1m" } });
    try {
      // The test's requests all come from 127.0.0.1 (workerd's `cf.clientIp`): one client.
      for (let i = 0; i < 3; i++) {
        const ok = await gw.exchange(ci);
        assert.equal(ok.status, 200, ok.text);
        assert.ok(json(ok).access_token);
      }
      const limited = await gw.exchange(ci);
      assert.equal(limited.status, 429, limited.text);
      assert.equal(json(limited).error, "rate_limited");
      assert.equal(json(limited).access_token, undefined);
      assert.equal(limited.headers["retry-after"], "20");
      assert.equal(limited.headers["cache-control"], "no-store");
      // The API itself is not affected by the token endpoint's bucket.
      const api = await send(`${gw.url}/v1/logs`);
      assert.equal(api.status, 401);
    } finally {
      await gw.stop();
    }
  });

  test("the retry after a JWKS refresh (key rotation at the external issuer) is not counted again", async () => {
    const [ci1, ci2] = [await generateKey("ES256", "ci-1"), await generateKey("ES256", "ci-2")];
    const edge = await generateKey("EdDSA", "edge-1");
    const ciJwks = await startJwksServer([ci1.publicJwk]);
    const gw = await startRateLimitedTokenService({ edge, ciKeys: { jwks_uri: ciJwks.url }, rateLimit: { rate: "2/1m" } });
    try {
      const first = await gw.exchange(ci1);
      assert.equal(first.status, 200, first.text);
      // The CI system rotates to a key the gateway has not fetched yet.
      ciJwks.state.keys = [ci1.publicJwk, ci2.publicJwk];
      const hits = ciJwks.state.hits;
      const rotated = await gw.exchange(ci2);
      assert.equal(rotated.status, 200, rotated.text);
      assert.equal(ciJwks.state.hits, hits + 1, "one JWKS refresh for the unknown kid");
      // Two requests, two tokens of the 2/1m bucket: the third is refused.
      const third = await gw.exchange(ci1);
      assert.equal(third.status, 429, third.text);
    } finally {
      await gw.stop();
      await ciJwks.close();
    }
  });
});
