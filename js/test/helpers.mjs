// Test servers on 127.0.0.1, each stopped by its own handle: a JWKS server
// whose keys, cache headers and availability the test controls, an origin
// that echoes what it received, and the gateway in a real workerd process.

import { createServer, request as httpRequest } from "node:http";
import { spawn } from "node:child_process";
import { createHash, webcrypto as crypto } from "node:crypto";
import { once } from "node:events";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../../", import.meta.url));

async function listen(server) {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return server.address().port;
}

/**
 * A JWKS endpoint, plus OpenID metadata pointing at it. `state.keys`,
 * `state.cacheControl`, `state.down`, `state.metadataIssuer` are live.
 */
export async function startJwksServer(initialKeys = []) {
  const state = { keys: initialKeys, cacheControl: "max-age=300", down: false, hits: 0, metadataIssuer: "https://sts.remote.test" };
  const server = createServer((req, res) => {
    state.hits += 1;
    if (state.down) {
      res.writeHead(503, { "content-type": "text/plain" }).end("down");
      return;
    }
    if (req.url === "/.well-known/openid-configuration") {
      const base = `http://127.0.0.1:${server.address().port}`;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ issuer: state.metadataIssuer, jwks_uri: `${base}/.well-known/jwks.json` }));
      return;
    }
    res.writeHead(200, { "content-type": "application/jwk-set+json", "cache-control": state.cacheControl });
    res.end(JSON.stringify({ keys: state.keys }));
  });
  const port = await listen(server);
  return {
    state,
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    metadataUrl: `http://127.0.0.1:${port}/.well-known/openid-configuration`,
    close: () => new Promise((r) => server.close(r)),
  };
}

/**
 * A revocation list endpoint (`/list.json`). Live `state`: `list` (an object,
 * served as JSON) or `raw` (text or bytes served as they are, wins), `down` (answers 503),
 * `etag` (send an `ETag` derived from the body, and answer a matching
 * `If-None-Match` with 304), `delayMs`; `hits` and `requests` (each one's
 * `accept` and `if-none-match`) record what was asked.
 */
export async function startRevocationListServer(list = {}) {
  const state = { list, raw: null, down: false, etag: true, delayMs: 0, hits: 0, requests: [] };
  const server = createServer(async (req, res) => {
    state.hits += 1;
    state.requests.push({ accept: req.headers.accept, ifNoneMatch: req.headers["if-none-match"] });
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    if (state.down) {
      res.writeHead(503, { "content-type": "text/plain" }).end("down");
      return;
    }
    const body = state.raw ?? JSON.stringify(state.list);
    const tag = `"${createHash("sha256").update(body).digest("hex").slice(0, 16)}"`;
    if (state.etag && req.headers["if-none-match"] === tag) {
      res.writeHead(304, { etag: tag }).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json", ...(state.etag ? { etag: tag } : {}) });
    res.end(body);
  });
  const port = await listen(server);
  return {
    state,
    url: `http://127.0.0.1:${port}/list.json`,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** An origin that answers with the request it saw, as JSON. */
export async function startOrigin() {
  const seen = [];
  const server = createServer((req, res) => {
    const body = { method: req.method, url: req.url, headers: req.headers };
    seen.push(body);
    res.writeHead(200, { "content-type": "application/json", "x-origin": "demo" }).end(JSON.stringify(body));
  });
  const port = await listen(server);
  return { port, seen, close: () => new Promise((r) => server.close(r)) };
}

export async function freePort() {
  const server = createServer();
  const port = await listen(server);
  await new Promise((r) => server.close(r));
  return port;
}

async function waitForPort(port, child, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`workerd exited with ${child.exitCode}`);
    const ok = await new Promise((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`workerd did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/**
 * Starts the gateway (js/worker/workerd.capnp) in workerd; stop it with `stop()`.
 * `env`: more environment bindings (e.g. `AGENTGUARD_SIGNING_KEYS`).
 */
export async function startGateway({ policyText, originPort, env = {} }) {
  const port = await freePort();
  return startWorkerd({
    config: `${root}js/worker/workerd.capnp`,
    port,
    args: ["--socket-addr", `http=127.0.0.1:${port}`, "--external-addr", `origin=127.0.0.1:${originPort}`],
    env: { ...env, AGENTGUARD_POLICY: policyText },
  });
}

/** Runs `workerd serve config args…` and waits until 127.0.0.1:`port` accepts connections. */
export async function startWorkerd({ config, port, args = [], env = {} }) {
  const bin = process.env.WORKERD_BIN;
  if (!bin) throw new Error("WORKERD_BIN is not set (source .tools/env.sh)");
  const child = spawn(bin, ["serve", config, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs = [];
  const collect = (chunk) => logs.push(...chunk.toString().split("\n").filter(Boolean));
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  try {
    await waitForPort(port, child);
  } catch (e) {
    child.kill("SIGTERM");
    throw new Error(`${e.message}\n${logs.join("\n")}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid,
    logs,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    },
  };
}

/**
 * One HTTP request with node:http, so a header may be sent several times
 * (an array value becomes several header lines, as a real client may send).
 *
 * `expectContinue`: for a body the server may refuse unread (a 413 on
 * `Content-Length`), ask `Expect: 100-continue` and send the body only once
 * the server asks for it (or after a second without an answer, as curl
 * does). A server that answers early and closes the connection with the body
 * unread makes the kernel reset it, and the client then loses the answer it
 * was sent (EPIPE or ECONNRESET) about as often as it reads it.
 */
export function send(url, { method = "GET", headers = {}, body, expectContinue = false } = {}) {
  return new Promise((resolve, reject) => {
    const bytes = expectContinue ? Buffer.from(body) : body;
    const sentHeaders = expectContinue
      ? { ...headers, expect: "100-continue", "content-length": bytes.length }
      : headers;
    let fallback;
    const req = httpRequest(url, { method, headers: sentHeaders }, (res) => {
      clearTimeout(fallback);
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on("error", (e) => {
      clearTimeout(fallback);
      reject(e);
    });
    if (!expectContinue) {
      req.end(body);
      return;
    }
    let sent = false;
    const sendBody = () => {
      clearTimeout(fallback);
      if (!sent) req.end(bytes);
      sent = true;
    };
    fallback = setTimeout(sendBody, 1000);
    req.on("continue", sendBody);
    req.flushHeaders();
  });
}

/** A fresh signing key pair as JWKs: the shared test helper. */
export { generateKey } from "../../tests/vectors/mint.mjs";

/**
 * A DPoP client key (RFC 9449) made with npm `jose`, as an agent would:
 * `{publicJwk, thumbprint, proof({htm, htu, token?, nonce?, iat?, jti?})}`
 * where `proof` signs a fresh `dpop+jwt` (random `jti`, `ath` when a token is given).
 */
export async function dpopKey(alg = "ES256") {
  const { generateKeyPair, exportJWK, calculateJwkThumbprint, SignJWT } = await import("jose");
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const thumbprint = await calculateJwkThumbprint(publicJwk, "sha256");
  const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
  async function proof({ htm, htu, token, nonce, iat = Math.floor(Date.now() / 1000), jti } = {}) {
    const claims = { htm, htu, iat, jti: jti ?? b64url(crypto.getRandomValues(new Uint8Array(16))) };
    if (token) claims.ath = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
    if (nonce) claims.nonce = nonce;
    return new SignJWT(claims).setProtectedHeader({ alg, typ: "dpop+jwt", jwk: publicJwk }).sign(privateKey);
  }
  return { publicJwk, thumbprint, proof };
}

/** `application/x-www-form-urlencoded` body of an object. */
export function formBody(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined)).toString();
}
