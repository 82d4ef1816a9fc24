// Shared per-agent state, in Node: the routing key (the core's src/shard.rs
// through the Wasm export), and the gateway side of js/src/durable.js against
// an in-process Durable Object namespace whose objects are real
// `AgentStateObject`s: one limit for two engines, local decisions for
// requests that name no agent, a message signature without `Signature-Agent`
// decided in its operator's object, and fail-closed answers (503
// `state_unavailable`) whenever an object fails. The same code runs in
// workerd in durable.e2e.test.mjs.

import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { signatureHeaders, jwkToKeyID, helpers } from "web-bot-auth";
import { signerFromJWK } from "web-bot-auth/crypto";

import { AgentGuard, AgentStateObject, decideShared, routingKey, toCoreRequest } from "../src/node.js";
import { signJwt } from "../../tests/vectors/mint.mjs";
import { generateKey } from "./helpers.mjs";

const ISS = "https://sts.test";
const AUD = "https://api.test";
const OPERATOR = "https://crawler.test";
const nowS = () => Math.floor(Date.now() / 1000);
const eventSchema = JSON.parse(readFileSync(new URL("../../schema/decision-event.schema.json", import.meta.url), "utf8"));
const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** A Durable Object namespace in-process: one real AgentStateObject per name; `calls` lists the names called. */
function namespace() {
  const objects = new Map();
  const calls = [];
  return {
    calls,
    idFromName: (name) => ({ name }),
    get(id) {
      if (!objects.has(id.name)) objects.set(id.name, new AgentStateObject({ id }, {}));
      const object = objects.get(id.name);
      return {
        fetch: async (url, init) => {
          calls.push(id.name);
          return object.fetch(new Request(url, init));
        },
      };
    },
  };
}

/** A namespace whose objects answer with `respond(name)` (a Response), or throw. */
function brokenNamespace(respond) {
  return { idFromName: (name) => ({ name }), get: (id) => ({ fetch: async () => respond(id.name) }) };
}

const input = (headers = {}, path = "/v1/contacts/1") => ({
  method: "GET",
  scheme: "https",
  host: "api.test",
  path,
  headers,
  now: Date.now() / 1000,
});

describe("routingKey (unverified, for routing only)", () => {
  const bearer = (claims) => ({ authorization: `Bearer ${b64({ alg: "EdDSA", typ: "at+jwt" })}.${b64(claims)}.${b64("sig")}` });

  test("a token: act.sub, else client_id, else sub, else empty", () => {
    assert.equal(routingKey(input(bearer({ sub: "u", client_id: "c", act: { sub: "a" } }))), "a");
    assert.equal(routingKey(input(bearer({ sub: "u", client_id: "c" }))), "c");
    assert.equal(routingKey(input(bearer({ sub: "u" }))), "u");
    assert.equal(routingKey(input(bearer({ scope: "x" }))), "");
  });

  test("no key without one well-formed credential", () => {
    assert.equal(routingKey(input()), undefined);
    assert.equal(routingKey(input({ authorization: "Bearer a.b" })), undefined);
    assert.equal(routingKey(input({ authorization: "Basic dXNlcjpw" })), undefined);
    const twice = bearer({ sub: "u" }).authorization;
    assert.equal(routingKey(input({ authorization: [twice, twice] })), undefined);
    assert.equal(routingKey({ method: "GET", path: "no-slash", headers: {}, now: 1 }), undefined);
  });

  test("a signature: the operator Signature-Agent names, per the policy's credentials", () => {
    const sig = { "signature-input": 'sig1=("@authority");created=1;keyid="k"', "signature-agent": `"${OPERATOR}"` };
    assert.equal(routingKey(input(sig), "signature"), OPERATOR);
    assert.equal(routingKey(input(sig), "either"), OPERATOR);
    assert.equal(routingKey(input(sig), "token"), undefined);
    const both = { ...sig, ...bearer({ client_id: "c" }) };
    assert.equal(routingKey(input(both), "either"), "c");
    assert.equal(routingKey(input(both), "both"), "c");
    assert.equal(routingKey(input(both), "signature"), OPERATOR);
    assert.equal(routingKey(input({ "signature-input": sig["signature-input"] }), "signature"), undefined);
  });
});

describe("decideShared with an in-process namespace", () => {
  let issuer;
  let botKey;
  let policyText;
  const token = {};

  before(async () => {
    issuer = await generateKey("EdDSA", "k1");
    const { privateJwk, publicJwk } = await generateKey("EdDSA", undefined);
    const pub = { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x };
    botKey = { privateJwk: { ...pub, d: privateJwk.d }, publicJwk: pub };
    botKey.keyid = await jwkToKeyID(pub, helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE);
    policyText = JSON.stringify({
      credentials: "either",
      issuers: [{ iss: ISS, audiences: [AUD], algorithms: ["EdDSA"], jwks: { keys: [issuer.publicJwk] } }],
      signature_agents: { directories: [{ operator: OPERATOR, keys: { keys: [pub] }, scopes: ["crm.read"] }] },
      routes: [{ id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] }],
      limits: [{ id: "reads", per: "agent", rate: "2/10m" }],
    });
    const claims = { iss: ISS, aud: AUD, iat: nowS(), exp: nowS() + 300, scope: "crm.read" };
    token.bot = await signJwt(issuer.privateJwk, { ...claims, jti: "1", sub: "user:a", act: { sub: "bot" } });
  });

  const auth = (t) => ({ authorization: `Bearer ${t}` });

  test("two engines (two isolates) share one limit through the agent's object", async () => {
    const ns = namespace();
    const [a, b] = [AgentGuard.createSync(policyText), AgentGuard.createSync(policyText)];
    const statuses = [];
    for (const guard of [a, b, a]) statuses.push((await decideShared(ns, guard, input(auth(token.bot)), policyText)).status);
    assert.deepEqual(statuses, [200, 200, 429]);
    assert.deepEqual(ns.calls, ["bot", "bot", "bot", "bot"], "the first call also fetched the policy text");
    // The local engines counted nothing.
    assert.equal(a.stats().decisions, 0);
    assert.equal(b.stats().decisions, 0);
  });

  test("concurrent first calls to an object share one engine", async () => {
    const ns = namespace();
    const text = policyText.replace('"2/10m"', '"3/10m"'); // a policy no object has seen yet
    const guard = AgentGuard.createSync(text);
    const all = await Promise.all([...Array(6)].map(() => decideShared(ns, guard, input(auth(token.bot)), text)));
    assert.deepEqual(all.map((d) => d.status).sort(), [200, 200, 200, 429, 429, 429]);
  });

  test("a request that names no agent is decided locally", async () => {
    const ns = namespace();
    const guard = AgentGuard.createSync(policyText);
    const d = await decideShared(ns, guard, input(), policyText);
    assert.equal(d.status, 401);
    assert.equal(d.reasons[0].code, "credential_missing");
    assert.deepEqual(ns.calls, []);
  });

  async function signedHeaders(withAgent) {
    const signer = await signerFromJWK(botKey.privateJwk);
    const headers = withAgent ? { "signature-agent": `"${OPERATOR}"` } : {};
    const created = new Date(Date.now() - 1000);
    const expires = new Date(created.getTime() + 60_000);
    const sig = await signatureHeaders(new Request("https://api.test/v1/contacts/1", { headers }), signer, { created, expires });
    return { ...headers, "signature-input": sig["Signature-Input"], signature: sig.Signature };
  }

  test("a signature without Signature-Agent is decided in its operator's object", async () => {
    const ns = namespace();
    const guard = AgentGuard.createSync(policyText);
    const request = new Request("https://api.test/v1/contacts/1", { headers: await signedHeaders(false) });
    const core = toCoreRequest(request);
    assert.equal(routingKey(core, "either"), undefined);
    const d = await decideShared(ns, guard, core, policyText);
    assert.equal(d.decision, "allow", JSON.stringify(d.reasons));
    assert.equal(d.event.agent.agent, OPERATOR);
    assert.deepEqual([...new Set(ns.calls)], [OPERATOR]);
    // With Signature-Agent it goes there directly; the operator's limit (2) is one, whichever way it came.
    const direct = toCoreRequest(new Request("https://api.test/v1/contacts/1", { headers: await signedHeaders(true) }));
    assert.equal(routingKey(direct, "either"), OPERATOR);
    assert.equal((await decideShared(ns, guard, direct, policyText)).status, 200);
    const third = toCoreRequest(new Request("https://api.test/v1/contacts/1", { headers: await signedHeaders(false) }));
    assert.equal((await decideShared(ns, guard, third, policyText)).status, 429);
  });

  test("fail closed: an object that throws, fails or answers nonsense is a 503 deny", async () => {
    const guard = AgentGuard.createSync(policyText);
    const allowFor = (agent) =>
      Response.json({ decision: { decision: "allow", status: 200, reasons: [], event: { agent: { agent } } } });
    const cases = {
      "get() throws": { idFromName: () => ({}), get: () => { throw new Error("no such object"); } },
      "fetch rejects": brokenNamespace(async () => { throw new Error("network lost"); }),
      "500": brokenNamespace(async () => new Response("boom", { status: 500 })),
      "not JSON": brokenNamespace(async () => new Response("<html>")),
      "no decision": brokenNamespace(async () => Response.json({ decision: { decision: "maybe" } })),
      "keeps asking for the policy": brokenNamespace(async () => Response.json({ need_policy: true })),
      // Each object says another agent verified than the one it holds: never settles.
      "allows another agent every time": brokenNamespace(async (name) => allowFor(`${name}-else`)),
      "allows without an agent": brokenNamespace(async () =>
        Response.json({ decision: { decision: "allow", status: 200, reasons: [], event: {} } }),
      ),
    };
    const lines = [];
    for (const [name, ns] of Object.entries(cases)) {
      const d = await decideShared(ns, guard, input(auth(token.bot)), policyText, (l) => lines.push(l));
      assert.equal(d.decision, "deny", name);
      assert.equal(d.status, 503, name);
      assert.equal(d.reasons[0].code, "state_unavailable", name);
      assert.equal(d.response.status, 503, name);
      assert.equal(d.response.headers["retry-after"], "1", name);
      assert.equal(JSON.parse(d.response.body).reason, "state_unavailable", name);
      assert.equal(d.event.reasons[0], "state_unavailable", name);
      // The event the gateway logs has the decision-log schema's fields, and only those.
      for (const k of eventSchema.required) assert.ok(k in d.event, `${name}: event lacks ${k}`);
      for (const k of Object.keys(d.event)) assert.ok(k in eventSchema.properties, `${name}: event has ${k}`);
    }
    assert.ok(lines.length >= 7, lines.join("\n"));
  });
});
