// MCP authorization end to end, with the MCP TypeScript SDK on both sides:
//
//   SDK client ──► gateway (js/worker/, real workerd) ──► MCP server (SDK, streamable HTTP, Node)
//        │                                     ▲
//        └──► test authorization server ───────┘ (JWKS)
//
// The SDK's own client, given only the MCP server's URL and client
// credentials (its `ClientCredentialsProvider`), gets the gateway's 401 with
// `WWW-Authenticate: Bearer resource_metadata="…"`, fetches that RFC 9728
// document from the gateway, discovers the authorization server (RFC 8414),
// asks it for a token naming the resource (RFC 8707 `resource`), and then
// lists and calls a tool through the gateway. A token for another resource is
// refused (no token passthrough).

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { SignJWT, importJWK } from "jose";
import { z } from "zod";

import { freePort, generateKey, root } from "./helpers.mjs";
import { startBundledWorker } from "./fixtures/bundle.mjs";

// Node's fetch keeps connections alive, and workerd drains open connections
// for seconds when stopped: every request here says `Connection: close`.
function fetchOnce(url, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("connection", "close");
  return fetch(url, { ...init, headers });
}

async function listen(server) {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${server.address().port}`;
}

/** An MCP server (SDK, stateless streamable HTTP) with one tool that reports who called it. */
async function startMcpServer() {
  const seen = [];
  const server = createServer(async (req, res) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers });
    const mcp = new McpServer({ name: "records", version: "1.0.0" });
    mcp.registerTool(
      "add",
      { description: "adds two numbers", inputSchema: { a: z.number(), b: z.number() } },
      async ({ a, b }, extra) => ({
        content: [
          { type: "text", text: String(a + b) },
          // The verified identity the gateway forwarded (never the caller's own copy).
          { type: "text", text: `agent=${extra.requestInfo?.headers["x-agentguard-agent"] ?? "none"}` },
        ],
      }),
    );
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on("close", () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    let body;
    if (req.method === "POST") {
      let text = "";
      for await (const chunk of req) text += chunk;
      body = text ? JSON.parse(text) : undefined;
    }
    await transport.handleRequest(req, res, body);
  });
  const url = await listen(server);
  return { url, port: Number(new URL(url).port), seen, close: () => new Promise((r) => {
      server.close(r);
      server.closeAllConnections(); // workerd keeps connections alive
    }) };
}

/**
 * A local OAuth authorization server the test owns: RFC 8414 metadata, its
 * JWKS, and a token endpoint for the client-credentials grant that mints
 * RFC 9068 access tokens (jose, EdDSA) for the RFC 8707 `resource` asked for.
 */
async function startAuthorizationServer({ clientId, clientSecret }) {
  const key = await generateKey("EdDSA", "as-1");
  const signing = await importJWK(key.privateJwk, "EdDSA");
  const tokenRequests = [];
  let base;
  const server = createServer(async (req, res) => {
    const json = (status, doc) => res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(doc));
    if (req.url === "/.well-known/oauth-authorization-server") {
      return json(200, {
        issuer: base,
        authorization_endpoint: `${base}/authorize`,
        token_endpoint: `${base}/token`,
        jwks_uri: `${base}/jwks`,
        response_types_supported: ["code"],
        grant_types_supported: ["client_credentials"],
        token_endpoint_auth_methods_supported: ["client_secret_basic"],
      });
    }
    if (req.url === "/jwks") return json(200, { keys: [key.publicJwk] });
    if (req.url === "/token" && req.method === "POST") {
      let text = "";
      for await (const chunk of req) text += chunk;
      const form = new URLSearchParams(text);
      const basic = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64").toString();
      const [id, secret] = basic.split(":").map(decodeURIComponent);
      tokenRequests.push({ form: Object.fromEntries(form), clientId: id });
      if (id !== clientId || secret !== clientSecret) return json(401, { error: "invalid_client" });
      if (form.get("grant_type") !== "client_credentials") return json(400, { error: "unsupported_grant_type" });
      const resource = form.get("resource");
      if (!resource) return json(400, { error: "invalid_target", error_description: "resource is required" });
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ client_id: id, scope: form.get("scope") ?? "", act: { sub: `spiffe://test/agents/${id}` } })
        .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: key.publicJwk.kid })
        .setIssuer(base)
        .setAudience(resource)
        .setSubject(`client:${id}`)
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .setJti(crypto.randomUUID())
        .sign(signing);
      return json(200, { access_token: token, token_type: "Bearer", expires_in: 300, scope: form.get("scope") ?? "" });
    }
    json(404, { error: "not_found" });
  });
  base = await listen(server);
  /** A token for any audience, signed by this server (for the passthrough test). */
  const mintFor = async (aud) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ client_id: clientId, scope: "mcp:tools" })
      .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: key.publicJwk.kid })
      .setIssuer(base)
      .setAudience(aud)
      .setSubject(`client:${clientId}`)
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .setJti(crypto.randomUUID())
      .sign(signing);
  };
  return { url: base, tokenRequests, mintFor, close: () => new Promise((r) => {
      server.close(r);
      server.closeAllConnections(); // workerd keeps connections alive
    }) };
}

describe("MCP SDK client → agentguard gateway (workerd) → MCP SDK server", () => {
  const clientId = "research-agent";
  const clientSecret = "s3cret-for-tests";
  let mcp;
  let as;
  let gateway;
  let resource;

  before(async () => {
    [mcp, as] = await Promise.all([startMcpServer(), startAuthorizationServer({ clientId, clientSecret })]);
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    resource = `${base}/mcp`;
    const policy = {
      realm: "mcp.test",
      issuers: [{ iss: as.url, audiences: [resource], jwks_uri: `${as.url}/jwks`, algorithms: ["EdDSA"], max_lifetime: "10m" }],
      resource: {
        identifier: resource,
        metadata_url: `${base}/.well-known/oauth-protected-resource/mcp`,
        authorization_servers: [as.url],
        name: "records MCP server",
      },
      routes: [{ id: "mcp", methods: ["POST", "GET", "DELETE"], path: "/mcp", scopes: ["mcp:tools"] }],
    };
    // The gateway (js/worker/) as `wrangler deploy` ships it.
    gateway = await startBundledWorker({
      config: `${root}js/worker/wrangler.toml`,
      main: "worker.js",
      policyText: JSON.stringify(policy),
      originUrl: mcp.url,
      port,
    });
  });

  after(async () => {
    if (process.env.MCP_DEBUG) console.error(gateway?.logs.join("\n"));
    // Origin and authorization server first: workerd waits for its open
    // upstream connections (the client's SSE stream) before it exits.
    await Promise.all([mcp?.close(), as?.close()]);
    await gateway?.stop();
  });

  /** A fetch that records what the SDK client asks for. */
  function recordingFetch(log) {
    return async (url, init) => {
      const res = await fetchOnce(url, init);
      log.push({ method: init?.method ?? "GET", url: String(url), status: res.status, wwwAuthenticate: res.headers.get("www-authenticate") });
      return res;
    };
  }

  test("the SDK client discovers the resource metadata, gets a token for the resource, lists and calls a tool", async () => {
    const log = [];
    const seenBefore = mcp.seen.length;
    const transport = new StreamableHTTPClientTransport(new URL(resource), {
      // A machine client: client credentials for the scope it needs, and the
      // authorization server it trusts with them.
      authProvider: new ClientCredentialsProvider({ clientId, clientSecret, scope: "mcp:tools", expectedIssuer: as.url }),
      fetch: recordingFetch(log),
    });
    const client = new Client({ name: "agentguard-test", version: "1.0.0" });
    try {
      await client.connect(transport);

      // 1. Without a token: the gateway's 401 points at the metadata.
      const first = log[0];
      assert.equal(first.url, resource);
      assert.equal(first.status, 401);
      assert.match(first.wwwAuthenticate, new RegExp(`^Bearer .*resource_metadata="${base(resource)}/\\.well-known/oauth-protected-resource/mcp"`));
      // 2. The client fetched that document from the gateway, then the authorization server's metadata.
      const prm = log.find((e) => e.url.endsWith("/.well-known/oauth-protected-resource/mcp"));
      assert.ok(prm, JSON.stringify(log, null, 1));
      assert.equal(prm.status, 200);
      assert.ok(prm.url.startsWith(base(resource)), "the metadata came from the gateway");
      assert.ok(log.some((e) => e.url === `${as.url}/.well-known/oauth-authorization-server` && e.status === 200));
      // 3. The token request named this resource (RFC 8707), taken from the metadata.
      assert.equal(as.tokenRequests.length, 1);
      assert.equal(as.tokenRequests[0].form.resource, resource);
      assert.equal(as.tokenRequests[0].form.scope, "mcp:tools");
      assert.equal(as.tokenRequests[0].form.grant_type, "client_credentials");
      // 4. With the token, the MCP requests went through.
      assert.ok(log.filter((e) => e.url === resource && e.status === 200).length >= 1, JSON.stringify(log, null, 1));

      const tools = await client.listTools();
      assert.deepEqual(tools.tools.map((t) => t.name), ["add"]);
      const result = await client.callTool({ name: "add", arguments: { a: 2, b: 40 } });
      assert.equal(result.isError, undefined);
      assert.equal(result.content[0].text, "42");
      assert.equal(result.content[1].text, "agent=spiffe://test/agents/research-agent");
      // The MCP server saw only authorised requests, each with the verified identity.
      const reached = mcp.seen.slice(seenBefore);
      assert.ok(reached.length >= 3, `initialize, initialized, tools/list, tools/call: ${reached.length}`);
      for (const r of reached) {
        assert.match(r.headers.authorization ?? "", /^Bearer /);
        assert.equal(r.headers["x-agentguard-issuer"], as.url);
        assert.equal(r.headers["x-agentguard-route"], "mcp");
      }
    } finally {
      await client.close();
    }
  });

  test("the metadata document describes the resource (RFC 9728)", async () => {
    for (const path of ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]) {
      const res = await fetchOnce(base(resource) + path);
      assert.equal(res.status, 200, path);
      const doc = await res.json();
      assert.equal(doc.resource, resource);
      assert.deepEqual(doc.authorization_servers, [as.url]);
      assert.deepEqual(doc.scopes_supported, ["mcp:tools"]);
      assert.deepEqual(doc.bearer_methods_supported, ["header"]);
    }
  });

  test("a token issued for another resource is refused (no token passthrough)", async () => {
    const foreign = await as.mintFor("https://other-mcp.example/mcp");
    const seenBefore = mcp.seen.length;
    const eventsBefore = gateway.logs.filter((l) => l.startsWith('{"v":1')).length;
    const log = [];
    const transport = new StreamableHTTPClientTransport(new URL(resource), {
      requestInit: { headers: { authorization: `Bearer ${foreign}` } },
      fetch: recordingFetch(log),
    });
    const client = new Client({ name: "agentguard-test", version: "1.0.0" });
    await assert.rejects(client.connect(transport));
    await client.close().catch(() => {});
    assert.equal(log[0].status, 401);
    assert.match(log[0].wwwAuthenticate, /error="invalid_token"/);
    assert.match(log[0].wwwAuthenticate, /resource_metadata="/);
    assert.equal(mcp.seen.length, seenBefore, "the MCP server never saw the request");
    // The decision event (workerd's stdout may trail the response a little).
    const events = () => gateway.logs.filter((l) => l.startsWith('{"v":1')).map((l) => JSON.parse(l));
    const refusals = () => events().slice(eventsBefore).filter((e) => e.decision !== "allow");
    for (let i = 0; i < 40 && refusals().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      refusals().map((e) => e.reasons),
      [["token_audience_invalid"]],
    );
  });

  test("a token for the resource but without the route's scope is refused with 403 and the scope to ask for", async () => {
    // The authorization server grants what the client asks for; ask for nothing.
    const res = await fetchOnce(`${as.url}/token`, {
      method: "POST",
      headers: { authorization: `Basic ${btoa(`${clientId}:${clientSecret}`)}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", resource, scope: "other" }),
    });
    const { access_token } = await res.json();
    const denied = await fetchOnce(resource, {
      method: "POST",
      headers: { authorization: `Bearer ${access_token}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    assert.equal(denied.status, 403);
    const challenge = denied.headers.get("www-authenticate");
    assert.match(challenge, /error="insufficient_scope"/);
    assert.match(challenge, /scope="mcp:tools"/);
    assert.match(challenge, /resource_metadata="/);
  });
});

function base(url) {
  return new URL(url).origin;
}
