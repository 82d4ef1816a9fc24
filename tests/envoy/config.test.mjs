// Refused configurations: a bad policy must never become a filter that lets
// requests through. At start-up Envoy exits naming the JSON path of the
// problem; on a live listener update (LDS) the update is rejected and the
// previous filter keeps serving.

import { test } from "node:test";
import assert from "node:assert/strict";
import { renameSync, writeFileSync } from "node:fs";
import path from "node:path";

import { loadVectors } from "../vectors/mint.mjs";
import {
  bootstrap,
  wasmFilter,
  startEnvoy,
  startUpstream,
  expectEnvoyToRefuse,
  send,
  stats,
  eventually,
  assertLogged,
  tempDir,
} from "./harness.mjs";

const { policy, policyText } = loadVectors();

const withIssuer = (change) => {
  const p = structuredClone(policy);
  change(p.issuers[0]);
  return p;
};
// The shared policy with an HMAC algorithm allowed: never acceptable.
const hmacPolicy = JSON.stringify(
  withIssuer((i) => (i.algorithms[0] = "HS256")),
  null,
  2,
);

test("Envoy refuses to start with a bad policy, naming its JSON path", async () => {
  const { code, output } = await expectEnvoyToRefuse(bootstrap({ httpFilters: [wasmFilter(hmacPolicy)] }));
  assert.notEqual(code, 0);
  assertLogged(output, /invalid configuration: issuers\[0\]\.algorithms\[0\]: algorithm `HS256` is never accepted/);
  assertLogged(output, /\(line \d+, column \d+\)/, "a plain policy's errors carry its position");
  assertLogged(output, /Unable to create Wasm plugin agentguard/);
});

test("every problem of a wrapped configuration is reported with its path", async () => {
  const p = withIssuer((i) => {
    delete i.jwks;
    i.jwks_uri = "https://sts.test/.well-known/jwks.json";
  });
  p.routes[0].path = "no-leading-slash";
  const config = JSON.stringify({ policy: p, jwks_refresh: "soon", decision_log: "debug" });
  const { code, output } = await expectEnvoyToRefuse(bootstrap({ httpFilters: [wasmFilter(config)] }));
  assert.notEqual(code, 0);
  assertLogged(output, /invalid configuration: jwks_refresh: expected a duration like `5m`, found `soon`/);

  const noCluster = JSON.stringify({ policy: p });
  const second = await expectEnvoyToRefuse(bootstrap({ httpFilters: [wasmFilter(noCluster)] }));
  assertLogged(second.output, /invalid configuration: policy\.routes\[0\]\.path: /);
  assertLogged(second.output, /invalid configuration: jwks_cluster: issuer `https:\/\/sts.test` has a `jwks_uri`/);
  assertLogged(second.output, /configuration refused \(2 problem\(s\)\)/);
});

test("an empty or non-JSON configuration is refused", async () => {
  for (const [config, pattern] of [
    ["", /the plugin configuration is empty/],
    ["issuers: []", /invalid configuration: \.: expected value/],
  ]) {
    const { code, output } = await expectEnvoyToRefuse(bootstrap({ httpFilters: [wasmFilter(config)] }));
    assert.notEqual(code, 0);
    assertLogged(output, pattern);
  }
});

test("a bad policy pushed to a running Envoy (LDS) is rejected; the old filter keeps serving", async () => {
  const upstream = await startUpstream();
  const dir = tempDir("lds");
  const ldsPath = path.join(dir, "lds.json");
  let version = 0;
  // Envoy watches the directory for moves: write aside, then rename over.
  const push = (configuration) => {
    version += 1;
    const [listener] = bootstrap({ httpFilters: [wasmFilter(configuration)], upstreamPort: upstream.port })
      .static_resources.listeners;
    const doc = {
      version_info: String(version),
      resources: [{ "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", ...listener }],
    };
    const tmp = path.join(dir, `lds.${version}.tmp`);
    writeFileSync(tmp, JSON.stringify(doc));
    renameSync(tmp, ldsPath);
  };
  const boot = bootstrap({ httpFilters: [], upstreamPort: upstream.port });
  delete boot.static_resources.listeners;
  boot.dynamic_resources = {
    lds_config: { path_config_source: { path: ldsPath, watched_directory: { path: dir } }, resource_api_version: "V3" },
  };
  const rejected = async () =>
    (await stats(envoy, "listener_manager.lds.update_rejected")).values["listener_manager.lds.update_rejected"];
  const challenge = async () => (await send(envoy.port, { path: "/v1/contacts/1" })).headers["www-authenticate"];

  let envoy;
  try {
    push(policyText);
    envoy = await startEnvoy(boot);
    assert.equal(await challenge(), 'Bearer realm="api.test"');

    push(hmacPolicy);
    await eventually(async () => (await rejected()) === 1, { what: "the LDS update to be rejected" });
    assertLogged(envoy.output(), /issuers\[0\]\.algorithms\[0\]: algorithm `HS256` is never accepted/);
    const still = await send(envoy.port, { path: "/v1/contacts/1" });
    assert.equal(still.status, 401, "the previous filter still decides");
    assert.equal(still.headers["www-authenticate"], 'Bearer realm="api.test"');

    push(JSON.stringify({ ...policy, realm: "api.updated" }));
    await eventually(async () => (await challenge()) === 'Bearer realm="api.updated"', {
      what: "the good update to take effect",
    });
    assert.equal(await rejected(), 1);
  } finally {
    await envoy?.stop();
    await upstream.close();
  }
});
