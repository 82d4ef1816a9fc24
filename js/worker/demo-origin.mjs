// A tiny stand-in for the protected API: answers every request with what it
// received, so you can see the identity headers the gateway adds.
//   node js/worker/demo-origin.mjs [port]      (default 8788, 127.0.0.1 only)
import { createServer } from "node:http";

const port = Number(process.argv[2] ?? 8788);
createServer((req, res) => {
  const identity = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith("x-agentguard-")));
  const body = JSON.stringify({ origin: "demo API", method: req.method, path: req.url, identity }, null, 2);
  res.writeHead(200, { "content-type": "application/json" }).end(`${body}\n`);
}).listen(port, "127.0.0.1", () => console.log(`demo origin on http://127.0.0.1:${port}`));
