// Approval conditions on the body, as a host that decides by itself would
// read the body. Each `@ts-expect-error` is an assertion (see policy.ts).
import {
  AgentGuard,
  MAX_BODY_BYTES,
  MAX_BODY_TEXT_BYTES,
  bodyRefused,
  requestBodyContext,
  toCoreRequest,
  toResponse,
  type BodyUse,
  type Decision,
} from "agentguard";

export async function decideWithBody(guard: AgentGuard, request: Request): Promise<Response | Decision> {
  const url = new URL(request.url);
  const use: BodyUse = guard.bodyUse(request.method, url.pathname + url.search);
  // @ts-expect-error: bodyUse answers one of three words
  const wrong: "full" = guard.bodyUse("POST", "/x");
  void wrong;
  const read = await requestBodyContext(guard, request, { maxBodyBytes: MAX_BODY_BYTES });
  if (read.refused) return toResponse(bodyRefused(toCoreRequest(request), read.refused));
  const text: string | undefined = read.context.body;
  const limit: number = MAX_BODY_TEXT_BYTES;
  void limit;
  void text;
  if (use === "none") return guard.decide(request);
  return guard.decide(request, { ...read.context, clientIp: "192.0.2.1" });
}
