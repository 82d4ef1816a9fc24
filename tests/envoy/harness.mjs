// The Envoy end-to-end harness: a real Envoy (ENVOY_BIN, from
// scripts/install-tools.sh) loading the built filter, a local upstream that
// echoes what it received, and a local JWKS server — all on 127.0.0.1, all
// started by the tests and stopped by PID (Envoy) or by closing them (the
// in-process Node servers).
//
//   import { startEnvoy, startUpstream, send, stats } from "./harness.mjs";

import { spawn, execFileSync } from "node:child_process";
import { createHash, webcrypto } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { loadVectors, signJwt } from "../vectors/mint.mjs";

export const ROOT = path.resolve(new URL("../..", import.meta.url).pathname);
export const WASM = process.env.AGENTGUARD_ENVOY_WASM ?? path.join(ROOT, "target/envoy/agentguard.wasm");

function envoyBin() {
  const bin = process.env.ENVOY_BIN;
  if (!bin || !existsSync(bin)) {
    throw new Error("ENVOY_BIN is not set: run `bash scripts/test-envoy.sh` (or `. .tools/env.sh` first)");
  }
  if (!existsSync(WASM)) throw new Error(`${WASM} is missing: run \`bash scripts/build-envoy.sh\``);
  return bin;
}

// ---------------------------------------------------------------- temp dirs

// Every temp dir the harness makes (`tempDir`) is removed: an Envoy's when
// `stop()` has seen it exit, the rest when this test process exits — after a
// pass or a failure (the `exit` event), or on SIGINT/SIGTERM. Any Envoy still
// running then is SIGKILLed before its dir goes. AGENTGUARD_KEEP_TMP=1 keeps
// them all and prints each path on stderr instead, for debugging.
const KEEP_TMP = process.env.AGENTGUARD_KEEP_TMP === "1";
const tempDirs = new Set();
const running = new Set(); // Envoy child processes that have not exited

/** A fresh `$TMPDIR/agentguard-<name>-` directory (mkdtemp adds a random suffix), removed when the test process ends. */
export function tempDir(name) {
  const dir = mkdtempSync(path.join(tmpdir(), `agentguard-${name}-`));
  tempDirs.add(dir);
  return dir;
}

function removeTempDir(dir) {
  if (!tempDirs.delete(dir)) return;
  if (KEEP_TMP) process.stderr.write(`AGENTGUARD_KEEP_TMP: kept ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
}

function removeAllTemp() {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of [...tempDirs]) removeTempDir(dir);
}
process.on("exit", removeAllTemp);
for (const signal of ["SIGINT", "SIGTERM"]) {
  // Not `once`: the listener stays until the clean-up is done, so a second
  // signal (node --test forwards one as well) cannot kill the process midway.
  process.on(signal, function onSignal() {
    removeAllTemp();
    process.off(signal, onSignal);
    process.kill(process.pid, signal); // the default action, now that this listener is gone
  });
}

/** Unix seconds now: Envoy and the tests share the machine's clock. */
export const nowSecs = () => Math.floor(Date.now() / 1000);

let minted = 0;
const testKeys = loadVectors().keys;

/**
 * Claims of a valid access token from the shared test issuer
 * (tests/vectors/policy.json) for agent `spiffe://test/agents/<agent>`,
 * acting for `user:alice` with scope `crm.read`; `extra` is merged over them.
 * Every call has a fresh `jti`.
 */
export function agentClaims(agent, extra = {}) {
  return {
    iss: "https://sts.test",
    aud: "https://api.test",
    sub: "user:alice",
    client_id: "crm-agent",
    act: { sub: `spiffe://test/agents/${agent}` },
    scope: "crm.read",
    jti: `envoy-test-${minted++}-${nowSecs()}`,
    iat: nowSecs() - 5,
    exp: nowSecs() + 300,
    ...extra,
  };
}

/** `agentClaims(agent, extra)` signed by the shared test issuer's Ed25519 key. */
export const agentToken = (agent, extra = {}) => signJwt(testKeys.ed25519, agentClaims(agent, extra));

// ---------------------------------------------------------------- DPoP

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const sha256 = (text) => createHash("sha256").update(text).digest();

/** A DPoP client key pair (ES256, WebCrypto): `{publicJwk, thumbprint, sign(input)}`. */
export async function dpopKey() {
  const pair = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const { kty, crv, x, y } = await webcrypto.subtle.exportKey("jwk", pair.publicKey);
  const publicJwk = { kty, crv, x, y };
  // RFC 7638: the required members, lexicographic order, no whitespace.
  const thumbprint = b64url(sha256(JSON.stringify({ crv, kty, x, y })));
  const sign = async (input) =>
    b64url(new Uint8Array(await webcrypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, Buffer.from(input))));
  return { publicJwk, thumbprint, sign };
}

/**
 * A DPoP proof (RFC 9449) by `key` for `htm` `htu`, fresh `jti`, issued now;
 * with `token` its `ath`, with `nonce` the server's nonce.
 */
export async function dpopProof(key, { htm = "GET", htu, token, nonce } = {}) {
  const header = { typ: "dpop+jwt", alg: "ES256", jwk: key.publicJwk };
  const claims = {
    htm,
    htu,
    iat: nowSecs(),
    jti: b64url(webcrypto.getRandomValues(new Uint8Array(12))),
    ...(token ? { ath: b64url(sha256(token)) } : {}),
    ...(nonce ? { nonce } : {}),
  };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${await key.sign(input)}`;
}

// ---------------------------------------------------------------- servers

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
}

function closeServer(server) {
  server.closeAllConnections?.();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * The upstream: answers 200 with what it received as JSON
 * `{method, url, headers: [[name, value], ...], body}` (raw header lines, in order).
 */
export async function startUpstream() {
  const server = http.createServer((req, res) => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      headers.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
    }
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "x-upstream": "echo" });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers, body }));
    });
  });
  const port = await listen(server);
  return { port, close: () => closeServer(server) };
}

/**
 * A JWKS server: `set(doc, {etag})` changes the document (sent with that
 * `ETag`, none by default), `fail(status)` makes it answer errors,
 * `delay(ms)` holds answers; `hits` counts requests, `ifNoneMatch` lists each
 * request's `If-None-Match` (`null`: none). With an `ETag`, a request whose
 * `If-None-Match` is that `ETag` gets `304 Not Modified`; `always304(true)`
 * answers `304` to every request, conditional or not.
 */
export async function startJwksServer(initial) {
  const state = { doc: initial, status: 200, delayMs: 0, hits: 0, paths: [], etag: null, always304: false, inm: [] };
  const server = http.createServer(async (req, res) => {
    state.hits += 1;
    state.paths.push(`${req.headers.host} ${req.url}`);
    const inm = req.headers["if-none-match"] ?? null;
    state.inm.push(inm);
    // A slow host answers with the document it has when it answers: one
    // captured at arrival would reach the VM after newer ones.
    if (state.delayMs) await sleep(state.delayMs);
    const { doc, status, etag, always304 } = state;
    const headers = { "content-type": "application/jwk-set+json", ...(etag ? { etag } : {}) };
    if (always304 || (status === 200 && etag && inm === etag)) {
      res.writeHead(304, etag ? { etag } : {});
      res.end();
      return;
    }
    res.writeHead(status, headers);
    res.end(status === 200 ? JSON.stringify(doc) : "unavailable");
  });
  const port = await listen(server);
  return {
    port,
    get hits() {
      return state.hits;
    },
    paths: state.paths,
    ifNoneMatch: state.inm,
    set(doc, { etag = null } = {}) {
      state.doc = doc;
      state.etag = etag;
      state.status = 200;
    },
    fail(status = 503) {
      state.status = status;
    },
    delay(ms) {
      state.delayMs = ms;
    },
    always304(on = true) {
      state.always304 = on;
    },
    close: () => closeServer(server),
  };
}

// ---------------------------------------------------------------- Envoy config

const cluster = (name, port) => ({
  name,
  type: "STATIC",
  connect_timeout: "1s",
  load_assignment: {
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }],
  },
});

/**
 * The wasm HTTP filter entry, `configuration` being the plugin configuration
 * string. `allowStopIteration` sets `allow_on_headers_stop_iteration`, which
 * lets the filter hold a request's headers while it reads the body (for
 * approval-gated routes; docs/envoy.md). `hostEnvKeys` lists environment
 * variables of the Envoy process the VM may read (`AGENTGUARD_SIGNING_KEYS`).
 */
export function wasmFilter(
  configuration,
  { failurePolicy = "FAIL_CLOSED", allowStopIteration = true, wasm = WASM, hostEnvKeys = [] } = {},
) {
  return {
    name: "envoy.filters.http.wasm",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      config: {
        name: "agentguard",
        root_id: "",
        configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: configuration },
        vm_config: {
          vm_id: "agentguard",
          runtime: "envoy.wasm.runtime.v8",
          code: { local: { filename: wasm } },
          ...(hostEnvKeys.length ? { environment_variables: { host_env_keys: hostEnvKeys } } : {}),
        },
        failure_policy: failurePolicy,
        ...(allowStopIteration ? { allow_on_headers_stop_iteration: true } : {}),
      },
    },
  };
}

/**
 * A bootstrap: one listener (port 0) → `http_filters` + router → the
 * `upstream` cluster on `upstreamPort`; more clusters from `clusters`
 * (`{name: port}`); admin on port 0.
 *
 * The listener is plain HTTP on loopback but stands for a TLS-terminating
 * edge: `:scheme` is set to `https` (as the vectors assume), and the client
 * address comes from the last `X-Forwarded-For` entry (Envoy's default with
 * `use_remote_address: false`), so a test can present any source IP.
 *
 * `listeners` (default one plain `ingress`) lists `{name, tls}`; `tls` makes
 * that listener terminate TLS (see `downstreamTls`). Every listener runs the
 * same filters and routes.
 */
export function bootstrap({
  httpFilters,
  upstreamPort,
  clusters = {},
  listeners = [{ name: "ingress" }],
  directResponse = false,
}) {
  // `directResponse`: Envoy itself answers 200 `ok` after the filters (no upstream; for load tests).
  const action = directResponse
    ? { direct_response: { status: 200, body: { inline_string: "ok\n" } } }
    : { route: { cluster: "upstream" } };
  return {
    node: { id: "agentguard-test", cluster: "agentguard-test" },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: 0 } } },
    static_resources: {
      listeners: listeners.map(({ name, tls }) => ({
        name,
        address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
        filter_chains: [
          {
            ...(tls ? { transport_socket: downstreamTls(tls) } : {}),
            filters: [
              {
                name: "envoy.filters.network.http_connection_manager",
                typed_config: {
                  "@type":
                    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                  stat_prefix: "ingress",
                  scheme_header_transformation: { scheme_to_overwrite: "https" },
                  route_config: {
                    virtual_hosts: [
                      { name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, ...action }] },
                    ],
                  },
                  http_filters: [
                    ...httpFilters,
                    {
                      name: "envoy.filters.http.router",
                      typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                    },
                  ],
                },
              },
            ],
          },
        ],
      })),
      clusters: [
        cluster("upstream", upstreamPort ?? 9),
        ...Object.entries(clusters).map(([name, port]) => cluster(name, port)),
      ],
    },
  };
}

/**
 * A `DownstreamTlsContext` transport socket: `{cert, key}` files for the
 * server, and with `ca` the client certificates it validates — requested
 * always, required when `requireClientCert`.
 */
export function downstreamTls({ cert, key, ca, requireClientCert = false }) {
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
      require_client_certificate: requireClientCert,
      common_tls_context: {
        tls_certificates: [{ certificate_chain: { filename: cert }, private_key: { filename: key } }],
        ...(ca ? { validation_context: { trusted_ca: { filename: ca } } } : {}),
      },
    },
  };
}

/**
 * Makes a test PKI with `openssl` in a fresh temp dir: a CA, a server
 * certificate for 127.0.0.1/localhost, and one client certificate per name in
 * `clients` (plus `stranger`, signed by a CA nobody trusts). Returns paths and
 * each client's DER SHA-256 as base64url (what `cnf["x5t#S256"]` holds):
 * `{dir, ca, server: {cert, key}, clients: {name: {cert, key, x5t}}}`.
 */
export function makePki(clients = ["a", "b"]) {
  const dir = tempDir("pki");
  const ssl = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  const ecKey = (name) => ssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name);
  const ca = (name) => {
    ecKey(`${name}.key`);
    ssl("req", "-x509", "-new", "-key", `${name}.key`, "-subj", `/CN=agentguard test ${name}`, "-days", "2",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-out", `${name}.pem`);
  };
  const leaf = (name, issuer, ext) => {
    ecKey(`${name}.key`);
    writeFileSync(path.join(dir, `${name}.ext`), ext);
    ssl("req", "-new", "-key", `${name}.key`, "-subj", `/CN=${name}`, "-out", `${name}.csr`);
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${issuer}.pem`, "-CAkey", `${issuer}.key`, "-CAcreateserial",
      "-days", "2", "-extfile", `${name}.ext`, "-out", `${name}.pem`);
    const der = ssl("x509", "-in", `${name}.pem`, "-outform", "DER");
    return {
      cert: path.join(dir, `${name}.pem`),
      key: path.join(dir, `${name}.key`),
      x5t: createHash("sha256").update(der).digest("base64url"),
    };
  };
  ca("ca");
  ca("other-ca");
  const server = leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  const client = (name, issuer) => leaf(`client-${name}`, issuer, "extendedKeyUsage=clientAuth\n");
  const made = Object.fromEntries(clients.map((name) => [name, client(name, "ca")]));
  made.stranger = client("stranger", "other-ca");
  return { dir, ca: path.join(dir, "ca.pem"), server, clients: made };
}

// ---------------------------------------------------------------- Envoy process

let nextBaseId = 300 + (process.pid % 50) * 10;

/**
 * Starts Envoy with `config` (an object, written as JSON, or a path to a
 * YAML/JSON file) and waits until its listeners accept requests. Returns
 * `{port, ports, adminPort, pid, output(), stop()}`: `port` is the first
 * listener's, `ports` maps every listener's name to its port. `concurrency`
 * is Envoy's worker-thread count (one Wasm VM each); `env` is added to
 * Envoy's environment.
 */
export async function startEnvoy(config, { logLevel = "wasm:debug", timeoutMs = 20000, concurrency = 1, env = {} } = {}) {
  const bin = envoyBin();
  const dir = tempDir("envoy");
  let configPath = config;
  if (typeof config !== "string") {
    configPath = path.join(dir, "envoy.json");
    writeFileSync(configPath, JSON.stringify(config, null, 1));
  }
  const adminPath = path.join(dir, "admin.txt");
  const args = [
    "-c", configPath,
    "--base-id", String(nextBaseId++),
    "--concurrency", String(concurrency),
    "--admin-address-path", adminPath,
    "--log-level", "warn",
    "--component-log-level", logLevel,
    "--log-format", "[%L][%n][%t] %v",
  ];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  running.add(child);
  child.on("exit", () => running.delete(child));
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  let exit = null;
  exited.then((e) => (exit = e));

  const deadline = Date.now() + timeoutMs;
  let adminPort = 0;
  let port = 0;
  let ports = {};
  while (Date.now() < deadline && !exit) {
    await sleep(50);
    if (!adminPort && existsSync(adminPath)) {
      const text = readFileSync(adminPath, "utf8").trim();
      if (text) adminPort = Number(text.split(":").pop());
    }
    if (adminPort) {
      try {
        const statuses = (await getJson(adminPort, "/listeners?format=json")).listener_statuses ?? [];
        const bound = statuses.map((l) => [l.name, l.local_address?.socket_address?.port_value]);
        if (bound.length && bound.every(([, p]) => p)) {
          const ready = await get(adminPort, "/ready");
          if (ready.status === 200) {
            ports = Object.fromEntries(bound);
            port = bound[0][1];
            break;
          }
        }
      } catch {
        // not up yet
      }
    }
  }
  const envoy = {
    pid: child.pid,
    port,
    ports,
    adminPort,
    output: () => output,
    exited,
    async stop() {
      if (!exit) {
        process.kill(child.pid, "SIGTERM");
        const timer = setTimeout(() => !exit && process.kill(child.pid, "SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
      removeTempDir(dir); // only now that Envoy is gone
    },
  };
  if (!port) {
    await envoy.stop();
    throw new Error(`Envoy did not become ready (exit ${JSON.stringify(exit)}):\n${output.slice(-4000)}`);
  }
  return envoy;
}

/** Runs Envoy with a config that must be refused: resolves with its exit code and output. */
export async function expectEnvoyToRefuse(config, { timeoutMs = 20000, env = {} } = {}) {
  const bin = envoyBin();
  const dir = tempDir("envoy");
  const configPath = path.join(dir, "envoy.json");
  writeFileSync(configPath, JSON.stringify(config, null, 1));
  const child = spawn(
    bin,
    ["-c", configPath, "--base-id", String(nextBaseId++), "--concurrency", "1", "--log-level", "info"],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } },
  );
  running.add(child);
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve({ code })));
  exited.then(() => running.delete(child));
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  let timer;
  const result = await Promise.race([
    exited,
    new Promise((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (!result) {
    process.kill(child.pid, "SIGKILL");
    await exited;
  }
  removeTempDir(dir); // Envoy has exited
  if (!result) throw new Error(`Envoy accepted the configuration and kept running:\n${output.slice(-3000)}`);
  return { code: result.code, output };
}

// ---------------------------------------------------------------- HTTP

/**
 * Starts a POST to Envoy on `port` whose body is not finished: `first` is
 * written, `{response, finish}` is returned, where `response` settles with
 * `{status, json}` when Envoy answers and `finish(rest)` ends the body.
 */
export function openPost(port, path, headers, first) {
  const req = http.request({ host: "127.0.0.1", port, method: "POST", path, agent: false,
    headers: { host: "api.test", "content-type": "application/json", ...headers } });
  const response = new Promise((resolve, reject) => {
    req.on("response", (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, json: JSON.parse(body) }));
    });
    req.on("error", reject);
  });
  req.write(first);
  return { response, finish: (rest) => req.end(rest) };
}

/** `promise`'s value, or `"pending"` if it has not settled within `ms`. */
export const within = (promise, ms) => Promise.race([promise, sleep(ms).then(() => "pending")]);

/**
 * Sends a request through Envoy. `headers` is an object whose values may be
 * arrays (sent as repeated header lines); `body` a string, or an array of
 * strings sent as separate writes; `tls` makes it HTTPS. Resolves with
 * `{status, headers, body, json}`.
 */
export function send(
  port,
  { method = "GET", path: target = "/", host = "api.test", headers = {}, body, tls, chunkGapMs = 50 } = {},
) {
  const raw = ["host", host];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) raw.push(name, v);
  }
  // `tls`: `{ca, cert, key}` file paths (cert/key optional): HTTPS, with that client certificate.
  const read = (file) => (file ? readFileSync(file) : undefined);
  const client = tls ? https : http;
  const options = { host: "127.0.0.1", port, method, path: target, headers: raw, agent: false };
  if (tls) Object.assign(options, { ca: read(tls.ca), cert: read(tls.cert), key: read(tls.key), servername: "localhost" });
  return new Promise((resolve, reject) => {
    const req = client.request(options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        let json = null;
        try {
          json = JSON.parse(body);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, headers: res.headers, body, json });
      });
    });
    req.on("error", reject);
    if (Array.isArray(body)) {
      // Chunks, written apart (`chunkGapMs`), so Envoy sees the body in several frames.
      (async () => {
        for (const chunk of body) {
          req.write(chunk);
          await sleep(chunkGapMs);
        }
        req.end();
      })();
    } else {
      req.end(body);
    }
  });
}

function get(port, target) {
  return send(port, { path: target, host: "127.0.0.1" });
}

async function getJson(port, target) {
  const res = await get(port, target);
  if (res.status !== 200 || !res.json) throw new Error(`GET ${target}: ${res.status}`);
  return res.json;
}

/** The upstream's view of the request: `{method, url, headers: Map<name, [values]>, body}`. */
export function upstreamSaw(res) {
  const seen = new Map();
  for (const [name, value] of res.json?.headers ?? []) seen.set(name, [...(seen.get(name) ?? []), value]);
  return { method: res.json?.method, url: res.json?.url, headers: seen, body: res.json?.body };
}

/** Counter values from the admin `/stats` whose name contains `filter`. */
export async function stats(envoy, filter = "agentguard") {
  const res = await get(envoy.adminPort, `/stats?filter=${encodeURIComponent(filter)}`);
  const values = {};
  for (const line of res.body.split("\n")) {
    const m = /^([^:]+): (\d+)$/.exec(line.trim());
    if (m) values[m[1]] = Number(m[2]);
  }
  return { values, text: res.body };
}

/**
 * Asserts that Envoy's `output` has a line matching `pattern`; on failure
 * shows the agentguard/wasm lines and errors only, not Envoy's whole banner.
 */
export function assertLogged(output, pattern, message = "") {
  if (pattern.test(output)) return;
  const relevant = output
    .split("\n")
    .filter((l) => /wasm|agentguard|\]\[(error|critical|warning)\]|\[[CEW]\]/.test(l))
    .slice(-40)
    .join("\n");
  throw new Error(`${message ? `${message}: ` : ""}no log line matches ${pattern}; relevant output:\n${relevant}`);
}

/** Polls `fn` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually(fn, { timeoutMs = 10000, everyMs = 100, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
