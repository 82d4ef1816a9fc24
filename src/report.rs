//! Agent-activity reports from decision logs (JSON Lines of decision events):
//! a terminal summary and a self-contained HTML page with charts that opens
//! offline. Pure computation, so the CLI, the JS package and the playground
//! all make the same report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// Per-agent totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    /// Requests.
    pub requests: u64,
    /// Allowed.
    pub allowed: u64,
    /// Denied.
    pub denied: u64,
    /// `approval_required`.
    pub approvals: u64,
    /// Revoked answers.
    pub revoked: u64,
    /// Events per hour bucket (index into [`Report::hours`]).
    pub per_hour: BTreeMap<i64, u64>,
    /// Breaker trips seen for this agent (kind: detail).
    pub trips: Vec<String>,
}

/// A summary of a decision log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Events read.
    pub events: u64,
    /// Lines that were not decision events.
    pub bad_lines: u64,
    /// First and last event time (Unix ms).
    pub first_ms: i64,
    /// Last event time.
    pub last_ms: i64,
    /// By outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Refusals by reason code.
    pub reasons: BTreeMap<String, u64>,
    /// Requests per route (`(none)` for unmatched).
    pub routes: BTreeMap<String, u64>,
    /// Per agent (`(anonymous)` for requests without a verified token).
    pub agents: BTreeMap<String, AgentRow>,
    /// Events per hour (hour = Unix ms / 3 600 000).
    pub hours: BTreeMap<i64, u64>,
}

impl Report {
    /// Reads JSON Lines of decision events.
    pub fn from_jsonl(text: &str) -> Report {
        let mut r = Report { first_ms: i64::MAX, last_ms: i64::MIN, ..Report::default() };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(event) if event.get("v").is_some() && event.get("decision").is_some() => r.add(&event),
                _ => r.bad_lines += 1,
            }
        }
        if r.events == 0 {
            r.first_ms = 0;
            r.last_ms = 0;
        }
        r
    }

    fn add(&mut self, e: &Value) {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        self.events += 1;
        let t = e.get("time_ms").and_then(Value::as_i64).unwrap_or(0);
        self.first_ms = self.first_ms.min(t);
        self.last_ms = self.last_ms.max(t);
        let hour = t.div_euclid(3_600_000);
        *self.hours.entry(hour).or_default() += 1;
        let outcome = s("decision");
        *self.outcomes.entry(outcome.clone()).or_default() += 1;
        let reasons: Vec<String> = e
            .get("reasons")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if outcome != "allow" && outcome != "approval_required" {
            for reason in &reasons {
                *self.reasons.entry(reason.clone()).or_default() += 1;
            }
        }
        let route = e.get("route").and_then(Value::as_str).unwrap_or("(none)").to_owned();
        *self.routes.entry(route).or_default() += 1;
        let agent = e
            .get("agent")
            .and_then(|a| a.get("agent"))
            .and_then(Value::as_str)
            .unwrap_or("(anonymous)")
            .to_owned();
        let row = self.agents.entry(agent).or_default();
        row.requests += 1;
        match outcome.as_str() {
            "allow" => row.allowed += 1,
            "approval_required" => row.approvals += 1,
            "revoked" => row.revoked += 1,
            _ => row.denied += 1,
        }
        *row.per_hour.entry(hour).or_default() += 1;
        if let Some(b) = e.get("breaker") {
            let trip = format!(
                "{}: {}",
                b.get("kind").and_then(Value::as_str).unwrap_or("?"),
                b.get("detail").and_then(Value::as_str).unwrap_or("")
            );
            if reasons.iter().any(|r| r.starts_with("breaker_"))
                && !row.trips.contains(&trip)
                && row.trips.len() < 20
            {
                row.trips.push(trip);
            }
        }
    }

    /// Agents by requests, most active first.
    fn top_agents(&self, n: usize) -> Vec<(&String, &AgentRow)> {
        let mut v: Vec<_> = self.agents.iter().collect();
        v.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    fn sorted(map: &BTreeMap<String, u64>, n: usize) -> Vec<(&String, &u64)> {
        let mut v: Vec<_> = map.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// The terminal summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "agentguard activity report");
        let _ = writeln!(
            out,
            "{} decisions, {} agents, {} routes",
            self.events,
            self.agents.len(),
            self.routes.len()
        );
        if self.bad_lines > 0 {
            let _ = writeln!(out, "({} lines were not decision events and were skipped)", self.bad_lines);
        }
        let _ = writeln!(out, "\noutcomes");
        for (k, v) in Self::sorted(&self.outcomes, 10) {
            let _ =
                writeln!(out, "  {k:<20} {v:>10} {:>6.1}%", *v as f64 * 100.0 / self.events.max(1) as f64);
        }
        let _ = writeln!(out, "\ntop deny reasons");
        for (k, v) in Self::sorted(&self.reasons, 10) {
            let _ = writeln!(out, "  {k:<32} {v:>10}");
        }
        let _ = writeln!(out, "\nagents (most active first)");
        let _ = writeln!(
            out,
            "  {:<44} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "agent", "requests", "allowed", "denied", "approval", "revoked"
        );
        for (name, a) in self.top_agents(15) {
            let _ = writeln!(
                out,
                "  {:<44} {:>8} {:>8} {:>8} {:>8} {:>8}",
                clip(name, 44),
                a.requests,
                a.allowed,
                a.denied,
                a.approvals,
                a.revoked
            );
        }
        let tripped: Vec<_> = self.agents.iter().filter(|(_, a)| !a.trips.is_empty()).collect();
        if !tripped.is_empty() {
            let _ = writeln!(out, "\nagents that tripped the circuit breaker");
            for (name, a) in tripped {
                let _ = writeln!(out, "  {name}: {}", a.trips.join("; "));
            }
        }
        let _ = writeln!(out, "\nroutes");
        for (k, v) in Self::sorted(&self.routes, 10) {
            let _ = writeln!(out, "  {k:<32} {v:>10}");
        }
        let _ = writeln!(out, "\nactivity per hour ({} hours)", self.hours.len());
        let _ = writeln!(out, "  {}", sparkline(&self.hour_series()));
        out
    }

    /// Counts per hour from the first to the last hour, gaps as zero.
    fn hour_series(&self) -> Vec<u64> {
        let (Some(first), Some(last)) = (self.hours.keys().next(), self.hours.keys().next_back()) else {
            return Vec::new();
        };
        (*first..=*last).take(24 * 60).map(|h| self.hours.get(&h).copied().unwrap_or(0)).collect()
    }

    /// A self-contained HTML report (inline CSS and SVG, no scripts, no network).
    pub fn html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>agentguard activity report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}}
header{{background:#1d2330;color:#fff;padding:18px 32px}} header h1{{margin:0;font-size:20px}}
main{{max-width:1100px;margin:0 auto;padding:24px 32px}} section{{background:#fff;border-radius:8px;padding:16px 20px;margin:0 0 20px;box-shadow:0 1px 2px #0001}}
h2{{font-size:15px;margin:0 0 12px}} .kpis{{display:grid;grid-template-columns:repeat(5,1fr);gap:12px}}
.kpi{{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px #0001}} .kpi b{{display:block;font-size:24px}}
table{{border-collapse:collapse;width:100%}} td,th{{padding:5px 8px;border-bottom:1px solid #eceef2;text-align:right}} td:first-child,th:first-child{{text-align:left;word-break:break-all}}
.bar{{height:14px;background:#4f7cff;border-radius:3px}} .allow{{fill:#2fa36b;background:#2fa36b}} .deny{{fill:#d9534f;background:#d9534f}} .approval_required{{fill:#f0ad4e;background:#f0ad4e}} .revoked{{fill:#7a3fbf;background:#7a3fbf}}
.muted{{color:#6b7280}} svg text{{font-size:11px;fill:#6b7280}}
</style></head><body><header><h1>agentguard activity report</h1><div class="muted">{}</div></header><main>"#,
            esc(&format!("{} → {} UTC", utc(self.first_ms), utc(self.last_ms)))
        );
        let count = |k: &str| self.outcomes.get(k).copied().unwrap_or(0);
        let _ = write!(h, r#"<div class="kpis" style="margin-bottom:20px">"#);
        for (id, label, v) in [
            ("total-events", "decisions", self.events),
            ("total-agents", "agents", self.agents.len() as u64),
            ("total-allow", "allowed", count("allow")),
            ("total-deny", "denied", count("deny")),
            ("total-revoked", "revoked", count("revoked")),
        ] {
            let _ =
                write!(h, r#"<div class="kpi"><span class="muted">{label}</span><b id="{id}">{v}</b></div>"#);
        }
        let _ = write!(h, "</div>");
        // Activity over time, per agent (top 5) as lines.
        let series = self.hour_series();
        let first_hour = self.hours.keys().next().copied().unwrap_or(0);
        let _ = write!(h, r#"<section><h2>activity over time (requests per hour, top agents)</h2>"#);
        let _ = write!(h, "{}", self.activity_svg(first_hour, series.len()));
        let _ = write!(h, "</section>");
        // Outcomes.
        let _ = write!(h, r#"<section><h2>outcomes</h2><table id="outcomes">"#);
        let max = self.outcomes.values().copied().max().unwrap_or(1).max(1);
        for (k, v) in Self::sorted(&self.outcomes, 10) {
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td style="width:60%"><div class="bar {}" style="width:{:.1}%"></div></td><td data-outcome="{}">{v}</td></tr>"#,
                esc(k),
                esc(k),
                *v as f64 * 100.0 / max as f64,
                esc(k)
            );
        }
        let _ = write!(h, "</table></section>");
        // Reasons.
        let _ = write!(h, r#"<section><h2>deny reasons</h2><table id="reasons">"#);
        let max = self.reasons.values().copied().max().unwrap_or(1).max(1);
        for (k, v) in Self::sorted(&self.reasons, 15) {
            let _ = write!(
                h,
                r#"<tr><td><code>{}</code></td><td style="width:60%"><div class="bar deny" style="width:{:.1}%"></div></td><td>{v}</td></tr>"#,
                esc(k),
                *v as f64 * 100.0 / max as f64
            );
        }
        let _ = write!(h, "</table></section>");
        // Breaker.
        let tripped: Vec<_> = self.agents.iter().filter(|(_, a)| !a.trips.is_empty()).collect();
        let _ = write!(h, r#"<section><h2>agents that tripped the circuit breaker</h2>"#);
        if tripped.is_empty() {
            let _ = write!(h, r#"<p class="muted" id="breaker-none">none</p>"#);
        } else {
            let _ = write!(h, r#"<table id="breaker"><tr><th>agent</th><th>why</th></tr>"#);
            for (name, a) in tripped {
                let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(name), esc(&a.trips.join("; ")));
            }
            let _ = write!(h, "</table>");
        }
        let _ = write!(h, "</section>");
        // Agents.
        let _ = write!(
            h,
            r#"<section><h2>agents</h2><table id="agents"><tr><th>agent</th><th>requests</th><th>allowed</th><th>denied</th><th>approval</th><th>revoked</th></tr>"#
        );
        for (name, a) in self.top_agents(50) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                a.requests,
                a.allowed,
                a.denied,
                a.approvals,
                a.revoked
            );
        }
        let _ = write!(h, "</table></section>");
        // Routes.
        let _ = write!(h, r#"<section><h2>routes</h2><table id="routes">"#);
        for (k, v) in Self::sorted(&self.routes, 30) {
            let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        let _ = writeln!(h, "</table></section></main></body></html>");
        h
    }

    fn activity_svg(&self, first_hour: i64, hours: usize) -> String {
        let (w, hgt, pad) = (1000.0, 220.0, 30.0);
        let top = self.top_agents(5);
        let max = top.iter().flat_map(|(_, a)| a.per_hour.values().copied()).max().unwrap_or(1).max(1) as f64;
        let colors = ["#4f7cff", "#2fa36b", "#d9534f", "#f0ad4e", "#7a3fbf"];
        let x =
            |i: usize| pad + (w - 2.0 * pad) * if hours <= 1 { 0.5 } else { i as f64 / (hours - 1) as f64 };
        let y = |v: u64| hgt - pad - (hgt - 2.0 * pad) * v as f64 / max;
        let mut svg = format!(
            r#"<svg id="activity" viewBox="0 0 {w} {hgt}" width="100%" role="img" aria-label="requests per hour">"#
        );
        let _ = write!(
            svg,
            r##"<line x1="{pad}" y1="{0}" x2="{1}" y2="{0}" stroke="#ccd"/>"##,
            hgt - pad,
            w - pad
        );
        let _ = write!(
            svg,
            r#"<text x="4" y="{}">{}</text><text x="4" y="{}">0</text>"#,
            pad,
            max as u64,
            hgt - pad
        );
        for (n, (name, a)) in top.iter().enumerate() {
            let color = colors.get(n).copied().unwrap_or("#999");
            let points: Vec<String> = (0..hours.max(1))
                .map(|i| {
                    let v = a.per_hour.get(&(first_hour + i as i64)).copied().unwrap_or(0);
                    format!("{:.1},{:.1}", x(i), y(v))
                })
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{}" y="{}" style="fill:{color}">{}</text>"#,
                points.join(" "),
                w - 300.0,
                14.0 + 14.0 * n as f64,
                esc(&clip(name, 48))
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

/// `2026-01-01 10:00:00` for Unix milliseconds (proleptic Gregorian, UTC).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    values.iter().map(|v| BARS.get((*v * 7 / max) as usize).copied().unwrap_or('█')).collect()
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_767_261_600_000), "2026-01-01 10:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59");
    }
}
