import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { admin, agentGet, eventually } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { startOrigin } from "../support/origin.ts";
import { patchUrl, startPatchGateway } from "../support/patch.ts";

const defer = cleanupAfterEach();
afterAll(killAllGatewayProcesses);

const METRICS_TOKEN = "prometheus-reads-metrics-0123456789";
const BODY = Buffer.alloc(4000, "m");

/** An origin with one cacheable object and one patch file. */
function origin() {
  const o = startOrigin((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/not-found") return new Response("no", { status: 404 });
    return new Response(BODY, { headers: { "cache-control": "public, max-age=3600" } });
  });
  defer(() => o.stop());
  return o;
}

/** `promtool check metrics` (Debian's prometheus package) on `text`: its exit code and what it printed. */
async function promtool(text: string): Promise<{ exitCode: number; findings: string }> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-promtool-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "metrics.txt");
  await writeFile(file, text);
  const proc = Bun.spawn(["sh", "-c", `promtool check metrics < ${file}`], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text()];
  return { exitCode: await proc.exited, findings: `${out}${err}`.trim() };
}

/** The value of one sample line (`name{labels} value`), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** A gateway in Cache Mode and Patch Mode that served a MISS, a HIT, a patch MISS and refused one request. */
async function gatewayWithTraffic() {
  const o = origin();
  const gw = await startPatchGateway({ metricsToken: METRICS_TOKEN, clientNetworks: ["127.0.0.0/8"] });
  defer(() => gw.close());
  expect((await agentGet(gw.proxyUrl, o.url("/agent.exe"))).headers["x-cache"]).toBe("MISS");
  await gw.idle();
  expect((await agentGet(gw.proxyUrl, o.url("/agent.exe"))).headers["x-cache"]).toBe("HIT");
  expect((await agentGet(gw.proxyUrl, patchUrl(o, "/KB1.msu"))).headers["x-cache"]).toBe("MISS");
  await gw.patchIdle();
  // A request Patch Mode does not let through: an address the guard refuses (the gateway's own admin port).
  const refused = await agentGet(gw.proxyUrl, `http://127.0.0.1:${gw.adminPort}/api/config`);
  expect(refused.status).toBeGreaterThanOrEqual(400);
  const stats = await eventually(async () => {
    const s = await admin(gw).json("/api/stats");
    return s.requests === 3 && s.refused === 1 ? s : undefined;
  }, "the stats to count 3 requests and 1 refusal");
  return { gw, stats };
}

describe("GET /metrics", () => {
  test("promtool check metrics finds nothing to complain about in a gateway's real output", async () => {
    const { gw } = await gatewayWithTraffic();
    const text = await (await admin(gw).get("/metrics")).text();
    expect(text).toContain("cachegate_requests_total");
    expect(await promtool(text)).toEqual({ exitCode: 0, findings: "" });
  });

  test("promtool does find the old hand-written mistake, so the check above can fail", async () => {
    const text =
      "# HELP cachegate_agents_total Distinct agents.\n# TYPE cachegate_agents_total gauge\ncachegate_agents_total 1\n";
    const result = await promtool(text);
    expect(result.findings).toContain('non-counter metrics should not have "_total" suffix');
  });

  test("the key series carry the figures of GET /api/stats", async () => {
    const { gw, stats } = await gatewayWithTraffic();
    const text = await (await admin(gw).get("/metrics")).text();
    expect(sample(text, 'cachegate_requests_total{cache="HIT"}')).toBe(1);
    expect(sample(text, 'cachegate_requests_total{cache="MISS"}')).toBe(2);
    expect(sample(text, "cachegate_refused_requests_total")).toBe(1);
    expect(sample(text, "cachegate_served_bytes_total")).toBe(3 * BODY.length);
    expect(sample(text, "cachegate_served_from_cache_bytes_total")).toBe(BODY.length);
    expect(sample(text, "cachegate_upstream_bytes_total")).toBe(2 * BODY.length);
    expect(sample(text, "cachegate_saved_bytes")).toBe(BODY.length);
    expect(sample(text, "cachegate_agents_active")).toBe(1);
    expect(sample(text, "cachegate_agents_seen")).toBe(1);
    expect(sample(text, "cachegate_cache_entries")).toBe(1);
    expect(sample(text, "cachegate_cache_bytes")).toBe(stats.cache.bytes);
    expect(sample(text, "cachegate_cache_max_bytes")).toBe(stats.cache.maxBytes);
    expect(sample(text, "cachegate_downloads_in_flight")).toBe(0);
    expect(sample(text, "cachegate_patch_disk_open")).toBe(1);
    const disk = `{path="${gw.patchDir}"}`;
    expect(sample(text, `cachegate_patch_cache_bytes${disk}`)).toBe(BODY.length);
    expect(sample(text, `cachegate_patch_disk_size_bytes${disk}`)).toBe(stats.patchDisk.totalBytes);
    expect(sample(text, `cachegate_patch_disk_free_bytes${disk}`)).toBeGreaterThan(0);
    expect(sample(text, `cachegate_patch_downloads_in_flight${disk}`)).toBe(0);
    const installer = stats.bandwidth.find((r: { kind: string }) => r.kind === "installer");
    expect(installer).toMatchObject({ requests: 2, bytesWithoutCache: 2 * BODY.length, bytesWithCache: BODY.length });
    expect(sample(text, 'cachegate_kind_requests_today{kind="installer"}')).toBe(2);
    expect(sample(text, 'cachegate_kind_agents_today{kind="installer"}')).toBe(1);
    expect(sample(text, 'cachegate_kind_without_cache_today_bytes{kind="installer"}')).toBe(2 * BODY.length);
    expect(sample(text, 'cachegate_kind_with_cache_today_bytes{kind="installer"}')).toBe(BODY.length);
    expect(sample(text, 'cachegate_kind_saved_today_bytes{kind="installer"}')).toBe(BODY.length);
    expect(sample(text, 'cachegate_kind_requests_today{kind="patch"}')).toBe(1);
    expect(sample(text, 'cachegate_kind_with_cache_today_bytes{kind="patch"}')).toBe(BODY.length);
  });

  test("a build-info gauge names the version in package.json and the Bun that runs it", async () => {
    const { gw } = await gatewayWithTraffic();
    const text = await (await admin(gw).get("/metrics")).text();
    expect(text).toContain("# TYPE cachegate_build_info gauge");
    expect(sample(text, `cachegate_build_info{version="${pkg.version}",bun="${Bun.version}"}`)).toBe(1);
  });

  test("process metrics that are true on Bun are there; the ones Bun cannot fill are left out", async () => {
    const { gw } = await gatewayWithTraffic();
    const text = await (await admin(gw).get("/metrics")).text();
    expect(sample(text, "process_resident_memory_bytes")).toBeGreaterThan(10 * 1024 * 1024);
    expect(sample(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(sample(text, "process_open_fds")).toBeGreaterThan(3);
    const started = sample(text, "process_start_time_seconds")!;
    expect(Math.abs(started - (Date.now() / 1000 - process.uptime()))).toBeLessThan(5);
    for (const absent of ["nodejs_eventloop_lag_seconds", "nodejs_active_handles_total", "nodejs_gc_duration_seconds"])
      expect(text).not.toContain(absent);
  });

  test("with workers, the primary's /metrics counts what every worker served, read with the metrics token", async () => {
    const o = origin();
    const gw = await startGatewayProcess({ env: { CACHEGATE_WORKERS: "2", CACHEGATE_METRICS_TOKEN: METRICS_TOKEN } });
    defer(() => gw.close());
    for (let i = 0; i < 4; i++) expect((await agentGet(gw.proxyUrl, o.url("/agent.exe"))).status).toBe(200);
    const text = await eventually(async () => {
      const res = await fetch(`${gw.adminUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      expect(res.status).toBe(200);
      const t = await res.text();
      const served = ["HIT", "MISS", "COALESCED"].map((c) => sample(t, `cachegate_requests_total{cache="${c}"}`) ?? 0);
      return served.reduce((a, b) => a + b) === 4 ? t : undefined;
    }, "the primary's metrics to count the 4 requests its workers served");
    expect(sample(text, "cachegate_served_bytes_total")).toBe(4 * BODY.length);
    expect(await promtool(text)).toEqual({ exitCode: 0, findings: "" });
  });
});

describe("CACHEGATE_METRICS_TOKEN", () => {
  async function gateway() {
    const gw = await startPatchGateway({ metricsToken: METRICS_TOKEN });
    defer(() => gw.close());
    return gw;
  }

  test("reads GET /metrics", async () => {
    const gw = await gateway();
    const res = await admin(gw, METRICS_TOKEN).get("/metrics");
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("cachegate_build_info");
  });

  test.each(["/api/stats", "/api/config", "/api/version", "/api/agents", "/api/ca.pem", "/api/cache/entries"])(
    "is refused with 403 on GET %s, saying it is for /metrics only",
    async (path) => {
      const gw = await gateway();
      const res = await admin(gw, METRICS_TOKEN).get(path);
      expect(res.status).toBe(403);
      const body = (await res.json()) as { code: string; error: string };
      expect(body.code).toBe("metrics_token_only");
      expect(body.error).toContain("can only read GET /metrics");
      expect(body.error).toContain("admin token");
    },
  );

  test("cannot change the configuration, and the refusal changes nothing", async () => {
    const gw = await gateway();
    const before = await admin(gw).configText();
    const res = await admin(gw, METRICS_TOKEN).patch({ cacheMode: { enabled: false } });
    expect(res.status).toBe(403);
    expect(await admin(gw).configText()).toBe(before);
  });

  test("cannot issue agent credentials", async () => {
    const gw = await gateway();
    const res = await admin(gw, METRICS_TOKEN).send("POST", "/api/agents", {
      body: JSON.stringify({ name: "intruder" }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(403);
    expect(await admin(gw).json("/api/agents")).toEqual({ agents: [] });
  });

  test("the admin token still reads /metrics", async () => {
    const gw = await gateway();
    expect((await admin(gw).get("/metrics")).status).toBe(200);
  });

  test("a wrong token is still a 401, also on /metrics", async () => {
    const gw = await gateway();
    const res = await admin(gw, `${METRICS_TOKEN}x`).get("/metrics");
    expect(res.status).toBe(401);
  });

  test("a gateway whose metrics token is its admin token does not start", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "cachegate-test-"));
    defer(() => rm(dataDir, { recursive: true, force: true }));
    const start = startTestGateway({ dataDir, adminToken: METRICS_TOKEN, metricsToken: METRICS_TOKEN });
    await expect(start).rejects.toThrow("CACHEGATE_METRICS_TOKEN is the admin token");
  });

  test("without it set, no second token exists: a token of its shape gets 401", async () => {
    const o = await startPatchGateway();
    defer(() => o.close());
    expect((await admin(o, METRICS_TOKEN).get("/metrics")).status).toBe(401);
  });
});
