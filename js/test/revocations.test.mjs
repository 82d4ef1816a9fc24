// The policy's `revocation_list`, fetched by the JS package (js/src/revocations.js,
// AgentGuard in js/src/agentguard.js) from a list server on 127.0.0.1, in Node:
// fail closed before the first list (503 state_unavailable, Retry-After),
// listed tokens revoked, a changed list in force after `refresh` (fetched in
// the background, handed to waitUntil), ETag / 304, the list host down (the
// last list until max_stale, then 503), bad documents (the last good list
// stays, one log line), single-flight, engines sharing the isolate's cache,
// the operator stats, and the Durable Object's own engine. The guard's clock
// and the cache's are one fake clock, so no test sleeps through `refresh`.

import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";

import { AgentGuard, AgentStateObject, RevocationListCache, decideShared, toCoreRequest, withAgentGuard } from "../src/node.js";
import { Guard } from "../dist/agentguard.js";
import { signJwt } from "../../tests/vectors/mint.mjs";
import { generateKey, startRevocationListServer } from "./helpers.mjs";

const ISS = "https://sts.test";
const AUD = "https://api.test";
const T0 = Date.UTC(2026, 0, 1); // the fake clock's start (ms)

let key;
let server;
before(async () => {
  key = await generateKey("EdDSA", "k1");
  server = await startRevocationListServer({ jti: ["jti-listed"] });
});
after(() => server?.close());
beforeEach(() => Object.assign(server.state, { list: { jti: ["jti-listed"] }, raw: null, down: false, delayMs: 0 }));

function policy(extra = {}, list = {}) {
  return {
    realm: "api.test",
    issuers: [{ iss: ISS, audiences: [AUD], algorithms: ["EdDSA"], jwks: { keys: [key.publicJwk] }, max_lifetime: "1d" }],
    routes: [
      { id: "read", methods: ["GET"], path: "/v1/**", scopes: ["crm.read"] },
      { id: "agentguard-stats", methods: ["GET"], path: "/_agentguard/stats", scopes: ["agentguard.admin"] },
    ],
    revocation_list: { uri: server.url, refresh: "10s", max_stale: "1m", ...list },
    ...extra,
  };
}

// Tokens valid around the fake clock (a day either side).
const token = (jti, extra = {}) =>
  signJwt(key.privateJwk, {
    iss: ISS,
    aud: AUD,
    sub: "user:alice",
    client_id: "crm-agent",
    scope: "crm.read",
    iat: T0 / 1000 - 60,
    exp: T0 / 1000 + 86_000,
    jti,
    ...extra,
  });

/** A guard with its own cache, a fake clock shared by guard and cache, and captured log lines. */
function setup(options = {}) {
  const clock = { now: T0 };
  const logs = [];
  const log = (line) => logs.push(line);
  const cache = new RevocationListCache({ now: () => clock.now, log, ...options.cache });
  const guard = AgentGuard.createSync(options.policy ?? policy(), { revocationListCache: cache, log });
  const pending = [];
  const decide = async (tok, extra = {}) => {
    const headers = tok ? { authorization: `Bearer ${tok}` } : {};
    const request = new Request("https://api.test/v1/contacts/1", { headers });
    return guard.decide(request, { now: clock.now, waitUntil: (p) => pending.push(p), ...extra });
  };
  const settle = async () => {
    while (pending.length) await pending.shift();
  };
  return { clock, logs, cache, guard, decide, settle, pending };
}

const code = (d) => d.reasons[0]?.code;

describe("revocation_list in the JS package", () => {
  test("before the list is reachable: 503 state_unavailable, Retry-After = refresh, a log line; then it loads", async () => {
    server.state.down = true;
    const hits = server.state.hits;
    const { clock, logs, decide, guard } = setup();
    const t = await token("jti-a");
    let d = await decide(t);
    assert.equal(server.state.hits, hits + 1, "the first decision waited for one fetch");
    assert.equal(d.status, 503);
    assert.equal(code(d), "state_unavailable");
    assert.equal(d.response.headers["retry-after"], "10");
    assert.match(d.reasons[0].message, new RegExp(`revocation list from \`${server.url}\` has not been loaded yet`));
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0], new RegExp(`^agentguard: revocation list ${server.url}: fetch failed \\(HTTP 503\\); none loaded yet`));
    // Within the back-off (min(10 s, refresh)) the host is not asked again.
    d = await decide(t);
    assert.equal(code(d), "state_unavailable");
    assert.equal(server.state.hits, hits + 1);
    assert.equal(guard.stats().revocationList.lastError, "HTTP 503");

    server.state.down = false;
    clock.now += 10_000;
    d = await decide(t);
    assert.equal(d.decision, "allow", JSON.stringify(d.reasons));
    assert.equal(server.state.hits, hits + 2);
    const status = guard.revocationListStatus();
    assert.deepEqual(
      { ...status, fetches: undefined },
      {
        uri: server.url,
        refreshS: 10,
        maxStaleS: 60,
        signed: false,
        loadedAtMs: clock.now,
        entries: 1,
        fetches: undefined,
        notModified: 0,
        lastError: null,
        lastErrorAtMs: null,
      },
    );
    assert.equal(status.fetches, 2);
    // What the list server saw: JSON asked for.
    assert.equal(server.state.requests.at(-1).accept, "application/json");
  });

  test("a signed list (revocation_list.jwks, signed with WebCrypto here) is verified by the core; its age counts from its iat", async () => {
    const signer = await generateKey("ES256", "lists-1");
    const signedPolicy = policy({}, { jwks: { keys: [signer.publicJwk] } });
    const sign = (list, iat, jwk = signer.privateJwk) => signJwt(jwk, { ...list, iat }, "revocation-list+jwt");
    server.state.raw = await sign({ jti: ["jti-listed"] }, T0 / 1000 - 20);
    const { clock, logs, decide, settle, guard } = setup({ policy: signedPolicy });
    assert.equal(code(await decide(await token("jti-listed"))), "revoked_token");
    // The status shows what the core counts the list's age from: its iat, not the fetch.
    const status = guard.revocationListStatus();
    assert.equal(status.signed, true);
    assert.equal(status.loadedAtMs, T0 - 20_000);
    assert.equal((await decide(await token("jti-ok"))).decision, "allow");
    // The host keeps serving the same signed list: fetched every `refresh`, but
    // no fresher. 1 min (max_stale) after its iat, token requests get 503.
    clock.now += 35_000;
    assert.equal((await decide(await token("jti-ok"))).decision, "allow");
    clock.now += 10_000;
    let d = await decide(await token("jti-ok"));
    assert.equal(d.status, 503);
    assert.match(d.reasons[0].message, /was signed 65 s ago, longer than `revocation_list.max_stale` \(60 s\)/);
    // The signer signs again: the next fetch brings it in.
    server.state.raw = await sign({ jti: [] }, clock.now / 1000);
    clock.now += 10_000;
    await decide(await token("jti-ok")); // starts the background refresh
    await settle();
    d = await decide(await token("jti-listed"));
    assert.equal(d.decision, "allow", JSON.stringify(d.reasons));
    // A forged list (another key, same kid) and the plain form are refused: the last good one stays.
    const forger = await generateKey("ES256", "lists-1");
    for (const raw of [await sign({ jti: ["jti-ok"] }, clock.now / 1000, forger.privateJwk), JSON.stringify({ jti: ["jti-ok"] })]) {
      server.state.raw = raw;
      clock.now += 10_000;
      await decide(await token("jti-x"));
      await settle();
      assert.equal((await decide(await token("jti-ok"))).decision, "allow", "the forged list is not in force");
    }
    assert.ok(logs.some((l) => /revocation list refused.*signature: /.test(l)), logs.join("\n"));
    assert.ok(logs.some((l) => /revocation list refused.*expected a signed list/.test(l)), logs.join("\n"));
  });

  test("a listed jti is revoked (401 revoked_token), others are allowed", async () => {
    server.state.list = { jti: ["jti-listed"] };
    const { decide } = setup();
    const revoked = await decide(await token("jti-listed"));
    assert.equal(revoked.decision, "revoked");
    assert.equal(revoked.status, 401);
    assert.equal(code(revoked), "revoked_token");
    const ok = await decide(await token("jti-other"));
    assert.equal(ok.decision, "allow", JSON.stringify(ok.reasons));
    // A request without a token needs no list to be refused as usual.
    const none = await decide(undefined);
    assert.equal(none.status, 401);
    assert.equal(code(none), "credential_missing");
  });

  test("a changed list is in force after `refresh`: fetched in the background, via waitUntil; a 304 moves the load time", async () => {
    server.state.list = { jti: ["jti-listed"] };
    const { clock, decide, settle, pending, guard } = setup();
    const fresh = await token("jti-fresh");
    assert.equal((await decide(fresh)).decision, "allow");
    const first = guard.revocationListStatus().loadedAtMs;

    // Not yet `refresh` old: no fetch at all.
    const hits = server.state.hits;
    clock.now += 9_000;
    assert.equal((await decide(fresh)).decision, "allow");
    assert.equal(pending.length, 0);
    assert.equal(server.state.hits, hits);

    // Unchanged after 10 s: a conditional request, 304, and the load time moves.
    clock.now += 1_000;
    assert.equal((await decide(fresh)).decision, "allow");
    assert.equal(pending.length, 1, "the background refresh went to waitUntil");
    await settle();
    assert.equal(server.state.requests.at(-1).ifNoneMatch !== undefined, true, "If-None-Match sent");
    assert.equal(server.state.hits, hits + 1);
    let status = guard.revocationListStatus();
    assert.equal(status.notModified, 1);
    assert.equal(status.loadedAtMs, first + 10_000);

    // The list changes: the next refresh brings the new entry in.
    server.state.list = { jti: ["jti-listed", "jti-fresh"], agents: ["rogue-agent"] };
    clock.now += 10_000;
    const during = await decide(fresh);
    assert.equal(during.decision, "allow", "the decision that starts a refresh does not wait for it");
    await settle();
    const after = await decide(fresh);
    assert.equal(after.decision, "revoked");
    assert.equal(code(after), "revoked_token");
    status = guard.revocationListStatus();
    assert.equal(status.entries, 3);
    assert.equal(status.loadedAtMs, clock.now);
  });

  test("a 304 confirms the list in force without parsing it again, and its age starts over", async (t) => {
    // Every call into the engine's two list entry points, counted (the calls still go through).
    const set = t.mock.method(Guard.prototype, "setListedRevocations");
    const confirm = t.mock.method(Guard.prototype, "confirmListedRevocations");
    server.state.list = { jti: ["jti-listed"] };
    const { clock, logs, decide, settle, pending, guard } = setup();
    const [listed, other] = [await token("jti-listed"), await token("jti-other")];
    assert.equal((await decide(other)).decision, "allow");
    assert.equal(set.mock.callCount(), 1, "the first list is parsed");

    // 50 s on (refresh 10 s, max_stale 1 m): a background refresh, answered 304.
    clock.now += 50_000;
    assert.equal((await decide(other)).decision, "allow");
    await settle();
    assert.equal(guard.revocationListStatus().notModified, 1);
    assert.equal(set.mock.callCount(), 1, "a 304 does not hand the text to the engine again");
    assert.equal(confirm.mock.callCount(), 1);
    assert.deepEqual(confirm.mock.calls[0].arguments, [clock.now]);
    assert.equal(guard.revocationListStatus().loadedAtMs, clock.now);
    assert.equal(guard.revocationListStatus().entries, 1);

    // The host goes down. 90 s after the list was first fetched (past max_stale
    // counted from then, 40 s after the 304): the confirmed list is in force,
    // the decision does not wait for a fetch, and the failed refresh is logged.
    server.state.down = true;
    clock.now += 40_000;
    const d = await decide(other);
    assert.equal(d.decision, "allow", JSON.stringify(d.reasons));
    assert.equal(pending.length, 1, "a background refresh, not one awaited before deciding");
    assert.equal((await decide(listed)).decision, "revoked");
    await settle();
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0], /refresh failed \(HTTP 503\); the list fetched 40 s ago stays in force until it is older than `max_stale` \(60 s\)/);
    // ... until max_stale counted from the 304: 61 s after it, 503.
    clock.now += 21_000;
    assert.equal(code(await decide(other)), "state_unavailable");

    // A changed list (a new generation) is parsed, as before.
    server.state.down = false;
    server.state.list = { jti: ["jti-listed", "jti-other"] };
    clock.now += 10_000;
    assert.equal((await decide(other)).decision, "revoked");
    assert.equal(set.mock.callCount(), 2);
    assert.equal(confirm.mock.callCount(), 1);
    assert.equal(guard.revocationListStatus().entries, 2);
  });

  test("after the cache's clear(), a different list of the same generation number is parsed, not confirmed", async () => {
    server.state.list = { jti: ["jti-listed"] };
    const { clock, cache, decide, settle, guard } = setup();
    const other = await token("jti-other");
    assert.equal((await decide(other)).decision, "allow");
    cache.clear();
    server.state.list = { jti: ["jti-other"] };
    clock.now += 10_000;
    await decide(other);
    await settle();
    assert.equal(cache.stats(server.url).generation, 1, "the generations started over");
    assert.equal((await decide(other)).decision, "revoked");
    assert.equal(guard.revocationListStatus().entries, 1);
  });

  test("the list host down: the last list holds until max_stale, then 503; back up, it loads again", async () => {
    server.state.list = { jti: ["jti-listed"] };
    const { clock, logs, decide, settle } = setup();
    const listed = await token("jti-listed");
    const other = await token("jti-other");
    assert.equal((await decide(other)).decision, "allow");

    server.state.down = true;
    clock.now += 30_000;
    assert.equal((await decide(other)).decision, "allow");
    await settle();
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0], new RegExp(`^agentguard: revocation list ${server.url}: refresh failed \\(HTTP 503\\); the list fetched 30 s ago stays in force until it is older than \`max_stale\` \\(60 s\\)$`));
    clock.now += 29_000; // 59 s old: still within max_stale (1 m); the back-off is over, another try
    assert.equal((await decide(listed)).decision, "revoked");
    assert.equal((await decide(other)).decision, "allow");
    await settle();
    assert.equal(logs.length, 2, logs.join("\n"));
    assert.match(logs[1], /refresh failed \(HTTP 503\); the list fetched 59 s ago/);

    clock.now += 2_000; // 61 s: past max_stale (the last attempt was 2 s ago: within its back-off)
    const d = await decide(other);
    assert.equal(d.status, 503);
    assert.equal(code(d), "state_unavailable");
    assert.equal(d.response.headers["retry-after"], "10");
    assert.match(d.reasons[0].message, /was loaded 61 s ago, longer than `revocation_list.max_stale` \(60 s\) allows/);
    clock.now += 10_000; // 71 s: past the back-off; the fetch before deciding fails too
    const hits = server.state.hits;
    assert.equal(code(await decide(other)), "state_unavailable");
    assert.equal(server.state.hits, hits + 1, "a stale list is fetched before deciding");
    assert.match(logs.at(-1), /refresh failed \(HTTP 503\); the list fetched 71 s ago is older than `max_stale` \(60 s\), so requests with a token get 503/);

    server.state.down = false;
    clock.now += 10_000; // past the back-off: fetched before deciding, and in force at once
    assert.equal((await decide(other)).decision, "allow");
    assert.equal((await decide(listed)).decision, "revoked");
  });

  test("a list past max_stale after an idle spell is fetched before deciding, not answered 503", async () => {
    const { clock, decide, pending } = setup();
    assert.equal((await decide(await token("jti-late"))).decision, "allow");
    server.state.list = { jti: ["jti-late"] };
    clock.now += 3_600_000;
    const d = await decide(await token("jti-late"));
    assert.equal(d.decision, "revoked", JSON.stringify(d.reasons));
    assert.equal(pending.length, 0, "awaited, not in the background");
  });

  test("a bad document leaves the last good list in force, with one log line per attempt", async () => {
    server.state.list = { jti: ["jti-listed"] };
    const { clock, logs, decide, settle, guard } = setup();
    const listed = await token("jti-listed");
    assert.equal((await decide(listed)).decision, "revoked");
    const cases = [
      ['{"jti": ["a", 4]}', "jti[1]: invalid type: integer `4`, expected a string"],
      ['{"jti": [], "users": ["x"]}', "users: unknown field `users`"],
      ["<html>oops</html>", "the revocation list from"],
    ];
    for (const [raw, expected] of cases) {
      server.state.raw = raw;
      clock.now += 10_000;
      await decide(listed);
      await settle();
      const hits = server.state.hits;
      const d = await decide(listed);
      assert.equal(d.decision, "revoked", `the last good list stays after ${raw}`);
      assert.equal(server.state.hits, hits, "a refused document is not fetched again per request");
      assert.equal(logs.length, 1, logs.join("\n"));
      assert.ok(
        logs[0].startsWith("agentguard: revocation list refused, the last good list (1 entries) stays in force: "),
        logs[0],
      );
      assert.ok(logs[0].includes(`\`${server.url}\``) && logs[0].includes(expected), logs[0]);
      assert.ok(guard.revocationListStatus().lastError.includes(expected));
      logs.length = 0;
    }
    // Too large, not UTF-8: refused before the engine sees them.
    for (const [raw, expected] of [
      [`{"jti": ["${"x".repeat(4 * 1024 * 1024)}"]}`, "the list is larger than 4194304 bytes"],
      [Buffer.from([0x7b, 0xff, 0x7d]), "the list is not UTF-8"],
    ]) {
      server.state.raw = raw;
      clock.now += 10_000;
      await decide(listed);
      await settle();
      assert.equal((await decide(listed)).decision, "revoked");
      assert.equal(logs.length, 1, logs.join("\n"));
      assert.match(logs[0], new RegExp(`revocation list ${server.url}: refresh failed \\(${expected}\\)`));
      logs.length = 0;
    }
    // The list age still counts from the good one: 5 failed refreshes, 50 s.
    assert.equal(guard.revocationListStatus().loadedAtMs, T0);
    server.state.raw = null;
    clock.now += 10_000;
    await decide(listed);
    await settle();
    assert.equal(guard.revocationListStatus().loadedAtMs, clock.now);
    assert.equal(guard.revocationListStatus().lastError, null);
  });

  test("single-flight: 20 concurrent first decisions cost one fetch", async () => {
    server.state.list = { jti: ["jti-listed"] };
    server.state.delayMs = 100;
    try {
      const { decide } = setup();
      const hits = server.state.hits;
      const [listed, other] = [await token("jti-listed"), await token("jti-other")];
      const decisions = await Promise.all(Array.from({ length: 20 }, (_, i) => decide(i % 2 ? listed : other)));
      assert.equal(server.state.hits, hits + 1);
      assert.deepEqual(
        decisions.map((d) => d.decision),
        Array.from({ length: 20 }, (_, i) => (i % 2 ? "revoked" : "allow")),
      );
    } finally {
      server.state.delayMs = 0;
    }
  });

  test("guards of one isolate share the list: a second engine loads it from the cache, as old as it is", async () => {
    server.state.list = { sub: ["user:mallory"] };
    const { clock, cache, decide } = setup();
    assert.equal((await decide(await token("j"))).decision, "allow");
    const hits = server.state.hits;
    clock.now += 5_000;
    const second = await AgentGuard.create(policy({ realm: "other" }), { revocationListCache: cache, log: () => {} });
    assert.equal(server.state.hits, hits, "no second fetch");
    assert.equal(second.revocationListStatus().loadedAtMs, T0, "loaded with the time the list was fetched");
    const d = await second.decide(new Request("https://api.test/v1/x", { headers: { authorization: `Bearer ${await token("j", { sub: "user:mallory" })}` } }), {
      now: clock.now,
    });
    assert.equal(d.decision, "revoked");
    assert.equal(code(d), "revoked_subject");
  });

  test("withAgentGuard hands the background refresh to ctx.waitUntil; /_agentguard/stats shows the list", async () => {
    server.state.list = { jti: ["jti-listed"] };
    const clock = { now: T0 };
    const cache = new RevocationListCache({ now: () => clock.now, log: () => {} });
    const fetch = withAgentGuard(async () => new Response("origin"), {
      policy: policy(),
      revocationListCache: cache,
      statsRoute: "agentguard-stats",
      context: () => ({ now: clock.now }),
      onDecision: null,
      log: () => {},
    });
    const waited = [];
    const ctx = { waitUntil: (p) => waited.push(p) };
    const call = async (path, tok) =>
      fetch(new Request(`https://api.test${path}`, { headers: { authorization: `Bearer ${tok}` } }), {}, ctx);
    const admin = await token("admin", { scope: "agentguard.admin" });
    assert.equal((await call("/v1/a", await token("jti-other"))).status, 200);
    assert.equal((await call("/v1/a", await token("jti-listed"))).status, 401);
    clock.now += 10_000;
    assert.equal((await call("/v1/a", await token("jti-other"))).status, 200);
    assert.equal(waited.length, 1);
    await Promise.all(waited);
    const stats = await (await call("/_agentguard/stats", admin)).json();
    assert.equal(stats.scope, "isolate");
    assert.equal(stats.stats.revocationList.uri, server.url);
    assert.equal(stats.stats.revocationList.loadedAtMs, clock.now);
    assert.equal(stats.stats.revocationList.entries, 1);
  });

  test("Durable Object mode: the agent's object loads the list into its own engine", async () => {
    // The objects use the module-scope cache and the real clock.
    server.state.list = { jti: ["jti-do-listed"] };
    const objects = new Map();
    let fetchedBy = 0;
    const ns = {
      idFromName: (name) => ({ name }),
      get(id) {
        if (!objects.has(id.name)) objects.set(id.name, new AgentStateObject({ id }, {}));
        const object = objects.get(id.name);
        return { fetch: async (url, init) => object.fetch(new Request(url, init)) };
      },
    };
    // The gateway's own guard never loads the list here: every request names an agent.
    const text = JSON.stringify(policy({ realm: "durable" }, { refresh: "1m", max_stale: "1h" }));
    const gateway = AgentGuard.createSync(text, { revocationListCache: new RevocationListCache({ fetch: () => (fetchedBy++, Promise.reject(new Error("no"))) }) });
    const now = Math.floor(Date.now() / 1000);
    const live = (jti) => signJwt(key.privateJwk, { iss: ISS, aud: AUD, sub: "user:alice", client_id: "do-agent", scope: "crm.read", iat: now, exp: now + 300, jti });
    const decide = async (tok) =>
      decideShared(ns, gateway, toCoreRequest(new Request("https://api.test/v1/a", { headers: { authorization: `Bearer ${tok}` } })), text, () => {});
    const revoked = await decide(await live("jti-do-listed"));
    assert.equal(revoked.decision, "revoked", JSON.stringify(revoked.reasons));
    assert.equal(code(revoked), "revoked_token");
    assert.equal((await decide(await live("jti-do-other"))).decision, "allow");
    assert.equal(fetchedBy, 0, "decided in the object, with the object's list");
    assert.equal(gateway.revocationListStatus().loadedAtMs, null);
    // The object's stats call reports its engine's list.
    const stub = ns.get(ns.idFromName("do-agent"));
    const { createHash } = await import("node:crypto");
    const hash = createHash("sha256").update(text).digest("hex");
    const res = await stub.fetch("https://agentguard-state.internal/stats", {
      method: "POST",
      body: JSON.stringify({ agent: "do-agent", policy_hash: hash }),
    });
    const out = await res.json();
    assert.equal(out.revocationList.uri, server.url);
    assert.equal(out.revocationList.entries, 1);
  });
});
