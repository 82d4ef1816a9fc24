// The playground: wires the editor, the composer, the token tools, the
// scenario library, the simulator and the policy tests to the Wasm core.
// Every verdict on this page is the core's; the page only builds requests
// and draws what comes back.

import { loadCore, coreVersion, checkPolicy, Engine, revocationList } from "./engine.js";
import { JsonEditor } from "./editor.js";
import { h, $, $$, clear, relTime, isoTime, download } from "./dom.js";
import { renderDecision, badge } from "./decision-view.js";
import { decodeJwt, dpopProof, publicJwk, thumbprint, mint } from "./crypto.js";
import { loadKeyRing, saveKeyRing, newKey, describe, ROLES } from "./keyring.js";
import { STARTERS, DEFAULT_STARTER, loadStarter } from "./starters.js";
import { Client, HOST } from "./world.js";
import { SCENARIOS, runScenario } from "./scenarios.js";
import { simulate, PRESETS, MIXES } from "./simulator.js";
import { stackedChart, laneChart, SERIES } from "./chart.js";
import { validateTests, runTests, caseFrom } from "./policytests.js";
import { encodeState, stateFromHash, classifyImport, exportDocument } from "./share.js";
import { initLogView } from "./logview.js";

const state = {
  keys: null, // the key ring
  defaultKeys: null,
  starter: DEFAULT_STARTER,
  policyText: "",
  policy: null, // parsed, when valid
  engine: null, // the composer's engine (stateful across sends)
  problems: [],
  tests: { policy: "policy.json", cases: [] },
  testsError: null,
  offset: 0,
  last: null, // {request, decision} of the last composer send
  scenario: null,
  sim: { ...PRESETS.fleet },
};

// ---------------------------------------------------------------------------
// Small things

const now = () => Math.floor(Date.now() / 1000) + state.offset;

let toastTimer;
function toast(text, kind = "info") {
  const t = $("#toast");
  t.textContent = text;
  t.className = kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 3500);
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** "5m", "90s", "300" → seconds. */
function seconds(text) {
  const m = /^\s*(\d+)\s*([smhd]?)\s*$/.exec(text);
  if (!m) throw new Error(`expected seconds or a duration like \`5m\`, found \`${text}\``);
  return Number(m[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

function showTab(name) {
  for (const b of $$(".tabs [data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const t of $$(".tab")) t.hidden = t.id !== `tab-${name}`;
  document.body.dataset.tab = name;
  scheduleSave();
}

const client = () => new Client(state.keys, state.policy);

// ---------------------------------------------------------------------------
// Policy editor with live validation

let editor;

function setPolicyText(text) {
  editor.value = text;
  onPolicyChange(text, true);
}

function onPolicyChange(text, immediate = false) {
  state.policyText = text;
  if (immediate) validate();
  else validateSoon();
  scheduleSave();
}

const validateSoon = debounce(() => validate(), 200);

/**
 * The list pane, for a policy with a `revocation_list`: the list is loaded
 * into the page's engine now, so its status (entries, or the core's error
 * with the JSON path) shows before any request.
 */
function showRevocationList() {
  const source = state.engine?.revocationListSource;
  const pane = $("#revocation-list");
  pane.hidden = !source;
  if (!source) return;
  $("#revocation-list-uri").textContent = source.uri;
  const status = $("#revocation-list-status");
  try {
    const entries = state.engine.loadRevocationList(now() * 1000);
    status.textContent = `${entries} entr${entries === 1 ? "y" : "ies"}`;
    status.className = "chip ok";
    status.title = "";
  } catch (e) {
    status.textContent = "not loaded";
    status.className = "chip bad";
    status.title = String(e.message ?? e);
    toast(`revocation list: ${status.title}`, "error");
  }
}

function setRevocationListText(text) {
  revocationList.text = text;
  if ($("#revocation-list-text").value !== text) $("#revocation-list-text").value = text;
  showRevocationList();
}

function validate() {
  const text = state.policyText;
  const problems = checkPolicy(text);
  state.problems = problems;
  const ranges = editor.setProblems(problems);
  const list = clear($("#problems"));
  const chip = $("#policy-status");
  state.engine?.free();
  state.engine = null;
  state.policy = null;
  if (problems.length === 0) {
    try {
      state.engine = new Engine(text, { log: true });
      state.policy = JSON.parse(text);
      chip.textContent = "valid";
      chip.className = "chip ok";
      showRevocationList();
    } catch (e) {
      chip.textContent = "does not compile";
      chip.className = "chip bad";
      list.append(h("li.problem", h("code.path", "."), h("span", String(e.message ?? e))));
    }
  } else {
    chip.textContent = `${problems.length} problem${problems.length === 1 ? "" : "s"}`;
    chip.className = "chip bad";
    ranges.forEach((r, i) => {
      const p = r.problem;
      list.append(
        h(
          "li.problem",
          {
            dataset: { path: p.path, line: String(r.line) },
            tabindex: "0",
            title: "show in the editor",
            onclick: () => editor.reveal(i),
            onkeydown: (e) => e.key === "Enter" && editor.reveal(i),
          },
          h("code.path", p.path),
          h("span.msg", p.message),
          h("span.where", `line ${r.line}`),
        ),
      );
    });
  }
  document.body.dataset.policy = state.engine ? "valid" : "invalid";
  updateEngineStats();
  renderKeys();
  prefillMint();
}

function updateEngineStats() {
  const el = $("#engine-stats");
  if (!state.engine) {
    el.textContent = "no engine: fix the policy";
    return;
  }
  const s = state.engine.stats();
  el.textContent = `engine: ${s.cachedTokens} cached token${s.cachedTokens === 1 ? "" : "s"}, ${s.stateKeys} state entr${s.stateKeys === 1 ? "y" : "ies"}`;
}

async function applyStarter(id) {
  const { text, tests } = await loadStarter(id, state.keys);
  state.starter = id;
  $("#starter").value = id;
  setPolicyText(text);
  setTests(tests);
  state.last = null;
  $("#case-add").disabled = true;
}

// ---------------------------------------------------------------------------
// Request composer

function parseHeaders(text) {
  const headers = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const i = line.indexOf(":");
    if (i <= 0) throw new Error(`header line \`${line.slice(0, 40)}\` has no \`name: value\``);
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    if (name in headers) headers[name] = [].concat(headers[name], value);
    else headers[name] = value;
  }
  return headers;
}

/** Sets (or removes, with null) one header line in the composer. */
function setHeader(name, value) {
  const lines = $("#req-headers").value.split("\n").filter((l) => l.trim() && l.split(":")[0].trim().toLowerCase() !== name);
  if (value !== null) lines.push(`${name}: ${value}`);
  $("#req-headers").value = lines.join("\n");
  scheduleSave();
}

function composerFields() {
  return {
    method: $("#req-method").value,
    url: $("#req-url").value.trim(),
    headers: $("#req-headers").value,
    source_ip: $("#req-ip").value.trim(),
    client_cert_sha256: $("#req-cert").value.trim(),
    body: $("#req-body").value,
    dpop: $("#req-dpop").checked,
  };
}

function setComposer(f) {
  if (!f) return;
  $("#req-method").value = f.method ?? "GET";
  $("#req-url").value = f.url ?? "";
  $("#req-headers").value = f.headers ?? "";
  $("#req-ip").value = f.source_ip ?? "";
  $("#req-cert").value = f.client_cert_sha256 ?? "";
  $("#req-body").value = f.body ?? "";
  $("#req-dpop").checked = Boolean(f.dpop);
}

/** The core request for the composer's fields at the clock's time. */
async function composeRequest() {
  const f = composerFields();
  let url;
  try {
    url = new URL(f.url);
  } catch {
    throw new Error(`URL: expected an absolute URL like https://${HOST}/v1/contacts/42`);
  }
  const headers = parseHeaders(f.headers);
  const t = now();
  if (f.dpop) {
    const auth = [].concat(headers.authorization ?? [])[0] ?? "";
    const token = auth.split(" ")[1];
    headers.dpop = await dpopProof(state.keys.client, { method: f.method, url: url.href, token, now: t });
  }
  const req = {
    method: f.method,
    scheme: url.protocol.replace(":", ""),
    host: url.host,
    path: url.pathname + url.search,
    headers,
    now: t,
  };
  if (f.source_ip) req.source_ip = f.source_ip;
  if (f.client_cert_sha256) req.client_cert_sha256 = f.client_cert_sha256;
  // The core hashes the body into `body_sha256` (approvals bind to it) and
  // reads it for a route's `approval_when` conditions.
  if (f.body) req.body = f.body;
  return req;
}

async function send() {
  const out = $("#decision");
  if (!state.engine) {
    clear(out).append(h("p.error-text", "The policy has problems; fix them in the editor first."));
    return;
  }
  let request;
  try {
    request = await composeRequest();
  } catch (e) {
    clear(out).append(h("p.error-text", e.message));
    return;
  }
  $("#req-json").textContent = JSON.stringify(request, null, 2);
  const decision = state.engine.decide(request);
  state.last = { request, decision };
  $("#case-add").disabled = false;
  $("#case-name").placeholder = `name for: ${request.method} ${request.path} → ${decision.decision}`;
  renderDecision(out, decision, { now: request.now, onApprove: approveAndRetry });
  updateEngineStats();
}

/** The human-in-the-loop: mint an approval for the challenge, attach it, send again. */
async function approveAndRetry(decision) {
  try {
    const approval = client().approval(now(), decision.approval, { approver: $("#a-sub").value.trim() || undefined });
    setHeader(client().approvalHeader, approval);
    toast("approval minted for the challenge's digest and agent; retrying");
    await send();
  } catch (e) {
    toast(e.message, "error");
  }
}

// ---------------------------------------------------------------------------
// Keys and tokens

async function renderKeys() {
  if (!state.keys) return;
  const table = $("#keys-table");
  const rows = [h("tr", h("th", "role"), h("th", "kid"), h("th", "alg"), h("th", "RFC 7638 thumbprint"))];
  for (const [role, what] of Object.entries(ROLES)) {
    const d = await describe(state.keys[role]);
    rows.push(h("tr", { dataset: { role } }, h("td", h("strong", role), h("div.muted.small-text", what)), h("td.mono", d.kid ?? "–"), h("td", d.alg), h("td.mono.small-text", d.thumbprint)));
  }
  clear(table).append(...rows);
  // Does the policy trust the issuer key we sign with?
  const warn = $("#keys-warning");
  const kids = (state.policy?.issuers?.[0]?.jwks?.keys ?? []).map((k) => k.kid);
  if (state.policy && state.policy.issuers?.[0]?.jwks && !kids.includes(state.keys.issuer.kid)) {
    warn.textContent = `The policy's first issuer trusts ${kids.map((k) => `\`${k}\``).join(", ") || "no key"}, not \`${state.keys.issuer.kid}\`: tokens minted here will be refused (token_key_not_found). Use "Trust it in the policy" or "Example keys".`;
    warn.hidden = false;
  } else warn.hidden = true;
}

function prefillMint() {
  const iss = state.policy?.issuers?.[0];
  if (!iss) return;
  if (!$("#m-iss").dataset.touched) $("#m-iss").value = iss.iss;
  if (!$("#m-aud").dataset.touched) $("#m-aud").value = iss.audiences?.[0] ?? "";
  if (!$("#m-bind").dataset.touched) $("#m-bind").value = iss.binding === "dpop" ? "dpop" : iss.binding === "mtls" ? "mtls" : "none";
}

async function mintFromForm() {
  const err = $("#mint-error");
  err.textContent = "";
  try {
    const t = now();
    const claims = {
      iss: $("#m-iss").value.trim(),
      aud: $("#m-aud").value.trim(),
      sub: $("#m-sub").value.trim(),
      iat: t,
      exp: t + seconds($("#m-life").value),
    };
    const clientId = $("#m-client").value.trim();
    if (clientId) claims.client_id = clientId;
    const scope = $("#m-scope").value.trim();
    if (scope) claims.scope = scope;
    const actors = $("#m-act").value.split("\n").map((s) => s.trim()).filter(Boolean);
    if (actors.length) {
      claims.act = { sub: actors[0] };
      let inner = claims.act;
      for (const a of actors.slice(1)) inner = inner.act = { sub: a };
    }
    const authz = $("#m-authz").value.trim();
    if (authz) {
      try {
        claims.authorization_details = JSON.parse(authz);
      } catch (e) {
        throw new Error(`authorization_details: ${e.message}`);
      }
    }
    const bind = $("#m-bind").value;
    if (bind === "dpop") claims.cnf = { jkt: await thumbprint(state.keys.client) };
    if (bind === "mtls") {
      const cert = $("#req-cert").value.trim();
      if (!cert) throw new Error("mTLS binding: set the request's client certificate SHA-256 first");
      claims.cnf = { "x5t#S256": /^[0-9a-f]{64}$/i.test(cert) ? b64FromHex(cert) : cert };
    }
    const extra = $("#m-extra").value.trim();
    if (extra) {
      let obj;
      try {
        obj = JSON.parse(extra);
      } catch (e) {
        throw new Error(`other claims: ${e.message}`);
      }
      if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw new Error("other claims: expected a JSON object");
      Object.assign(claims, obj);
    }
    const token = mint(state.keys.issuer, claims);
    $("#minted-token").value = token;
    $("#use-token").disabled = false;
    $("#decode-in").value = token;
    renderDecoded();
  } catch (e) {
    err.textContent = e.message ?? String(e);
  }
}

function b64FromHex(hexText) {
  const bytes = new Uint8Array(hexText.match(/../g).map((b) => parseInt(b, 16)));
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Puts a token into the composer as the credential (DPoP scheme and proof when it is bound). */
function useToken(token) {
  let bound = false;
  try {
    bound = Boolean(decodeJwt(token).claims.cnf?.jkt);
  } catch {
    bound = false;
  }
  setHeader("authorization", `${bound ? "DPoP" : "Bearer"} ${token.trim()}`);
  $("#req-dpop").checked = bound;
  showTab("request");
  toast(bound ? "token set as `Authorization: DPoP`; a fresh proof is added on send" : "token set as `Authorization: Bearer`");
}

function renderDecoded() {
  const out = clear($("#decode-out"));
  const err = $("#decode-error");
  err.textContent = "";
  const text = $("#decode-in").value.trim();
  if (!text) return;
  try {
    const { header, claims } = decodeJwt(text);
    const t = now();
    const times = ["iat", "nbf", "exp"].filter((k) => typeof claims[k] === "number").map((k) => h("li", h("code", k), ` ${isoTime(claims[k])} (${relTime(claims[k] - t)})`));
    out.append(
      h("div", h("h4", "Header"), h("pre.json", JSON.stringify(header, null, 2))),
      h("div", h("h4", "Claims"), h("pre.json", JSON.stringify(claims, null, 2)), times.length ? h("ul.times", times) : null),
    );
  } catch (e) {
    err.textContent = `not a JWT: ${e.message}`;
  }
}

// ---------------------------------------------------------------------------
// Attacks and scenarios

const reasonCode = (d) => (d.reasons[0] ? h("code.code", d.reasons[0].code) : h("code.code.none", "allowed"));

function renderScenarioList() {
  const list = clear($("#scenario-list"));
  for (const sc of SCENARIOS) {
    list.append(
      h(
        "button.scenario",
        { type: "button", dataset: { scenario: sc.id }, title: `run “${sc.title}”`, onclick: () => runScenarioById(sc.id) },
        h("span.sc-title", h("span.play", "▶"), sc.title),
        h("span.sc-summary", sc.summary),
      ),
    );
  }
}

async function runScenarioById(id) {
  const sc = SCENARIOS.find((s) => s.id === id);
  if (!sc) return;
  state.scenario = id;
  scheduleSave();
  for (const el of $$(".scenario")) el.classList.toggle("selected", el.dataset.scenario === id);
  if (!state.engine) {
    toast("fix the policy first", "error");
    return;
  }
  if (sc.simulation) {
    Object.assign(state.sim, PRESETS[sc.simulation]);
    setSimForm(state.sim);
    showTab("traffic");
    await runSimulation();
    return;
  }
  const box = $("#scenario-result");
  const detail = $("#scenario-decision");
  const engine = new Engine(state.policyText, { log: true });
  let results;
  try {
    results = await runScenario(sc, { engine, client: client(), now: now() });
  } finally {
    engine.free();
  }
  clear(box).append(
    h("h3", sc.title),
    h("p.hint", sc.summary),
    h(
      "ol.steps",
      results.map((r, i) =>
        h(
          `li.step.${r.ok ? "ok" : "fail"}`,
          { dataset: { step: String(i), ok: String(r.ok), outcome: r.decision?.decision ?? "error", code: r.decision?.reasons[0]?.code ?? "" }, onclick: () => showStep(r, i) },
          h("span.mark", r.ok ? "✓" : "✗"),
          h("span.step-label", r.label),
          r.decision ? badge(r.decision) : h("span.badge.deny", "error"),
          r.decision ? reasonCode(r.decision) : h("span.error-text", r.error),
          r.ok ? null : h("span.expected", `expected ${r.expect.decision}${r.expect.code && r.expect.code !== r.expect.decision ? ` / ${r.expect.code}` : ""}`),
        ),
      ),
    ),
  );
  box.hidden = false;
  const showStep = (r, i) => {
    for (const li of $$(".step", box)) li.classList.toggle("selected", li.dataset.step === String(i));
    if (!r.decision) {
      detail.hidden = true;
      return;
    }
    renderDecision(detail, r.decision, { now: r.request.now });
    detail.prepend(h("div.step-request", h("strong", `Step ${i + 1}: `), `${r.request.method} ${r.request.path}`, h("details", h("summary", "request JSON"), h("pre.json", JSON.stringify(r.request, null, 2)))));
    detail.hidden = false;
  };
  const last = results.length - 1;
  if (last >= 0) showStep(results[last], last);
  box.scrollIntoView({ block: "start", behavior: "instant" });
}

// ---------------------------------------------------------------------------
// Traffic simulator

function setSimForm(c) {
  $("#sim-agents").value = c.agents;
  $("#sim-rate").value = c.rate;
  $("#sim-loopers").value = c.loopers;
  $("#sim-loop-rate").value = c.loopRate;
  $("#sim-duration").value = c.duration;
  $("#sim-mix").value = c.mix;
}

function readSimForm() {
  const num = (id, min, max) => Math.min(max, Math.max(min, Number($(id).value) || 0));
  return {
    agents: Math.round(num("#sim-agents", 0, 50)),
    rate: num("#sim-rate", 0.1, 50),
    loopers: Math.round(num("#sim-loopers", 0, 10)),
    loopRate: num("#sim-loop-rate", 1, 100),
    duration: Math.round(num("#sim-duration", 5, 3600)),
    mix: $("#sim-mix").value,
    seed: state.sim.seed ?? 1,
  };
}

let simRunning = false;
async function runSimulation() {
  if (simRunning) return;
  if (!state.engine) {
    toast("fix the policy first", "error");
    return;
  }
  const config = readSimForm();
  state.sim = config;
  scheduleSave();
  if (config.agents + config.loopers === 0) {
    toast("no agents to simulate", "error");
    return;
  }
  simRunning = true;
  const progress = $("#sim-progress");
  $("#sim-run").disabled = true;
  document.body.dataset.sim = "running";
  try {
    const result = await simulate(config, {
      policyText: state.policyText,
      policy: state.policy,
      keys: state.keys,
      start: now(),
      onProgress: (done, total) => (progress.textContent = `${done} / ${total} requests…`),
    });
    progress.textContent = `${result.total} requests over ${config.duration} s of simulated time`;
    renderSimulation(result);
    document.body.dataset.sim = "done";
  } catch (e) {
    progress.textContent = `simulation failed: ${e.message ?? e}`;
    document.body.dataset.sim = "failed";
  } finally {
    simRunning = false;
    $("#sim-run").disabled = false;
  }
}

function renderSimulation(r) {
  $("#sim-output").hidden = false;
  const width = Math.max(560, Math.floor($("#sim-chart").clientWidth || 720));
  const svg = stackedChart($("#sim-chart"), r, { width, height: 240 });
  laneChart($("#sim-lanes"), r, { width });
  const legend = clear($("#sim-legend"));
  for (const ser of SERIES) {
    legend.append(h(`span.legend-item.${ser.key}`, { dataset: { outcome: ser.key, total: svg.dataset[`total${ser.key[0].toUpperCase()}${ser.key.slice(1)}`] ?? svg.getAttribute(`data-total-${ser.key}`) } }, h("i"), `${ser.label} `, h("strong", svg.getAttribute(`data-total-${ser.key}`))));
  }
  const summary = clear($("#sim-summary"));
  summary.append(
    h(
      "div",
      h("h4", "Reasons"),
      h("table.kv.codes", r.codes.slice(0, 8).map(([code, n]) => h("tr", h("th", h("code", code)), h("td", String(n))))),
    ),
    h(
      "div",
      h("h4", "Circuit breaker"),
      r.trips.length
        ? h("ul.trips", r.trips.map((t) => h("li", h("strong", `+${t.t.toFixed(1)} s `), `${t.agent} revoked: `, h("code", t.kind), ", then ", h("code", t.code), h("div.muted.small-text", t.message))))
        : h("p.muted", "no agent tripped the breaker"),
      r.suspended.length ? h("p.small-text", `${r.suspended.length} agent(s) still suspended at the end`) : null,
    ),
  );
}

// ---------------------------------------------------------------------------
// Policy tests

function setTests(doc) {
  state.tests = doc;
  state.testsError = null;
  $("#tests-json").value = JSON.stringify(doc, null, 2) + "\n";
  $("#tests-error").textContent = "";
  clear($("#tests-results"));
  setTestsSummary(null);
  scheduleSave();
}

function setTestsSummary(results) {
  const chip = $("#tests-summary");
  const badgeEl = $("#tests-badge");
  const n = state.tests?.cases?.length ?? 0;
  if (!results) {
    chip.textContent = `${n} case${n === 1 ? "" : "s"}`;
    chip.className = "chip";
    badgeEl.textContent = String(n);
    badgeEl.className = "count";
    return;
  }
  const failed = results.filter((r) => !r.ok).length;
  chip.textContent = `${results.length - failed} passed, ${failed} failed`;
  chip.className = `chip ${failed ? "bad" : "ok"}`;
  badgeEl.textContent = failed ? `${failed} ✗` : `${results.length} ✓`;
  badgeEl.className = `count ${failed ? "bad" : "ok"}`;
}

function runAllTests() {
  const list = clear($("#tests-results"));
  if (state.testsError) {
    list.append(h("li.result.fail", h("span.mark", "✗"), `the tests file has problems: ${state.testsError}`));
    setTestsSummary([{ ok: false }]);
    return;
  }
  if (!state.engine) {
    list.append(h("li.result.fail", h("span.mark", "✗"), "the policy has problems; fix them first"));
    setTestsSummary([{ ok: false }]);
    return;
  }
  const results = runTests(state.policyText, state.tests);
  for (const r of results) {
    list.append(
      h(
        `li.result.${r.ok ? "ok" : "fail"}`,
        { dataset: { name: r.name, ok: String(r.ok) } },
        h("span.mark", r.ok ? "✓" : "✗"),
        h("span.name", r.name),
        badge(r.decision),
        reasonCode(r.decision),
        r.ok ? null : h("div.problems-text", r.problems.join("; "), r.decision.reasons[0] ? h("span.muted", ` — ${r.decision.reasons[0].message}`) : null),
      ),
    );
  }
  setTestsSummary(results);
  document.body.dataset.tests = results.every((r) => r.ok) ? "pass" : "fail";
}

function onTestsEdited() {
  const err = $("#tests-error");
  try {
    const doc = JSON.parse($("#tests-json").value);
    const problems = validateTests(doc);
    if (problems.length) throw new Error(problems.join("; "));
    state.tests = doc;
    state.testsError = null;
    err.textContent = "";
    setTestsSummary(null);
    scheduleSave();
  } catch (e) {
    state.testsError = e.message;
    err.textContent = e.message;
  }
}

function addCase() {
  if (!state.last) return;
  const name = $("#case-name").value.trim() || `${state.last.request.method} ${state.last.request.path} → ${state.last.decision.decision}`;
  const doc = structuredClone(state.tests);
  doc.cases.push(caseFrom(name, state.last.request, state.last.decision));
  setTests(doc);
  $("#case-name").value = "";
  toast(`added case “${name}”`);
}

// ---------------------------------------------------------------------------
// Shareable state

function snapshot() {
  return {
    starter: state.starter,
    policy: state.policyText,
    tests: state.tests,
    request: composerFields(),
    scenario: state.scenario,
    offset: state.offset,
    sim: state.sim,
    tab: document.body.dataset.tab ?? "request",
    ...(revocationList.text !== "{}" ? { revocationList: revocationList.text } : {}),
  };
}

let restoring = false;
const scheduleSave = debounce(async () => {
  if (restoring) return;
  try {
    history.replaceState(null, "", `#s=${await encodeState(snapshot())}`);
  } catch {
    /* a state too odd to encode stays out of the URL */
  }
}, 500);

async function restore(s) {
  restoring = true;
  try {
    if (s.starter) {
      state.starter = s.starter;
      $("#starter").value = STARTERS.some((x) => x.id === s.starter) ? s.starter : "";
    }
    if (typeof s.revocationList === "string") setRevocationListText(s.revocationList);
    if (typeof s.policy === "string") setPolicyText(s.policy);
    else if (s.policy && typeof s.policy === "object") setPolicyText(JSON.stringify(s.policy, null, 2) + "\n");
    if (s.tests) setTests(s.tests);
    if (s.request) setComposer(s.request);
    setOffset(Number(s.offset) || 0);
    if (s.sim) {
      state.sim = { ...state.sim, ...s.sim };
      setSimForm(state.sim);
    }
    if (s.tab) showTab(s.tab);
  } finally {
    restoring = false;
  }
  if (s.scenario && SCENARIOS.some((x) => x.id === s.scenario)) {
    if (!s.tab || s.tab === "attacks" || s.tab === "traffic") await runScenarioById(s.scenario);
    else state.scenario = s.scenario;
  }
  scheduleSave();
}

async function importFile(file) {
  try {
    const got = classifyImport(await file.text());
    if (got.kind === "playground") {
      if (got.state.keys && typeof got.state.keys === "object") {
        state.keys = { ...state.keys, ...got.state.keys };
        saveKeyRing(state.keys, state.defaultKeys);
      }
      await restore(got.state);
      toast(`loaded ${file.name}`);
    } else if (got.kind === "tests") {
      setTests(got.tests);
      showTab("tests");
      toast(`loaded ${got.tests.cases.length} test cases from ${file.name}`);
    } else {
      $("#starter").value = "";
      setPolicyText(got.text);
      toast(`loaded the policy ${file.name}`);
    }
  } catch (e) {
    toast(`${file.name}: ${e.message}`, "error");
  }
}

// ---------------------------------------------------------------------------
// Clock

function setOffset(v) {
  state.offset = Math.round(v);
  $("#clock-offset").value = String(state.offset);
  tick();
  scheduleSave();
}

function tick() {
  const t = now();
  const off = state.offset;
  $("#clock-now").textContent = `${isoTime(t)}${off ? ` (${off > 0 ? "+" : "−"}${relTime(Math.abs(off)).replace("in ", "")})` : ""}`;
  $("#clock-now").dataset.now = String(t);
  document.querySelector(".clock").classList.toggle("shifted", off !== 0);
}

// ---------------------------------------------------------------------------
// Start

async function main() {
  editor = new JsonEditor($("#policy-editor"), { onChange: (text) => onPolicyChange(text) });
  await loadCore();
  $("#core-version").textContent = `core ${coreVersion()}`;
  const { ring, defaults } = await loadKeyRing();
  state.keys = ring;
  state.defaultKeys = defaults;

  // Starters
  const sel = $("#starter");
  sel.append(h("option", { value: "", disabled: true }, "Starter policies…"));
  for (const s of STARTERS) sel.append(h("option", { value: s.id, title: s.summary }, s.title));
  sel.addEventListener("change", () => sel.value && applyStarter(sel.value).then(() => toast(`loaded the starter “${STARTERS.find((s) => s.id === sel.value).title}” and its tests`)));
  $("#format").addEventListener("click", () => {
    try {
      setPolicyText(JSON.stringify(JSON.parse(editor.value), null, 2) + "\n");
    } catch (e) {
      toast(`cannot format: ${e.message}`, "error");
    }
  });
  $("#download-policy").addEventListener("click", () => download("policy.json", editor.value));

  // Tabs
  for (const b of $$(".tabs [data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  initLogView({ toast });
  for (const a of $$("[data-goto]")) a.addEventListener("click", (e) => (e.preventDefault(), showTab(a.dataset.goto)));

  // Clock
  $("#clock-offset").addEventListener("change", () => setOffset(Number($("#clock-offset").value) || 0));
  for (const b of $$("[data-offset]")) b.addEventListener("click", () => setOffset(state.offset + Number(b.dataset.offset)));
  $("#clock-reset").addEventListener("click", () => setOffset(0));
  setInterval(tick, 1000);
  tick();

  // Composer
  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  for (const id of ["#req-method", "#req-url", "#req-headers", "#req-ip", "#req-cert", "#req-body", "#req-dpop"]) {
    $(id).addEventListener("change", scheduleSave);
  }
  $("#reset-state").addEventListener("click", () => {
    validate();
    toast("fresh engine: caches, buckets and breaker emptied");
  });

  // Keys and tokens
  $("#new-issuer-key").addEventListener("click", async () => {
    state.keys.issuer = await newKey("issuer", $("#new-key-alg").value);
    saveKeyRing(state.keys, state.defaultKeys);
    renderKeys();
    toast(`new issuer key \`${state.keys.issuer.kid}\`; trust it in the policy to use it`);
  });
  $("#trust-issuer-key").addEventListener("click", () => {
    try {
      const policy = JSON.parse(editor.value);
      if (!policy.issuers?.[0]) throw new Error("the policy has no issuer");
      delete policy.issuers[0].jwks_uri;
      policy.issuers[0].jwks = { keys: [publicJwk(state.keys.issuer)] };
      const alg = state.keys.issuer.kty === "OKP" ? "EdDSA" : "ES256";
      if (!policy.issuers[0].algorithms?.includes(alg)) policy.issuers[0].algorithms = [...(policy.issuers[0].algorithms ?? []), alg];
      $("#starter").value = "";
      setPolicyText(JSON.stringify(policy, null, 2) + "\n");
      toast(`issuers[0].jwks now holds \`${state.keys.issuer.kid}\``);
    } catch (e) {
      toast(`cannot edit the policy: ${e.message}`, "error");
    }
  });
  $("#new-client-key").addEventListener("click", async () => {
    state.keys.client = await newKey("agent", $("#new-key-alg").value);
    saveKeyRing(state.keys, state.defaultKeys);
    renderKeys();
    toast("new agent DPoP key: tokens bound to the old one no longer work");
  });
  $("#reset-keys").addEventListener("click", async () => {
    state.keys = { ...state.defaultKeys, client: state.keys.client };
    saveKeyRing(state.keys, state.defaultKeys);
    renderKeys();
    toast("back to the example keys");
  });
  for (const id of ["#m-iss", "#m-aud", "#m-bind"]) $(id).addEventListener("input", () => ($(id).dataset.touched = "1"));
  $("#mint-form").addEventListener("submit", (e) => {
    e.preventDefault();
    mintFromForm();
  });
  $("#use-token").addEventListener("click", () => useToken($("#minted-token").value));
  $("#a-fill").addEventListener("click", () => {
    const a = state.last?.decision?.approval;
    if (!a) return ($("#a-error").textContent = "the last decision carried no approval challenge");
    $("#a-error").textContent = "";
    $("#a-digest").value = a.action_digest;
    $("#a-agent").value = a.agent;
  });
  $("#a-mint").addEventListener("click", () => {
    try {
      const digest = $("#a-digest").value.trim();
      const agent = $("#a-agent").value.trim();
      if (!digest || !agent) throw new Error("an approval needs the action digest and the agent (from the last decision)");
      const token = client().approval(now(), { action_digest: digest, agent }, { approver: $("#a-sub").value.trim() || undefined });
      setHeader(client().approvalHeader, token);
      $("#a-error").textContent = "";
      showTab("request");
      toast(`approval set in \`${client().approvalHeader}\`: send the request again`);
    } catch (e) {
      $("#a-error").textContent = e.message;
    }
  });
  $("#s-mint").addEventListener("click", () => {
    try {
      const token = client().svid(now(), $("#s-id").value.trim(), { lifetime: seconds($("#s-life").value) });
      setHeader(client().attestationHeader, token);
      $("#s-error").textContent = "";
      showTab("request");
      toast(`JWT-SVID set in \`${client().attestationHeader}\``);
    } catch (e) {
      $("#s-error").textContent = e.message;
    }
  });
  $("#decode-in").addEventListener("input", renderDecoded);
  $("#decode-use").addEventListener("click", () => {
    const t = $("#decode-in").value.trim();
    if (t) useToken(t);
  });

  // Scenarios, simulator, tests
  renderScenarioList();
  for (const [k, v] of Object.entries(MIXES)) $("#sim-mix").append(h("option", { value: k }, v));
  setSimForm(state.sim);
  for (const b of $$("[data-preset]")) {
    b.addEventListener("click", () => {
      Object.assign(state.sim, PRESETS[b.dataset.preset]);
      setSimForm(state.sim);
      runSimulation();
    });
  }
  $("#sim-form").addEventListener("submit", (e) => {
    e.preventDefault();
    runSimulation();
  });
  $("#tests-run").addEventListener("click", runAllTests);
  $("#tests-json").addEventListener("input", debounce(onTestsEdited, 300));
  $("#tests-download").addEventListener("click", () => download("policy.tests.json", JSON.stringify(state.tests, null, 2) + "\n"));
  $("#case-add").addEventListener("click", addCase);

  // Share, export, import
  $("#share").addEventListener("click", async () => {
    const url = `${location.href.split("#")[0]}#s=${await encodeState(snapshot())}`;
    history.replaceState(null, "", url);
    try {
      await navigator.clipboard.writeText(url);
      toast(`link copied (${url.length} characters): the policy, tests, request and scenario — no keys`);
    } catch {
      toast("the link is in the address bar (the clipboard is not available here)");
    }
  });
  $("#export").addEventListener("click", () => {
    // Keys made in this browser go into the file (test keys, so a saved
    // session replays); the example keys are public already and stay out.
    const keys = Object.fromEntries(
      Object.entries(state.keys).filter(([role, jwk]) => JSON.stringify(jwk) !== JSON.stringify(state.defaultKeys[role])),
    );
    download("agentguard-playground.json", exportDocument({ ...snapshot(), keys }));
  });
  $("#revocation-list-text").addEventListener(
    "input",
    debounce((e) => {
      setRevocationListText(e.target.value);
      scheduleSave();
    }, 200),
  );

  $("#import").addEventListener("change", (e) => {
    const f = e.target.files?.[0];
    if (f) importFile(f);
    e.target.value = "";
  });

  // First state: the link's, else the default starter.
  let shared = null;
  try {
    shared = await stateFromHash();
  } catch (e) {
    toast(`the link's state could not be read: ${e.message}`, "error");
  }
  if (shared) await restore(shared);
  else {
    await applyStarter(DEFAULT_STARTER);
    showTab("request");
  }
  document.body.dataset.ready = "true";
}

main().catch((e) => {
  document.body.dataset.ready = "error";
  const msg = `the playground could not start: ${e.message ?? e}`;
  document.querySelector("main").prepend(h("div.fatal", msg));
  console.error(e);
});
