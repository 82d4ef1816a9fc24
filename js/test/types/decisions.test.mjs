// What the guard really returns, checked against the declared types: the
// TypeScript compiler reads js/src/index.d.ts and every decision (each
// outcome, with identity, approval, rate limit, breaker trip, trace and event
// extras), `stats()`, `suspendedAgents()`, `endpoints`, `remoteIssuers` and
// `checkPolicy()` problems are walked against their interface: no undeclared
// field (unless the type has an index signature), every required field
// present, strings, numbers, booleans and literal unions as declared. So
// index.d.ts cannot drift from the objects the core and the shim build.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { AgentGuard, RevocationListCache, checkPolicy, mint } from "agentguard";
import { loadVectors } from "../../../tests/vectors/mint.mjs";

const dts = fileURLToPath(new URL("../../src/index.d.ts", import.meta.url));
const program = ts.createProgram([dts], {
  strict: true,
  noEmit: true,
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
  types: [],
});
const checker = program.getTypeChecker();
const declared = new Map();
ts.forEachChild(program.getSourceFile(dts), (node) => {
  const named = ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node) || ts.isClassDeclaration(node);
  if ((named || ts.isFunctionDeclaration(node)) && node.name) {
    declared.set(node.name.text, checker.getTypeAtLocation(node.name));
  }
});
function declaredType(name) {
  const t = declared.get(name);
  assert.ok(t, `index.d.ts declares ${name}`);
  return t;
}
// The declared type of a member of class AgentGuard (a method's return type).
function returnOf(member) {
  const prop = declaredType("AgentGuard").getProperty(member);
  assert.ok(prop, `AgentGuard.${member} is declared`);
  const t = checker.getTypeOfSymbol(prop);
  const sig = t.getCallSignatures()[0];
  return sig ? checker.getReturnTypeOfSignature(sig) : t;
}
// The declared return type of an exported function.
function returnOfFunction(name) {
  const sig = declaredType(name).getCallSignatures()[0];
  assert.ok(sig, `${name} is a function`);
  return checker.getReturnTypeOfSignature(sig);
}

const F = ts.TypeFlags;
// Walks `value` against type `type`; returns the mismatches as "path: what".
function conform(value, type, path = "$", out = []) {
  const show = () => checker.typeToString(type);
  const fail = (what) => (out.push(`${path}: ${what}`), out);
  const expect = (ok, what) => (ok ? out : fail(`${JSON.stringify(value)} is not ${what}`));
  if (type.flags & (F.Any | F.Unknown)) return out;
  if (type.isUnion()) {
    const errors = type.types.map((member) => conform(value, member, path, []));
    if (errors.some((e) => e.length === 0)) return out;
    // The member that got furthest (a nested mismatch) explains it best.
    const nested = errors.find((e) => e.some((line) => !line.startsWith(`${path}: `)));
    out.push(...(nested ?? []));
    return expect(false, show());
  }
  if (type.flags & F.Undefined) return expect(value === undefined, "undefined");
  if (type.flags & F.Null) return expect(value === null, "null");
  if (type.isStringLiteral() || type.isNumberLiteral()) return expect(value === type.value, show());
  if (type.flags & F.BooleanLiteral) return expect(value === (show() === "true"), show());
  if (type.flags & F.String) return expect(typeof value === "string", "a string");
  if (type.flags & F.Number) return expect(typeof value === "number", "a number");
  if (type.flags & F.Boolean) return expect(typeof value === "boolean", "a boolean");
  if (checker.isArrayType(type) || checker.isTupleType(type)) {
    if (!Array.isArray(value)) return expect(false, show());
    const args = checker.getTypeArguments(type);
    value.forEach((v, i) => conform(v, checker.isTupleType(type) ? args[i] : args[0], `${path}[${i}]`, out));
    return out;
  }
  if (type.flags & F.Object || type.isIntersection()) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return expect(false, show());
    const props = new Map(checker.getPropertiesOfType(type).map((p) => [p.name, p]));
    const index = checker.getIndexInfoOfType(type, ts.IndexKind.String);
    for (const [name, p] of props) {
      if (name in value) conform(value[name], checker.getTypeOfSymbol(p), `${path}.${name}`, out);
      else if (!(p.flags & ts.SymbolFlags.Optional)) out.push(`${path}.${name}: required by ${show()}, missing`);
    }
    for (const name of Object.keys(value)) {
      if (props.has(name)) continue;
      if (index) conform(value[name], index.type, `${path}.${name}`, out);
      else out.push(`${path}.${name}: not declared in ${show()}`);
    }
    return out;
  }
  return fail(`unhandled type ${show()}`);
}
function assertConforms(value, type, what) {
  const problems = conform(value, type);
  assert.deepEqual(problems, [], `${what} does not match index.d.ts:\n  ${problems.join("\n  ")}`);
}

// ---------------------------------------------------------------------------

const vectors = loadVectors();
const policy = structuredClone(vectors.policy);
policy.routes.unshift({ id: "read-contact", methods: ["GET"], path: "/v1/contacts/{id}", scopes: ["crm.read"] });
policy.limits = [{ id: "drafts", per: "agent", rate: "1/1m", burst: 1, routes: ["draft-email"] }];
policy.circuit_breaker = { window: "1m", max_requests: 8, cooldown: "5m" };
policy.log = { claims: ["client_id"], headers: ["user-agent"] };

const now = Math.floor(Date.now() / 1000);
function token(agent, scope, extra = {}) {
  return mint(vectors.keys.ed25519, {
    iss: "https://sts.test",
    aud: "https://api.test",
    sub: "user:alice",
    client_id: "crm-agent",
    act: { sub: agent },
    scope,
    iat: now - 5,
    exp: now + 120,
    jti: `jti-${Math.random()}`,
    ...extra,
  });
}
function request(path, bearer, method = "GET") {
  const headers = { "user-agent": "types-test/1" };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  return new Request(`https://api.test${path}`, { method, headers });
}

test("every decision, and the guard's other results, match index.d.ts", async () => {
  const guard = await AgentGuard.create(policy, { trace: true, log: () => {} });
  const bot = "spiffe://test/agents/crm-bot";
  const decisions = {
    allow: await guard.decide(request("/v1/contacts/42", token(bot, "crm.read")), { clientIp: "10.0.0.1" }),
    missing: await guard.decide(request("/v1/contacts/42")),
    expired: await guard.decide(request("/v1/contacts/42", token(bot, "crm.read", { iat: now - 600, exp: now - 300 }))),
    draft: await guard.decide(request("/v1/drafts", token(bot, "mail.draft"), "POST")),
    limited: await guard.decide(request("/v1/drafts", token(bot, "mail.draft"), "POST")),
    approval: await guard.decide(request("/v1/payments", token(bot, "payments.write"), "POST")),
    revokedAgent: await guard.decide(request("/v1/contacts/42", token("spiffe://test/agents/rogue", "crm.read"))),
  };
  // A burst trips the circuit breaker: a `revoked` decision with a `breaker` event.
  const burst = token("spiffe://test/agents/burst-bot", "crm.read");
  for (let i = 0; i < 20 && !decisions.tripped; i++) {
    const d = await guard.decide(request("/v1/contacts/1", burst));
    if (d.event.breaker) decisions.tripped = d;
  }

  // The scenarios happened (so the walk below covers those shapes).
  assert.equal(decisions.allow.decision, "allow");
  assert.deepEqual(decisions.allow.params, { id: "42" });
  assert.ok(decisions.allow.identity?.jti && decisions.allow.identity.actors.length === 1);
  assert.ok(decisions.allow.trace.length > 0 && Object.keys(decisions.allow.forward_headers).length > 0);
  assert.deepEqual(decisions.allow.event.claims, { client_id: "crm-agent" });
  assert.deepEqual(decisions.allow.event.headers, { "user-agent": "types-test/1" });
  assert.equal(decisions.missing.decision, "deny");
  assert.equal(decisions.expired.decision, "deny");
  assert.equal(decisions.draft.decision, "allow");
  assert.equal(decisions.limited.event.limit, "drafts");
  assert.equal(decisions.approval.decision, "approval_required");
  assert.ok(decisions.approval.approval);
  assert.equal(decisions.revokedAgent.decision, "revoked");
  assert.equal(decisions.tripped?.decision, "revoked", "the breaker tripped");

  const Decision = declaredType("Decision");
  for (const [name, d] of Object.entries(decisions)) assertConforms(d, Decision, `decision ${name}`);

  const suspended = guard.suspendedAgents();
  assert.equal(suspended.length, 1);
  assertConforms(suspended, returnOf("suspendedAgents"), "suspendedAgents()");
  const stats = guard.stats();
  assert.ok(Object.keys(stats.agents).length >= 2);
  assertConforms(stats, returnOf("stats"), "stats()");
  assertConforms(guard.endpoints, returnOf("endpoints"), "endpoints");
  assertConforms(guard.remoteIssuers, returnOf("remoteIssuers"), "remoteIssuers");
  const keys = [...vectors.policy.issuers[0].jwks.keys, { kty: "oct", k: "AAAA" }];
  const skipped = guard.setIssuerKeys("https://sts.test", { keys });
  assert.equal(skipped.length, 1);
  assertConforms(skipped, returnOf("setIssuerKeys"), "setIssuerKeys()");
  guard.free();

  const problems = checkPolicy('{"issuers": [], "routes": [],\n "defualt": "deny"}');
  assert.ok(problems.length > 0);
  assertConforms(problems, returnOfFunction("checkPolicy"), "checkPolicy()");
});

test("a guard with a revocation_list: stats() and revocationListStatus() match index.d.ts", async () => {
  const uri = "https://revocations.test/list.json";
  const served = [JSON.stringify({ jti: ["j1"], sub: ["user:mallory"] }), "not json"];
  const cache = new RevocationListCache({ fetch: async () => new Response(served.shift(), { headers: { etag: '"1"' } }), log: () => {} });
  const guard = await AgentGuard.create({ ...policy, revocation_list: { uri, refresh: "1m" } }, { revocationListCache: cache, log: () => {} });
  const decision = await guard.decide(request("/v1/contacts/42", token("spiffe://test/agents/crm-bot", "crm.read", { jti: "j1" })));
  assert.equal(decision.decision, "revoked");
  assertConforms(decision, declaredType("Decision"), "decision");
  const loaded = guard.revocationListStatus();
  assert.equal(loaded.entries, 2);
  assertConforms(loaded, returnOf("revocationListStatus"), "revocationListStatus()");
  const refused = await guard.refreshRevocationList(); // "not json": refused, the last list stays
  assert.ok(refused.lastError.includes("the revocation list from"), refused.lastError);
  assertConforms(refused, returnOf("revocationListStatus"), "revocationListStatus() after an error");
  const stats = guard.stats();
  assert.deepEqual(stats.revocationList, refused);
  assertConforms(stats, returnOf("stats"), "stats()");
  guard.free();
});

test("the walk itself rejects a drifted shape", () => {
  const Decision = declaredType("Decision");
  const event = { v: 1, time_ms: 1, decision: "allow", status: 200, reasons: [], method: "GET", host: "h", path: "/" };
  const real = { decision: "allow", status: 200, reasons: [], forward_headers: {}, strip_header_prefix: "x-", trace: [] };
  Object.assign(real, { event: { ...event, cache_hit: false }, log: true });
  assert.deepEqual(conform(real, Decision), []);
  assert.ok(conform({ ...real, decision: "allowed" }, Decision).length > 0, "a wrong outcome");
  assert.ok(conform({ ...real, forwardHeaders: {} }, Decision).length > 0, "an undeclared field");
  assert.ok(conform({ ...real, log: undefined }, Decision).length > 0, "a missing required field");
  assert.ok(conform({ ...real, status: "200" }, Decision).length > 0, "a string for a number");
  assert.ok(conform({ ...real, identity: { issuer: "i" } }, Decision).length > 0, "an incomplete nested object");
  assert.ok(conform({ ...real, trace: [{ stage: "s", result: "ok", detail: "" }] }, Decision).length > 0, "a bad element");
});
