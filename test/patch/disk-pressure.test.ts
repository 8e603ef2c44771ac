import { Database } from "bun:sqlite";
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { viaProxy } from "../support/origin.ts";
import {
  freeBytesAt,
  mountTmpfs,
  type PatchGateway,
  type PatchGatewayOptions,
  PatternBody,
  type PatternOrigin,
  patchDiskContents,
  readAgainst,
  startPatchGateway,
  startPatternOrigin,
  type TmpfsMount,
  usedFractionAt,
} from "../support/patch.ts";
import { waitFor } from "../support/wait.ts";

setDefaultTimeout(60_000);

/**
 * Disk pressure on the patch disk: LRU eviction between the high and low
 * watermarks, and a full disk that keeps serving (streamed through with
 * X-Cache: BYPASS) without ever indexing a half-written object. The disk is
 * a small tmpfs mounted for each test; where this machine does not allow
 * mounting, those tests are skipped with the reason and the watermark test
 * at the end still runs on a plain directory.
 */
const defer = cleanupAfterEach();
const MiB = 1024 * 1024;

const mounts = new Set<TmpfsMount>();
afterAll(async () => {
  for (const m of mounts) await m.unmount();
});

const probe = await mountTmpfs(MiB);
const mountError = "error" in probe ? probe.error : undefined;
if ("unmount" in probe) await probe.unmount();
if (mountError) console.warn(`disk-pressure: tmpfs tests skipped: ${mountError}`);
const withTmpfs = test.skipIf(mountError !== undefined);

/** A tmpfs of `size` bytes for this test, unmounted after it (after the gateway on it has closed). */
async function tmpfs(size: number): Promise<string> {
  const m = await mountTmpfs(size);
  if ("error" in m) throw new Error(m.error);
  mounts.add(m);
  defer(() => m.unmount());
  return m.dir;
}

/** An origin serving a pattern body per path: with Content-Length, or chunked when the path starts with /chunked. */
async function patternOrigin(
  sizes: Record<string, number>,
): Promise<{ origin: PatternOrigin; bodies: Map<string, PatternBody> }> {
  const bodies = new Map(Object.entries(sizes).map(([path, size]) => [path, new PatternBody(size)]));
  const origin = await startPatternOrigin(
    Object.fromEntries([...bodies].map(([path, body]) => [path, { body, chunked: path.startsWith("/chunked") }])),
  );
  defer(() => origin.stop());
  return { origin, bodies };
}

async function gateway(patchDir: string, opts: PatchGatewayOptions = {}): Promise<PatchGateway> {
  const gw = await startPatchGateway({ patchDir, ...opts });
  defer(() => gw.close());
  return gw;
}

function patchUrls(patchCacheDir: string): string[] {
  const db = new Database(join(patchCacheDir, "index.sqlite"), { readonly: true });
  try {
    return (db.query("select url from entries order by url").all() as { url: string }[]).map(
      (r) => new URL(r.url).pathname,
    );
  } finally {
    db.close();
  }
}

describe("disk pressure on the patch disk", () => {
  withTmpfs(
    "several 8 MB patches on a small disk evict the least recently used ones, and the disk stays under its high watermark",
    async () => {
      const dir = await tmpfs(160 * MiB);
      const paths = Array.from({ length: 16 }, (_, i) => `/kb${i + 1}.msu`);
      const { origin, bodies } = await patternOrigin(Object.fromEntries(paths.map((p) => [p, 8 * MiB])));
      const clock = manualClock();
      const high = 0.45;
      const gw = await gateway(dir, { now: clock.now, patchDisk: { highWatermark: high, lowWatermark: 0.25 } });
      const proxy = gw.proxyFor(await gw.issueAgent());
      const get = async (path: string) => {
        clock.advance(1000);
        const res = await viaProxy(proxy, origin.url(path));
        const check = await readAgainst(res.body, bodies.get(path)!);
        expect(check).toEqual({ bytes: 8 * MiB, intact: true });
        await gw.patchIdle();
        expect(usedFractionAt(dir)).toBeLessThanOrEqual(high);
        return res.headers.get("x-cache");
      };

      for (const path of paths.slice(0, 8)) expect(await get(path)).toBe("MISS");
      expect(patchUrls(gw.patchCacheDir)).toHaveLength(8);
      expect(await get("/kb1.msu")).toBe("HIT"); // now the most recently used
      expect(await get("/kb9.msu")).toBe("MISS"); // 72 MB > 45% of 160 MB: down to the low watermark

      const kept = patchUrls(gw.patchCacheDir);
      expect(kept.length).toBeGreaterThanOrEqual(3);
      expect(kept.length).toBeLessThan(9);
      expect(kept).toContain("/kb1.msu");
      expect(kept).toContain("/kb9.msu");
      expect(kept).not.toContain("/kb2.msu"); // the least recently used went first
      expect(usedFractionAt(dir)).toBeLessThanOrEqual(0.25 + 0.02);

      for (const path of paths.slice(9)) expect(await get(path)).toBe("MISS");
      const disk = await patchDiskContents(gw.patchCacheDir);
      expect(disk.blobs).toHaveLength(disk.entries);
      expect(disk.temps).toEqual([]);
      expect((await admin(gw).json("/api/stats")).patchDisk.cachedBytes).toBe(disk.entries * 8 * MiB);
      expect(await get("/kb16.msu")).toBe("HIT");
      expect(origin.count("/kb16.msu")).toBe(1);
    },
  );

  withTmpfs(
    "a patch larger than the space left evicts older patches to make room; one larger than the disk is streamed through whole with X-Cache: BYPASS",
    async () => {
      const dir = await tmpfs(160 * MiB);
      const clock = manualClock();
      const gw = await gateway(dir, { now: clock.now });
      const proxy = gw.proxyFor(await gw.issueAgent());
      const small = { "/small-1.msu": 8 * MiB, "/small-2.msu": 8 * MiB, "/small-3.msu": 8 * MiB, "/later.msu": MiB };
      const bigSize = freeBytesAt(dir) - 24 * MiB + MiB; // after the three small ones: 1 MB more than is left
      const hugeSize = 200 * MiB; // more than the whole disk: no eviction can make room
      const { origin, bodies } = await patternOrigin({ ...small, "/big.iso": bigSize, "/huge.iso": hugeSize });
      const get = async (path: string, headers: Record<string, string> = {}) => {
        clock.advance(1000);
        const res = await viaProxy(proxy, origin.url(path), { headers });
        const check = await readAgainst(res.body, bodies.get(path)!);
        await gw.patchIdle();
        return { label: res.headers.get("x-cache"), status: res.status, check };
      };
      for (const path of ["/small-1.msu", "/small-2.msu", "/small-3.msu"]) expect((await get(path)).label).toBe("MISS");
      expect(bigSize).toBeGreaterThan(freeBytesAt(dir));

      // The least recently used patches go to make room for it, as in any LRU cache; it is stored.
      const big = await get("/big.iso");
      expect(big).toMatchObject({ status: 200, label: "MISS", check: { bytes: bigSize, intact: true } });
      expect(patchUrls(gw.patchCacheDir)).toContain("/big.iso");
      expect(patchUrls(gw.patchCacheDir)).not.toContain("/small-1.msu");
      expect(await get("/big.iso")).toMatchObject({ label: "HIT", check: { bytes: bigSize, intact: true } });

      // Larger than the disk: streamed through whole, nothing of it kept, nothing evicted for it.
      const before = patchUrls(gw.patchCacheDir);
      const huge = await get("/huge.iso");
      expect(huge).toMatchObject({ status: 200, label: "BYPASS", check: { bytes: hugeSize, intact: true } });
      const disk = await patchDiskContents(gw.patchCacheDir);
      expect(disk.temps).toEqual([]);
      expect(patchUrls(gw.patchCacheDir)).toEqual(before);

      // The gateway keeps running and caching what fits.
      expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);
      expect(await get("/later.msu")).toMatchObject({ label: "MISS", check: { bytes: MiB, intact: true } });
      expect(await get("/later.msu")).toMatchObject({ label: "HIT", check: { bytes: MiB, intact: true } });
    },
  );

  withTmpfs(
    "a chunked patch that fills the disk mid-write reaches its agent whole from upstream, and nothing of it is indexed",
    async () => {
      const dir = await tmpfs(96 * MiB);
      const clock = manualClock();
      const gw = await gateway(dir, { now: clock.now });
      const proxy = gw.proxyFor(await gw.issueAgent());
      const size = 128 * MiB; // no Content-Length: the gateway learns it is too big only when the disk is full
      const { origin, bodies } = await patternOrigin({ "/chunked/rollup.cab": size, "/after.msu": MiB });
      const url = origin.url("/chunked/rollup.cab");

      const first = await viaProxy(proxy, url);
      expect(first.status).toBe(200);
      expect(first.headers.get("content-length")).toBeNull();
      // The disk filled under it: the rest came from upstream through memory, not stored, and the agent saw nothing of it.
      expect(await readAgainst(first.body, bodies.get("/chunked/rollup.cab")!)).toEqual({ bytes: size, intact: true });

      await gw.patchIdle();
      await waitFor(
        "the half-written temp file to go",
        async () => (await patchDiskContents(gw.patchCacheDir)).temps.length === 0,
        10_000,
      );
      const disk = await patchDiskContents(gw.patchCacheDir);
      expect(disk.entries).toBe(0);
      expect(disk.blobs).toEqual([]);
      await waitFor("the space to be given back", () => freeBytesAt(dir) > 90 * MiB, 10_000);
      expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);

      // Asked again at once: passed through whole (the disk is in trouble), or cached whole; never cut.
      clock.advance(1000);
      const again = await viaProxy(proxy, url);
      const againCheck = await readAgainst(again.body, bodies.get("/chunked/rollup.cab")!);
      expect(againCheck).toEqual({ bytes: size, intact: true });
      expect(["BYPASS", "MISS"]).toContain(again.headers.get("x-cache") ?? "none");
      await gw.patchIdle();
      expect((await patchDiskContents(gw.patchCacheDir)).entries).toBe(0);

      // Once the trouble window has passed, patches that fit are cached again.
      clock.advance(60_000);
      const after = await viaProxy(proxy, origin.url("/after.msu"));
      expect(await readAgainst(after.body, bodies.get("/after.msu")!)).toEqual({ bytes: MiB, intact: true });
      expect(after.headers.get("x-cache")).toBe("MISS");
      await gw.patchIdle();
      expect(patchUrls(gw.patchCacheDir)).toEqual(["/after.msu"]);
    },
  );

  test("a patch disk already over its high watermark with other data keeps serving every download whole, and keeps nothing it would have to evict", async () => {
    // A plain directory on this machine's disk, with watermarks below what the disk already uses.
    const gw = await startPatchGateway({ patchDisk: { highWatermark: 0.1, lowWatermark: 0.05 } });
    defer(() => gw.close());
    if (usedFractionAt(gw.patchDir) <= 0.1) {
      console.warn(
        `skipping: the disk holding ${gw.patchDir} is less than 10% full, so it cannot be made to count as full`,
      );
      return;
    }
    const { origin, bodies } = await patternOrigin({ "/a.msu": 2 * MiB, "/b.msu": 2 * MiB });
    const proxy = gw.proxyFor(await gw.issueAgent());
    for (const path of ["/a.msu", "/b.msu", "/a.msu"]) {
      const res = await viaProxy(proxy, origin.url(path));
      expect(res.status).toBe(200);
      expect(await readAgainst(res.body, bodies.get(path)!)).toEqual({ bytes: 2 * MiB, intact: true });
      await gw.patchIdle();
      const disk = await patchDiskContents(gw.patchCacheDir);
      expect(disk.entries).toBe(0);
      expect(disk.blobs).toEqual([]);
      expect(disk.temps).toEqual([]);
    }
    expect((await admin(gw).json("/api/stats")).patchDisk.cachedBytes).toBe(0);
  });
});
