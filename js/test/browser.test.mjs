// The package's browser entry point (js/src/browser.js) in real headless
// Chromium: the page imports it over HTTP from 127.0.0.1 (a secure context,
// so WebCrypto is there), compiles the shared policy and decides Fetch
// Requests: ES256 signatures go through the browser's WebCrypto, EdDSA through Wasm.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { once } from "node:events";
import { extname, join, normalize } from "node:path";

import { chromium } from "playwright-core";
import { root } from "./helpers.mjs";

const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json", ".wasm": "application/wasm", ".html": "text/html" };
let server;
let browser;
let base;

before(async () => {
  // Serves js/ and tests/vectors/ only.
  server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
    if (path === "/") return res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>agentguard</title>");
    if (!path.startsWith("/js/") && !path.startsWith("/tests/vectors/")) return res.writeHead(404).end();
    try {
      const body = await readFile(join(root, path));
      res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
});

test("the browser entry point decides Fetch requests in Chromium", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/`);
  const result = await page.evaluate(async () => {
    const ag = await import("/js/src/browser.js");
    const policy = await (await fetch("/tests/vectors/policy.json")).text();
    const keys = await (await fetch("/tests/vectors/keys.json")).json();
    const guard = await ag.AgentGuard.create(policy);
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: "https://sts.test", aud: "https://api.test", sub: "user:alice", client_id: "crm-agent", scope: "crm.read", iat: now - 1, exp: now + 60 };
    const call = (token) =>
      guard.decide(new Request("https://api.test/v1/contacts/1", { headers: token ? { authorization: `Bearer ${token}` } : {} }));
    const es = ag.mint(keys.es256, { ...claims, jti: "b1" });
    const ed = ag.mint(keys.ed25519, { ...claims, jti: "b2" });
    const [h, p, s] = es.split(".");
    const tampered = `${h}.${p}.${s[0] === "A" ? "B" : "A"}${s.slice(1)}`;
    const missing = await call(null);
    const response = ag.toResponse(missing);
    return {
      es256: (await call(es)).decision,
      ed25519: (await call(ed)).decision,
      tampered: (await call(tampered)).reasons[0]?.code,
      missing: [response.status, response.headers.get("www-authenticate"), (await response.json()).reason],
      subtle: typeof crypto.subtle.verify,
    };
  });
  assert.deepEqual(errors, []);
  assert.deepEqual(result, {
    es256: "allow",
    ed25519: "allow",
    tampered: "token_signature_invalid",
    missing: [401, 'Bearer realm="api.test"', "credential_missing"],
    subtle: "function",
  });
});
