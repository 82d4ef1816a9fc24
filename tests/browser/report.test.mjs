// The HTML activity report, rendered in real (headless) Chromium.
//
//   node --test tests/browser/report.test.mjs     (after `cargo build --features cli`)
//
// Writes target/artifacts/report.png for a human to look at.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(root, "js", "package.json"));
const { chromium } = require("playwright-core");
const cli = process.env.AGENTGUARD_CLI ?? join(root, "target", "debug", "agentguard");
const artifacts = join(root, "target", "artifacts");

test("the HTML report renders with the numbers of the log", async () => {
  mkdirSync(artifacts, { recursive: true });
  const log = join(artifacts, "decisions.jsonl");
  rmSync(log, { force: true });
  const requests = readdirSync(join(root, "examples", "requests")).filter((f) => f.endsWith(".json"));
  // Three passes over the example requests, as three hours of traffic.
  for (const [pass, offset] of [0, 3600, 7200].entries()) {
    for (const r of requests) {
      const req = JSON.parse(readFileSync(join(root, "examples", "requests", r), "utf8"));
      execFileSync(cli, ["eval", "--policy", join(root, "examples", "policy.json"),
        "--request", join(root, "examples", "requests", r), "--now", String(req.now + offset + pass), "--log", log]);
    }
  }
  const lines = readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, requests.length * 3);
  const html = join(artifacts, "report.html");
  const summary = execFileSync(cli, ["report", log, "--html", html], { encoding: "utf8" });
  assert.match(summary, new RegExp(`${lines.length} decisions`));
  assert.ok(existsSync(html));

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(pathToFileURL(html).href);
    const number = async (id) => Number(await page.textContent(`#${id}`));
    assert.equal(await number("total-events"), lines.length);
    const count = (o) => lines.filter((e) => e.decision === o).length;
    assert.equal(await number("total-allow"), count("allow"));
    assert.equal(await number("total-deny"), count("deny"));
    assert.equal(await number("total-revoked"), count("revoked"));
    const agents = new Set(lines.map((e) => e.agent?.agent ?? "(anonymous)"));
    assert.equal(await number("total-agents"), agents.size);
    // The activity chart has one line per top agent and spans three hours.
    const polylines = await page.$$eval("#activity polyline", (ps) => ps.map((p) => p.getAttribute("points").split(" ").length));
    assert.ok(polylines.length >= 2, `lines: ${polylines.length}`);
    assert.ok(polylines.every((n) => n === 3), `points per line: ${polylines}`);
    const reasons = await page.$$eval("#reasons tr", (rows) => rows.length);
    const refused = lines.filter((e) => e.decision === "deny" || e.decision === "revoked");
    assert.equal(reasons, new Set(refused.flatMap((e) => e.reasons)).size);
    assert.match(await page.textContent("header"), /2026-01-01 10:00:00/);
    await page.screenshot({ path: join(artifacts, "report.png"), fullPage: true });
  } finally {
    await browser.close();
  }
});
