// Cross-check with npm `jose`, both ways: tokens jose signs verify in
// agentguard (Wasm core, both the Wasm and the WebCrypto signature paths),
// and tokens agentguard signs (the Wasm `mint` and the native CLI) verify in jose.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as jose from "jose";
import { AgentGuard, mint } from "../src/node.js";
import { loadVectors } from "../../tests/vectors/mint.mjs";
import { root } from "./helpers.mjs";

const { policy, keys } = loadVectors();
const jwks = jose.createLocalJWKSet(policy.issuers[0].jwks);
const verifyOptions = { issuer: "https://sts.test", audience: "https://api.test", typ: "at+jwt" };
const nowS = () => Math.floor(Date.now() / 1000);
const claims = () => ({
  iss: "https://sts.test",
  aud: "https://api.test",
  sub: "user:carol",
  client_id: "jose-agent",
  scope: "crm.read",
  iat: nowS() - 1,
  exp: nowS() + 120,
  jti: `jose-${Math.random()}`,
});
const request = (token) =>
  new Request("https://api.test/v1/contacts/3", { headers: { authorization: `Bearer ${token}` } });

describe("jose → agentguard", () => {
  for (const [name, alg] of [["ed25519", "EdDSA"], ["es256", "ES256"]]) {
    for (const [path, options] of [
      ["Wasm", { hostVerify: [] }],
      ["WebCrypto", { hostVerify: ["EdDSA", "ES256"], hostCrypto: "webcrypto" }],
      ["node:crypto", {}],
    ]) {
      test(`${alg} token signed by jose is allowed (${path} signature path)`, async () => {
        const guard = await AgentGuard.create(policy, options);
        const key = await jose.importJWK(keys[name], alg);
        const token = await new jose.SignJWT(claims())
          .setProtectedHeader({ alg, typ: "at+jwt", kid: keys[name].kid })
          .sign(key);
        const d = await guard.decide(request(token));
        assert.equal(d.decision, "allow", JSON.stringify(d.reasons));
        assert.equal(d.identity.client_id, "jose-agent");
        // Flip one bit of the signature: refused on either path.
        const [h, p, s] = token.split(".");
        const bytes = Buffer.from(s, "base64url");
        bytes[5] ^= 1;
        const bad = await guard.decide(request(`${h}.${p}.${bytes.toString("base64url")}`));
        assert.equal(bad.reasons[0].code, "token_signature_invalid");
        guard.free();
      });
    }
  }

  test("an HS256 token signed by jose is refused before any key is tried", async () => {
    const guard = await AgentGuard.create(policy);
    const token = await new jose.SignJWT(claims())
      .setProtectedHeader({ alg: "HS256", typ: "at+jwt", kid: "test-ed25519" })
      .sign(new TextEncoder().encode("a shared secret that should never work"));
    const d = await guard.decide(request(token));
    assert.equal(d.decision, "deny");
    assert.equal(d.reasons[0].code, "token_algorithm_not_allowed");
  });
});

describe("agentguard → jose", () => {
  for (const [name, alg] of [["ed25519", "EdDSA"], ["es256", "ES256"]]) {
    test(`${alg} token minted by the Wasm core verifies in jose`, async () => {
      const c = claims();
      const token = mint(keys[name], c);
      const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, verifyOptions);
      assert.deepEqual(protectedHeader, { alg, typ: "at+jwt", kid: keys[name].kid });
      assert.deepEqual(payload, c);
    });

    test(`${alg} token minted by the CLI verifies in jose`, async () => {
      const cli = process.env.AGENTGUARD_CLI ?? join(root, "target/debug/agentguard");
      assert.ok(existsSync(cli), `${cli} not built (cargo build --features cli --bin agentguard)`);
      const dir = mkdtempSync(join(tmpdir(), "agentguard-jose-"));
      try {
        writeFileSync(join(dir, "key.json"), JSON.stringify(keys[name]));
        const { iat, exp, jti, ...rest } = claims();
        writeFileSync(join(dir, "claims.json"), JSON.stringify(rest));
        const token = execFileSync(cli, ["mint", "--key", join(dir, "key.json"), "--claims", join(dir, "claims.json"), "--ttl", "2m"], {
          encoding: "utf8",
        }).trim();
        const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, verifyOptions);
        assert.equal(protectedHeader.alg, alg);
        assert.equal(payload.sub, "user:carol");
        assert.equal(payload.exp - payload.iat, 120);
        assert.ok(typeof payload.jti === "string" && payload.jti.length >= 16);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
