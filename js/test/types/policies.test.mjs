// The policy literals of policy.ts against the core: a policy the TypeScript
// types accept must compile, and one they refuse (an `@ts-expect-error`
// there) must be refused by the core at the same JSON path. So the types
// cannot drift from what the core takes (run by scripts/test-js.sh after tsc,
// with js/dist built).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import ts from "typescript";
import { checkPolicy } from "agentguard";

// policy.ts imports types only, so its JavaScript is self-contained.
const source = readFileSync(new URL("./policy.ts", import.meta.url), "utf8");
const js = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
}).outputText;
assert.doesNotMatch(js, /\bimport\b/, "policy.ts must import types only");
const { accepted, refused } = await import(`data:text/javascript;base64,${Buffer.from(js).toString("base64")}`);

// Where the core reports each policy the types refuse.
const expectedPath = {
  misspelled: "circuit_breakr",
  badRisk: "routes[0].risk",
  noPath: "routes[0]",
  noRoutes: ".",
  noAlgorithms: "issuers[0]",
  hmac: "issuers[0].algorithms[0]",
  noUnit: "issuers[0].max_lifetime",
  defaultAllow: "default",
  anyCredential: "credentials",
  badHeader: "identity_headers.include[1]",
  badLogOutcome: "log.outcomes[0]",
  badLimitKey: "limits[0].per",
  federationBinding: "token_service.federation[0].issuer.binding",
  twoTests: "routes[0].approval_when[0].lt",
  noTest: "routes[0].approval_when[0].body",
  revocationListNoUri: "revocation_list",
  revocationListNoUnit: "revocation_list.refresh",
};

test("every policy the types accept compiles in the core", () => {
  assert.deepEqual(Object.keys(accepted).sort(), ["minimal", "policy", "tokenService"]);
  for (const [name, policy] of Object.entries(accepted)) {
    assert.deepEqual(checkPolicy(policy), [], `${name} should be valid`);
  }
});

test("every policy the types refuse is refused by the core, at the same field", () => {
  assert.deepEqual(Object.keys(refused).sort(), Object.keys(expectedPath).sort());
  for (const [name, policy] of Object.entries(refused)) {
    const paths = checkPolicy(policy).map((p) => p.path);
    assert.deepEqual(paths, [expectedPath[name]], `${name}: ${JSON.stringify(checkPolicy(policy))}`);
  }
});
