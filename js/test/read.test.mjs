// readAtMost (js/src/jwks.js): the one capped reader behind every fetched
// document (JWKS, key directories, revocation lists) and request bodies.

import { test } from "node:test";
import assert from "node:assert/strict";

import { readAtMost } from "../src/jwks.js";

/** A stream of `count` chunks of `size` bytes; `pulled()` says how many were produced. */
function chunks(count, size) {
  let n = 0;
  let cancelled = false;
  const stream = new ReadableStream(
    {
      pull(controller) {
        if (n === count) return controller.close();
        n += 1;
        controller.enqueue(new Uint8Array(size).fill(n));
      },
      cancel() {
        cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, pulled: () => n, cancelled: () => cancelled };
}

test("a body within the limit is read whole, in order", async () => {
  const s = chunks(3, 4);
  const bytes = await readAtMost(s.stream, null, 12);
  assert.deepEqual([...bytes], [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
  assert.equal(await readAtMost(null, null, 10).then((b) => b.length), 0, "no body is empty");
});

test("a longer body stops one chunk past the limit, and is cancelled", async () => {
  const s = chunks(1000, 4);
  assert.equal(await readAtMost(s.stream, null, 10), undefined);
  assert.equal(s.pulled(), 3, "read 12 bytes of 4000, then stopped");
  assert.equal(s.cancelled(), true);
});

test("a declared Content-Length over the limit is refused before reading", async () => {
  const s = chunks(1000, 4);
  assert.equal(await readAtMost(s.stream, "4000", 10), undefined);
  assert.equal(s.pulled(), 0);
  assert.equal(s.cancelled(), true);
  // A declared length within the limit does not stop a longer body.
  const lying = chunks(1000, 4);
  assert.equal(await readAtMost(lying.stream, "8", 10), undefined);
  assert.equal(lying.pulled(), 3);
});

test("a JWKS host that streams without end is cut off at 256 KiB", async () => {
  const { JwksCache } = await import("../src/jwks.js");
  let sent = 0;
  const cache = new JwksCache({
    log: () => {},
    fetch: async () => {
      const body = new ReadableStream(
        {
          pull(controller) {
            sent += 16 * 1024;
            controller.enqueue(new Uint8Array(16 * 1024).fill(0x20));
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
    },
  });
  // Never a good document: the first fetch rejects, naming the cap.
  await assert.rejects(cache.get("https://sts.test/jwks"), /document is larger than 262144 bytes/);
  assert.ok(sent <= 256 * 1024 + 16 * 1024, `read ${sent} bytes`);
});
