import { describe, expect, test } from "bun:test";
import { admin, agentGet, agentRequest, closeWhenIdle, eventually } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type PushedBody, pushedBody, startOrigin } from "../support/origin.ts";

const defer = cleanupAfterEach();

const MANIFEST = Buffer.alloc(1000, "m");
const INSTALLER = Buffer.alloc(50_000, "i");
const PATCH_CHUNK = 10_000;
const PATCH_CHUNKS = 3;
const STATUS = Buffer.alloc(200, "s");
const AGENTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] as const;
const [A1, A2, A3, A4, A5] = AGENTS;

type Kind = "manifest" | "installer" | "patch" | "other";
interface Done {
  agent: string;
  kind: Kind;
  label: string;
  bytes: number;
}

async function setup() {
  let patchBody: PushedBody | undefined;
  const origin = startOrigin((req) => {
    const path = new URL(req.url).pathname;
    const cacheable = { "cache-control": "public, max-age=3600" };
    if (path === "/manifest.json") return new Response(MANIFEST, { headers: cacheable });
    if (path === "/agent-setup.exe") return new Response(INSTALLER, { headers: cacheable });
    if (path === "/patches/KB5034441.msu") {
      patchBody = pushedBody();
      patchBody.push(Buffer.alloc(PATCH_CHUNK, 1));
      return new Response(patchBody.stream, {
        headers: { ...cacheable, "content-length": String(PATCH_CHUNK * PATCH_CHUNKS) },
      });
    }
    if (path === "/status.html") return new Response(STATUS, { headers: { "cache-control": "no-store" } });
    return new Response("not found", { status: 404 });
  });
  defer(() => origin.stop());
  const gw = await startTestGateway();
  let current = gw;
  defer(() => closeWhenIdle(current));
  return {
    origin,
    gw,
    finishPatch() {
      for (let i = 1; i < PATCH_CHUNKS; i++) patchBody!.push(Buffer.alloc(PATCH_CHUNK, i + 1));
      patchBody!.end();
    },
    async restart() {
      current = await current.restart();
      return current;
    },
  };
}

/**
 * The scripted run: five agents on 127.0.0.2-6 fetch a manifest, an
 * installer, a patch (three of them at once, coalesced) and an uncacheable
 * status page. Returns what each agent got, as the agents saw it.
 */
async function runAgents(s: Awaited<ReturnType<typeof setup>>): Promise<Done[]> {
  const { origin, gw } = s;
  const done: Done[] = [];
  const get = async (agent: string, path: string, kind: Kind) => {
    const res = await agentGet(gw.proxyUrl, origin.url(path), agent);
    expect(res.status).toBe(200);
    done.push({ agent, kind, label: String(res.headers["x-cache"]), bytes: res.body.length });
    return res;
  };

  await get(A1, "/manifest.json", "manifest");
  await gw.idle();
  for (const agent of [A2, A3, A4, A5, A1]) await get(agent, "/manifest.json", "manifest");

  await get(A1, "/agent-setup.exe", "installer");
  await gw.idle();
  await get(A2, "/agent-setup.exe", "installer");
  await get(A3, "/agent-setup.exe", "installer");

  // The patch: A4 starts the download; A5 and A1 ask while it is still coming (after its head): they are
  // served from the download as it arrives, as HITs on a fresh response (RFC 9111 §4).
  const url = origin.url("/patches/KB5034441.msu");
  const leader = await agentRequest(gw.proxyUrl, url, A4);
  const joiners = [await agentRequest(gw.proxyUrl, url, A5), await agentRequest(gw.proxyUrl, url, A1)];
  s.finishPatch();
  for (const [agent, res] of [
    [A4, leader],
    [A5, joiners[0]!],
    [A1, joiners[1]!],
  ] as const) {
    const body = await res.body;
    expect(body.length).toBe(PATCH_CHUNK * PATCH_CHUNKS);
    done.push({ agent, kind: "patch", label: String(res.headers["x-cache"]), bytes: body.length });
  }
  await gw.idle();

  await get(A2, "/status.html", "other");
  await get(A3, "/status.html", "other");
  return done;
}

const sum = (list: Done[]) => list.reduce((n, d) => n + d.bytes, 0);
const UPSTREAM: Record<Kind, number> = {
  manifest: MANIFEST.length,
  installer: INSTALLER.length,
  patch: PATCH_CHUNK * PATCH_CHUNKS,
  other: 2 * STATUS.length,
};

/** GET /api/stats once the gateway has accounted for `requests` responses. */
async function statsAfter(gw: TestGateway, requests: number, bytesUpstream: number) {
  return eventually(async () => {
    const s = await admin(gw).json("/api/stats");
    return s.requests === requests && s.bytesUpstream === bytesUpstream ? s : undefined;
  }, `the stats to count ${requests} requests`);
}

describe("GET /api/stats after a scripted run of agents", () => {
  test("the run went as scripted: each request got the X-Cache label the script expects", async () => {
    const s = await setup();
    const done = await runAgents(s);
    expect(done.map((d) => `${d.kind}:${d.label}`)).toEqual([
      "manifest:MISS",
      ...Array(5).fill("manifest:HIT"),
      "installer:MISS",
      "installer:HIT",
      "installer:HIT",
      "patch:MISS",
      "patch:HIT",
      "patch:HIT",
      "other:MISS",
      "other:MISS",
    ]);
    expect([
      s.origin.count("/manifest.json"),
      s.origin.count("/agent-setup.exe"),
      s.origin.count("/patches/KB5034441.msu"),
      s.origin.count("/status.html"),
    ]).toEqual([1, 1, 1, 2]);
  });

  test("hits, misses, coalesced, bytes and agents add up to what the agents did", async () => {
    const s = await setup();
    const done = await runAgents(s);
    const upstream = Object.values(UPSTREAM).reduce((a, b) => a + b, 0);
    const stats = await statsAfter(s.gw, done.length, upstream);
    const count = (label: string) => done.filter((d) => d.label === label).length;
    const fromCache = sum(done.filter((d) => d.label === "HIT" || d.label === "COALESCED"));

    expect(stats).toMatchObject({
      requests: 14,
      hits: count("HIT"),
      misses: count("MISS"),
      coalesced: count("COALESCED"),
      revalidated: 0,
      bypass: 0,
      bytesServed: sum(done),
      bytesFromCache: fromCache,
      bytesUpstream: upstream,
      bandwidthSaved: sum(done) - upstream,
      agents: { active: 5, total: 5 },
    });
    // The same, written out, so a mistake in the tally above cannot hide one in the gateway.
    expect([
      stats.hits,
      stats.misses,
      stats.coalesced,
      stats.bytesServed,
      stats.bytesUpstream,
      stats.bandwidthSaved,
    ]).toEqual([9, 5, 0, 246_400, 81_400, 165_000]);
  });

  test("the bandwidth table has one row per kind of file with its agents, bytes without and with the cache", async () => {
    const s = await setup();
    const done = await runAgents(s);
    const stats = await statsAfter(s.gw, done.length, 81_400);
    const today = new Date().toISOString().slice(0, 10);
    const rows = stats.bandwidth.filter((r: { day: string }) => r.day === today);
    const expected = (["installer", "manifest", "other", "patch"] as const).map((kind) => {
      const mine = done.filter((d) => d.kind === kind);
      return {
        day: today,
        kind,
        agents: new Set(mine.map((d) => d.agent)).size,
        requests: mine.length,
        bytesWithoutCache: sum(mine),
        bytesWithCache: UPSTREAM[kind],
        bytesSaved: sum(mine) - UPSTREAM[kind],
      };
    });
    expect(rows).toEqual(expected);
    expect(rows.map((r: { kind: string; agents: number }) => [r.kind, r.agents])).toEqual([
      ["installer", 3],
      ["manifest", 5],
      ["other", 2],
      ["patch", 3],
    ]);
  });

  test("GET /metrics has the same numbers in Prometheus text", async () => {
    const s = await setup();
    const done = await runAgents(s);
    const stats = await statsAfter(s.gw, done.length, 81_400);
    const res = await admin(s.gw).get("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const text = await res.text();
    const sample = (name: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      if (!line) throw new Error(`no sample ${name} in:\n${text}`);
      return Number(line.slice(name.length + 1));
    };
    expect(text).toContain("# TYPE cachegate_requests_total counter");
    expect(sample('cachegate_requests_total{cache="HIT"}')).toBe(stats.hits);
    expect(sample('cachegate_requests_total{cache="MISS"}')).toBe(stats.misses);
    expect(sample('cachegate_requests_total{cache="COALESCED"}')).toBe(stats.coalesced);
    expect(sample('cachegate_requests_total{cache="REVALIDATED"}')).toBe(0);
    expect(sample("cachegate_served_bytes_total")).toBe(stats.bytesServed);
    expect(sample("cachegate_served_from_cache_bytes_total")).toBe(stats.bytesFromCache);
    expect(sample("cachegate_upstream_bytes_total")).toBe(stats.bytesUpstream);
    expect(sample("cachegate_agents_active")).toBe(5);
    expect(sample("cachegate_agents_seen")).toBe(5);
    expect(sample("cachegate_cache_entries")).toBe(3);
    expect(sample("cachegate_cache_bytes")).toBe(stats.cache.bytes);
    expect(sample("cachegate_saved_bytes")).toBe(stats.bandwidthSaved);
    expect(sample("cachegate_refused_requests_total")).toBe(0);
    for (const row of stats.bandwidth) {
      expect(sample(`cachegate_kind_without_cache_today_bytes{kind="${row.kind}"}`)).toBe(row.bytesWithoutCache);
      expect(sample(`cachegate_kind_with_cache_today_bytes{kind="${row.kind}"}`)).toBe(row.bytesWithCache);
      expect(sample(`cachegate_kind_saved_today_bytes{kind="${row.kind}"}`)).toBe(row.bytesSaved);
      expect(sample(`cachegate_kind_agents_today{kind="${row.kind}"}`)).toBe(row.agents);
      expect(sample(`cachegate_kind_requests_today{kind="${row.kind}"}`)).toBe(row.requests);
    }
  });

  test("the cache figures count the stored entries and their bytes", async () => {
    const s = await setup();
    const done = await runAgents(s);
    const stats = await statsAfter(s.gw, done.length, 81_400);
    expect(stats.cache).toMatchObject({
      bytes: MANIFEST.length + INSTALLER.length + PATCH_CHUNK * PATCH_CHUNKS,
      downloadsInFlight: 0,
    });
    expect(stats.cache.maxBytes).toBe(10 * 1024 ** 3);
    // The data dir's disk, as statfs(2) tells it (what the watermarks are checked against).
    expect(stats.cache.disk.totalBytes).toBeGreaterThan(0);
    expect(stats.cache.disk.freeBytes).toBeGreaterThan(0);
    expect(stats.cache.disk.freeBytes).toBeLessThanOrEqual(stats.cache.disk.totalBytes);
  });

  test("counters survive a restart, and later requests add to them", async () => {
    const s = await setup();
    const done = await runAgents(s);
    const before = await statsAfter(s.gw, done.length, 81_400);

    const gw = await s.restart();
    // The disk's free space is the machine's to change meanwhile; everything else is the gateway's.
    const withoutDisk = (stats: any) => ({ ...stats, cache: { ...stats.cache, disk: undefined } });
    expect(withoutDisk(await admin(gw).json("/api/stats"))).toEqual(withoutDisk(before));

    const res = await agentGet(gw.proxyUrl, s.origin.url("/manifest.json"), "127.0.0.7");
    expect(res.headers["x-cache"]).toBe("HIT");
    const after = await statsAfter(gw, done.length + 1, 81_400);
    expect(after).toMatchObject({
      hits: before.hits + 1,
      bytesServed: before.bytesServed + MANIFEST.length,
      agents: { active: 6, total: 6 },
    });
    expect(after.bandwidth.find((r: { kind: string }) => r.kind === "manifest")).toMatchObject({
      agents: 6,
      requests: 7,
    });
  });

  test("a request the gateway refuses is counted as refused and adds no bytes to the bandwidth table", async () => {
    const s = await setup();
    const res = await agentGet(s.gw.proxyUrl, "http://forbidden.invalid/agent-setup.exe", A1);
    expect(res.status).toBe(403);
    expect(res.body.length).toBeGreaterThan(0);
    const stats = await eventually(async () => {
      const st = await admin(s.gw).json("/api/stats");
      return st.refused === 1 ? st : undefined;
    }, "the refused request to be counted");
    expect(stats).toMatchObject({
      requests: 0,
      bytesServed: 0,
      bytesUpstream: 0,
      bandwidthSaved: 0,
      hits: 0,
      misses: 0,
    });
    expect(stats.bandwidth).toEqual([]);
  });

  test("before any traffic every counter is zero and the table is empty", async () => {
    const s = await setup();
    const stats = await admin(s.gw).json("/api/stats");
    expect(stats).toMatchObject({
      requests: 0,
      hits: 0,
      misses: 0,
      coalesced: 0,
      bytesServed: 0,
      bytesUpstream: 0,
      bandwidthSaved: 0,
      agents: { active: 0, total: 0 },
      bandwidth: [],
    });
  });
});
