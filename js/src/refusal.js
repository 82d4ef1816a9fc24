// Denies the JS host decides itself (not the core), shaped like a core
// decision so that responses, logs and analytics treat them alike. Internal
// to the package: `bodyRefused` (agentguard.js) and `stateUnavailable`
// (durable.js) are the public faces.

/**
 * A deny the host decides itself, shaped like a core decision (RFC 9457
 * problem body, decision event, one `trace` entry for `stage`): for a body
 * it could not read (`bodyRefused`) or an agent state it could not reach
 * (`stateUnavailable`). `headers` are added to the response's.
 */
export function hostRefusal(input, { status, code, title, message, stage, headers = {} }) {
  const problem = {
    type: `https://agentguard.dev/problems/${code}`,
    title,
    status,
    detail: message,
    decision: "deny",
    reason: code,
  };
  const event = {
    v: 1,
    time_ms: Math.round(Number(input?.now ?? Date.now() / 1000) * 1000),
    decision: "deny",
    status,
    reasons: [code],
    method: String(input?.method ?? ""),
    host: String(input?.host ?? ""),
    path: String(input?.path ?? "").split("?")[0],
    cache_hit: false,
  };
  if (input?.source_ip) event.source_ip = input.source_ip;
  return {
    decision: "deny",
    status,
    reasons: [{ code, message }],
    forward_headers: {},
    strip_header_prefix: "x-agentguard-",
    response: {
      status,
      headers: { "content-type": "application/problem+json", "cache-control": "no-store", ...headers },
      body: JSON.stringify(problem),
    },
    trace: [{ stage, result: "fail", detail: message }],
    event,
    log: true,
  };
}
