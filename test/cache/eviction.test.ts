import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { countRows, filesUnder, lastAccessOf } from "../support/data-dir.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type Origin, startOrigin, viaProxy } from "../support/origin.ts";
import { parseResponse } from "../support/raw-http.ts";
import { waitFor } from "../support/wait.ts";

const defer = cleanupAfterEach();
const MiB = 1024 * 1024;
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** An origin serving a fixed random body per path, and a gateway with a small cache and a hand-moved clock. */
async function setup(sizes: Record<string, number>, maxSizeBytes: number) {
  const bodies = Object.fromEntries(Object.entries(sizes).map(([path, size]) => [path, randomBytes(size)]));
  const origin = startOrigin(
    (req) => new Response(bodies[new URL(req.url).pathname], { headers: { "cache-control": "max-age=3600" } }),
  );
  defer(() => origin.stop());
  const clock = manualClock();
  const gw = await startTestGateway({ now: clock.now, config: { cache: { maxSizeBytes } } });
  defer(() => gw.close());
  /** Fetches a path through the gateway and waits for its download to land; the clock moves a second per request. */
  const get = async (path: string) => {
    clock.advance(1000);
    const res = await viaProxy(gw.proxyUrl, origin.url(path));
    const body = Buffer.from(await res.arrayBuffer());
    await gw.idle();
    expect(body.equals(bodies[path]!)).toBe(true);
    return res.headers.get("x-cache");
  };
  return { origin, gw, bodies, get, clock };
}

async function blobBytes(gw: TestGateway): Promise<number> {
  const files = await filesUnder(join(gw.dataDir, "blobs"));
  const sizes = await Promise.all(files.map(async (f) => (await stat(join(gw.dataDir, "blobs", f))).size));
  return sizes.reduce((a, b) => a + b, 0);
}

describe("eviction", () => {
  test("the least recently used entry is evicted first, not the oldest one", async () => {
    const { origin, gw, get } = await setup({ "/a": 400_000, "/b": 400_000, "/c": 400_000 }, MiB);
    expect(await get("/a")).toBe("MISS");
    expect(await get("/b")).toBe("MISS");
    expect(await get("/a")).toBe("HIT"); // /a is now more recently used than /b
    expect(await get("/c")).toBe("MISS"); // 1.2 MB > 1 MiB: something must go

    expect(countRows(gw.dataDir, "entries")).toBe(2);
    expect(await filesUnder(join(gw.dataDir, "blobs"))).toHaveLength(2);
    expect(await get("/a")).toBe("HIT");
    expect(await get("/c")).toBe("HIT");
    expect(await get("/b")).toBe("MISS");
    expect(origin.count("/a")).toBe(1);
    expect(origin.count("/b")).toBe(2);
  });

  test("the blobs on disk stay under the size limit as objects keep arriving", async () => {
    const paths = ["/1", "/2", "/3", "/4", "/5", "/6"];
    const { gw, get } = await setup(Object.fromEntries(paths.map((p) => [p, 400_000])), MiB);
    for (const path of paths) {
      await get(path);
      expect(await blobBytes(gw)).toBeLessThanOrEqual(MiB);
    }
    // The two most recent survive.
    expect(await get("/5")).toBe("HIT");
    expect(await get("/6")).toBe("HIT");
    expect(await get("/1")).toBe("MISS");
  });

  test("a blob that an agent is still reading is never evicted, and the read completes intact", async () => {
    // /a is far larger than what socket buffers absorb, so a paused agent is still reading it.
    const { gw, bodies, get, origin, clock } = await setup(
      { "/a": 12_000_000, "/b": 4_000_000, "/c": 3_000_000 },
      18 * MiB,
    );
    await get("/a");
    const shaA = sha256(bodies["/a"]!);

    clock.advance(1000);
    const reader = slowReader(gw.proxyPort, origin, "/a");
    await reader.started;
    // The read counts as a use of /a; wait until the index has recorded it, so /b is used after it.
    const readAt = clock.now();
    await waitFor("the read of /a to be recorded", () => lastAccessOf(gw.dataDir, origin.url("/a")) === readAt);
    await get("/b");
    // 19 MB > 18 MiB: eviction runs, and /a is the least recently used.
    expect(await get("/c")).toBe("MISS");

    expect(await filesUnder(join(gw.dataDir, "blobs"))).toContain(join(shaA.slice(0, 2), shaA));
    const { status, body } = await reader.finish();
    expect(status).toBe(200);
    expect(body.length).toBe(bodies["/a"]!.length);
    expect(sha256(body)).toBe(shaA);

    // /b was evicted instead; /a stayed in the cache.
    expect(await get("/a")).toBe("HIT");
    expect(await get("/b")).toBe("MISS");
    expect(origin.count("/a")).toBe(1);
  });
});

/**
 * An agent that sends its request, reads the first bytes, then stops
 * reading until `finish()`: the gateway's read of the blob stays open.
 */
function slowReader(port: number, origin: Origin, path: string) {
  const socket = connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.on("error", () => {});
  const started = new Promise<void>((resolve) => {
    socket.once("data", () => {
      socket.pause();
      resolve();
    });
  });
  socket.on("data", (d: Buffer) => chunks.push(d));
  socket.write(`GET ${origin.url(path)} HTTP/1.1\r\nHost: localhost:${origin.port}\r\nConnection: close\r\n\r\n`);
  defer(() => socket.destroy());
  return {
    started,
    async finish() {
      socket.resume();
      await closed;
      return parseResponse(Buffer.concat(chunks));
    },
  };
}
