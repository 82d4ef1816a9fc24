// Renders a decision as the core returned it: outcome, status, reasons,
// the per-stage trace, identity, forwarded headers or the refusal response,
// the approval challenge, and the decision-log event.

import { h, clear, relTime } from "./dom.js";

/** A decision's colour class: allow, limited (429), approval, revoked or deny. */
export function outcomeClass(d) {
  if (d.decision === "allow") return "allow";
  if (d.decision === "approval_required") return "approval";
  if (d.decision === "revoked") return "revoked";
  if (d.status === 429) return "limited";
  return "deny";
}

export const badge = (d) => h(`span.badge.${outcomeClass(d)}`, { text: d.decision.replace("_", " ") });

const RESULT_ICON = { pass: "✓", fail: "✗", skip: "–" };

function kv(rows) {
  return h(
    "table.kv",
    rows.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => h("tr", h("th", k), h("td", v instanceof Node ? v : String(v)))),
  );
}

/**
 * `options.now`: the request's time (for "expires in …");
 * `options.onApprove(decision)`: offered on `approval_required`.
 */
export function renderDecision(container, d, options = {}) {
  clear(container);
  const codes = d.reasons.map((r) => r.code);
  const root = h("div.decision", {
    dataset: { outcome: d.decision, status: String(d.status), reasons: codes.join(" ") },
  });
  const route = d.route
    ? h("span.route", "route ", h("code", d.route), Object.keys(d.params ?? {}).length ? ` ${JSON.stringify(d.params)}` : "")
    : h("span.route.muted", "no route");
  root.append(h("div.verdict", badge(d), h("span.status", `HTTP ${d.status}`), route));

  if (d.reasons.length) {
    root.append(h("ul.reasons", d.reasons.map((r) => h("li", h("code.code", r.code), h("span", r.message)))));
  }

  if (d.approval) {
    const a = d.approval;
    root.append(
      h(
        "div.challenge",
        h("div.challenge-title", "Approval challenge"),
        kv([
          ["action digest", h("code", a.action_digest)],
          ["agent", h("code", a.agent)],
          ["binding message", a.binding_message],
          ["endpoint", a.approval_endpoint],
        ]),
        options.onApprove
          ? h("button.primary#approve-retry", { onclick: () => options.onApprove(d) }, "Approve as a human and retry")
          : null,
      ),
    );
  }

  const trace = h(
    "table.trace",
    h("thead", h("tr", h("th", "stage"), h("th", "result"), h("th", "detail"))),
    h(
      "tbody",
      d.trace.map((t) =>
        h(
          `tr.${t.result}`,
          { dataset: { stage: t.stage, result: t.result } },
          h("td.stage", t.stage),
          h("td.result", h(`span.pill.${t.result}`, `${RESULT_ICON[t.result] ?? ""} ${t.result}`)),
          h("td.detail", t.detail),
        ),
      ),
    ),
  );
  root.append(h("section.block", h("h4", "Trace"), trace));

  const side = [];
  if (d.identity) {
    const id = d.identity;
    side.push(
      h(
        "section.block",
        h("h4", "Identity"),
        kv([
          ["agent", h("code", id.agent)],
          ["subject", id.subject],
          ["issuer", id.issuer],
          ["client id", id.client_id],
          ["actors", id.actors?.join(" ← ")],
          ["scopes", id.scopes?.join(" ")],
          ["jti", id.jti],
          ["expires", options.now !== undefined ? `${relTime(id.expires_at - options.now)} (${id.expires_at})` : id.expires_at],
        ]),
      ),
    );
  }
  if (d.decision === "allow") {
    const fh = Object.entries(d.forward_headers ?? {});
    side.push(
      h(
        "section.block.forward",
        h("h4", "Forwarded upstream"),
        h("p.hint", "inbound headers starting with ", h("code", d.strip_header_prefix), " are removed first"),
        fh.length ? kv(fh.map(([k, v]) => [k, h("code", v)])) : h("p.muted", "none"),
      ),
    );
  } else if (d.response) {
    let body = d.response.body;
    try {
      body = JSON.stringify(JSON.parse(body), null, 2);
    } catch {
      /* shown as is */
    }
    side.push(
      h(
        "section.block.response",
        h("h4", `Response ${d.response.status}`),
        kv(Object.entries(d.response.headers).map(([k, v]) => [k, h("code", v)])),
        h("pre.json", body),
      ),
    );
  }
  if (side.length) root.append(h("div.side", side));
  root.append(
    h("details.block", h("summary", "Decision-log event"), h("pre.json.event", JSON.stringify(d.event, null, 2))),
    h("details.block", h("summary", "Full decision JSON"), h("pre.json", JSON.stringify(d, null, 2))),
  );
  container.append(root);
  return root;
}
