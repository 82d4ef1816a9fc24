#!/usr/bin/env node
// A tiny static file server for the playground, on 127.0.0.1 only.
//
//   node scripts/serve-www.mjs                 # serves target/www/ (built by scripts/build-www.sh) on :8080
//   node scripts/serve-www.mjs --port 0        # a free port; the URL is printed
//   node scripts/serve-www.mjs --dir some/dir  # another directory
//
// Also a module: `const server = await serveStatic({ dir, port: 0 }); server.url; await server.close();`
// (the browser test starts and stops its own server this way).
//
// It serves files only: GET and HEAD, no directory listings, no path outside
// `dir` (the request path is resolved and must stay inside), correct MIME
// types (`application/wasm`, so browsers can stream-compile the module), and
// `Cache-Control: no-store` so a rebuilt playground is never stale.

import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { extname, join, resolve, sep, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Starts the server; resolves to `{ url, port, close() }`. */
export function serveStatic({ dir = join(root, "target", "www"), port = 8080, host = "127.0.0.1", log = () => {} } = {}) {
  const base = resolve(dir);
  const server = createServer(async (req, res) => {
    const send = (status, text) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : text);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "method not allowed\n");
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    } catch {
      return send(400, "bad request\n");
    }
    if (pathname.includes("\0")) return send(400, "bad request\n");
    let file = resolve(base, "." + pathname);
    if (file !== base && !file.startsWith(base + sep)) return send(404, "not found\n");
    try {
      let info = await stat(file);
      if (info.isDirectory()) {
        file = join(file, "index.html");
        info = await stat(file);
      }
      if (!info.isFile()) return send(404, "not found\n");
      res.writeHead(200, {
        "content-type": MIME[extname(file).toLowerCase()] ?? "application/octet-stream",
        "content-length": info.size,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      if (req.method === "HEAD") return res.end();
      createReadStream(file).on("error", () => res.destroy()).pipe(res);
      log(`${req.method} ${pathname} 200`);
    } catch {
      send(404, "not found\n");
      log(`${req.method} ${pathname} 404`);
    }
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const { port: actual } = server.address();
      resolvePromise({
        url: `http://${host}:${actual}/`,
        port: actual,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
  };
  const dir = resolve(opt("--dir", join(root, "target", "www")));
  const port = Number(opt("--port", process.env.AGENTGUARD_WWW_PORT ?? 8080));
  try {
    await stat(join(dir, "index.html"));
  } catch {
    console.error(`serve-www: ${dir}/index.html not found; run \`bash scripts/build-www.sh\` first`);
    process.exit(1);
  }
  const server = await serveStatic({ dir, port, log: args.includes("--verbose") ? console.log : undefined });
  console.log(`agentguard playground: ${server.url}  (serving ${dir}; Ctrl-C stops)`);
  const stop = () => server.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
