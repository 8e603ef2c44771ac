/**
 * `bun run bench:faults`: the gateway tried as a hostile origin and an
 * operator with a full disk would, with real agents (curl), on loopback:
 *
 *   a. full disk   420 downloads of 53 objects of 4 MB (212 MB, some chunked, half without a
 *                  validator) through a 64 MB data disk (tmpfs), 20 at a time. Goal: 0 failures
 *                  (curl exit ≠ 0, or a body that differs from the origin's).
 *   b. broken      a 200 MB object whose connection the origin cuts every 10 MB, 10 agents at
 *      origin      once. Goal: every body correct, upstream bytes ≤ 1.05 × the object.
 *
 * Needs root for the tmpfs mount. Prints one table; figures are from this run only.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FaultyRoute, startFaultyOrigin } from "../test/support/faulty-origin.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "../test/support/gateway-process.ts";
import { mountTmpfs, PatternBody } from "../test/support/patch.ts";

const MB = 1_000_000;

/** Downloads `url` through the proxy with curl; the sha256 of what arrived, or why it failed. */
async function curlDownload(
  proxy: string,
  url: string,
  dir: string,
  n: number,
): Promise<{ sha?: string; why?: string }> {
  const out = join(dir, `body-${n}`);
  const child = Bun.spawn(["curl", "-sS", "--noproxy", "", "-x", proxy, "-o", out, "--max-time", "300", url], {
    stderr: "pipe",
  });
  const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
  try {
    if (code !== 0) return { why: `curl exit ${code}: ${stderr.trim()}` };
    const hasher = createHash("sha256");
    for await (const chunk of Bun.file(out).stream()) hasher.update(chunk);
    return { sha: hasher.digest("hex") };
  } finally {
    await rm(out, { force: true });
  }
}

const shaOf = (body: PatternBody) => createHash("sha256").update(body.slice(0, body.size)).digest("hex");

async function pool<T>(items: T[], width: number, run: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        await run(items[i]!, i);
      }
    }),
  );
}

async function fullDisk(work: string): Promise<string[]> {
  const disk = await mountTmpfs(64 * 1024 * 1024);
  if ("error" in disk) return [`| full disk | skipped: ${disk.error} | | |`];
  try {
    const routes: Record<string, FaultyRoute> = {};
    for (let i = 0; i < 53; i++) {
      routes[`/object-${i}.bin`] = {
        body: new PatternBody(4 * MB, 256 * 1024),
        etag: i % 2 === 0 ? `"v${i}"` : undefined,
        chunked: i % 3 === 0,
      };
    }
    const expected = new Map(Object.entries(routes).map(([path, r]) => [path, shaOf(r.body)]));
    const origin = await startFaultyOrigin(routes);
    const gw = await startGatewayProcess({ dataDir: join(disk.dir, "data") });
    const plan = Array.from({ length: 420 }, (_, i) => `/object-${(i * 7) % 53}.bin`);
    const failures: string[] = [];
    const started = performance.now();
    await pool(plan, 20, async (path, i) => {
      const got = await curlDownload(gw.proxyUrl, origin.url(path), work, i);
      if (got.why) failures.push(`${path}: ${got.why}`);
      else if (got.sha !== expected.get(path)) failures.push(`${path}: wrong bytes`);
    });
    const seconds = (performance.now() - started) / 1000;
    const stats = await gw.json("/api/stats");
    const alive = (await fetch(`${gw.adminUrl}/healthz`)).status === 200;
    await gw.close();
    await origin.stop();
    for (const f of failures.slice(0, 5)) console.log(`  full disk failure: ${f}`);
    return [
      `| full disk: 420 downloads of 212 MB through 64 MB | ${failures.length} failures (goal 0) | ` +
        `${stats.hits} hits, ${(stats.bytesUpstream / MB).toFixed(0)} MB upstream, gateway ${alive ? "up" : "DOWN"} | ${seconds.toFixed(1)} s |`,
    ];
  } finally {
    await disk.unmount();
  }
}

async function brokenOrigin(work: string): Promise<string[]> {
  const body = new PatternBody(200 * MB, 1024 * 1024);
  const sha = shaOf(body);
  const origin = await startFaultyOrigin({ "/image.iso": { body, etag: '"image-1"', breakEvery: 10 * MB } });
  const gw = await startGatewayProcess();
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) => curlDownload(gw.proxyUrl, origin.url("/image.iso"), work, 1000 + i)),
  );
  const seconds = (performance.now() - started) / 1000;
  await gw.idle();
  const stats = await gw.json("/api/stats");
  await gw.close();
  await origin.stop();
  const correct = results.filter((r) => r.sha === sha).length;
  for (const r of results.filter((r) => r.sha !== sha).slice(0, 3))
    console.log(`  broken origin: ${r.why ?? "wrong bytes"}`);
  const ratio = stats.bytesUpstream / body.size;
  return [
    `| broken origin: 200 MB cut every 10 MB, 10 agents | ${correct}/10 bodies correct | ` +
      `${stats.resumes} resumes, upstream ${ratio.toFixed(3)}× the object (goal ≤ 1.05) | ${seconds.toFixed(1)} s |`,
  ];
}

const work = await mkdtemp(join(tmpdir(), "cachegate-bench-faults-"));
try {
  const rows = [...(await fullDisk(work)), ...(await brokenOrigin(work))];
  console.log(["| trial | outcome | detail | time |", "| --- | --- | --- | --- |", ...rows].join("\n"));
} finally {
  await killAllGatewayProcesses();
  await rm(work, { recursive: true, force: true });
}
