// The browser playground (www/), driven in real headless Chromium against the
// built static files served on 127.0.0.1:
//
//   node --test tests/browser/playground.test.mjs
//
// Builds target/www first (scripts/build-www.sh; it builds js/dist when
// missing), starts its own static server on a free port and stops it at the
// end. Screenshots go to target/artifacts/playground-*.png for a human to
// look at: a broken layout there is a failure even when every assertion holds.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** How many cases examples/policy.tests.json has: the playground's starter tests. */
const CASES = JSON.parse(readFileSync(join(root, "examples", "policy.tests.json"), "utf8")).cases.length;
const require = createRequire(join(root, "js", "package.json"));
const artifacts = join(root, "target", "artifacts");
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let chromium;
let server;
let browser;
let page;
const pageErrors = [];

const shot = (name) => page.screenshot({ path: join(artifacts, `playground-${name}.png`) });
const attr = (sel, name) => page.getAttribute(sel, name);

/** Sends the composer's request and waits for a new decision. */
async function send() {
  await page.evaluate(() => document.querySelector("#decision").replaceChildren());
  await page.click("#send");
  await page.waitForSelector("#decision .decision");
}

/** Downloads policy.json and policy.tests.json from the page and runs `agentguard test` on them. */
async function runWithCli(name) {
  const dir = join(artifacts, `playground-export-${name}`);
  mkdirSync(dir, { recursive: true });
  await page.click('[data-tab="tests"]');
  for (const button of ["#download-policy", "#tests-download"]) {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
    await download.saveAs(join(dir, download.suggestedFilename()));
  }
  try {
    return execFileSync(cli(), ["test", join(dir, "policy.tests.json")], { encoding: "utf8" });
  } catch (e) {
    throw new Error(`agentguard test failed on the playground's files in ${dir}:\n${e.stdout}${e.stderr}`);
  }
}

/** The native CLI (built once if missing: the same binary `cargo test --features cli` builds). */
function cli() {
  const path = process.env.AGENTGUARD_CLI ?? join(root, "target", "debug", "agentguard");
  if (!existsSync(path)) {
    execFileSync("cargo", ["build", "--quiet", "--features", "cli", "--bin", "agentguard"], { cwd: root, stdio: "inherit" });
  }
  return path;
}

/** Nothing on the page is wider than the window, and the two panes sit side by side. */
async function assertLayout(what) {
  const m = await page.evaluate(() => {
    const r = (sel) => document.querySelector(sel).getBoundingClientRect();
    return {
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      scrollHeight: document.documentElement.scrollHeight,
      innerHeight: window.innerHeight,
      policy: r(".policy-pane"),
      work: r(".work-pane"),
    };
  });
  assert.ok(m.scrollWidth <= m.innerWidth, `${what}: page wider than the window (${m.scrollWidth} > ${m.innerWidth})`);
  assert.ok(m.scrollHeight <= m.innerHeight, `${what}: page taller than the window (${m.scrollHeight} > ${m.innerHeight})`);
  assert.ok(m.policy.right <= m.work.left, `${what}: the panes overlap`);
  assert.ok(m.policy.width >= 440 && m.work.width >= 600, `${what}: panes too narrow (${m.policy.width}, ${m.work.width})`);
}

// Build before any test timeout starts: on a fresh checkout this compiles the
// Wasm core (scripts/build-js.sh), which takes minutes; afterwards it is a copy.
function build() {
  try {
    execFileSync("bash", [join(root, "scripts", "build-www.sh")], { cwd: root, stdio: "pipe" });
    return null;
  } catch (e) {
    const out = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim().split("\n").slice(-15).join("\n");
    return new Error(`the playground did not build (bash scripts/build-www.sh):\n${out || e.message}`);
  }
}
const buildError = build();

describe("browser playground", { timeout: 120_000 }, () => {
  before(async () => {
    if (buildError) throw buildError;
    mkdirSync(artifacts, { recursive: true });
    ({ chromium } = require("playwright-core"));
    const { serveStatic } = await import(pathToFileURL(join(root, "scripts", "serve-www.mjs")).href);
    server = await serveStatic({ dir: join(root, "target", "www"), port: 0 });
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
      args: CHROMIUM_ARGS,
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => pageErrors.push(`page error: ${e.message}`));
    page.on("console", (m) => m.type() === "error" && pageErrors.push(`console: ${m.text()}`));
    // Offline: nothing may be fetched from anywhere but the playground's own server.
    await page.route("**/*", (route) =>
      route.request().url().startsWith(server.url) ? route.continue() : route.abort("blockedbyclient"),
    );
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  test("loads the Wasm core and the default starter with its tests", async () => {
    const response = await page.goto(server.url);
    assert.equal(response.status(), 200);
    await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 30_000 });
    assert.equal(await page.evaluate(() => document.body.dataset.ready), "true");
    const pkg = readFileSync(join(root, "Cargo.toml"), "utf8").match(/^version = "(.+)"/m)[1];
    assert.equal(await page.textContent("#core-version"), `core ${pkg}`);
    assert.equal(await page.inputValue("#starter"), "payments");
    assert.equal(await page.textContent("#policy-status"), "valid");
    assert.equal(await page.inputValue("#policy-text"), readFileSync(join(root, "examples", "policy.json"), "utf8"));
    assert.equal(await page.textContent("#tests-badge"), String(CASES));
    // The .wasm is served as application/wasm (streaming compilation needs it).
    const wasm = await page.request.get(new URL("dist/agentguard_bg.wasm", server.url).href);
    assert.equal(wasm.headers()["content-type"], "application/wasm");
    await assertLayout("start");
    await shot("start");
  });

  test("a broken policy is highlighted at the problem's JSON path", async () => {
    const original = await page.inputValue("#policy-text");
    // A duration that does not parse: the core names `issuers[0].max_lifetime`.
    const broken = original.replace('"max_lifetime": "15m"', '"max_lifetime": "15 minutes"');
    assert.notEqual(broken, original);
    await page.fill("#policy-text", broken);
    const mark = 'mark.problem[data-path="issuers[0].max_lifetime"]';
    await page.waitForSelector(mark);
    assert.equal(await page.textContent(mark), '"max_lifetime": "15 minutes"');
    const line = broken.slice(0, broken.indexOf('"max_lifetime": "15 minutes"')).split("\n").length;
    assert.deepEqual(await page.$$eval(".gutter .ln.bad", (ls) => ls.map((l) => Number(l.dataset.line))), [line]);
    assert.equal(await page.textContent("#policy-status"), "1 problem");
    const item = await page.textContent('#problems li[data-path="issuers[0].max_lifetime"]');
    assert.match(item, /expected a duration like `5m`, found `15 minutes`/);
    assert.match(item, new RegExp(`line ${line}$`));
    // Clicking the problem selects exactly the highlighted text in the editor.
    await page.click('#problems li[data-path="issuers[0].max_lifetime"]');
    const selected = await page.evaluate(() => {
      const ta = document.querySelector("#policy-text");
      return ta.value.slice(ta.selectionStart, ta.selectionEnd);
    });
    assert.equal(selected, '"max_lifetime": "15 minutes"');
    // A bad policy compiles to no engine: requests are not decided.
    assert.equal(await page.evaluate(() => document.body.dataset.policy), "invalid");
    await assertLayout("policy error");
    await shot("policy-error");

    // Problems the core finds after parsing carry only a path (no line):
    // the editor finds the place itself, for each of them.
    const semantic = original
      .replace('"path": "/v1/drafts"', '"path": "/v1/**/drafts"')
      .replace('"id": "draft-email"', '"id": "read-contact"');
    await page.fill("#policy-text", semantic);
    await page.waitForSelector('mark.problem[data-path="routes[2].path"]');
    assert.equal(await page.textContent('mark.problem[data-path="routes[2].path"]'), '"path": "/v1/**/drafts"');
    assert.equal(await page.textContent('mark.problem[data-path="routes[2].id"]'), '"id": "read-contact"');
    assert.match(await page.textContent('#problems li[data-path="routes[2].path"]'), /`\*\*` may only be the last segment/);
    assert.match(await page.textContent('#problems li[data-path="routes[2].id"]'), /used twice/);

    // Not JSON at all: the core's line and column place the mark.
    const notJson = original.replace('"realm": "api.example.com",', '"realm": "api.example.com"');
    await page.fill("#policy-text", notJson);
    await page.waitForFunction(() => document.querySelectorAll("#problems li").length === 1);
    const bad = await page.$$eval(".gutter .ln.bad", (ls) => ls.map((l) => Number(l.dataset.line)));
    assert.deepEqual(bad, [4], "a missing comma after line 3 is reported on line 4");

    await page.fill("#policy-text", original);
    await page.waitForFunction(() => document.querySelector("#policy-status").textContent === "valid");
    await page.keyboard.press("Control+Home");
    assert.equal(await page.$$eval("mark.problem", (ms) => ms.length), 0);
  });

  test("a token minted in the browser is allowed", async () => {
    await page.click('[data-tab="tokens"]');
    // The form is prefilled from the policy's first issuer.
    assert.equal(await page.inputValue("#m-iss"), "https://sts.example.com");
    assert.equal(await page.inputValue("#m-aud"), "https://api.example.com");
    await page.fill("#m-scope", "crm.read mail.draft");
    await page.fill("#m-life", "5m");
    await page.click("#mint");
    const token = await page.inputValue("#minted-token");
    assert.match(token, /^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/);
    const header = JSON.parse(Buffer.from(token.split(".")[0], "base64url").toString());
    assert.deepEqual(header, { alg: "EdDSA", kid: "sts-2026-01", typ: "at+jwt" });
    await page.click("#use-token");
    assert.equal(await page.evaluate(() => document.body.dataset.tab), "request");
    assert.match(await page.inputValue("#req-headers"), new RegExp(`^authorization: Bearer ${token}$`, "m"));
    await send();
    assert.equal(await attr("#decision .decision", "data-outcome"), "allow");
    assert.equal(await attr("#decision .decision", "data-status"), "200");
    const stages = await page.$$eval("#decision tr[data-stage]", (rows) => rows.map((r) => [r.dataset.stage, r.dataset.result]));
    assert.ok(stages.length >= 10, `trace: ${JSON.stringify(stages)}`);
    assert.ok(stages.every(([, r]) => r === "pass" || r === "skip"), JSON.stringify(stages));
    assert.deepEqual(stages.find(([s]) => s === "token"), ["token", "pass"]);
    assert.match(await page.textContent("#decision .forward"), /x-agentguard-agent\s*spiffe:\/\/prod\.example\.com\/agents\/crm-assistant/);
    const event = JSON.parse(await page.textContent("#decision pre.event"));
    assert.equal(event.decision, "allow");
    assert.equal(event.route, "read-contact");
    await assertLayout("allow");
    await shot("allow");
  });

  test("a transfer body over the limit waits for a human (approval_when)", async () => {
    await page.click('[data-tab="tokens"]');
    await page.fill("#m-scope", "payments.write");
    await page.click("#mint");
    await page.click("#use-token");
    await page.selectOption("#req-method", "POST");
    await page.fill("#req-url", "https://api.example.com/v1/transfers");
    await page.fill("#req-body", '{"amount": 1500, "currency": "EUR"}');
    await send();
    assert.equal(await attr("#decision .decision", "data-outcome"), "approval_required");
    assert.match(await page.textContent("#decision .reasons"), /body \/amount is 1500, more than 1000/);
    assert.match(await page.textContent("#decision .challenge"), /action digest\s*[\w-]{43}/);
    await page.fill("#req-body", '{"amount": 250, "currency": "EUR"}');
    await send();
    assert.equal(await attr("#decision .decision", "data-outcome"), "allow");
    const event = JSON.parse(await page.textContent("#decision pre.event"));
    assert.equal(event.route, "transfer");
    // Back to the composer's starting request for the tests that follow.
    await page.selectOption("#req-method", "GET");
    await page.fill("#req-url", "https://api.example.com/v1/contacts/42");
    await page.fill("#req-body", "");
  });

  test("moving the clock forward expires the token", async () => {
    const before = Number(await attr("#clock-now", "data-now"));
    await page.click('[data-offset="3600"]');
    assert.equal(await page.inputValue("#clock-offset"), "3600");
    const after = Number(await attr("#clock-now", "data-now"));
    assert.ok(after - before >= 3600 && after - before < 3610, `clock moved ${after - before} s`);
    await send();
    assert.equal(await attr("#decision .decision", "data-outcome"), "deny");
    assert.equal(await attr("#decision .decision", "data-status"), "401");
    assert.equal(await attr("#decision .decision", "data-reasons"), "token_expired");
    assert.match(await page.textContent("#decision .reasons"), /token expired \d+ s ago/);
    assert.equal(await attr('#decision tr[data-stage="token"]', "data-result"), "fail");
    assert.match(await page.textContent("#decision .response"), /www-authenticate\s*Bearer realm="api\.example\.com", error="invalid_token"/);
    await assertLayout("expired");
    await shot("expired");
    await page.click("#clock-reset");
    assert.equal(await page.inputValue("#clock-offset"), "0");
  });

  test("the loop scenario shows 429s, then revocations, in the chart", async () => {
    await page.click('[data-tab="attacks"]');
    await page.click('[data-scenario="loop"]');
    await page.waitForFunction(() => document.body.dataset.sim === "done" || document.body.dataset.sim === "failed", null, { timeout: 60_000 });
    assert.equal(await page.evaluate(() => document.body.dataset.sim), "done", await page.textContent("#sim-progress"));
    assert.equal(await page.evaluate(() => document.body.dataset.tab), "traffic");
    const chart = await page.$eval("#sim-chart svg.stacked", (svg) => ({
      totals: Object.fromEntries(["allow", "limited", "revoked", "approval", "deny"].map((k) => [k, Number(svg.getAttribute(`data-total-${k}`))])),
      bars: [...svg.querySelectorAll("rect.bar")].map((r) => ({ outcome: r.dataset.outcome, count: Number(r.dataset.count), t: Number(r.dataset.t), h: Number(r.getAttribute("height")) })),
      events: [...svg.querySelectorAll("line.event")].length,
    }));
    const sum = (o) => chart.bars.filter((b) => b.outcome === o).reduce((a, b) => a + b.count, 0);
    // 25 requests a second for 30 s, one agent.
    assert.equal(chart.totals.allow + chart.totals.limited + chart.totals.revoked + chart.totals.approval + chart.totals.deny, 750);
    for (const o of ["allow", "limited", "revoked"]) {
      assert.ok(chart.totals[o] > 0, `no ${o} in the chart: ${JSON.stringify(chart.totals)}`);
      assert.equal(sum(o), chart.totals[o], `${o} bars add up to the total`);
    }
    assert.ok(chart.bars.every((b) => b.h > 0), "every bar is drawn");
    // First allowed, then rate-limited, then revoked for the rest of the run.
    const first = (o) => Math.min(...chart.bars.filter((b) => b.outcome === o).map((b) => b.t));
    assert.ok(first("allow") < first("limited") || first("allow") === 0);
    assert.ok(first("limited") <= first("revoked"));
    const lastSecond = chart.bars.filter((b) => b.t === 29);
    assert.deepEqual(lastSecond.map((b) => b.outcome), ["revoked"]);
    assert.ok(chart.totals.revoked > chart.totals.allow + chart.totals.limited, "most of the loop is refused as revoked");
    assert.equal(chart.events, 1, "one breaker trip marked");
    assert.match(await page.textContent("#sim-summary"), /looping-agent-1 revoked/);
    assert.ok((await page.$$eval("#sim-lanes rect.cell.revoked", (c) => c.length)) > 20);
    assert.equal(await page.textContent('.legend-item[data-outcome="revoked"] strong'), String(chart.totals.revoked));
    await assertLayout("loop");
    await shot("loop");
  });

  test("the approval scenario: challenge, approval from the decision's digest, one use", async () => {
    await page.click('[data-tab="attacks"]');
    await page.click('[data-scenario="approval"]');
    await page.waitForSelector('#scenario-result li.step[data-step="3"]');
    const steps = await page.$$eval("#scenario-result li.step", (ls) => ls.map((l) => [l.dataset.ok, l.dataset.outcome, l.dataset.code]));
    assert.deepEqual(steps, [
      ["true", "approval_required", "approval_required"],
      ["true", "allow", ""],
      ["true", "deny", "approval_digest_mismatch"],
      ["true", "deny", "approval_replayed"],
    ]);
    await page.click('#scenario-result li.step[data-step="0"]');
    assert.match(await page.textContent("#scenario-decision .challenge"), /action digest\s*[\w-]{43}/);
    await assertLayout("attacks");
    await shot("attacks");
  });

  test("the policy tests run green with one click, and the CLI runs them too", async () => {
    await page.click('[data-tab="tests"]');
    await page.click("#tests-run");
    await page.waitForSelector("#tests-results li.result");
    assert.equal(await page.textContent("#tests-summary"), `${CASES} passed, 0 failed`);
    const results = await page.$$eval("#tests-results li.result", (ls) => ls.map((l) => [l.dataset.name, l.dataset.ok]));
    const cli = JSON.parse(readFileSync(join(root, "examples", "policy.tests.json"), "utf8"));
    assert.deepEqual(results, cli.cases.map((c) => [c.name, "true"]));
    assert.equal(await page.textContent("#tests-badge"), `${CASES} ✓`);
    // The last composer request (the expired token, an hour ahead) becomes a case.
    await page.fill("#case-name", "expired-in-the-playground");
    await page.click("#case-add");
    assert.equal(await page.textContent("#tests-badge"), String(CASES + 1));
    await page.click("#tests-run");
    await page.waitForFunction((n) => document.querySelector("#tests-summary").textContent === `${n} passed, 0 failed`, CASES + 1);
    assert.equal(await attr('#tests-results li.result[data-name="expired-in-the-playground"]', "data-ok"), "true");
    await assertLayout("tests");
    await shot("tests");
    const out = await runWithCli("examples");
    assert.match(out, /^ok {3}expired-in-the-playground$/m);
    assert.match(out, new RegExp(`${CASES + 1} passed, 0 failed`));
  });

  test("a generated starter (DPoP-bound agent): its tests pass here and in the CLI", async () => {
    await page.selectOption("#starter", "dpop");
    await page.waitForFunction(() => document.querySelector("#policy-status").textContent === "valid" && document.querySelector("#policy-text").value.includes('"binding": "dpop"'));
    await page.click('[data-tab="tests"]');
    await page.click("#tests-run");
    await page.waitForSelector("#tests-results li.result");
    assert.equal(await page.textContent("#tests-summary"), "6 passed, 0 failed");
    const out = await runWithCli("dpop");
    assert.match(out, /^ok {3}same-proof-again$/m);
    assert.match(out, /6 passed, 0 failed/);
    await page.selectOption("#starter", "payments");
    await page.waitForFunction((n) => document.querySelector("#tests-badge").textContent === String(n), CASES);
  });

  test("a shared link and an exported file restore the policy, the tests and the scenario", async () => {
    await page.click('[data-tab="attacks"]');
    await page.click('[data-scenario="dpop-replay"]');
    await page.waitForSelector('#scenario-result li.step[data-step="1"]');
    await page.waitForTimeout(700); // the link follows the state after a short debounce
    const url = page.url();
    assert.match(url, /#s=[\w-]+$/);
    const other = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      other.on("pageerror", (e) => pageErrors.push(`page error (shared): ${e.message}`));
      await other.goto(url);
      await other.waitForFunction(() => document.body.dataset.ready === "true");
      await other.waitForSelector('#scenario-result li.step[data-step="1"]');
      assert.equal(await other.inputValue("#policy-text"), await page.inputValue("#policy-text"));
      assert.equal(await other.textContent("#tests-badge"), String(CASES));
      assert.equal(await other.inputValue("#starter"), "payments");
      const steps = await other.$$eval("#scenario-result li.step", (ls) => ls.map((l) => [l.dataset.ok, l.dataset.code]));
      assert.deepEqual(steps, [["true", ""], ["true", "dpop_proof_replayed"]]);
    } finally {
      await other.close();
    }

    // Export to a file, change everything, import it back.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
    const file = join(artifacts, "playground-export.json");
    await download.saveAs(file);
    const saved = JSON.parse(readFileSync(file, "utf8"));
    assert.equal(saved.format, "agentguard-playground");
    assert.equal(saved.policy, await page.inputValue("#policy-text"));
    assert.equal(saved.tests.cases.length, CASES);
    assert.ok(saved.keys.client?.d, "the browser's own DPoP key is in the file");
    assert.ok(!saved.keys.issuer, "the example keys are not");
    await page.selectOption("#starter", "read-only");
    await page.waitForFunction(() => document.querySelector("#tests-badge").textContent === "8");
    await page.setInputFiles("#import", file);
    await page.waitForFunction((n) => document.querySelector("#tests-badge").textContent === String(n), CASES);
    assert.equal(await page.inputValue("#policy-text"), saved.policy);
    assert.equal(await page.textContent("#policy-status"), "valid");
    assert.deepEqual(pageErrors, []);
  });
  test("activity log: the session's decisions and a gateway's log file become the CLI's report", async () => {
    await page.click('[data-tab="log"]');
    const summary = await page.textContent("#log-summary");
    const n = Number(summary.match(/^(\d+) decisions? this session$/)?.[1]);
    assert.ok(n > 0, `decisions recorded by the earlier tests: ${summary}`);
    assert.equal(await page.textContent("#log-badge"), String(n));

    // The session's log downloads as JSON Lines of decision events...
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#log-download")]);
    const sessionFile = join(artifacts, "playground-decisions.jsonl");
    await download.saveAs(sessionFile);
    const events = readFileSync(sessionFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(events.length, n);
    assert.ok(events.every((e) => e.v && e.decision), "every line is a decision event");
    // ...and its report in the page has the file's numbers, as the CLI's does.
    await page.click("#log-report-session");
    const report = page.frameLocator("#log-report");
    const number = async (id) => Number(await report.locator(`#${id}`).textContent());
    assert.equal(await number("total-events"), n);
    const count = (list, o) => list.filter((e) => e.decision === o).length;
    assert.equal(await number("total-allow"), count(events, "allow"));
    assert.equal(await number("total-deny"), count(events, "deny"));
    assert.equal(await number("total-revoked"), count(events, "revoked"));
    assert.ok(count(events, "revoked") > 0, "the loop scenario revoked an agent");
    const cliSummary = execFileSync(cli(), ["report", sessionFile], { encoding: "utf8" });
    assert.match(cliSummary, new RegExp(`\\b${n} decisions`));

    // A log file from elsewhere (here the CLI's `eval --log`), with one line that is not an event.
    const logFile = join(artifacts, "playground-gateway.jsonl");
    rmSync(logFile, { force: true });
    const requests = readdirSync(join(root, "examples", "requests")).filter((f) => f.endsWith(".json"));
    for (const r of requests) {
      execFileSync(cli(), ["eval", "--policy", join(root, "examples", "policy.json"),
        "--request", join(root, "examples", "requests", r), "--log", logFile]);
    }
    const logged = readFileSync(logFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    appendFileSync(logFile, "not a decision event\n");
    await page.setInputFiles("#log-file", logFile);
    await page.waitForFunction((k) => document.querySelector("#log-source").textContent.includes(`: ${k} decisions`), logged.length);
    assert.equal(await number("total-events"), logged.length);
    assert.equal(await number("total-deny"), count(logged, "deny"));
    const agents = new Set(logged.map((e) => e.agent?.agent ?? "(anonymous)"));
    assert.equal(await number("total-agents"), agents.size);
    assert.match(await page.textContent("#log-source"), /skipped 1 line that is not a decision event/);
    await assertLayout("activity log");
    await shot("log");
    assert.deepEqual(pageErrors, []);
  });

  test("a policy's revocation_list: the pasted list revokes; a bad one is named and, alone, fails closed", async () => {
    // A token for the composer's read route (the test before sent a payments one).
    await page.click('[data-tab="tokens"]');
    await page.fill("#m-scope", "crm.read mail.draft");
    await page.click("#mint");
    await page.click("#use-token");
    const original = await page.inputValue("#policy-text");
    assert.equal(await page.isHidden("#revocation-list"), true, "no list pane without a revocation_list");
    const withList = (uri) => JSON.stringify({ ...JSON.parse(original), revocation_list: { uri, refresh: "1m" } }, null, 2);
    const statusIs = (text) =>
      page.waitForFunction((t) => document.querySelector("#revocation-list-status").textContent === t, text);
    try {
    await page.fill("#policy-text", withList("https://revocations.example.com/list.json"));
    await page.waitForFunction(() => !document.querySelector("#revocation-list").hidden);
    assert.equal(await page.textContent("#revocation-list-uri"), "https://revocations.example.com/list.json");
    await statusIs("0 entries");
    await send();
    assert.equal(await attr("#decision .decision", "data-outcome"), "allow");

    // A list naming the composer's token's subject.
    const token = (await page.inputValue("#req-headers")).match(/Bearer (\S+)/)[1];
    const sub = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub;
    await page.click("#revocation-list summary");
    await page.fill("#revocation-list-text", JSON.stringify({ sub: [sub] }));
    await statusIs("1 entry");
    await send();
    assert.equal(await attr("#decision .decision", "data-outcome"), "revoked");
    assert.equal(await attr("#decision .decision", "data-reasons"), "revoked_subject");
    await shot("revocation-list");

    // A list the core refuses: its error names the JSON path; the last good list stays in force.
    await page.fill("#revocation-list-text", '{"sub": [1]}');
    await statusIs("not loaded");
    assert.match(await attr("#revocation-list-status", "title"), /sub\[0\]: invalid type: integer `1`, expected a string/);
    await send();
    assert.equal(await attr("#decision .decision", "data-reasons"), "revoked_subject");
    // A fresh engine (another policy) with only that list: nothing to rely on, 503.
    await page.fill("#policy-text", withList("https://revocations.example.com/other.json"));
    await page.waitForFunction(() => document.querySelector("#revocation-list-uri").textContent.endsWith("/other.json"));
    await statusIs("not loaded");
    await send();
    assert.equal(await attr("#decision .decision", "data-status"), "503");
    assert.equal(await attr("#decision .decision", "data-reasons"), "state_unavailable");
    assert.match(await page.textContent("#decision .reasons"), /revocation list from `https:\/\/revocations\.example\.com\/other\.json` has not been loaded yet/);

    // A policy whose list must be signed (`revocation_list.jwks`): the pasted
    // JWS is verified by the core in the page; a forged or plain list is refused.
    const { generateKey, signJwt } = await import(pathToFileURL(join(root, "tests", "vectors", "mint.mjs")).href);
    const [signer, forger] = [await generateKey("ES256", "lists-1"), await generateKey("ES256", "lists-1")];
    const signedPolicy = JSON.parse(withList("https://revocations.example.com/signed.jws"));
    signedPolicy.revocation_list.jwks = { keys: [signer.publicJwk] };
    await page.fill("#policy-text", JSON.stringify(signedPolicy, null, 2));
    await page.waitForFunction(() => document.querySelector("#revocation-list-uri").textContent.endsWith("/signed.jws"));
    const iat = Math.floor(Number(await attr("#clock-now", "data-now")));
    const signedList = (key) => signJwt(key.privateJwk, { sub: [sub], iat }, "revocation-list+jwt");
    await page.fill("#revocation-list-text", await signedList(signer));
    await statusIs("1 entry");
    await send();
    assert.equal(await attr("#decision .decision", "data-reasons"), "revoked_subject");
    await page.fill("#revocation-list-text", await signedList(forger));
    await statusIs("not loaded");
    assert.match(await attr("#revocation-list-status", "title"), /signature: /);
    await page.fill("#revocation-list-text", JSON.stringify({ sub: [sub] }));
    // Still "not loaded": wait for the new reason.
    await page.waitForFunction(() => /expected a signed list/.test(document.querySelector("#revocation-list-status").title));
    assert.equal(await page.textContent("#revocation-list-status"), "not loaded");
    } finally {
      // Back to the starter for the tests that follow.
      await page.fill("#revocation-list-text", "{}");
      await page.fill("#policy-text", original);
    }
    await page.waitForFunction(() => document.querySelector("#revocation-list").hidden);
    assert.equal(await page.textContent("#policy-status"), "valid");
  });
});
