import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { statfsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { viaProxy } from "../support/origin.ts";
import {
  PatternBody,
  patchDiskContents,
  readAgainst,
  startPatchGateway,
  startPatternOrigin,
  watchPatchRequests,
} from "../support/patch.ts";
import { gate, waitFor, within } from "../support/wait.ts";

setDefaultTimeout(60_000);

/**
 * Large patches and agents resuming them: one agent reads the start and
 * drops its connection; the download goes on for the cache; a second agent
 * resumes with a Range past the point the download has reached (past 4 GiB
 * for the large case), gets a 206 with the right Content-Range and the right
 * bytes as they arrive; once stored, a Range near the end is a HIT.
 */
const defer = cleanupAfterEach();
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

interface Scenario {
  size: number;
  /** The origin holds the body here until the resuming agent's response head has arrived. */
  holdAt: number;
  /** Where the resuming agent's Range starts: beyond holdAt, so it waits for bytes still to come. */
  resumeAt: number;
  /** What the first agent reads before it drops the connection. */
  firstReads: number;
}

async function resumeScenario(s: Scenario): Promise<{ peakRssGrowth: number }> {
  const pattern = new PatternBody(s.size);
  const held = gate();
  let holding = false;
  const origin = await startPatternOrigin({
    "/feature-update.iso": {
      body: pattern,
      async pace(upTo) {
        if (upTo > s.holdAt) {
          holding = true;
          await held.opened;
        }
      },
    },
  });
  defer(() => origin.stop());
  const gw = await startPatchGateway();
  defer(() => gw.close());
  defer(() => held.open()); // runs first: a failed test must not leave the download (and close) waiting
  const url = origin.url("/feature-update.iso");
  const first = await gw.issueAgent("site-a");
  const second = await gw.issueAgent("site-b");

  // This process also runs every other test file, and the collector's pace depends on the heap
  // they left: collect before each sample, so the figure is what the transfer holds on to
  // (a buffered body would stay) rather than garbage waiting for a collection.
  Bun.gc(true);
  const rssAtStart = process.memoryUsage().rss;
  let peakRss = rssAtStart;
  const sampler = setInterval(() => {
    Bun.gc(true);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 100);
  defer(() => clearInterval(sampler));

  // Agent A: the whole object, but it reads only the start and then drops the connection.
  const abort = new AbortController();
  const a = await viaProxy(gw.proxyFor(first), url, { signal: abort.signal });
  expect(a.status).toBe(200);
  expect(a.headers.get("x-cache")).toBe("MISS");
  expect(a.headers.get("content-length")).toBe(String(s.size));
  const partial = await readAgainst(a.body, pattern, 0, s.firstReads);
  abort.abort();
  expect(partial.intact).toBe(true);
  expect(partial.bytes).toBeGreaterThanOrEqual(s.firstReads);

  // The download goes on without A, up to where the origin holds it.
  await waitFor("the download to reach the hold point", () => holding, 240_000);
  expect(gw.patch.cache()?.pipeline.inFlight()).toBe(1);
  expect(origin.abandoned.size).toBe(0);

  // Agent B resumes beyond what has arrived, while the first download is still in progress. Its
  // response head goes out with the first byte it asks for, so the origin is let go once the patch
  // cache has B's request in hand (seen by a pass-through hook on the pipeline).
  const watch = watchPatchRequests(gw);
  defer(() => watch.restore());
  const pendingB = viaProxy(gw.proxyFor(second), url, { headers: { range: `bytes=${s.resumeAt}-` } });
  await waitFor(
    "the resuming request to reach the patch cache",
    () => watch.seen.some((r) => r.headers.get("range") === `bytes=${s.resumeAt}-`),
    10_000,
  );
  expect(gw.patch.cache()!.pipeline.inFlight()).toBe(1);
  expect(origin.sent("/feature-update.iso")).toBeLessThan(s.resumeAt);
  held.open();
  const b = await within(120_000, "the resumed response head", pendingB);
  expect(b.status).toBe(206);
  expect(b.headers.get("content-range")).toBe(`bytes ${s.resumeAt}-${s.size - 1}/${s.size}`);
  expect(b.headers.get("content-length")).toBe(String(s.size - s.resumeAt));
  expect(b.headers.get("x-cache")).toBe("COALESCED");
  const resumed = await within(120_000, "the resumed download", readAgainst(b.body, pattern, s.resumeAt));
  expect(resumed).toEqual({ bytes: s.size - s.resumeAt, intact: true });

  // Stored whole on the patch disk, and served from it.
  await gw.patchIdle(120_000);
  const disk = await patchDiskContents(gw.patchCacheDir);
  expect(disk.entries).toBe(1);
  expect(disk.temps).toEqual([]);
  expect(disk.blobs).toHaveLength(1);
  expect((await stat(join(gw.patchCacheDir, "blobs", disk.blobs[0]!))).size).toBe(s.size);

  const tailStart = s.size - 1000;
  const tail = await viaProxy(gw.proxyFor(first), url, { headers: { range: `bytes=${tailStart}-` } });
  expect(tail.status).toBe(206);
  expect(tail.headers.get("x-cache")).toBe("HIT");
  expect(tail.headers.get("content-range")).toBe(`bytes ${tailStart}-${s.size - 1}/${s.size}`);
  expect(await readAgainst(tail.body, pattern, tailStart)).toEqual({ bytes: 1000, intact: true });

  const suffix = await viaProxy(gw.proxyFor(second), url, { headers: { range: "bytes=-77" } });
  expect(suffix.status).toBe(206);
  expect(suffix.headers.get("content-range")).toBe(`bytes ${s.size - 77}-${s.size - 1}/${s.size}`);
  expect(await readAgainst(suffix.body, pattern, s.size - 77)).toEqual({ bytes: 77, intact: true });

  // A range across the point where the resume started (and, for the large case, across 4 GiB).
  const across = s.holdAt - 5;
  const mid = await viaProxy(gw.proxyFor(second), url, { headers: { range: `bytes=${across}-${across + 20}` } });
  expect(mid.headers.get("content-range")).toBe(`bytes ${across}-${across + 20}/${s.size}`);
  expect(await readAgainst(mid.body, pattern, across)).toEqual({ bytes: 21, intact: true });

  expect(origin.count()).toBe(1);
  clearInterval(sampler);
  return { peakRssGrowth: peakRss - rssAtStart };
}

describe("large patches resumed with Range", () => {
  test("an agent resumes a 256 MB patch past the point its download has reached, and the rest is served from the patch disk", async () => {
    const { peakRssGrowth } = await resumeScenario({
      size: 256 * MiB,
      holdAt: 160 * MiB,
      resumeAt: 176 * MiB + 12_345,
      firstReads: 32 * MiB,
    });
    // Streaming, not buffering: far less than the object's size.
    expect(peakRssGrowth).toBeLessThan(128 * MiB);
  });

  // About 40 s on a 2-core machine (4 GiB through origin, gateway and disk): always on, unless the disk is too small.
  const free = (() => {
    const st = statfsSync(tmpdir());
    return st.bavail * st.bsize;
  })();
  if (free < 10e9)
    console.warn(
      `skipping the 4 GiB resume test: ${(free / 1e9).toFixed(1)} GB free under ${tmpdir()}, it needs 10 GB`,
    );
  test.skipIf(free < 10e9)(
    "an agent resumes a patch larger than 4 GiB from beyond the 4 GiB mark while it is still downloading",
    async () => {
      const started = performance.now();
      const size = 4 * GiB + 64 * MiB;
      const { peakRssGrowth } = await resumeScenario({
        size,
        holdAt: 4 * GiB,
        resumeAt: 4 * GiB + 16 * MiB + 12_345,
        firstReads: 64 * MiB,
      });
      expect(peakRssGrowth).toBeLessThan(256 * MiB);
      console.info(
        `4 GiB resume test: ${((performance.now() - started) / 1000).toFixed(1)} s, peak RSS growth ${(peakRssGrowth / MiB).toFixed(0)} MB`,
      );
    },
    600_000,
  );
});
