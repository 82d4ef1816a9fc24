// Approval conditions on the request body, in Node: what the shim reads of a
// body and when (`AgentGuard#bodyUse`, `requestBodyContext`), `toCoreRequest`'s
// `body`, and `withAgentGuard` end to end with the real Wasm core: nothing
// read on an ordinary route, the body's text for `approval_when`, its digest
// for a high-risk route, a bounded read of long bodies (refused past
// `maxBodyBytes`), and the body carried to the agent's Durable Object. The same
// gateway runs in workerd in body.e2e.test.mjs.

import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  AgentGuard,
  AgentStateObject,
  MAX_BODY_TEXT_BYTES,
  requestBodyContext,
  toCoreRequest,
  withAgentGuard,
} from "../src/node.js";
import { actionDigest, b64sha256, transferSetup } from "./fixtures/transfer.mjs";

const eventSchema = JSON.parse(readFileSync(new URL("../../schema/decision-event.schema.json", import.meta.url), "utf8"));

/**
 * A streamed request body that records how much of it was pulled:
 * `chunks` chunks of `size` bytes (`Infinity`: endless), or one that throws
 * when it is read at all (`throws: true`).
 */
function trackedBody({ chunks = 1, size = 16, throws = false, fill = 0x61 } = {}) {
  const state = { pulled: 0, bytes: 0 };
  const stream = new ReadableStream(
    {
      pull(controller) {
        state.pulled += 1;
        if (throws) throw new Error("this body must not be read");
        if (state.pulled > chunks) return controller.close();
        state.bytes += size;
        controller.enqueue(new Uint8Array(size).fill(fill));
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, state };
}

describe("approval conditions on the body (Node)", () => {
  let s;
  let guard;
  before(async () => {
    s = await transferSetup();
    guard = await AgentGuard.create(s.policy);
  });

  const post = async (path, body, { approvalToken, headers = {} } = {}) =>
    new Request(`https://api.test${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await s.accessToken()}`,
        "content-type": "application/json",
        ...(approvalToken ? { "x-agent-approval": approvalToken } : {}),
        ...headers,
      },
      body,
      ...(body instanceof ReadableStream ? { duplex: "half" } : {}),
    });

  /** A gateway whose handler records the body it got. */
  const gateway = (options = {}) => {
    const got = [];
    const events = [];
    const fetch = withAgentGuard(
      async (request) => {
        got.push(await request.text());
        return new Response("ok");
      },
      { policy: s.policyText, onDecision: (d) => events.push(d), ...options },
    );
    return { fetch, got, events };
  };

  test("bodyUse: text for approval_when, digest for a high-risk route, none otherwise", () => {
    assert.equal(guard.bodyUse("POST", "/v1/transfers"), "text");
    assert.equal(guard.bodyUse("POST", "/v1/transfers?dry=1"), "text");
    assert.equal(guard.bodyUse("POST", "/v1/payments"), "digest");
    assert.equal(guard.bodyUse("GET", "/v1/transfers"), "none");
    assert.equal(guard.bodyUse("POST", "/v1/notes"), "none");
    assert.equal(guard.bodyUse("POST", "/nowhere"), "none");
    assert.equal(guard.bodyUse("POST", "no-slash"), "none");
  });

  test("bodyUse without the core's call for policies that never need a body, and the same answers", async () => {
    const { approval, issuers } = s.policy;
    const route = (extra) => ({ id: "r", methods: ["POST"], path: "/r", ...extra });
    const useOf = (routes) => AgentGuard.createSync({ issuers, approval, routes }).bodyUse("POST", "/r");
    assert.equal(useOf([route({})]), "none");
    assert.equal(useOf([route({ risk: "low" })]), "none");
    assert.equal(useOf([route({ risk: "high" })]), "digest");
    assert.equal(useOf([route({ risk: "critical" })]), "digest");
    assert.equal(useOf([route({ approval_when: [{ body: "/a", eq: 1 }] })]), "text");
    // A key written with a JSON escape is still that key (the walk parses the JSON).
    const escaped = JSON.stringify({ issuers, approval, routes: [route({})] }).replace('"id":"r"', '"id":"r","\\u0072isk":"high"');
    assert.match(escaped, /u0072isk/);
    assert.equal(AgentGuard.createSync(escaped).bodyUse("POST", "/r"), "digest");
  });

  test("toCoreRequest: context.body becomes the core's `body`", () => {
    const r = new Request("https://api.test/v1/transfers", { method: "POST", body: "x" });
    assert.equal(toCoreRequest(r, { body: '{"amount":1}' }).body, '{"amount":1}');
    assert.equal(toCoreRequest(r, { body: "" }).body, "");
    assert.equal("body" in toCoreRequest(r, {}), false);
  });

  test("an ordinary route: no byte of the body is read", async () => {
    const { stream, state } = trackedBody({ throws: true });
    const gw = gateway();
    // Snapshots when the decision is made (forwarding the request moves its
    // body to the new Request, which Node's fetch starts pulling; workerd's does not).
    const atDecision = [];
    const fetch = withAgentGuard(async () => new Response("ok"), {
      policy: s.policyText,
      onDecision: (d, request) => atDecision.push([d.decision, state.pulled, request.bodyUsed]),
    });
    const res = await fetch(await post("/v1/notes", stream), {}, {});
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(atDecision, [["allow", 0, false]], "the body was read before the decision");
    // Refused: never read at all.
    const refusedBody = trackedBody({ throws: true });
    const anonymous = new Request("https://api.test/v1/notes", { method: "POST", body: refusedBody.stream, duplex: "half" });
    assert.equal((await fetch(anonymous, {}, {})).status, 401);
    assert.equal(refusedBody.state.pulled, 0);
    assert.deepEqual(await requestBodyContext(guard, await post("/v1/notes", trackedBody({ throws: true }).stream)), {
      context: {},
    });
    // The same body on the transfer route is read (so the check above can fail).
    const read = trackedBody({ throws: true });
    const refused = await gw.fetch(await post("/v1/transfers", read.stream), {}, {});
    assert.ok(read.state.pulled > 0);
    assert.equal(refused.status, 400);
    assert.equal(JSON.parse(await refused.text()).reason, "request_invalid");
    // hashBody: true hashes every body, as before.
    const hashed = await requestBodyContext(guard, await post("/v1/notes", '{"a":1}'), { hashBody: true });
    assert.deepEqual(hashed, { context: { bodySha256: b64sha256('{"a":1}') } });
  });

  test("the transfer route: the body's text decides, and reaches the handler unchanged", async () => {
    const gw = gateway();
    const small = '{"amount":250,"currency":"EUR"}';
    const ok = await gw.fetch(await post("/v1/transfers", small), {}, {});
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.deepEqual(gw.got, [small]);

    const large = '{"amount":1500,"currency":"EUR"}';
    const held = await gw.fetch(await post("/v1/transfers", large), {}, {});
    assert.equal(held.status, 403);
    const problem = JSON.parse(await held.text());
    assert.equal(problem.reason, "approval_required");
    assert.match(gw.events.at(-1).reasons[0].message, /body \/amount is 1500, more than 1000/);
    assert.equal(problem.action_digest, actionDigest({ path: "/v1/transfers", body: large }));

    const approved = await gw.fetch(await post("/v1/transfers", large, { approvalToken: await s.approval(problem.action_digest) }), {}, {});
    assert.equal(approved.status, 200, await approved.clone().text());
    assert.deepEqual(gw.got, [small, large]);
  });

  test("bodies the core cannot read need an approval bound to their bytes", async () => {
    const gw = gateway();
    const cases = [
      ["not JSON", "amount=5&currency=EUR", /not JSON/],
      ["not UTF-8", Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /only the body's SHA-256/],
      ["a BOM", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"amount":5,"currency":"EUR"}')]), /not JSON/],
      ["over 64 KiB", JSON.stringify({ amount: 5, currency: "EUR", pad: "x".repeat(MAX_BODY_TEXT_BYTES) }), /only the body's SHA-256/],
      ["empty", "", /not given/],
    ];
    for (const [what, body, why] of cases) {
      const res = await gw.fetch(await post("/v1/transfers", body), {}, {});
      assert.equal(res.status, 403, what);
      const problem = JSON.parse(await res.text());
      assert.equal(problem.reason, "approval_required", what);
      assert.match(gw.events.at(-1).reasons[0].message, why, what);
      // An empty body binds like no body.
      const bound = body.length === 0 ? undefined : body;
      assert.equal(problem.action_digest, actionDigest({ path: "/v1/transfers", body: bound }), what);
    }
    assert.deepEqual(gw.got, []);
    // What requestBodyContext hands the core for each.
    const ctx = async (body) => (await requestBodyContext(guard, await post("/v1/transfers", body))).context;
    assert.deepEqual(await ctx("amount=5"), { body: "amount=5" });
    assert.deepEqual(await ctx(Buffer.from([0x7b, 0xff])), { bodySha256: b64sha256(Buffer.from([0x7b, 0xff])) });
    const exactly = "x".repeat(MAX_BODY_TEXT_BYTES);
    assert.deepEqual(await ctx(exactly), { body: exactly });
    assert.deepEqual(await ctx(`${exactly}x`), { bodySha256: b64sha256(`${exactly}x`) });
  });

  test("a high-risk route: the body's digest, read automatically", async () => {
    const gw = gateway();
    const a = JSON.parse(await (await gw.fetch(await post("/v1/payments", '{"invoice":42}'), {}, {})).text());
    const b = JSON.parse(await (await gw.fetch(await post("/v1/payments", '{"invoice":43}'), {}, {})).text());
    assert.equal(a.reason, "approval_required");
    assert.equal(a.action_digest, actionDigest({ path: "/v1/payments", body: '{"invoice":42}' }));
    assert.notEqual(a.action_digest, b.action_digest);
    assert.deepEqual(await requestBodyContext(guard, await post("/v1/payments", '{"invoice":42}')), {
      context: { bodySha256: b64sha256('{"invoice":42}') },
    });
  });

  test("bodies past maxBodyBytes: refused 413 after reading at most the limit and a chunk or two", async () => {
    const gw = gateway({ maxBodyBytes: 100_000 });
    // An endless body: the gateway stops reading.
    const endless = trackedBody({ chunks: Infinity, size: 16 * 1024 });
    const res = await gw.fetch(await post("/v1/transfers", endless.stream), {}, {});
    assert.equal(res.status, 413);
    const problem = JSON.parse(await res.text());
    assert.equal(problem.reason, "request_invalid");
    assert.match(problem.detail, /longer than the 100000 bytes/);
    // The limit plus the chunk that crossed it, plus at most one the clone's tee pulled ahead.
    assert.ok(endless.state.bytes <= 100_000 + 2 * 16 * 1024, `read ${endless.state.bytes} bytes`);
    const { event } = gw.events.at(-1);
    assert.equal(event.status, 413);
    assert.deepEqual(event.reasons, ["request_invalid"]);
    for (const k of eventSchema.required) assert.ok(k in event, `the event lacks ${k}`);
    for (const k of Object.keys(event)) assert.ok(k in eventSchema.properties, `the event has ${k}`);
    // A Content-Length over the limit: not read at all.
    const declared = trackedBody({ throws: true });
    const early = await gw.fetch(await post("/v1/payments", declared.stream, { headers: { "content-length": "100001" } }), {}, {});
    assert.equal(early.status, 413);
    assert.equal(declared.state.pulled, 0);
    // Just under the limit: hashed, and the approval binds to it.
    const big = JSON.stringify({ amount: 5, pad: "y".repeat(99_000) });
    const held = JSON.parse(await (await gw.fetch(await post("/v1/transfers", big), {}, {})).text());
    assert.equal(held.reason, "approval_required");
    assert.equal(held.action_digest, actionDigest({ path: "/v1/transfers", body: big }));
    const ok = await gw.fetch(await post("/v1/transfers", big, { approvalToken: await s.approval(held.action_digest) }), {}, {});
    assert.equal(ok.status, 200);
    assert.deepEqual(gw.got, [big]);
  });

  test("AgentGuard#decide reads the body itself where the route needs it, as the middleware does", async () => {
    const small = '{"amount":250,"currency":"EUR"}';
    const request = await post("/v1/transfers", small);
    const ok = await guard.decide(request);
    assert.equal(ok.decision, "allow", JSON.stringify(ok.reasons));
    assert.equal(await request.text(), small, "the request keeps its body");
    const large = '{"amount":1500,"currency":"EUR"}';
    const held = await guard.decide(await post("/v1/transfers", large));
    assert.equal(held.reasons[0].code, "approval_required");
    assert.match(held.reasons[0].message, /body \/amount is 1500, more than 1000/);
    // A body the caller gives is used as given, and the request's is not read.
    const given = trackedBody({ throws: true });
    const asGiven = await guard.decide(await post("/v1/transfers", given.stream), { body: small });
    assert.equal(asGiven.decision, "allow", JSON.stringify(asGiven.reasons));
    assert.equal(given.state.pulled, 0);
    // Nothing is read for an ordinary route.
    const ordinary = trackedBody({ throws: true });
    assert.equal((await guard.decide(await post("/v1/notes", ordinary.stream))).decision, "allow");
    assert.equal(ordinary.state.pulled, 0);
    // Past the guard's maxBodyBytes: 413; an unreadable body: 400.
    const small100 = await AgentGuard.create(s.policy, { maxBodyBytes: 100 });
    const long = await small100.decide(await post("/v1/transfers", JSON.stringify({ amount: 5, pad: "z".repeat(200) })));
    assert.deepEqual([long.status, long.reasons[0].code], [413, "request_invalid"]);
    assert.match(long.reasons[0].message, /longer than the 100 bytes/);
    const used = await post("/v1/transfers", small);
    await used.text();
    const unreadable = await guard.decide(used);
    assert.deepEqual([unreadable.status, unreadable.reasons[0].code], [400, "request_invalid"]);
  });

  test("with a Durable Object for agent state, the body travels to it", async () => {
    const objects = new Map();
    const calls = [];
    const ns = {
      idFromName: (name) => ({ name }),
      get(id) {
        if (!objects.has(id.name)) objects.set(id.name, new AgentStateObject({ id }, {}));
        const object = objects.get(id.name);
        return {
          fetch: async (url, init) => {
            calls.push(JSON.parse(init.body).input?.body);
            return object.fetch(new Request(url, init));
          },
        };
      },
    };
    const gw = gateway();
    const env = { AGENTGUARD_STATE: ns };
    const small = '{"amount":250,"currency":"USD"}';
    const ok = await gw.fetch(await post("/v1/transfers", small), env, {});
    assert.equal(ok.status, 200, await ok.clone().text());
    const held = await gw.fetch(await post("/v1/transfers", '{"amount":250,"currency":"BTC"}'), env, {});
    assert.equal(held.status, 403);
    assert.match(gw.events.at(-1).reasons[0].message, /body \/currency is "BTC"/);
    // (The object's first call asks for the policy: the same request is sent twice.)
    assert.deepEqual(
      calls.filter((b, i) => b !== calls[i - 1]),
      [small, '{"amount":250,"currency":"BTC"}'],
    );
    assert.deepEqual(gw.got, [small]);
  });
});
