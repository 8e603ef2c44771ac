import { afterAll, describe, expect, test } from "bun:test";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { type FaultyRoute, startFaultyOrigin } from "../support/faulty-origin.ts";
import { startTestGateway } from "../support/gateway.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { viaProxy } from "../support/origin.ts";
import { freeBytesAt, mountTmpfs, PatternBody, readAgainst } from "../support/patch.ts";
import { waitFor } from "../support/wait.ts";

/**
 * The gateway's own disk must never cost an agent its download nor the
 * gateway its process: a data disk that fills is a reason to store less,
 * not to fail. Each test mounts a small tmpfs as the data dir; where the
 * machine does not allow mounting, they are skipped with the reason.
 */
const defer = cleanupAfterEach();
const MiB = 1024 * 1024;
afterAll(killAllGatewayProcesses);

const probe = await mountTmpfs(MiB);
const mountError = "error" in probe ? probe.error : undefined;
if (!("error" in probe)) await probe.unmount();
if (mountError) console.warn(`full-disk: tmpfs tests skipped: ${mountError}`);
const withTmpfs = test.skipIf(mountError !== undefined);

async function smallDisk(size: number): Promise<string> {
  const mount = await mountTmpfs(size);
  if ("error" in mount) throw new Error(mount.error);
  defer(() => mount.unmount());
  return mount.dir;
}

/** Fills the file system holding `dir` to the last block; returns the file to remove to give the space back. */
async function fillDisk(dir: string): Promise<string> {
  const file = join(dir, "filler");
  await writeFile(file, Buffer.alloc(Math.max(0, freeBytesAt(dir) - 4096)));
  await writeFile(`${file}-rest`, Buffer.alloc(freeBytesAt(dir))).catch(() => {});
  return file;
}

describe("a data disk that fills", () => {
  withTmpfs(
    "64 downloads of 48 MB of objects through a 24 MB data disk: every agent gets its whole, correct body",
    async () => {
      const dataDir = join(await smallDisk(24 * MiB), "data");
      const routes: Record<string, FaultyRoute> = {};
      for (let i = 0; i < 16; i++) {
        // Half with a validator (a lagging reader can fetch its remainder), half chunked (size unknown up front).
        routes[`/object-${i}.bin`] = {
          body: new PatternBody(3 * MiB, 256 * 1024),
          etag: i % 2 === 0 ? `"v${i}"` : undefined,
          chunked: i % 4 === 1,
        };
      }
      const origin = await startFaultyOrigin(routes);
      defer(() => origin.stop());
      const gw = await startTestGateway({ dataDir, config: { cache: { maxSizeBytes: 1024 ** 3 } } });
      defer(() => gw.close());

      const paths = Object.keys(routes);
      const plan = [...paths, ...paths, ...paths, ...paths]; // each object four times
      const failures: string[] = [];
      for (let wave = 0; wave < plan.length; wave += 8) {
        await Promise.all(
          plan.slice(wave, wave + 8).map(async (path) => {
            const body = routes[path]!.body;
            const check = await viaProxy(gw.proxyUrl, origin.url(path)).then(
              (res) => readAgainst(res.body, body),
              (error: Error) => ({ bytes: 0, intact: false, error }),
            );
            if (check.error || !check.intact || check.bytes !== body.size) {
              failures.push(
                `${path}: ${check.bytes} bytes, intact ${check.intact}, ${check.error?.message ?? "no error"}`,
              );
            }
          }),
        );
      }
      expect(failures).toEqual([]);
      await gw.idle();
      expect(freeBytesAt(dataDir)).toBeGreaterThan(0);
      expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);
      // It stored what fit: later agents were served from the cache for some objects.
      expect(gw.index.totalBytes()).toBeGreaterThan(0);
    },
    120_000,
  );
});

describe("a download the disk cannot hold", () => {
  withTmpfs(
    "a reader that falls behind once the disk filled asks upstream for its remainder by range, and gets the whole body",
    async () => {
      const dataDir = join(await smallDisk(16 * MiB), "data");
      const body = new PatternBody(48 * MiB, 256 * 1024);
      const origin = await startFaultyOrigin({ "/image.iso": { body, etag: '"img1"', chunked: true } });
      defer(() => origin.stop());
      const gw = await startTestGateway({ dataDir });
      defer(() => gw.close());
      const url = origin.url("/image.iso");

      const [fast, slow] = await Promise.all([viaProxy(gw.proxyUrl, url), viaProxy(gw.proxyUrl, url)]);
      const slowReader = slow.body!.getReader();
      const first = await slowReader.read(); // one chunk, then this agent stalls
      const fastCheck = await readAgainst(fast.body, body);
      expect(fastCheck).toEqual({ bytes: body.size, intact: true });
      await waitFor("the origin to have sent the whole body", () => origin.bytesSent("/image.iso") >= body.size);

      const rest = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(first.value!);
        },
        async pull(controller) {
          const { done, value } = await slowReader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
      });
      expect(await readAgainst(rest, body)).toEqual({ bytes: body.size, intact: true });
      // The slow agent's remainder came by range (the fast one may have fallen behind the window too).
      const ranges = origin.ranges("/image.iso");
      expect(ranges.length).toBeGreaterThanOrEqual(1);
      expect(ranges.length).toBeLessThanOrEqual(2);
      await gw.idle();
      expect(gw.index.totalBytes()).toBe(0);
    },
    60_000,
  );
});

describe("background work on a full disk", () => {
  withTmpfs(
    "the gateway keeps serving while its disk is full: a failed flush is logged once, retried, and recovers",
    async () => {
      const dataDir = join(await smallDisk(16 * MiB), "data");
      await mkdir(dataDir);
      const routes = { "/manifest.json": { body: new PatternBody(64 * 1024, 64 * 1024), etag: '"m1"' } };
      const origin = await startFaultyOrigin(routes);
      defer(() => origin.stop());
      const gw = await startGatewayProcess({ dataDir });
      defer(() => gw.close());
      const url = origin.url("/manifest.json");
      const get = async () => {
        const res = await viaProxy(gw.proxyUrl, url);
        expect(await readAgainst(res.body, routes["/manifest.json"].body)).toEqual({ bytes: 64 * 1024, intact: true });
        return res.headers.get("x-cache");
      };
      expect(await get()).toBe("MISS");
      await gw.idle();

      const filler = await fillDisk(dataDir);
      // Hits and counters pile up in memory; the timers that write them find the disk full.
      for (let i = 0; i < 3; i++) expect(await get()).toBe("HIT");
      const failed = (what: string) => gw.output().split(`${what} failed`).length - 1;
      await waitFor("the stats flush to fail", () => failed("writing the stats to the index database") > 0, 15_000);
      // Touches are flushed every second, stats every 5 s: by now the touch flush failed at every tick, logged once.
      expect(failed("writing cache hits to the index database")).toBe(1);
      expect(await get()).toBe("HIT");
      expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);

      await rm(filler, { force: true });
      await rm(`${filler}-rest`, { force: true });
      await waitFor(
        "the flushes to recover",
        () => gw.output().includes("writing the stats to the index database works again"),
        15_000,
      );
      const stats = await gw.json("/api/stats");
      expect(stats.hits).toBe(4); // nothing counted while the disk was full was lost
    },
    60_000,
  );
});
