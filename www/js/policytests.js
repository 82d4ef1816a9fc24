// Policy tests in the CLI's format (`agentguard test file.tests.json`):
//
//   {"policy": "policy.json", "cases": [{"name", "request", "expect": {"decision", "status"?, "reasons"?}}]}
//
// Run like the CLI runs them: one engine for the whole file, cases in order
// (so replay caches and rate limits carry over from case to case), each
// compared on outcome, status and reason codes.

import { Engine } from "./engine.js";

const FIELDS = {
  doc: ["policy", "cases"],
  case: ["name", "request", "expect"],
  expect: ["decision", "status", "reasons"],
};

/** Problems with a tests document's shape, as the CLI would report them (it refuses unknown fields). */
export function validateTests(doc) {
  const problems = [];
  const unknown = (obj, allowed, at) => {
    for (const k of Object.keys(obj)) if (!allowed.includes(k)) problems.push(`${at}: unknown field \`${k}\`, expected one of ${allowed.map((a) => `\`${a}\``).join(", ")}`);
  };
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return ["expected a JSON object with `policy` and `cases`"];
  unknown(doc, FIELDS.doc, "tests");
  if (typeof doc.policy !== "string") problems.push("policy: expected the policy file's path, e.g. `policy.json`");
  if (!Array.isArray(doc.cases)) return [...problems, "cases: expected an array"];
  doc.cases.forEach((c, i) => {
    const at = `cases[${i}]`;
    if (!c || typeof c !== "object") return problems.push(`${at}: expected an object`);
    unknown(c, FIELDS.case, at);
    if (typeof c.name !== "string") problems.push(`${at}.name: expected a string`);
    if (!c.request || typeof c.request !== "object") problems.push(`${at}.request: expected a request object`);
    if (!c.expect || typeof c.expect !== "object") return problems.push(`${at}.expect: expected an object`);
    unknown(c.expect, FIELDS.expect, `${at}.expect`);
    if (typeof c.expect.decision !== "string") problems.push(`${at}.expect.decision: expected \`allow\`, \`deny\`, \`approval_required\` or \`revoked\``);
  });
  return problems;
}

/** Runs every case; returns `[{name, ok, problems, decision, case}]`. */
export function runTests(policyText, doc) {
  const engine = new Engine(policyText);
  try {
    return doc.cases.map((c) => {
      const d = engine.decide(c.request);
      const codes = d.reasons.map((r) => r.code);
      const problems = [];
      if (d.decision !== c.expect.decision) problems.push(`decision \`${d.decision}\`, expected \`${c.expect.decision}\``);
      if (c.expect.status !== undefined && c.expect.status !== null && c.expect.status !== d.status) problems.push(`status ${d.status}, expected ${c.expect.status}`);
      if (Array.isArray(c.expect.reasons) && c.expect.reasons.join(",") !== codes.join(",")) {
        problems.push(`reasons [${codes.join(", ")}], expected [${c.expect.reasons.join(", ")}]`);
      }
      return { name: c.name, ok: problems.length === 0, problems, decision: d, case: c };
    });
  } finally {
    engine.free();
  }
}

/** A test case from a request and the decision it got (what "add as a case" saves). */
export function caseFrom(name, request, decision) {
  return {
    name,
    request,
    expect: { decision: decision.decision, status: decision.status, reasons: decision.reasons.map((r) => r.code) },
  };
}
