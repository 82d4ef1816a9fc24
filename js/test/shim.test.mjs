// Unit tests of the JS shim in Node 20: request mapping, responses, header
// stripping, policies, the shared vectors, and the JWKS cache against a local
// JWKS server on 127.0.0.1.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";

import {
  AgentGuard,
  JwksCache,
  PolicyError,
  checkPolicy,
  forwardRequest,
  mint,
  stripIdentityHeaders,
  toCoreRequest,
  toResponse,
  withAgentGuard,
  loadPolicyText,
  bodySha256,
  requestLines,
} from "../src/node.js";
import { base64url, verifyCheck } from "../src/webcrypto.js";
import { loadVectors, caseHeaders, signJwt } from "../../tests/vectors/mint.mjs";
import { startJwksServer, generateKey } from "./helpers.mjs";

const vectors = loadVectors();
const nowS = () => Math.floor(Date.now() / 1000);

function claims(extra = {}) {
  const now = nowS();
  return {
    iss: "https://sts.test",
    aud: "https://api.test",
    sub: "user:alice",
    client_id: "crm-agent",
    scope: "crm.read",
    iat: now - 5,
    exp: now + 120,
    jti: `jti-${Math.random()}`,
    ...extra,
  };
}

describe("request mapping", () => {
  test("method, scheme, host, path with query, headers, time", () => {
    const r = new Request("https://API.example.com:8443/v1/contacts/42?x=1&y=%2F", {
      method: "PATCH",
      headers: { Authorization: "Bearer a.b.c", "X-Custom": "v" },
    });
    const input = toCoreRequest(r, { now: 1_700_000_000_500 });
    assert.deepEqual(input, {
      method: "PATCH",
      scheme: "https",
      host: "api.example.com:8443",
      path: "/v1/contacts/42?x=1&y=%2F",
      headers: { authorization: "Bearer a.b.c", "x-custom": "v" },
      now: 1_700_000_000.5,
    });
  });

  test("now defaults to Date.now()", () => {
    const before = Date.now() / 1000;
    const input = toCoreRequest(new Request("http://h/"));
    assert.ok(input.now >= before && input.now <= Date.now() / 1000);
    assert.equal(input.scheme, "http");
  });

  test("repeated Authorization headers stay separate for the core", () => {
    const h = new Headers();
    h.append("authorization", "Bearer a.b.c");
    h.append("authorization", "Bearer d.e.f");
    const input = toCoreRequest(new Request("https://h/", { headers: h }));
    assert.deepEqual(input.headers.authorization, ["Bearer a.b.c", "Bearer d.e.f"]);
  });

  test("client IP: CF-Connecting-IP only on Cloudflare, or a header the operator names", () => {
    const r = new Request("https://h/", { headers: { "cf-connecting-ip": "203.0.113.7", "x-real-ip": "10.1.1.1" } });
    assert.equal(toCoreRequest(r).source_ip, undefined, "a plain Node request must not trust the header");
    Object.defineProperty(r, "cf", { value: { country: "NL" } });
    assert.equal(toCoreRequest(r).source_ip, "203.0.113.7");
    const plain = new Request("https://h/", { headers: { "x-real-ip": "10.1.1.1" } });
    assert.equal(toCoreRequest(plain, { clientIpHeader: "x-real-ip" }).source_ip, "10.1.1.1");
    assert.equal(toCoreRequest(plain, { clientIp: "192.0.2.1" }).source_ip, "192.0.2.1");
    // workerd gives the TCP peer; a client's CF-Connecting-IP must not win over it.
    for (const [peer, ip] of [["127.0.0.1:50816", "127.0.0.1"], ["[::1]:4000", "::1"], ["2001:db8::1", "2001:db8::1"]]) {
      const local = new Request("https://h/", { headers: { "cf-connecting-ip": "6.6.6.6" } });
      Object.defineProperty(local, "cf", { value: { clientIp: peer } });
      assert.equal(toCoreRequest(local).source_ip, ip);
    }
  });

  test("body digest: base64url SHA-256, passed as body_sha256", async () => {
    const r = new Request("https://h/", { method: "POST", body: "abc" });
    const digest = await bodySha256(r);
    assert.equal(digest, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    assert.equal(await r.text(), "abc", "the original body is still readable");
    assert.equal(await bodySha256(new Request("https://h/")), undefined);
    assert.equal(toCoreRequest(new Request("https://h/"), { bodySha256: digest }).body_sha256, digest);
  });

  test("mTLS thumbprint from request.cf.tlsClientAuth", () => {
    const fp = "ab".repeat(32);
    const r = new Request("https://h/");
    Object.defineProperty(r, "cf", {
      value: { tlsClientAuth: { certPresented: "1", certVerified: "SUCCESS", certFingerprintSHA256: fp } },
    });
    assert.equal(toCoreRequest(r).client_cert_sha256, fp);
    const none = new Request("https://h/");
    Object.defineProperty(none, "cf", { value: { tlsClientAuth: { certPresented: "0", certFingerprintSHA256: "" } } });
    assert.equal(toCoreRequest(none).client_cert_sha256, undefined);
  });
});

describe("decisions and responses", () => {
  let guard;
  before(async () => {
    guard = await AgentGuard.create(vectors.policyText);
  });

  test("every shared vector gives the expected decision in Node", async () => {
    const now = nowS();
    for (const [i, c] of vectors.cases.entries()) {
      const headers = await caseHeaders(c, vectors.keys, now, i);
      const input = { ...c.request, headers, now };
      const d = guard.decideInput(input);
      assert.deepEqual(
        { decision: d.decision, status: d.status, reasons: d.reasons.map((r) => r.code) },
        c.expect,
        c.name,
      );
    }
  });

  test("the trace is off by default and on with `trace: true`; decisions are otherwise the same", async () => {
    const traced = await AgentGuard.create(vectors.policyText, { trace: true });
    const lean = await AgentGuard.create(vectors.policyText);
    const now = nowS();
    for (const [i, c] of vectors.cases.entries()) {
      const headers = await caseHeaders(c, vectors.keys, now, 300 + i);
      const input = { ...c.request, headers, now };
      const [t, l] = [traced.decideInput(input), lean.decideInput(input)];
      assert.equal(t.trace.length, 13, c.name);
      assert.deepEqual(l.trace, [], c.name);
      assert.deepEqual({ ...t, trace: [] }, l, c.name);
    }
    [traced, lean].forEach((g) => g.free());
  });

  test("WebCrypto, node:crypto and Wasm signature paths give the same decisions on every vector", async () => {
    const now = nowS();
    const guards = [
      await AgentGuard.create(vectors.policyText, { hostVerify: [] }),
      await AgentGuard.create(vectors.policyText, { hostVerify: ["EdDSA", "ES256"], hostCrypto: "webcrypto" }),
      await AgentGuard.create(vectors.policyText, { hostCrypto: "webcrypto" }), // ES256 via WebCrypto
      await AgentGuard.create(vectors.policyText), // Node's default: both via node:crypto
    ];
    for (const [i, c] of vectors.cases.entries()) {
      const headers = await caseHeaders(c, vectors.keys, now, 500 + i);
      const input = { ...c.request, headers, now };
      for (const g of guards) {
        const d = await g.decideRequest(input);
        assert.deepEqual(
          { decision: d.decision, status: d.status, reasons: d.reasons.map((r) => r.code) },
          c.expect,
          c.name,
        );
      }
    }
    guards.forEach((g) => g.free());
  });

  test("decideWith decides the request it is given, whatever decideOrCheck parsed before", async () => {
    const { Guard } = await import("../dist/agentguard.js");
    const [g, wasm] = [new Guard(vectors.policyText), new Guard(vectors.policyText)];
    const now = nowS();
    const token = await signJwt(vectors.keys.es256, {
      iss: "https://sts.test", aud: "https://api.test", sub: "user:alice", act: { sub: "spiffe://test/agents/crm-bot" },
      scope: "crm.read", iat: now - 10, exp: now + 290, jti: "memo-1",
    });
    const request = (method, path) =>
      JSON.stringify({ method, host: "api.test", path, headers: { authorization: `Bearer ${token}` }, now });
    const [a, b] = [request("GET", "/v1/contacts/42"), request("DELETE", "/v1/contacts/42")];
    const first = JSON.parse(g.decideOrCheck(a, "ES256"));
    assert.equal(first.checks.length, 1);
    const verdict = await verifyCheck(first.checks[0]);
    // Another request with the same token: decided as itself (the parsed `a` is not used for it).
    const pick = (d) => ({ decision: d.decision, status: d.status, reasons: d.reasons.map((r) => r.code) });
    assert.deepEqual(pick(JSON.parse(g.decideWith(b, `[${verdict}]`))), pick(JSON.parse(wasm.decide(b))));
    assert.notEqual(JSON.parse(wasm.decide(b)).decision, "allow");
    // `a` itself, still waiting: allowed with the host's verdict.
    assert.equal(JSON.parse(g.decideWith(a, `[${verdict}]`)).decision, "allow");
    [g, wasm].forEach((x) => x.free());
  });

  test("the line form and JSON give the same decisions: vectors, refusals, bodies, host-verified halves", async () => {
    const { Guard } = await import("../dist/agentguard.js");
    // Two engines fed the same requests in the same order (rate limits and
    // caches count alike), one as JSON, one in the line form.
    const [byJson, byLines] = [new Guard(vectors.policyText), new Guard(vectors.policyText)];
    const now = nowS();
    const inputs = [];
    for (const [i, c] of vectors.cases.entries()) {
      inputs.push({ ...c.request, headers: await caseHeaders(c, vectors.keys, now, 700 + i), now });
    }
    const [valid] = inputs;
    const many = Object.fromEntries(Array.from({ length: 130 }, (_, i) => [`x-h${i}`, "v"]));
    inputs.push(
      { ...valid, method: "G ET" },
      { ...valid, method: "delete", scheme: "http", host: "API.test:443" },
      { ...valid, path: "/v1/../admin" },
      { ...valid, path: "v1/contacts" },
      { ...valid, source_ip: "not-an-ip" },
      { ...valid, source_ip: "10.1.2.3", client_cert_sha256: "zz", body_sha256: "A".repeat(43) },
      { ...valid, headers: { ...valid.headers, "bad header": "x" } },
      { ...valid, headers: { ...valid.headers, dpop: ["a", "b"], "x-agentguard-agent": "spoofed" } },
      { ...valid, headers: many },
      { ...valid, method: "POST", path: "/v1/mail/drafts", body: '{"to":"a@example.com"}' },
      { ...valid, host: undefined, scheme: undefined, headers: undefined },
    );
    for (const input of inputs) {
      const lines = requestLines(input);
      assert.notEqual(lines, null, JSON.stringify(input).slice(0, 200));
      const json = JSON.stringify(input);
      const body = input.body ?? undefined;
      assert.deepEqual(JSON.parse(byLines.decideLines(lines, body, now)), JSON.parse(byJson.decide(json)), json.slice(0, 200));
      // The first half of a host-verified decision: the same checks (or decision).
      assert.equal(byLines.decideOrCheckLines(lines, body, now, "ES256,EdDSA"), byJson.decideOrCheck(json, "ES256,EdDSA"));
      // The second half, with no verdict: the waiting request, signatures checked in Wasm.
      assert.deepEqual(JSON.parse(byLines.decideWithLines(lines, body, now, "[]")), JSON.parse(byJson.decideWith(json, "[]")));
    }
    // A malformed line form (a host bug) is refused, never decided.
    const broken = JSON.parse(byLines.decideLines("GET\nhttps\napi.test", undefined, now));
    assert.equal(broken.decision, "deny");
    assert.equal(broken.reasons[0].code, "request_invalid");
    assert.match(broken.reasons[0].message, /request lines: 3 fields, expected 7/);
    const odd = JSON.parse(byLines.decideLines(`${requestLines(valid)}\nx-dangling`, undefined, now));
    assert.match(odd.reasons[0].message, /header `x-dangling` has no value line/);
    [byJson, byLines].forEach((g) => g.free());
  });

  test("requests the line form cannot carry go as JSON, and are decided the same", async () => {
    const base = { method: "GET", host: "api.test", path: "/v1/contacts/42", headers: {}, now: nowS() };
    const misfits = [
      { ...base, headers: { "x-note": "a\nb" } },
      { ...base, path: "/v1/contacts/42\n" },
      { ...base, headers: { "x-note": "\ud800" } },
      { ...base, source_ip: "" },
      { ...base, client_cert_sha256: 7 },
      { ...base, headers: { "x-note": null } },
      { ...base, headers: ["x"] },
      { ...base, method: null },
      { ...base, now: Infinity },
      { ...base, body: 42 },
      { ...base, sourceIp: "10.0.0.1" },
      null,
    ];
    for (const input of misfits) {
      assert.equal(requestLines(input), null, JSON.stringify(input));
      // Through AgentGuard: the JSON path names the problem.
      const d = guard.decideInput(input ?? {});
      assert.equal(d.decision, "deny", JSON.stringify(input));
    }
    // A request toCoreRequest maps always fits.
    const mapped = toCoreRequest(new Request("https://api.test/v1/x?q=1", { headers: { authorization: "Bearer a.b.c" } }), { clientIp: "10.0.0.1" });
    assert.equal(requestLines(mapped), `GET\nhttps\napi.test\n/v1/x?q=1\n10.0.0.1\n\n\nauthorization\nBearer a.b.c`);
  });

  test("a WebCrypto failure never counts as valid: the core verifies in Wasm", async () => {
    assert.equal(await verifyCheck({ alg: "ES256", jwk: { kty: "EC" }, signature: "AA", signing_input: "x", token_hash: "h" }), null);
    assert.equal(await verifyCheck({ alg: "HS256", jwk: {}, signature: "AA", signing_input: "x", token_hash: "h" }), null);
    assert.deepEqual([...base64url("AQID_-8")], [1, 2, 3, 255, 239]);
    assert.throws(() => base64url("a+b"), /invalid base64url/);
  });

  test("the package resolves to the Node entry point", async () => {
    const pkg = await import("agentguard");
    assert.equal(pkg.AgentGuard, AgentGuard);
    assert.equal(typeof pkg.version(), "string");
  });

  test("a 401 carries the challenge and an RFC 9457 body", async () => {
    const d = await guard.decide(new Request("https://api.test/v1/contacts/1"));
    const r = toResponse(d);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="api.test"');
    assert.equal(r.headers.get("content-type"), "application/problem+json");
    const body = await r.json();
    assert.equal(body.reason, "credential_missing");
    assert.equal(body.status, 401);
    assert.equal(body.type, "https://agentguard.dev/problems/credential_missing");
  });

  test("insufficient scope: 403 with error and scope in the challenge", async () => {
    const token = mint(vectors.keys.ed25519, claims({ scope: "mail.draft" }));
    const d = await guard.decide(
      new Request("https://api.test/v1/contacts/1", { headers: { authorization: `Bearer ${token}` } }),
    );
    const r = toResponse(d);
    assert.equal(r.status, 403);
    assert.match(r.headers.get("www-authenticate"), /error="insufficient_scope"/);
    assert.match(r.headers.get("www-authenticate"), /scope="crm.read"/);
  });

  test("approval_required carries the action digest", async () => {
    const token = mint(vectors.keys.es256, claims({ scope: "payments.write" }));
    const d = await guard.decide(
      new Request("https://api.test/v1/payments", { method: "POST", headers: { authorization: `Bearer ${token}` } }),
    );
    assert.equal(d.decision, "approval_required");
    const body = await toResponse(d).json();
    assert.equal(body.action_digest, d.approval.action_digest);
  });

  test("an allow has no response; a decision without one fails closed", () => {
    assert.throws(() => toResponse({ decision: "allow" }), /no response/);
    const r = toResponse({ decision: "deny", status: 401, reasons: [] });
    assert.equal(r.status, 500);
  });

  test("a malformed request is a decision, never an exception", () => {
    const d = guard.decideInput({ method: "GET", path: "no-slash", now: nowS() });
    assert.equal(d.decision, "deny");
    assert.equal(d.reasons[0].code, "path_invalid");
    const unknown = guard.decideInput({ method: "GET", path: "/", now: 1, surprise: true });
    assert.equal(unknown.reasons[0].code, "request_invalid");
  });

  test("the verified-token cache is used on the second request", async () => {
    const token = mint(vectors.keys.ed25519, claims());
    const req = () => new Request("https://api.test/v1/contacts/1", { headers: { authorization: `Bearer ${token}` } });
    const first = await guard.decide(req());
    const second = await guard.decide(req());
    assert.equal(first.decision, "allow");
    assert.equal(first.event.cache_hit, false);
    assert.equal(second.event.cache_hit, true);
    const stats = guard.stats();
    assert.ok(stats.cachedTokens >= 1);
    assert.ok(stats.decisions >= 2);
    assert.ok(stats.outcomes.allow >= 2);
    assert.ok(stats.routes["read-contacts"] >= 2);
  });

  test("revocation lists can be replaced at run time", async () => {
    const g = await AgentGuard.create(vectors.policy);
    const token = mint(vectors.keys.ed25519, claims({ jti: "to-revoke" }));
    const req = () => new Request("https://api.test/v1/contacts/1", { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await g.decide(req())).decision, "allow");
    g.setRevocations({ jti: ["to-revoke"] });
    const d = await g.decide(req());
    assert.equal(d.decision, "revoked");
    assert.throws(() => g.setRevocations({ jtis: [] }), /revocations/);
    g.free();
  });
});

describe("identity headers", () => {
  test("inbound copies are stripped whatever their case; verified ones added", async () => {
    const guard = await AgentGuard.create(vectors.policy);
    const token = mint(vectors.keys.ed25519, claims());
    const req = new Request("https://api.test/v1/contacts/1", {
      headers: {
        authorization: `Bearer ${token}`,
        "X-AgentGuard-Agent": "spoofed",
        "x-agentguard-admin": "true",
        "x-other": "kept",
      },
    });
    const d = await guard.decide(req);
    assert.equal(d.decision, "allow");
    const fwd = forwardRequest(req, d);
    assert.equal(fwd.headers.get("x-agentguard-agent"), "crm-agent");
    assert.equal(fwd.headers.get("x-agentguard-admin"), null);
    assert.equal(fwd.headers.get("x-agentguard-subject"), "user:alice");
    assert.equal(fwd.headers.get("x-other"), "kept");
    assert.equal(fwd.url, req.url);
    assert.throws(() => forwardRequest(req, { decision: "deny" }), /only an `allow`/);
  });

  test("stripIdentityHeaders keeps everything else", () => {
    const h = stripIdentityHeaders(new Headers({ "x-agentguard-a": "1", "x-agentguardian": "2", a: "3" }), "x-agentguard-");
    assert.deepEqual([...h], [["a", "3"], ["x-agentguardian", "2"]]);
  });

  test("stripIdentityHeaders reads `_` as `-` (one name to a CGI-style origin)", () => {
    const inbound = new Headers({ x_agentguard_actors: "spiffe://admin-bot", "x-agentguard_agent": "mallory", x_agentguardian: "2" });
    assert.deepEqual([...stripIdentityHeaders(inbound, "x-agentguard-")], [["x_agentguardian", "2"]]);
  });
});

describe("policies", () => {
  test("a bad policy throws PolicyError with JSON paths", async () => {
    const bad = structuredClone(vectors.policy);
    bad.issuers[0].algorithms = ["HS256"];
    bad.routes[0].methods = [];
    await assert.rejects(AgentGuard.create(bad), (e) => {
      assert.ok(e instanceof PolicyError);
      assert.ok(e.problems.some((p) => p.path === "issuers[0].algorithms[0]"), JSON.stringify(e.problems));
      assert.match(e.message, /issuers\[0\]\.algorithms\[0\]: algorithm `HS256` is never accepted/);
      return true;
    });
    assert.deepEqual(checkPolicy(vectors.policyText), []);
    const syntax = checkPolicy("{\n  \"issuers\": [,]\n}");
    assert.equal(syntax.length, 1);
    assert.equal(syntax[0].line, 2);
  });

  test("policy sources: inline, env text binding, KV; none is an error", async () => {
    assert.equal(await loadPolicyText({}, { policy: { a: 1 } }), '{"a":1}');
    assert.equal(await loadPolicyText({ AGENTGUARD_POLICY: "{}" }), "{}");
    const kv = { get: async (key) => (key === "policy.json" ? "{\"kv\":true}" : null) };
    assert.equal(await loadPolicyText({ AGENTGUARD_KV: kv }), '{"kv":true}');
    assert.equal(await loadPolicyText({ P: "{}" }, { policyVar: "P" }), "{}");
    await assert.rejects(loadPolicyText({}), /policy: none given/);
    await assert.rejects(loadPolicyText({ AGENTGUARD_KV: { get: async () => null } }), /has no key `policy.json`/);
  });

  test("withAgentGuard fails closed on a bad policy, with one log line", async () => {
    const lines = [];
    let called = 0;
    const fetch = withAgentGuard(() => (called++, new Response("origin")), { log: (l) => lines.push(l), onDecision: null });
    const env = { AGENTGUARD_POLICY: '{"issuers": [], "routes": []}' };
    for (let i = 0; i < 3; i++) {
      const r = await fetch(new Request("https://api.test/v1/contacts/1"), env, {});
      assert.equal(r.status, 500);
      assert.equal((await r.json()).reason, "policy_invalid");
    }
    assert.equal(called, 0);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /agentguard: policy rejected, denying every request: .*issuers: expected at least one trusted issuer/);
  });

  test("withAgentGuard forwards an allowed request, refuses the rest", async () => {
    const events = [];
    const seen = [];
    const fetch = withAgentGuard(
      (req, env, ctx, decision) => {
        seen.push([req.headers.get("x-agentguard-agent"), req.headers.get("x-agentguard-admin"), decision.route]);
        return new Response("ok");
      },
      { onDecision: (d) => events.push(d.event) },
    );
    const env = { AGENTGUARD_POLICY: vectors.policyText };
    const token = mint(vectors.keys.es256, claims());
    const ok = await fetch(
      new Request("https://api.test/v1/contacts/7", { headers: { authorization: `Bearer ${token}`, "x-agentguard-admin": "1" } }),
      env,
      {},
    );
    assert.equal(ok.status, 200);
    assert.deepEqual(seen, [["crm-agent", null, "read-contacts"]]);
    const no = await fetch(new Request("https://api.test/v1/contacts/7"), env, {});
    assert.equal(no.status, 401);
    assert.deepEqual(events.map((e) => e.decision), ["allow", "deny"]);
    // A body reaches the handler intact.
    const bodies = [];
    const post = withAgentGuard(async (req) => (bodies.push(await req.text()), new Response("ok")), {
      onDecision: null,
      hashBody: true,
    });
    const draft = await post(
      new Request("https://api.test/v1/drafts", {
        method: "POST",
        headers: { authorization: `Bearer ${mint(vectors.keys.ed25519, claims({ scope: "mail.draft" }))}` },
        body: '{"to":"bob"}',
      }),
      env,
      {},
    );
    assert.equal(draft.status, 200);
    assert.deepEqual(bodies, ['{"to":"bob"}']);
  });
});

describe("JWKS from jwks_uri", () => {
  let server;
  let keyA;
  let keyB;
  before(async () => {
    keyA = await generateKey("EdDSA", "key-a");
    keyB = await generateKey("ES256", "key-b");
    server = await startJwksServer([keyA.publicJwk]);
  });
  after(() => server.close());

  const policy = (uri) => ({
    realm: "api.test",
    issuers: [
      {
        iss: "https://sts.remote.test",
        audiences: ["https://api.test"],
        jwks_uri: uri,
        algorithms: ["EdDSA", "ES256"],
        max_lifetime: "10m",
      },
    ],
    routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] }],
  });
  const remoteClaims = () => claims({ iss: "https://sts.remote.test" });
  const call = async (guard, jwk) => {
    const token = await signJwt(jwk, remoteClaims());
    return guard.decide(new Request("https://api.test/v1/x", { headers: { authorization: `Bearer ${token}` } }));
  };
  function setup(options = {}) {
    const clock = { now: 1_000_000 };
    const logs = [];
    const cache = new JwksCache({ now: () => clock.now, log: (l) => logs.push(l), ...options });
    return { clock, logs, cache };
  }

  test("keys load at create; cache hits do not refetch; max-age is clamped", async () => {
    server.state.keys = [keyA.publicJwk];
    server.state.cacheControl = "public, max-age=5";
    server.state.down = false;
    const { clock, cache, logs } = setup();
    const hits = server.state.hits;
    const guard = await AgentGuard.create(policy(server.url), { jwksCache: cache, log: (l) => logs.push(l) });
    assert.equal(server.state.hits - hits, 1);
    assert.equal((await call(guard, keyA.privateJwk)).decision, "allow");
    assert.equal((await call(guard, keyA.privateJwk)).decision, "allow");
    assert.equal(server.state.hits - hits, 1);
    // max-age=5 is below the 60 s floor.
    assert.equal(cache.stats(server.url).expiresAt, clock.now + 60_000);
    clock.now += 61_000;
    server.state.cacheControl = "max-age=99999999";
    assert.equal((await call(guard, keyA.privateJwk)).decision, "allow");
    assert.equal(server.state.hits - hits, 2);
    assert.equal(cache.stats(server.url).expiresAt, clock.now + 86_400_000);
    assert.deepEqual(logs, []);
  });

  test("concurrent requests share one fetch (single-flight)", async () => {
    server.state.keys = [keyA.publicJwk];
    const { cache } = setup();
    const hits = server.state.hits;
    const results = await Promise.all(Array.from({ length: 20 }, () => cache.get(server.url)));
    assert.equal(server.state.hits - hits, 1);
    assert.ok(results.every((r) => r.generation === 1));
  });

  test("rotation: a token with a new kid triggers one refresh and verifies", async () => {
    server.state.keys = [keyA.publicJwk];
    server.state.cacheControl = "max-age=3600";
    const { clock, cache } = setup();
    const guard = await AgentGuard.create(policy(server.url), { jwksCache: cache });
    assert.equal((await call(guard, keyA.privateJwk)).decision, "allow");
    // The issuer rotates: key B is published (A retired) long before our cache expires.
    server.state.keys = [keyB.publicJwk];
    clock.now += 1_000;
    const hits = server.state.hits;
    const d = await call(guard, keyB.privateJwk);
    assert.equal(d.decision, "allow", JSON.stringify(d.reasons));
    assert.equal(server.state.hits - hits, 1);
    // Tokens of the retired key no longer verify.
    const old = await call(guard, keyA.privateJwk);
    assert.equal(old.reasons[0].code, "token_key_not_found");
  });

  test("a rotated approval key: the refused approval refreshes the keys, the retry goes through", async () => {
    const approverA = await generateKey("EdDSA", "approver-a");
    const approverB = await generateKey("EdDSA", "approver-b");
    const approvals = await startJwksServer([approverA.publicJwk]);
    try {
      server.state.keys = [keyA.publicJwk];
      const { clock, cache } = setup({ cooldown: 30 });
      const p = policy(server.url);
      p.routes.unshift({ id: "pay", methods: ["POST"], path: "/v1/pay", scopes: ["crm.read"], risk: "high" });
      p.approval = {
        issuer: "https://approvals.remote.test",
        jwks_uri: approvals.url,
        algorithms: ["EdDSA"],
        audiences: ["https://api.test"],
        endpoint: "https://approvals.remote.test/bc-authorize",
      };
      const guard = await AgentGuard.create(p, { jwksCache: cache });
      const token = await signJwt(keyA.privateJwk, remoteClaims());
      const pay = (approval) =>
        guard.decide(
          new Request("https://api.test/v1/pay", {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, ...(approval ? { "x-agent-approval": approval } : {}) },
          }),
        );
      let serial = 0;
      const approve = (jwk, challenge) =>
        signJwt(
          jwk,
          {
            iss: "https://approvals.remote.test",
            aud: "https://api.test",
            sub: "user:cfo",
            agent: challenge.agent,
            action_digest: challenge.action_digest,
            iat: Math.floor(Date.now() / 1000),
            exp: Math.floor(Date.now() / 1000) + 120,
            jti: `rotated-${++serial}`,
          },
          "approval+jwt",
        );
      const held = await pay();
      assert.equal(held.reasons[0].code, "approval_required");
      assert.equal((await pay(await approve(approverA.privateJwk, held.approval))).decision, "allow");
      // The approval service publishes key B; our cached JWKS has not expired.
      approvals.state.keys = [approverA.publicJwk, approverB.publicJwk];
      clock.now += 31_000;
      const hits = approvals.state.hits;
      const first = await pay(await approve(approverB.privateJwk, held.approval));
      assert.equal(first.reasons[0].code, "approval_invalid", "not decided again");
      assert.equal(approvals.state.hits - hits, 1, "but the approval keys were fetched again");
      const retry = await pay(await approve(approverB.privateJwk, held.approval));
      assert.equal(retry.decision, "allow", JSON.stringify(retry.reasons));
      // A refused approval fetches at most once per cooldown.
      const rogue = await generateKey("EdDSA", "rogue-approver");
      for (let i = 0; i < 5; i++) await pay(await approve(rogue.privateJwk, held.approval));
      assert.equal(approvals.state.hits - hits, 1);
    } finally {
      await approvals.close();
    }
  });

  test("unknown kid: at most one refresh per cooldown", async () => {
    server.state.keys = [keyA.publicJwk];
    const { clock, cache } = setup({ cooldown: 30 });
    const guard = await AgentGuard.create(policy(server.url), { jwksCache: cache });
    const rogue = await generateKey("EdDSA", "rogue");
    const hits = server.state.hits;
    for (let i = 0; i < 10; i++) {
      const d = await call(guard, rogue.privateJwk);
      assert.equal(d.decision, "deny");
      assert.equal(d.reasons[0].code, "token_key_not_found");
      clock.now += 1_000;
    }
    assert.equal(server.state.hits - hits, 1, "ten unknown-kid tokens in 10 s: one fetch");
    clock.now += 30_000;
    await call(guard, rogue.privateJwk);
    assert.equal(server.state.hits - hits, 2, "after the cooldown: one more");
  });

  test("JWKS host down: the last good keys stay in use, retries back off", async () => {
    server.state.keys = [keyA.publicJwk];
    server.state.cacheControl = "max-age=60";
    server.state.down = false;
    const { clock, cache, logs } = setup({ retryAfterError: 30 });
    const guard = await AgentGuard.create(policy(server.url), { jwksCache: cache });
    server.state.down = true;
    clock.now += 120_000; // expired
    const hits = server.state.hits;
    assert.equal((await call(guard, keyA.privateJwk)).decision, "allow");
    assert.equal((await call(guard, keyA.privateJwk)).decision, "allow");
    assert.equal(server.state.hits - hits, 1, "one failed attempt, then back-off");
    assert.equal(logs.length, 1);
    assert.match(logs[0], /refresh failed \(HTTP 503\); using the keys fetched before/);
    clock.now += 31_000;
    server.state.down = false;
    assert.equal((await call(guard, keyA.privateJwk)).decision, "allow");
    assert.equal(server.state.hits - hits, 2);
    assert.equal(cache.stats(server.url).lastError, null);
  });

  test("no keys at all: deny with token_key_not_found, and a log line", async () => {
    server.state.down = true;
    const { cache } = setup();
    const lines = [];
    const guard = await AgentGuard.create(policy(server.url), { jwksCache: cache, log: (l) => lines.push(l) });
    const d = await call(guard, keyA.privateJwk);
    assert.equal(d.decision, "deny");
    assert.equal(d.status, 401);
    assert.equal(d.reasons[0].code, "token_key_not_found");
    assert.match(lines[0], /fetching http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json failed: HTTP 503/);
    server.state.down = false;
  });

  test("issuer metadata discovery: jwks_uri may name the metadata document", async () => {
    server.state.down = false;
    server.state.keys = [keyB.publicJwk];
    const { cache, logs } = setup();
    const guard = await AgentGuard.create(policy(server.metadataUrl), { jwksCache: cache, log: (l) => logs.push(l) });
    assert.equal((await call(guard, keyB.privateJwk)).decision, "allow");
    // Metadata that names another issuer is refused: no keys, deny.
    server.state.metadataIssuer = "https://evil.test";
    const other = setup();
    const lines = [];
    const g2 = await AgentGuard.create(policy(server.metadataUrl), { jwksCache: other.cache, log: (l) => lines.push(l) });
    const d = await call(g2, keyB.privateJwk);
    assert.equal(d.reasons[0].code, "token_key_not_found");
    assert.match(lines[0], /metadata names issuer `https:\/\/evil\.test`, expected `https:\/\/sts\.remote\.test`/);
    server.state.metadataIssuer = "https://sts.remote.test";
  });

  test("a JWKS host that hangs times out", async () => {
    const cache = new JwksCache({
      timeoutMs: 100,
      log: () => {},
      fetch: (_url, init) =>
        new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason))),
    });
    await assert.rejects(cache.get("http://127.0.0.1:9/jwks"), /timed out after 100 ms/);
    assert.equal(cache.stats("http://127.0.0.1:9/jwks").fetches, 1);
  });
});
