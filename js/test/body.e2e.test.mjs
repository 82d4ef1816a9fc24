// Approval conditions on the request body end to end in the real Workers
// runtime: the gateway (js/worker/ in workerd, and the Durable Object
// gateway of fixtures/durable.capnp, which decides in the agent's object) in
// front of a local origin that records the exact bytes it received. A small
// transfer goes through with its body unchanged; a large one needs an
// approval for its action digest (which covers the body); the approved
// request goes through once; replaying the approval or swapping the body is
// refused; bodies the core cannot read (not JSON, not UTF-8, over 64 KiB) need an
// approval; a body over the 1 MiB read limit is refused 413 and the gateway
// keeps serving.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";

import { freePort, root, send, startGateway, startWorkerd } from "./helpers.mjs";
import { actionDigest, transferSetup } from "./fixtures/transfer.mjs";

/** An origin that answers 200 with what it got, and records each request's exact body bytes. */
async function startBodyOrigin() {
  const seen = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    seen.push({ method: req.method, url: req.url, headers: req.headers, body });
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ got: body.length }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: server.address().port, seen, close: () => new Promise((r) => server.close(r)) };
}

describe("approval conditions on the body, in workerd", () => {
  let s;
  let origin;
  const gateways = {};

  before(async () => {
    s = await transferSetup();
    origin = await startBodyOrigin();
    const durablePort = await freePort();
    const [plain, durable] = await Promise.all([
      startGateway({ policyText: s.policyText, originPort: origin.port }),
      startWorkerd({
        config: `${root}js/test/fixtures/durable.capnp`,
        port: durablePort,
        args: [
          "--socket-addr", `a=127.0.0.1:${durablePort}`,
          "--socket-addr", `b=127.0.0.1:${await freePort()}`,
          "--external-addr", `origin=127.0.0.1:${origin.port}`,
        ],
        env: { AGENTGUARD_POLICY: s.policyText },
      }),
    ]);
    gateways.plain = plain;
    gateways.durable = durable;
  });
  after(async () => {
    await Promise.all(Object.values(gateways).map((g) => g.stop()));
    await origin?.close();
  });

  // `refusedUnread`: a body the gateway refuses on its `Content-Length`
  // alone (413) goes with `Expect: 100-continue` (see `send`).
  const transfer = async (gw, body, { approvalToken, path = "/v1/transfers", refusedUnread = false } = {}) =>
    send(`${gw.url}${path}`, {
      expectContinue: refusedUnread,
      method: "POST",
      headers: {
        host: "api.test",
        "content-type": "application/json",
        authorization: `Bearer ${await s.accessToken()}`,
        ...(approvalToken ? { "x-agent-approval": approvalToken } : {}),
      },
      body,
    });
  const problem = (res) => {
    assert.match(res.headers["content-type"], /application\/problem\+json/);
    return JSON.parse(res.text);
  };

  for (const name of ["plain", "durable"]) {
    test(`${name} gateway: the approval loop on the body`, async () => {
      const gw = gateways[name];
      const seen = origin.seen.length;

      const small = '{"amount":250,"currency":"EUR"}';
      const ok = await transfer(gw, small);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(origin.seen.length, seen + 1);
      assert.equal(origin.seen.at(-1).body.toString("utf8"), small, "the origin got the body unchanged");
      assert.equal(origin.seen.at(-1).headers["x-agentguard-agent"], "spiffe://test/agents/payer");

      const large = '{"amount":1500,"currency":"EUR"}';
      const held = await transfer(gw, large);
      assert.equal(held.status, 403, held.text);
      const p = problem(held);
      assert.equal(p.decision, "approval_required");
      assert.equal(p.reason, "approval_required");
      assert.equal(p.approval_endpoint, "https://approvals.test/bc-authorize");
      assert.equal(p.action_digest, actionDigest({ path: "/v1/transfers", body: large }));
      assert.equal(origin.seen.length, seen + 1);

      const approved = await s.approval(p.action_digest);
      const through = await transfer(gw, large, { approvalToken: approved });
      assert.equal(through.status, 200, through.text);
      assert.equal(origin.seen.length, seen + 2);
      assert.equal(origin.seen.at(-1).body.toString("utf8"), large);

      const replayed = await transfer(gw, large, { approvalToken: approved });
      assert.equal(replayed.status, 403, replayed.text);
      assert.equal(problem(replayed).reason, "approval_replayed");

      const swapped = await transfer(gw, '{"amount":150000,"currency":"EUR"}', {
        approvalToken: await s.approval(p.action_digest),
      });
      assert.equal(swapped.status, 403, swapped.text);
      assert.equal(problem(swapped).reason, "approval_digest_mismatch");
      assert.equal(origin.seen.length, seen + 2, "nothing refused reached the origin");
    });

    test(`${name} gateway: bodies agentguard cannot read need an approval; too long ones are refused`, async () => {
      const gw = gateways[name];
      const seen = origin.seen.length;

      const form = "amount=5&currency=EUR";
      const notJson = await transfer(gw, form);
      assert.equal(notJson.status, 403, notJson.text);
      assert.equal(problem(notJson).reason, "approval_required");
      assert.equal(problem(notJson).action_digest, actionDigest({ path: "/v1/transfers", body: form }));

      const latin1 = Buffer.from('{"amount":5,"currency":"EUR","memo":"caf\xe9"}', "latin1");
      const notUtf8 = await transfer(gw, latin1);
      assert.equal(notUtf8.status, 403, notUtf8.text);
      assert.equal(problem(notUtf8).action_digest, actionDigest({ path: "/v1/transfers", body: latin1 }));

      // Over the core's 64 KiB: hashed (the approval binds to it), not read.
      const long = JSON.stringify({ amount: 5, currency: "EUR", memo: "m".repeat(100 * 1024) });
      const over = await transfer(gw, long);
      assert.equal(over.status, 403, over.text);
      const p = problem(over);
      assert.equal(p.reason, "approval_required");
      assert.equal(p.action_digest, actionDigest({ path: "/v1/transfers", body: long }));
      const approvedLong = await transfer(gw, long, { approvalToken: await s.approval(p.action_digest) });
      assert.equal(approvedLong.status, 200, approvedLong.text);
      assert.equal(origin.seen.length, seen + 1);
      assert.ok(origin.seen.at(-1).body.equals(Buffer.from(long)), "the origin got the long body unchanged");

      // Over the 1 MiB read limit: refused, on both kinds of route.
      const huge = JSON.stringify({ amount: 5, currency: "EUR", memo: "h".repeat(2 * 1024 * 1024) });
      for (const path of ["/v1/transfers", "/v1/payments"]) {
        const tooLong = await transfer(gw, huge, { path, refusedUnread: true });
        assert.equal(tooLong.status, 413, tooLong.text);
        const q = problem(tooLong);
        assert.equal(q.reason, "request_invalid");
        assert.match(q.detail, /longer than the 1048576 bytes/);
      }
      assert.equal(origin.seen.length, seen + 1);

      // The gateway still serves, and an ordinary route passes any body through unread.
      const fine = await transfer(gw, '{"amount":1,"currency":"USD"}');
      assert.equal(fine.status, 200, fine.text);
      const notes = await transfer(gw, huge, { path: "/v1/notes" });
      assert.equal(notes.status, 200, notes.text);
      assert.equal(origin.seen.at(-1).body.length, huge.length);
    });
  }

  test("a high-risk route's approval binds to the body without AGENTGUARD_HASH_BODY", async () => {
    const a = problem(await transfer(gateways.plain, '{"invoice":42}', { path: "/v1/payments" }));
    const b = problem(await transfer(gateways.plain, '{"invoice":43}', { path: "/v1/payments" }));
    assert.equal(a.reason, "approval_required");
    assert.equal(a.action_digest, actionDigest({ path: "/v1/payments", body: '{"invoice":42}' }));
    assert.notEqual(a.action_digest, b.action_digest);
  });
});
