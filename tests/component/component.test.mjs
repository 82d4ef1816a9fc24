// The WebAssembly component (target/component/agentguard.wasm, built by
// scripts/build-component.sh) run from a real component host: jco transpiles
// it and Node calls its `guard` interface with typed records. Run by
// scripts/test-component.sh, which also sets AGENTGUARD_CLI to the native
// CLI: every shared vector must give the same decision through the component
// as through the native core, field for field.

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createHash, webcrypto as crypto } from "node:crypto";

import { loadVectors, caseHeaders, signJwt } from "../vectors/mint.mjs";
import { COMPONENT, ROOT, WIT, loadComponent, throwsMessage, tools, transpile } from "./host.mjs";

const NOW = 1_767_225_600;
const CLI = process.env.AGENTGUARD_CLI;
const vectors = loadVectors();
let guard;

before(async () => {
  ({ guard } = await loadComponent());
});

// ---- helpers ---------------------------------------------------------------

/** A WIT `request` record (jco: camelCase fields, `undefined` for none). */
function request({ method = "GET", path: target = "/v1/contacts/42", headers = {}, now = NOW, ...rest } = {}) {
  const pairs = [];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, v]);
  }
  return {
    method,
    scheme: rest.scheme,
    host: rest.host ?? "api.test",
    path: target,
    headers: pairs,
    sourceIp: rest.sourceIp,
    clientCertSha256: rest.clientCertSha256,
    bodySha256: rest.bodySha256,
    body: rest.body,
    now,
  };
}

const codes = (d) => d.reasons.map((r) => r.code);
const pairsToObject = (pairs) => Object.fromEntries(pairs);
const dropUndefined = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

/** A WIT `decision` in the core's JSON shape (what `agentguard eval` prints). */
function decisionJson(d) {
  const out = {
    decision: d.outcome.replaceAll("-", "_"),
    status: d.status,
    reasons: d.reasons.map((r) => ({ code: r.code, message: r.message })),
    route: d.route,
    params: d.params.length ? pairsToObject(d.params) : undefined,
    identity: d.identity && dropUndefined({
      issuer: d.identity.issuer,
      subject: d.identity.subject,
      agent: d.identity.agent,
      client_id: d.identity.clientId,
      actors: d.identity.actors,
      scopes: d.identity.scopes,
      jti: d.identity.jti,
      expires_at: Number(d.identity.expiresAt),
    }),
    forward_headers: pairsToObject(d.forwardHeaders),
    strip_header_prefix: d.stripHeaderPrefix,
    approval: d.approval && dropUndefined({
      action_digest: d.approval.actionDigest,
      binding_message: d.approval.bindingMessage,
      agent: d.approval.agent,
      approval_endpoint: d.approval.approvalEndpoint,
    }),
    response: d.response && {
      status: d.response.status,
      headers: pairsToObject(d.response.headers),
      body: d.response.body,
    },
    trace: d.trace.map((s) => ({ stage: s.stage, result: s.result, detail: s.detail })),
    event: JSON.parse(d.eventJson),
    log: d.log,
  };
  return dropUndefined(out);
}

/** The native core's decision for the same request, through the CLI (the shared vectors' policy by default). */
function nativeDecision(dir, name, requestJson, policy = path.join(ROOT, "tests/vectors/policy.json")) {
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(requestJson));
  return JSON.parse(execFileSync(CLI, ["eval", "--policy", policy, "--request", file], { encoding: "utf8" }));
}

/** A temp dir removed when the test ends, passed or failed; AGENTGUARD_KEEP_TMP=1 keeps it (path on stderr). */
function tempDir(t) {
  const dir = mkdtempSync(path.join(tmpdir(), "agentguard-component-"));
  t.after(() =>
    process.env.AGENTGUARD_KEEP_TMP === "1"
      ? process.stderr.write(`AGENTGUARD_KEEP_TMP: kept ${dir}\n`)
      : rmSync(dir, { recursive: true, force: true }),
  );
  return dir;
}

const validClaims = (extra = {}) => ({
  iss: "https://sts.test",
  aud: "https://api.test",
  sub: "user:alice",
  client_id: "crm-agent",
  act: { sub: "spiffe://test/agents/crm-bot" },
  scope: "crm.read",
  iat: NOW - 10,
  exp: NOW + 290,
  ...extra,
});

const policyWith = (changes) => JSON.stringify({ ...vectors.policy, ...changes });

/** A fresh key pair as JWKs (`EdDSA` or `ES256`), with `kid` and the JOSE `alg`. */
async function generateJwk(alg, kid) {
  const params = alg === "ES256" ? { name: "ECDSA", namedCurve: "P-256" } : { name: "Ed25519" };
  const pair = await crypto.subtle.generateKey(params, true, ["sign", "verify"]);
  const { key_ops: _ops, ext: _ext, ...exported } = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const priv = { ...exported, alg, kid };
  const { d: _d, ...pub } = priv;
  return { priv, pub };
}

// ---- the artefact ----------------------------------------------------------

test("the WIT parses, resolves and encodes as a component (wasm-tools)", async () => {
  const source = readFileSync(WIT, "utf8");
  // A dummy core module implementing the world, turned into a component:
  // this parses and resolves the package and checks the world is encodable.
  const dummy = await tools.componentNew(await tools.componentEmbed({ dummy: true, witSource: source, world: "agentguard" }));
  assert.match(await tools.componentWit(dummy), /export agentguard:guard\/guard@0\.1\.0;/);
  // A broken WIT is refused (the check above is not vacuous).
  await assert.rejects(() => tools.componentEmbed({ dummy: true, witSource: source.replace("record reason {", "record reason {{"), world: "agentguard" }));
});

test("the component validates, exports the WIT's interfaces and imports no clock, files or network", async () => {
  const bytes = readFileSync(COMPONENT);
  assert.equal(Buffer.from(bytes.subarray(0, 8)).toString("hex"), "0061736d0d000100", "component header");
  const wit = await tools.componentWit(bytes);
  assert.match(wit, /export agentguard:guard\/types@0\.1\.0;/);
  assert.match(wit, /export agentguard:guard\/guard@0\.1\.0;/);
  const imports = [...wit.matchAll(/^\s*import ([^;]+);/gm)].map((m) => m[1]);
  assert.ok(imports.length > 0);
  for (const name of imports) {
    assert.match(name, /^wasi:(cli|io|random)\//, `unexpected import ${name}`);
  }
  assert.ok(!imports.some((n) => n.startsWith("wasi:random/random")), "no cryptographic randomness is needed");
  const [root] = await tools.metadataShow(bytes);
  assert.equal(root.metaType.tag, "component");
});

test("the component's typed interface is exactly wit/agentguard.wit's", async () => {
  // jco generates TypeScript declarations from the component's own types;
  // those of a component encoded straight from the WIT must be identical.
  const source = readFileSync(WIT, "utf8");
  const fromWit = await tools.componentNew(await tools.componentEmbed({ dummy: true, witSource: source, world: "agentguard" }));
  const declarations = async (bytes) => {
    const { files } = await transpile(bytes, null, { typescript: true });
    return Object.fromEntries(
      Object.entries(files)
        .filter(([name]) => name.startsWith("interfaces/agentguard-"))
        .map(([name, data]) => [name, Buffer.from(data).toString("utf8")]),
    );
  };
  const want = await declarations(fromWit);
  assert.deepEqual(Object.keys(want).sort(), ["interfaces/agentguard-guard-guard.d.ts", "interfaces/agentguard-guard-types.d.ts"]);
  assert.deepEqual(await declarations(readFileSync(COMPONENT)), want);
});

// ---- the shared vectors ----------------------------------------------------

test("shared vectors: the component decides as the native core, field for field", async (t) => {
  assert.ok(CLI, "AGENTGUARD_CLI must name the native CLI (scripts/test-component.sh sets it)");
  const engine = new guard.Engine(vectors.policyText);
  const dir = tempDir(t);
  assert.ok(vectors.cases.length >= 20);
  const failures = [];
  for (const [i, c] of vectors.cases.entries()) {
    const headers = await caseHeaders(c, vectors.keys, NOW, i);
    const d = engine.decide(request({ ...c.request, headers, now: NOW }));
    const got = { decision: d.outcome.replaceAll("-", "_"), status: d.status, reasons: codes(d) };
    const want = { decision: c.expect.decision, status: c.expect.status, reasons: c.expect.reasons };
    try {
      assert.deepEqual(got, want, "expected decision");
      // The same request through the native core: the whole decision
      // (messages, identity, headers, response, trace, event) must match.
      const native = nativeDecision(dir, `case-${i}`, { ...c.request, headers, now: NOW });
      assert.deepEqual(decisionJson(d), native, "native decision");
      // Every refusal carries a ready response with the same status.
      if (d.outcome === "allow") {
        assert.equal(d.response, undefined);
        assert.ok(d.forwardHeaders.some(([name]) => name === "x-agentguard-agent"));
        assert.equal(typeof d.identity.expiresAt, "bigint");
      } else {
        assert.equal(d.response.status, d.status);
      }
    } catch (e) {
      failures.push(`${c.name}: ${e.message.split("\n").slice(0, 12).join("\n")}`);
    }
  }
  assert.deepEqual(failures, []);
});

// ---- approval conditions on the request body ------------------------------

// The shared policy plus a route whose approval depends on its JSON body.
const transferPolicy = {
  ...vectors.policy,
  routes: [
    ...vectors.policy.routes,
    {
      id: "transfer", methods: ["POST"], path: "/v1/transfers", scopes: ["payments.write"],
      approval_when: [{ body: "/amount", gt: 1000 }, { body: "/currency", not_in: ["EUR", "USD"] }],
    },
  ],
};
const b64sha256 = (text) => createHash("sha256").update(text).digest("base64url");
/** The canonical action an approval is bound to (src/approval.rs). */
const transferDigest = (body) =>
  b64sha256(`agentguard-action-v1\nPOST\napi.test\n/v1/transfers\n\n${body === undefined ? "" : b64sha256(body)}\n`);

test("body-use: text for a route with approval conditions, digest for a high-risk one, else none", () => {
  const engine = new guard.Engine(JSON.stringify(transferPolicy));
  assert.equal(engine.bodyUse("POST", "/v1/transfers"), "text");
  assert.equal(engine.bodyUse("POST", "/v1/transfers?dry_run=1"), "text");
  assert.equal(engine.bodyUse("POST", "/v1/payments"), "digest");
  assert.equal(engine.bodyUse("GET", "/v1/contacts/42"), "none");
  assert.equal(engine.bodyUse("GET", "/v1/transfers"), "none", "the route is for POST only");
  assert.equal(engine.bodyUse("POST", "/v1/unknown"), "none");
  // A target the core cannot read: none, never a trap (decide refuses it).
  assert.equal(engine.bodyUse("POST", "/v1/transfers%2F"), "none");
  assert.equal(engine.bodyUse("P O S T", "/v1/transfers"), "none");
  assert.equal(new guard.Engine(vectors.policyText).bodyUse("POST", "/v1/transfers"), "none");
});

test("approval conditions on the body: the body decides, through the component as natively", async (t) => {
  assert.ok(CLI, "AGENTGUARD_CLI must name the native CLI (scripts/test-component.sh sets it)");
  const dir = tempDir(t);
  const policyFile = path.join(dir, "policy.json");
  writeFileSync(policyFile, JSON.stringify(transferPolicy));
  const access = await signJwt(vectors.keys.ed25519, validClaims({ scope: "payments.write", jti: "transfer" }));
  const small = JSON.stringify({ amount: 250, currency: "EUR" });
  const large = JSON.stringify({ amount: 1500, currency: "EUR" });
  const approve = (digest, jti) =>
    signJwt(vectors.keys.approver, {
      iss: "https://approvals.test", aud: "https://api.test", sub: "user:cfo",
      agent: "spiffe://test/agents/crm-bot", action_digest: digest, iat: NOW - 5, exp: NOW + 300, jti,
    }, "approval+jwt");

  let n = 0;
  /** Decides with a fresh component engine and checks the native core decides the same, field for field. */
  const decide = ({ body, bodySha256, approval } = {}) => {
    const headers = { authorization: `Bearer ${access}`, ...(approval ? { "x-agent-approval": approval } : {}) };
    const d = new guard.Engine(JSON.stringify(transferPolicy))
      .decide(request({ method: "POST", path: "/v1/transfers", headers, body, bodySha256 }));
    const native = nativeDecision(dir, `transfer-${n++}`, {
      method: "POST", host: "api.test", path: "/v1/transfers", headers, body, body_sha256: bodySha256, now: NOW,
    }, policyFile);
    assert.deepEqual(decisionJson(d), native, "native decision");
    return d;
  };

  const allowed = decide({ body: small });
  assert.equal(allowed.outcome, "allow", JSON.stringify(allowed.reasons));
  assert.equal(allowed.route, "transfer");
  assert.ok(allowed.trace.some((s) => s.stage === "risk" && /meets none of its approval conditions/.test(s.detail)));

  const held = decide({ body: large });
  assert.equal(held.outcome, "approval-required");
  assert.equal(held.status, 403);
  assert.deepEqual(codes(held), ["approval_required"]);
  assert.match(held.reasons[0].message, /body \/amount is 1500, more than 1000/);
  // The approval is bound to this body: its SHA-256 is in the action digest.
  assert.equal(held.approval.actionDigest, transferDigest(large));
  assert.equal(held.approval.approvalEndpoint, "https://approvals.test/bc-authorize");

  // Fail closed: no body, one that is not JSON or one over 64 KiB meets every condition.
  const noBody = decide({});
  assert.equal(noBody.outcome, "approval-required");
  assert.match(noBody.reasons[0].message, /request body was not given/);
  assert.equal(noBody.approval.actionDigest, transferDigest(undefined));
  const notJson = decide({ body: "amount=5" });
  assert.equal(notJson.outcome, "approval-required");
  assert.match(notJson.reasons[0].message, /not JSON/);
  const padded = JSON.stringify({ amount: 5, currency: "EUR", pad: "x".repeat(64 * 1024) });
  const oversized = decide({ body: padded });
  assert.equal(oversized.outcome, "approval-required");
  assert.match(oversized.reasons[0].message, /more than the 65536 read/);
  assert.equal(oversized.approval.actionDigest, transferDigest(padded), "the whole body is hashed");

  // The human's approval of this body lets it through; it does not cover another body.
  const approval = await approve(transferDigest(large), "ap-1");
  assert.equal(decide({ body: large, approval }).outcome, "allow");

  // A host with durable storage keeps the approval's record; restored into a
  // new engine (a restart) it makes the approval a replay there too.
  const paid = request({ method: "POST", path: "/v1/transfers", body: large,
    headers: { authorization: `Bearer ${access}`, "x-agent-approval": approval } });
  const restarted = new guard.Engine(JSON.stringify(transferPolicy));
  const record = restarted.approvalRecord(paid);
  assert.equal(record.id, createHash("sha256").update(approval.slice(0, approval.lastIndexOf("."))).digest("base64url"), "keyed on the signed part");
  assert.equal(record.expiresAt, BigInt(NOW + 600 + 30), "its use plus the gate's max_lifetime and clock_skew");
  assert.equal(restarted.restoreApproval(record, BigInt(NOW)), true);
  assert.deepEqual(codes(restarted.decide(paid)), ["approval_replayed"]);
  assert.equal(new guard.Engine(JSON.stringify(transferPolicy)).decide(paid).outcome, "allow", "without the record it passes again");
  throwsMessage(() => restarted.restoreApproval({ id: "short", expiresAt: 1n }, 0n), /approval record id `short`: expected 32 bytes/);
  assert.equal(restarted.approvalRecord(request({ method: "POST", path: "/v1/transfers", body: large, headers: {} })), undefined);
  const other = JSON.stringify({ amount: 1600, currency: "EUR" });
  const mismatch = decide({ body: other, approval: await approve(transferDigest(large), "ap-2") });
  assert.equal(mismatch.outcome, "deny");
  assert.equal(mismatch.status, 403);
  assert.deepEqual(codes(mismatch), ["approval_digest_mismatch"]);

  // A body-sha256 given with the body must be the body's.
  assert.equal(decide({ body: small, bodySha256: b64sha256(small) }).outcome, "allow");
  const forged = decide({ body: large, bodySha256: b64sha256(small) });
  assert.equal(forged.outcome, "deny");
  assert.equal(forged.status, 400);
  assert.deepEqual(codes(forged), ["request_invalid"]);
  assert.match(forged.reasons[0].message, /^body_sha256: /);
});

// ---- the rest of the interface ---------------------------------------------

test("a bad policy: the constructor's error lists every problem with its path", () => {
  assert.throws(() => new guard.Engine("{}"), (errors) => {
    assert.ok(Array.isArray(errors));
    assert.deepEqual(errors.map((e) => e.path), ["."]);
    assert.match(errors[0].message, /issuers/);
    return true;
  });
  const hs256 = policyWith({ issuers: [{ ...vectors.policy.issuers[0], algorithms: ["HS256"] }] });
  assert.throws(() => new guard.Engine(hs256), (errors) => {
    assert.equal(errors[0].path, "issuers[0].algorithms[0]");
    assert.match(errors[0].message, /algorithm `HS256` is never accepted/);
    return true;
  });
  // Problems found after parsing: all of them, with paths and no line.
  const two = policyWith({ issuers: [{ ...vectors.policy.issuers[0], audiences: [], max_lifetime: "0s" }] });
  assert.throws(() => new guard.Engine(two), (errors) => {
    assert.ok(errors.length >= 2, JSON.stringify(errors));
    assert.ok(errors.some((e) => e.path === "issuers[0].audiences"));
    assert.ok(errors.some((e) => e.path === "issuers[0].max_lifetime"));
    assert.ok(errors.every((e) => e.line === undefined && e.column === undefined));
    assert.deepEqual(guard.checkPolicy(two), errors, "check-policy reports the same problems");
    return true;
  });
  assert.throws(() => new guard.Engine('{"issuers": ['), (errors) => {
    assert.equal(errors[0].line, 1);
    assert.equal(typeof errors[0].column, "number");
    return true;
  });
});

test("check-policy and version", () => {
  assert.deepEqual(guard.checkPolicy(vectors.policyText), []);
  const problems = guard.checkPolicy(policyWith({ routes: [{ id: "r", methods: ["GET"], path: "/x", scopes: [], risk: "extreme" }] }));
  assert.ok(problems.length >= 1);
  assert.match(problems[0].path, /^routes\[0\]/);
  const cargo = readFileSync(path.join(ROOT, "Cargo.toml"), "utf8").match(/^version = "([^"]+)"/m)[1];
  assert.equal(guard.version(), cargo);
});

test("malformed requests are deny decisions naming the field, never traps", () => {
  const engine = new guard.Engine(vectors.policyText);
  const cases = [
    [{ method: "G E T" }, "request_invalid", /^method: /],
    [{ scheme: "ftp" }, "request_invalid", /^scheme: /],
    [{ path: "/v1/contacts%2F42" }, "path_invalid", /^path: /],
    [{ sourceIp: "not-an-ip" }, "request_invalid", /^source_ip: /],
    [{ clientCertSha256: "abc" }, "request_invalid", /^client_cert_sha256: /],
    [{ now: Number.NaN }, "request_invalid", /^now: /],
    [{ headers: { "bad header": "x" } }, "request_invalid", /^headers: /],
  ];
  for (const [fields, code, message] of cases) {
    const d = engine.decide(request(fields));
    assert.equal(d.outcome, "deny", JSON.stringify(fields));
    assert.equal(d.status, 400);
    assert.deepEqual(codes(d), [code]);
    assert.match(d.reasons[0].message, message);
    assert.equal(d.trace.find((s) => s.result === "fail").stage, "request");
  }
  // No scheme means https; header names are case-insensitive; a repeated
  // header is two pairs, and two credentials are refused.
  const ok = engine.decide(request({ headers: { Authorization: "Bearer x.y.z" } }));
  assert.notEqual(codes(ok)[0], "credential_missing");
  const twice = engine.decide(request({ headers: { authorization: ["Bearer a", "Bearer b"] } }));
  assert.deepEqual(codes(twice), ["credential_malformed"]);
});

test("host-verified signatures: pending-signature, then decide-with-verdict", async () => {
  const engine = new guard.Engine(vectors.policyText);
  const token = await signJwt(vectors.keys.es256, validClaims({ jti: "host-verified" }));
  const req = request({ headers: { authorization: `Bearer ${token}` } });

  const check = engine.pendingSignature(req);
  assert.equal(check.alg, "ES256");
  assert.equal(check.signingInput, token.split(".").slice(0, 2).join("."));
  assert.equal(check.signature, token.split(".")[2]);
  const jwk = JSON.parse(check.jwkJson);
  assert.equal(jwk.kty, "EC");
  // The host verifies with WebCrypto.
  const key = await crypto.subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const valid = await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" }, key, Buffer.from(check.signature, "base64url"), Buffer.from(check.signingInput),
  );
  assert.equal(valid, true);

  // A false verdict for this token is believed: the token is refused.
  const refused = engine.decideWithVerdict(req, { tokenHash: check.tokenHash, valid: false });
  assert.deepEqual(codes(refused), ["token_signature_invalid"]);
  // A verdict for another token is ignored: the component checks the signature itself.
  const ignored = engine.decideWithVerdict(req, { tokenHash: "another-token", valid: false });
  assert.equal(ignored.outcome, "allow");
  assert.equal(engine.cachedTokens(), 1);
  // The verified token is cached: no further check is pending.
  assert.equal(engine.pendingSignature(req), undefined);

  const second = await signJwt(vectors.keys.es256, validClaims({ jti: "host-verified-2" }));
  const req2 = request({ headers: { authorization: `Bearer ${second}` } });
  const check2 = engine.pendingSignature(req2);
  const allowed = engine.decideWithVerdict(req2, { tokenHash: check2.tokenHash, valid: true });
  assert.equal(allowed.outcome, "allow");
  assert.equal(allowed.identity.agent, "spiffe://test/agents/crm-bot");
  assert.deepEqual(allowed.identity.scopes, ["crm.read"]);
  assert.equal(allowed.identity.expiresAt, BigInt(NOW + 290));
  // No credential: nothing to check.
  assert.equal(engine.pendingSignature(request()), undefined);
});

test("set-issuer-keys: rotation with warnings; errors keep the previous keys", async () => {
  const engine = new guard.Engine(vectors.policyText);
  const { priv, pub } = await generateJwk("EdDSA", "rotated");
  const old = await signJwt(vectors.keys.ed25519, validClaims({ jti: "old-key" }));
  const rotated = await signJwt(priv, validClaims({ jti: "new-key" }));
  const decide = (t) => engine.decide(request({ headers: { authorization: `Bearer ${t}` } }));

  assert.equal(decide(rotated).outcome, "deny");
  throwsMessage(() => engine.setIssuerKeys("https://unknown.test", JSON.stringify({ keys: [pub] })), /not in the policy/);
  throwsMessage(() => engine.setIssuerKeys("https://sts.test", "{not json"), /JWKS/);
  throwsMessage(() => engine.setIssuerKeys("https://sts.test", JSON.stringify({ keys: [] })), /no usable/);
  assert.equal(decide(old).outcome, "allow", "failed updates keep the previous keys");

  const warnings = engine.setIssuerKeys("https://sts.test", JSON.stringify({ keys: [{ ...pub, kid: "enc", use: "enc" }, pub] }));
  assert.deepEqual(warnings.map((w) => [w.index, w.skipped]), [[0, true]]);
  assert.match(warnings[0].message, /not for signature verification/);
  assert.equal(decide(rotated).outcome, "allow");
  assert.deepEqual(codes(decide(await signJwt(vectors.keys.ed25519, validClaims({ jti: "old-key-2" })))), ["token_key_not_found"]);
});

test("set-revocations replaces the lists at run time", async () => {
  const engine = new guard.Engine(vectors.policyText);
  const decide = async (jti) =>
    engine.decide(request({ headers: { authorization: `Bearer ${await signJwt(vectors.keys.ed25519, validClaims({ jti }))}` } }));
  assert.equal((await decide("r1")).outcome, "allow");
  engine.setRevocations({ jti: [], sub: [], agents: ["spiffe://test/agents/crm-bot"], kid: [] });
  const revoked = await decide("r2");
  assert.equal(revoked.outcome, "revoked");
  assert.deepEqual(codes(revoked), ["revoked_agent"]);
  engine.setRevocations({ jti: ["r3"], sub: [], agents: [], kid: [] });
  assert.deepEqual(codes(await decide("r3")), ["revoked_token"]);
  assert.equal((await decide("r4")).outcome, "allow");
});

// ---- a revocation list fetched by the host -------------------------------

const LIST_URI = "https://lists.test/revoked.json";
const listPolicy = { ...vectors.policy, revocation_list: { uri: LIST_URI, refresh: "2m", max_stale: "10m" } };

test("revocation-list: the policy's source, absent without one", () => {
  assert.equal(new guard.Engine(vectors.policyText).revocationList(), undefined);
  throwsMessage(() => new guard.Engine(vectors.policyText).setListedRevocations("{}", BigInt(NOW * 1000)), /no `revocation_list`/);
  const engine = new guard.Engine(JSON.stringify(listPolicy));
  assert.deepEqual(engine.revocationList(), { uri: LIST_URI, refreshSecs: 120n, maxStaleSecs: 600n, loadedAtMs: undefined });
  // The defaults: refresh 1m, max_stale 1h.
  const defaults = new guard.Engine(policyWith({ revocation_list: { uri: LIST_URI } })).revocationList();
  assert.deepEqual([defaults.refreshSecs, defaults.maxStaleSecs], [60n, 3600n]);
  // A bad source is a policy error with its path.
  assert.throws(() => new guard.Engine(policyWith({ revocation_list: { uri: "ftp://lists.test/x" } })), (errors) => {
    assert.deepEqual(errors.map((e) => e.path), ["revocation_list.uri"]);
    return true;
  });
});

test("set-listed-revocations: fail closed until loaded, then the listed entries revoke; the component decides as the native core", async (t) => {
  assert.ok(CLI, "AGENTGUARD_CLI must name the native CLI (scripts/test-component.sh sets it)");
  const dir = tempDir(t);
  const engine = new guard.Engine(JSON.stringify(listPolicy));
  const listed = { jti: ["listed-jti"], sub: ["user:mallory"], agents: [], kid: [] };
  // The native reference: the CLI cannot load a fetched list, so after
  // loading it is compared with a policy whose own `revoked` holds the
  // listed entries too (the lists in force are the union).
  const listFile = path.join(dir, "list-policy.json");
  writeFileSync(listFile, JSON.stringify(listPolicy));
  const unionFile = path.join(dir, "union-policy.json");
  const { revocation_list: _list, ...withoutList } = listPolicy;
  writeFileSync(unionFile, JSON.stringify({
    ...withoutList,
    revoked: { ...vectors.policy.revoked, jti: [...vectors.policy.revoked.jti, ...listed.jti], sub: listed.sub },
  }));
  let n = 0;
  /** Decides a fresh token (no cache hit) at `now` and compares with the native core under `policyFile`. */
  const decide = async (claims, policyFile, now = NOW) => {
    const headers = { authorization: `Bearer ${await signJwt(vectors.keys.ed25519, validClaims(claims))}` };
    const d = engine.decide(request({ headers, now }));
    if (policyFile) {
      const native = nativeDecision(dir, `listed-${n++}`, { method: "GET", host: "api.test", path: "/v1/contacts/42", headers, now }, policyFile);
      assert.deepEqual(decisionJson(d), native, "native decision");
    }
    return d;
  };
  const unavailable = (d, message) => {
    assert.equal(d.outcome, "deny");
    assert.equal(d.status, 503);
    assert.deepEqual(codes(d), ["state_unavailable"]);
    assert.match(d.reasons[0].message, message);
    assert.equal(d.response.status, 503);
    assert.equal(pairsToObject(d.response.headers)["retry-after"], "120");
    assert.equal(d.trace.find((s) => s.result === "fail").stage, "revocation");
  };

  // Before the first list: every token-bearing request is refused (natively too).
  unavailable(await decide({ jti: "early" }, listFile), /has not been loaded yet/);
  assert.deepEqual(codes(engine.decide(request())), ["credential_missing"], "no token: decided as usual");

  // The host loads the list it fetched.
  assert.equal(engine.setListedRevocations(JSON.stringify(listed), BigInt(NOW * 1000)), 2);
  assert.equal(engine.revocationList().loadedAtMs, BigInt(NOW * 1000));
  const jtiHit = await decide({ jti: "listed-jti" }, unionFile);
  assert.equal(jtiHit.outcome, "revoked");
  assert.deepEqual(codes(jtiHit), ["revoked_token"]);
  const subHit = await decide({ jti: "by-sub", sub: "user:mallory" }, unionFile);
  assert.deepEqual(codes(subHit), ["revoked_subject"]);
  assert.equal((await decide({ jti: "not-listed" }, unionFile)).outcome, "allow");
  // The policy's own `revoked` stays in force beside the fetched list.
  assert.deepEqual(codes(await decide({ jti: "revoked-jti-1" }, unionFile)), ["revoked_token"]);

  // A bad document is refused with its JSON path; the previous list stays, as old as it was.
  throwsMessage(() => engine.setListedRevocations('{"jti": ["a", 7]}', BigInt((NOW + 60) * 1000)), /jti\[1\]/);
  throwsMessage(() => engine.setListedRevocations('{"jtis": []}', BigInt((NOW + 60) * 1000)), /jtis/);
  throwsMessage(() => engine.setListedRevocations("{not json", BigInt((NOW + 60) * 1000)), /revoked\.json/);
  assert.equal(engine.revocationList().loadedAtMs, BigInt(NOW * 1000));
  assert.deepEqual(codes(await decide({ jti: "listed-jti", iat: NOW - 11 }, unionFile)), ["revoked_token"]);
  assert.equal((await decide({ jti: "not-listed-2" }, unionFile)).outcome, "allow");

  // set-revocations replaces only the policy's own lists: the fetched entries stay.
  engine.setRevocations({ jti: [], sub: [], agents: [], kid: [] });
  assert.deepEqual(codes(await decide({ jti: "listed-jti", iat: NOW - 12 })), ["revoked_token"]);
  assert.equal((await decide({ jti: "revoked-jti-1", iat: NOW - 12 })).outcome, "allow");

  // Past max_stale (10m) without a new list: refused again; a new list lets requests through.
  unavailable(await decide({ jti: "late", iat: NOW + 650, exp: NOW + 900 }, undefined, NOW + 660), /loaded 660 s ago/);
  assert.equal(engine.setListedRevocations('{"jti": []}', BigInt((NOW + 660) * 1000)), 0);
  const fresh = await decide({ jti: "listed-jti", iat: NOW + 650, exp: NOW + 900 }, undefined, NOW + 661);
  assert.equal(fresh.outcome, "allow", "the new list no longer names it");
});

test("confirm-listed-revocations: a 304 keeps the list in force and restarts its age", async () => {
  const engine = new guard.Engine(JSON.stringify(listPolicy));
  throwsMessage(() => engine.confirmListedRevocations(BigInt(NOW * 1000)), /no revocation list from .* is loaded/);
  throwsMessage(() => new guard.Engine(vectors.policyText).confirmListedRevocations(BigInt(NOW * 1000)), /no `revocation_list`/);
  assert.equal(engine.setListedRevocations('{"jti": ["listed-jti"]}', BigInt(NOW * 1000)), 1);
  const at = async (jti, now) => {
    const token = await signJwt(vectors.keys.ed25519, validClaims({ jti, iat: now - 10, exp: now + 300 }));
    return engine.decide(request({ headers: { authorization: `Bearer ${token}` }, now }));
  };
  // max_stale is 10 minutes: confirmed at +500 s, the list still holds at +1000 s.
  assert.equal(engine.confirmListedRevocations(BigInt((NOW + 500) * 1000)), 1);
  assert.equal(engine.revocationList().loadedAtMs, BigInt((NOW + 500) * 1000));
  assert.deepEqual(codes(await at("listed-jti", NOW + 1000)), ["revoked_token"]);
  assert.equal((await at("other", NOW + 1000)).outcome, "allow");
  assert.deepEqual(codes(await at("other-2", NOW + 1101)), ["state_unavailable"], "10 min after the 304");
});

test("circuit breaker: suspended-agents and lift-suspension", async () => {
  const engine = new guard.Engine(policyWith({ circuit_breaker: { window: "10s", max_requests: 3, cooldown: "15m" } }));
  const token = await signJwt(vectors.keys.ed25519, validClaims({ jti: "burst" }));
  const req = (now) => request({ headers: { authorization: `Bearer ${token}` }, now });
  const outcomes = [];
  for (let i = 0; i < 5; i++) outcomes.push(engine.decide(req(NOW + i / 10)));
  assert.deepEqual(outcomes.slice(0, 3).map((d) => d.outcome), ["allow", "allow", "allow"]);
  const tripped = outcomes[3];
  assert.equal(tripped.outcome, "revoked");
  assert.deepEqual(codes(tripped), ["breaker_burst"]);
  assert.ok(JSON.parse(tripped.eventJson).breaker, "the event records the breaker");
  assert.deepEqual(codes(outcomes[4]), ["agent_suspended"]);

  const suspended = engine.suspendedAgents(BigInt(NOW + 1));
  assert.equal(suspended.length, 1);
  assert.equal(suspended[0].agent, "spiffe://test/agents/crm-bot");
  assert.equal(suspended[0].kind, "burst");
  assert.equal(typeof suspended[0].untilMs, "bigint");
  assert.ok(suspended[0].untilMs > BigInt((NOW + 1) * 1000));
  assert.match(suspended[0].detail, /requests/);
  assert.deepEqual(engine.suspendedAgents(BigInt(NOW + 16 * 60)), [], "the cooldown ends");
  assert.ok(engine.stateKeys() > 0);

  assert.equal(engine.liftSuspension("spiffe://test/agents/crm-bot"), true);
  assert.equal(engine.liftSuspension("spiffe://test/agents/crm-bot"), false);
  assert.deepEqual(engine.suspendedAgents(BigInt(NOW + 1)), []);
});

test("jwks-uris and DPoP nonces", () => {
  const { jwks: _jwks, ...issuer } = vectors.policy.issuers[0];
  const engine = new guard.Engine(policyWith({
    issuers: [{ ...issuer, jwks_uri: "https://sts.test/.well-known/jwks.json" }],
    dpop: { nonce: true },
  }));
  assert.deepEqual(engine.jwksUris(), [{ iss: "https://sts.test", jwksUri: "https://sts.test/.well-known/jwks.json" }]);
  assert.equal(engine.dpopNonce(BigInt(NOW)), undefined, "no nonce before the host sets a secret");
  engine.setDpopNonceSecret(new Uint8Array(32).fill(7));
  const nonce = engine.dpopNonce(BigInt(NOW));
  assert.match(nonce, /^[A-Za-z0-9_-]{16,}$/);
  assert.equal(engine.dpopNonce(BigInt(NOW)), nonce, "nonces are derived, not random");
  engine.setDpopNonceSecret(new Uint8Array(32).fill(8));
  assert.notEqual(engine.dpopNonce(BigInt(NOW)), nonce, "the secret keys the nonce");
  // Without `dpop.nonce` there are no nonces at all.
  assert.equal(new guard.Engine(vectors.policyText).dpopNonce(BigInt(NOW)), undefined);
});

test("stats count decisions by outcome, reason, route and agent", async () => {
  const engine = new guard.Engine(vectors.policyText);
  const token = await signJwt(vectors.keys.ed25519, validClaims({ jti: "stats" }));
  engine.decide(request({ headers: { authorization: `Bearer ${token}` } }));
  engine.decide(request({ headers: { authorization: `Bearer ${token}` }, path: "/v1/payments", method: "POST" }));
  engine.decide(request());
  const stats = engine.stats();
  assert.equal(stats.decisions, 3n);
  assert.deepEqual(stats.outcomes, [["allow", 1n], ["deny", 2n]]);
  assert.deepEqual(stats.reasons, [["credential_missing", 1n], ["scope_insufficient", 1n]]);
  assert.deepEqual(stats.routes, [["pay", 1n], ["read-contacts", 2n]]);
  assert.equal(stats.agentsEvicted, 0n);
  assert.equal(stats.agents.length, 1);
  const [agent] = stats.agents;
  assert.equal(agent.agent, "spiffe://test/agents/crm-bot");
  assert.equal(agent.requests, 2n);
  assert.equal(agent.allowed, 1n);
  assert.deepEqual(agent.denied, [["scope_insufficient", 1n]]);
  assert.deepEqual(agent.routes, [["pay", 1n], ["read-contacts", 1n]]);
  assert.equal(agent.lastSeenMs, BigInt(NOW * 1000));
});

test("token service: a CI job's OIDC token is exchanged for an agent token the engine accepts", async () => {
  const ci = await generateJwk("ES256", "ci-1");
  const edge = await generateJwk("EdDSA", "edge-1");
  const engine = new guard.Engine(JSON.stringify({
    issuers: [{ iss: "https://edge.test", audiences: ["https://api.test"], jwks: { keys: [edge.pub] },
                algorithms: ["EdDSA"], max_lifetime: "15m" }],
    routes: [{ id: "deploy", methods: ["POST"], path: "/v1/deploy", scopes: ["deploy.write"] }],
    resource: { identifier: "https://api.test", metadata_url: "https://api.test/.well-known/oauth-protected-resource",
                authorization_servers: ["https://edge.test"] },
    token_service: {
      issuer: "https://edge.test", signing_kid: "edge-1", default_lifetime: "5m",
      federation: [{
        id: "ci-main",
        issuer: { iss: "https://ci.test", audiences: ["https://edge.test"], jwks: { keys: [ci.pub] }, algorithms: ["ES256"] },
        subjects: ["repo:acme/*:ref:refs/heads/main"],
        scopes: ["deploy.write"], audiences: ["https://api.test"], max_lifetime: "10m",
      }],
    },
  }));
  const metadata = JSON.parse(engine.tokenServiceMetadata());
  assert.equal(metadata.token_endpoint, "https://edge.test/token");
  assert.equal(JSON.parse(engine.resourceMetadata()).resource, "https://api.test");

  const ciToken = await signJwt(ci.priv, {
    iss: "https://ci.test", aud: "https://edge.test", sub: "repo:acme/agents:ref:refs/heads/main",
    iat: NOW - 5, exp: NOW + 600, jti: "ci-run-1",
  }, "JWT");
  const form = new URLSearchParams({
    grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
    subject_token: ciToken,
    subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
    scope: "deploy.write",
    audience: "https://api.test",
  }).toString();
  const post = request({ method: "POST", path: "/token", host: "edge.test", headers: { "content-type": "application/x-www-form-urlencoded" } });
  const jti = "edge-jti-0123456789";

  // No signing key loaded yet: a server error, nothing minted.
  const early = engine.exchange(post, form, jti);
  assert.equal(early.status, 500);
  assert.equal(JSON.parse(early.body).error, "server_error");
  throwsMessage(() => engine.setSigningKeys("{"), /signing keys: the key set is not acceptable JSON/);
  throwsMessage(() => engine.setSigningKeys(JSON.stringify({ keys: [{ ...edge.priv, kid: "other" }] })), /signing_kid/);
  assert.equal(engine.setSigningKeys(JSON.stringify({ keys: [edge.priv] })), 1);
  const jwks = JSON.parse(engine.tokenServiceJwks());
  assert.equal(jwks.keys[0].kid, "edge-1");
  assert.equal(jwks.keys[0].d, undefined, "the public JWKS has no private parts");

  // Where the documents and the token endpoint are, and their answers.
  assert.equal(engine.tokenEndpoint(), "/token");
  const served = engine.endpointResponse("/.well-known/jwks.json", "GET");
  assert.equal(served.status, 200);
  assert.equal(pairsToObject(served.headers)["content-type"], "application/jwk-set+json");
  assert.deepEqual(JSON.parse(served.body), jwks);
  const meta = engine.endpointResponse("/.well-known/oauth-authorization-server", "GET");
  assert.equal(JSON.parse(meta.body).token_endpoint, "https://edge.test/token");
  const resource = engine.endpointResponse("/.well-known/oauth-protected-resource", "HEAD");
  assert.equal(resource.status, 200);
  assert.equal(resource.body, "");
  assert.equal(engine.endpointResponse("/.well-known/oauth-protected-resource", "POST").status, 405);
  for (const path of ["/token", "/v1/deploy", "/.well-known/jwks.json/"]) {
    assert.equal(engine.endpointResponse(path, "GET"), undefined, path);
  }

  const minted = engine.exchange(post, form, jti);
  assert.equal(minted.status, 200, minted.body);
  assert.deepEqual(pairsToObject(minted.headers)["cache-control"], "no-store");
  const body = JSON.parse(minted.body);
  assert.equal(body.scope, "deploy.write");
  const claims = JSON.parse(Buffer.from(body.access_token.split(".")[1], "base64url"));
  assert.equal(claims.jti, jti);
  assert.equal(claims.sub, "repo:acme/agents:ref:refs/heads/main");

  // The minted token works at the protected API.
  const call = engine.decide(request({ method: "POST", path: "/v1/deploy", headers: { authorization: `Bearer ${body.access_token}` }, now: NOW + 1 }));
  assert.equal(call.outcome, "allow", JSON.stringify(call.reasons));

  // Errors are RFC 6749 responses: wrong method, a request the core cannot normalise.
  const get = engine.exchange({ ...post, method: "GET" }, form, "edge-jti-abcdefghij");
  assert.equal(JSON.parse(get.body).error, "invalid_request");
  const bad = engine.exchange({ ...post, path: "/to%2Fken" }, form, "edge-jti-abcdefghij");
  assert.equal(bad.status, 400);
  assert.match(JSON.parse(bad.body).error_description, /^path: /);
});
