import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { countRows, filesUnder } from "../support/data-dir.ts";
import { startTestGateway } from "../support/gateway.ts";
import { bytesOf, type Origin, slowBody, startOrigin, viaProxy } from "../support/origin.ts";
import {
  type PatchGateway,
  type PatchGatewayOptions,
  PatternBody,
  patchDiskContents,
  patchUrl,
  readAgainst,
  startPatchGateway,
  startPatternOrigin,
} from "../support/patch.ts";
import { gate, waitFor } from "../support/wait.ts";

setDefaultTimeout(30_000);

/**
 * The patch cache: while Patch Mode is on, downloads from any vendor host
 * are cached on the patch disk (blobs and index under <patch>/cachegate),
 * coalesced as the platform cache does; platform hosts stay in the data dir.
 */
const defer = cleanupAfterEach();
const MiB = 1024 * 1024;
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** An origin serving `body` slowly (in `chunks` pieces, `delayMs` apart) with a Content-Length, and a Patch Mode gateway. */
async function setup(
  body: Buffer,
  opts: PatchGatewayOptions & { chunks?: number; delayMs?: number } = {},
): Promise<{ gw: PatchGateway; origin: Origin }> {
  const chunks = opts.chunks ?? 1;
  const size = Math.ceil(body.length / chunks);
  const pieces = Array.from({ length: chunks }, (_, i) => body.subarray(i * size, (i + 1) * size));
  const origin = startOrigin(
    () =>
      new Response(slowBody(pieces, opts.delayMs ?? 0), {
        headers: {
          "content-length": String(body.length),
          "cache-control": "max-age=86400",
          "content-type": "application/octet-stream",
          etag: '"kb-1"',
        },
      }),
  );
  defer(() => origin.stop());
  const gw = await startPatchGateway(opts);
  defer(() => gw.close());
  return { gw, origin };
}

describe("Patch Mode caching", () => {
  test("ten agents downloading one patch at once make one upstream request, and the patch lands on the patch disk, not in the data dir", async () => {
    // A vendor that holds its answer (2 MB with a Content-Length, in 64 KB blocks) until the nine
    // other agents wait on the first one's download: Varnish's waiting list, seen on its counter.
    const pattern = new PatternBody(2 * MiB, 64 * 1024);
    const answer = gate();
    const origin = await startPatternOrigin({
      "/windows10.0-kb5034441-x64.msu": { body: pattern, beforeHead: () => answer.opened },
    });
    defer(() => origin.stop());
    const gw = await startPatchGateway();
    defer(() => gw.close());
    defer(() => answer.open()); // runs first: a failed test must not leave the download (and close) waiting
    const agent = await gw.issueAgent("site-a");
    const url = origin.url("/windows10.0-kb5034441-x64.msu");

    const pending = Array.from({ length: 10 }, () => viaProxy(gw.proxyFor(agent), url));
    await waitFor("the vendor to be asked", () => origin.count() === 1, 15_000);
    await waitFor(
      "nine agents to wait on the first one's download",
      () => gw.patch.cache()!.pipeline.waiting() === 9,
      15_000,
    );
    expect(origin.count()).toBe(1);
    answer.open();
    const responses = await Promise.all(pending);
    for (const res of responses) {
      expect(res.status).toBe(200);
      expect(res.headers.get("content-length")).toBe(String(pattern.size));
    }
    const checks = await Promise.all(responses.map((r) => readAgainst(r.body, pattern)));
    expect(checks).toEqual(Array(10).fill({ bytes: pattern.size, intact: true }));
    const labels = responses.map((r) => r.headers.get("x-cache"));
    expect(labels.filter((l) => l === "MISS")).toHaveLength(1);
    expect(labels.filter((l) => l === "COALESCED")).toHaveLength(9);
    expect(origin.count()).toBe(1);

    await gw.patchIdle();
    const disk = await patchDiskContents(gw.patchCacheDir);
    expect(disk.entries).toBe(1);
    expect(disk.blobs.map((f) => basename(f))).toEqual([sha256(pattern.slice(0, pattern.size))]);
    expect(disk.temps).toEqual([]);
    expect(existsSync(join(gw.patchCacheDir, "index.sqlite"))).toBe(true);
    // Nothing of it in the main cache.
    expect(countRows(gw.dataDir, "entries")).toBe(0);
    expect(await filesUnder(join(gw.dataDir, "blobs"))).toEqual([]);

    // A second agent (other credentials) is served from the patch disk.
    const second = await gw.issueAgent("site-b");
    const hit = await viaProxy(gw.proxyFor(second), url);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(await readAgainst(hit.body, pattern)).toEqual({ bytes: pattern.size, intact: true });
    expect(origin.count()).toBe(1);

    const stats = await admin(gw).json("/api/stats");
    expect(stats.patchDisk).toMatchObject({
      path: gw.patchDir,
      cachedBytes: pattern.size,
      totalBytes: expect.any(Number),
      freeBytes: expect.any(Number),
    });
    expect(stats.cache.bytes).toBe(0);
  });

  test("a Range request for a cached patch is a 206 HIT from the patch disk", async () => {
    const body = randomBytes(3 * MiB);
    const { gw, origin } = await setup(body);
    const proxy = gw.proxyFor(await gw.issueAgent());
    const url = patchUrl(origin, "/office-kb.cab");
    await bytesOf(await viaProxy(proxy, url));
    await gw.patchIdle();
    const res = await viaProxy(proxy, url, { headers: { range: `bytes=${2 * MiB}-` } });
    expect(res.status).toBe(206);
    expect(res.headers.get("x-cache")).toBe("HIT");
    expect(res.headers.get("content-range")).toBe(`bytes ${2 * MiB}-${body.length - 1}/${body.length}`);
    expect((await bytesOf(res)).equals(body.subarray(2 * MiB))).toBe(true);
    expect(origin.count()).toBe(1);
  });

  test("platform domains still go to the main cache in the data dir while Patch Mode is on", async () => {
    const body = randomBytes(300_000);
    const { gw, origin } = await setup(body);
    const proxy = gw.proxyFor(await gw.issueAgent());
    const first = await viaProxy(proxy, origin.url("/agent/manifest.json")); // localhost: the test platform domain
    expect(first.headers.get("x-cache")).toBe("MISS");
    expect((await bytesOf(first)).equals(body)).toBe(true);
    await gw.idle();
    const again = await viaProxy(proxy, origin.url("/agent/manifest.json"));
    expect(again.headers.get("x-cache")).toBe("HIT");
    await bytesOf(again);
    expect(origin.count()).toBe(1);
    expect(countRows(gw.dataDir, "entries")).toBe(1);
    expect((await filesUnder(join(gw.dataDir, "blobs"))).map((f) => basename(f))).toEqual([sha256(body)]);
    const disk = await patchDiskContents(gw.patchCacheDir);
    expect(disk.entries).toBe(0);
    expect(disk.blobs).toEqual([]);
    expect((await admin(gw).json("/api/stats")).patchDisk.cachedBytes).toBe(0);
  });

  test("the private-address guard stays: without the lab setting a patch host on loopback is refused even for an agent", async () => {
    const body = randomBytes(1000);
    const { gw, origin } = await setup(body, { allowPrivate: false });
    const res = await viaProxy(gw.proxyFor(await gw.issueAgent()), patchUrl(origin, "/kb.msu"));
    await res.text();
    expect(res.status).toBe(403);
    expect(origin.count()).toBe(0);
  });

  test("turning Patch Mode off refuses patch hosts again (403, no credentials asked) and keeps what the patch disk holds", async () => {
    const body = randomBytes(100_000);
    const { gw, origin } = await setup(body);
    const proxy = gw.proxyFor(await gw.issueAgent());
    await bytesOf(await viaProxy(proxy, patchUrl(origin, "/kb.msu")));
    await gw.patchIdle();
    expect((await admin(gw).patch({ patchMode: { enabled: false } })).status).toBe(200);
    const res = await viaProxy(gw.proxyUrl, patchUrl(origin, "/kb.msu"));
    await res.text();
    expect(res.status).toBe(403);
    expect((await patchDiskContents(gw.patchCacheDir)).entries).toBe(1);
    expect((await admin(gw).patch({ patchMode: { enabled: true } })).status).toBe(200);
    const hit = await viaProxy(proxy, patchUrl(origin, "/kb.msu"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(hit)).equals(body)).toBe(true);
  });

  test("after a restart the patch cache is opened again from the patch disk and a cached patch is a HIT", async () => {
    const body = randomBytes(500_000);
    const origin = startOrigin(() => new Response(body, { headers: { "cache-control": "max-age=86400" } }));
    defer(() => origin.stop());
    const patchDir = await mkdtemp(join(tmpdir(), "cachegate-patch-restart-"));
    defer(() => rm(patchDir, { recursive: true, force: true }));
    const gw = await startPatchGateway({ patchDir });
    const agent = await gw.issueAgent();
    await bytesOf(await viaProxy(gw.proxyFor(agent), patchUrl(origin, "/kb.msu")));
    await gw.patchIdle();
    await gw.stop();

    const again = await startTestGateway({ dataDir: gw.dataDir });
    defer(() => again.close());
    const proxy = `http://${agent.username}:${agent.password}@127.0.0.1:${again.proxyPort}`;
    const res = await viaProxy(proxy, patchUrl(origin, "/kb.msu"));
    expect(res.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(res)).equals(body)).toBe(true);
    expect(origin.count()).toBe(1);
  });
});
