// Decision events in the real Workers runtime: a scripted sequence of agent
// requests goes through the gateway in workerd, and the events it emits —
// JSON lines on stdout (Workers Logs / Logpush) and data points to a Workers
// Analytics Engine dataset (workerd's `analyticsEngine` binding, which posts
// each point to a collector this test runs) — must match the requests made,
// one for one and in order. A policy's `log.outcomes` filter applies to both.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";

import { loadVectors, caseHeaders } from "../../tests/vectors/mint.mjs";
import { analyticsDataPoint } from "../src/node.js";
import { freePort, root, send, startOrigin, startWorkerd } from "./helpers.mjs";

const vectors = loadVectors();
const nowS = () => Math.floor(Date.now() / 1000);

/** A stand-in for the Analytics Engine service: collects the points workerd posts. */
async function startCollector() {
  const points = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      points.push(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      res.end("ok");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: server.address().port, points, close: () => new Promise((r) => server.close(r)) };
}

async function startAnalyticsGateway({ policyText, originPort, collectorPort }) {
  const port = await freePort();
  return startWorkerd({
    config: `${root}js/test/fixtures/analytics.capnp`,
    port,
    args: [
      "--experimental",
      "--socket-addr", `http=127.0.0.1:${port}`,
      "--external-addr", `origin=127.0.0.1:${originPort}`,
      "--external-addr", `collector=127.0.0.1:${collectorPort}`,
    ],
    env: { AGENTGUARD_POLICY: policyText },
  });
}

// workerd's Analytics Engine event: blobN / index1 as byte arrays, doubleN as numbers.
const text = (bytes) => Buffer.from(bytes ?? []).toString("utf8");
const fromWire = (p) => ({
  indexes: [text(p.index1)],
  blobs: Array.from({ length: 10 }, (_, i) => text(p[`blob${i + 1}`])),
  doubles: [p.double1, p.double2, p.double3],
});

/** The agent a case's token names: the current actor, else `client_id`, else `sub`. */
const agentOf = (c) => c.token && (c.token.claims.act?.sub ?? c.token.claims.client_id ?? c.token.claims.sub);
const normalised = (path) => new URL(path, "http://x").pathname;
const eventsIn = (logs) => logs.filter((l) => l.startsWith('{"v":1')).map((l) => JSON.parse(l));

async function waitFor(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("decision events in workerd: logs and Analytics Engine", () => {
  let origin;
  let collector;
  let gateway;
  const sent = []; // {case, status, seenByOrigin}

  before(async () => {
    [origin, collector] = await Promise.all([startOrigin(), startCollector()]);
    gateway = await startAnalyticsGateway({ policyText: vectors.policyText, originPort: origin.port, collectorPort: collector.port });
    // The script: every shared vector once, then the first (allowed) one twice more with fresh tokens.
    const script = [...vectors.cases, vectors.cases[0], vectors.cases[0]];
    for (const [i, c] of script.entries()) {
      const headers = { ...(await caseHeaders(c, vectors.keys, nowS(), 9000 + i)), host: c.request.host };
      const before = origin.seen.length;
      const res = await send(`${gateway.url}${c.request.path}`, { method: c.request.method, headers });
      sent.push({ c, status: res.status, forwarded: origin.seen.slice(before)[0] });
    }
  });

  after(async () => {
    await gateway?.stop();
    await Promise.all([origin?.close(), collector?.close()]);
  });

  test("one log event per request, in order, with what the request was and what was decided", () => {
    const events = eventsIn(gateway.logs);
    assert.equal(events.length, sent.length, gateway.logs.join("\n"));
    for (const [i, { c, status, forwarded }] of sent.entries()) {
      const e = events[i];
      const where = `request ${i} (${c.name})`;
      assert.equal(status, c.expect.status, where);
      assert.equal(e.decision, c.expect.decision, where);
      assert.equal(e.status, c.expect.status, where);
      assert.deepEqual(e.reasons, c.expect.reasons, where);
      assert.equal(e.method, c.request.method, where);
      assert.equal(e.path, normalised(c.request.path), where);
      assert.equal(e.host, c.request.host, where);
      assert.ok(Number.isInteger(e.duration_us) && e.duration_us >= 0, `${where}: duration_us ${e.duration_us}`);
      if (e.decision === "allow") {
        // What the origin was told is what the log says.
        assert.equal(e.agent.agent, agentOf(c), where);
        assert.equal(forwarded.headers["x-agentguard-agent"], e.agent.agent, where);
        assert.equal(forwarded.headers["x-agentguard-route"], e.route, where);
      } else {
        assert.equal(forwarded, undefined, `${where}: a refused request never reaches the origin`);
        // A refused request names an agent only if its token verified, and then the token's agent.
        if (e.agent) assert.equal(e.agent.agent, agentOf(c), where);
      }
    }
    // The repeated token hits the verified-token cache; fresh tokens do not.
    assert.equal(events.at(-1).cache_hit, false);
  });

  test("one Analytics Engine data point per event, with the documented layout", async () => {
    const events = eventsIn(gateway.logs);
    await waitFor(`${events.length} data points`, () => collector.points.length >= events.length);
    assert.equal(collector.points.length, events.length);
    const key = (p) => JSON.stringify(p);
    const got = collector.points.map(fromWire).map(key).sort();
    const want = events.map(analyticsDataPoint).map(key).sort();
    assert.deepEqual(got, want);
    // Spot-check the layout on the first request (an allowed EdDSA token).
    const first = fromWire(collector.points.find((p) => text(p.blob1) === "allow"));
    assert.equal(first.indexes[0], agentOf(vectors.cases[0]));
    assert.equal(first.blobs[3], "GET");
    assert.equal(first.doubles[0], 200);
    const refused = collector.points.map(fromWire).filter((p) => p.blobs[0] !== "allow");
    assert.equal(refused.length, sent.filter((s) => s.c.expect.decision !== "allow").length);
    assert.ok(refused.every((p) => p.blobs[1] !== ""), "every refusal carries its reason code");
    assert.ok(collector.points.every((p) => !JSON.stringify(p).includes("eyJ")), "no token in any data point");
  });

  test("the policy's log filter applies to both sinks: deny-only logs no allow", async () => {
    const policy = { ...vectors.policy, log: { outcomes: ["deny"] } };
    const before = collector.points.length;
    const gw = await startAnalyticsGateway({ policyText: JSON.stringify(policy), originPort: origin.port, collectorPort: collector.port });
    try {
      const allowed = vectors.cases[0];
      const denied = vectors.cases.find((c) => c.expect.decision === "deny" && c.expect.status === 401);
      for (const [i, c] of [allowed, denied, allowed].entries()) {
        const headers = { ...(await caseHeaders(c, vectors.keys, nowS(), 9500 + i)), host: c.request.host };
        const res = await send(`${gw.url}${c.request.path}`, { method: c.request.method, headers });
        assert.equal(res.status, c.expect.status);
      }
      await waitFor("one data point", () => collector.points.length >= before + 1);
      await new Promise((r) => setTimeout(r, 300)); // nothing else may arrive
      const events = eventsIn(gw.logs);
      assert.deepEqual(events.map((e) => e.decision), ["deny"]);
      assert.deepEqual(collector.points.slice(before).map((p) => text(p.blob1)), ["deny"]);
    } finally {
      await gw.stop();
    }
  });
});
