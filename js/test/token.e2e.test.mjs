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

import { signJwt } from "../../tests/vectors/mint.mjs";
import { generateKey, send, startGateway, startJwksServer, startOrigin } from "./helpers.mjs";

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
