// The "Activity log" tab: the session's decision log (every decision made on
// the page), or a log file a gateway wrote, turned into the agent-activity
// report by the core (the same page `agentguard report --html` writes).

import { $, download } from "./dom.js";
import { sessionLog, activityReport, activityReportHtml } from "./engine.js";

/** Shows the report of `jsonl` (JSON Lines of decision events); `source` says where it came from. */
export function showReport(jsonl, source) {
  const totals = activityReport(jsonl);
  const frame = $("#log-report");
  frame.hidden = false;
  frame.onload = () => {
    // Same origin (sandbox allows it, no scripts run inside): fit the frame to the page.
    const doc = frame.contentDocument;
    if (doc) frame.style.height = `${doc.documentElement.scrollHeight + 8}px`;
  };
  frame.srcdoc = activityReportHtml(jsonl);
  const b = totals.bad_lines;
  const bad = b ? `; skipped ${b} line${b === 1 ? " that is not a decision event" : "s that are not decision events"}` : "";
  $("#log-source").textContent = `${source}: ${totals.events} decisions by ${Object.keys(totals.agents).length} agents${bad}.`;
  return totals;
}

function updateSummary() {
  const n = sessionLog.events.length;
  $("#log-summary").textContent = n ? `${n} decision${n === 1 ? "" : "s"} this session` : "no decisions yet";
  $("#log-badge").textContent = n ? String(n) : "";
}

/** Wires the tab's controls. */
export function initLogView({ toast }) {
  sessionLog.listeners.add(updateSummary);
  updateSummary();
  $("#log-report-session").addEventListener("click", () => {
    if (!sessionLog.events.length) {
      toast("no decisions yet: send a request, run a scenario or a simulation first", "error");
      return;
    }
    showReport(sessionLog.jsonl(), "this session");
  });
  $("#log-download").addEventListener("click", () => download("decisions.jsonl", sessionLog.jsonl(), "application/x-ndjson"));
  $("#log-clear").addEventListener("click", () => {
    sessionLog.clear();
    $("#log-report").hidden = true;
    $("#log-source").textContent = "";
  });
  $("#log-file").addEventListener("change", async (e) => {
    const file = e.target.files?.[0];
    if (!file) return;
    try {
      const totals = showReport(await file.text(), file.name);
      if (totals.events === 0) toast(`${file.name} holds no decision events`, "error");
    } catch (err) {
      toast(`cannot read ${file.name}: ${err.message}`, "error");
    }
    e.target.value = "";
  });
}
