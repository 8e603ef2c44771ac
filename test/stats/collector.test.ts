import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_KIND_RULES, type KindRuleConfig } from "../../src/config/schema.ts";
import { type Db, openDb } from "../../src/db/client.ts";
import { counters } from "../../src/db/schema.ts";
import { createStats } from "../../src/stats/collector.ts";
import { kindOf } from "../../src/stats/kinds.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { served } from "../support/served.ts";

const defer = cleanupAfterEach();
const MINUTE = 60_000;
const NOON = Date.parse("2026-03-10T12:00:00Z");

async function collector(opts: { kinds?: () => readonly KindRuleConfig[]; start?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-stats-"));
  const file = join(dir, "index.sqlite");
  const clock = manualClock(opts.start ?? NOON);
  let db: Db = openDb(file);
  let stats = createStats(db, { kinds: opts.kinds ?? (() => DEFAULT_KIND_RULES), now: clock.now });
  defer(async () => {
    stats.stop();
    db.$client.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    clock,
    get stats() {
      return stats;
    },
    get db() {
      return db;
    },
    /** Stops and reopens the collector on the same database, as a restart does. */
    reopen() {
      stats.stop();
      db.$client.close();
      db = openDb(file);
      stats = createStats(db, { kinds: opts.kinds ?? (() => DEFAULT_KIND_RULES), now: clock.now });
    },
  };
}

describe("the stats collector", () => {
  test("counts are kept in memory until a flush, not written on every request", async () => {
    const c = await collector();
    c.stats.served(served("10.0.0.1", "http://dl.qualys.com/manifest.json", "HIT", 100));
    expect(c.db.select().from(counters).all()).toEqual([]);
    c.stats.flush();
    expect(c.db.select().from(counters).all()).toContainEqual({ name: "hits", value: 1 });
  });

  test("a snapshot includes what is still pending", async () => {
    const c = await collector();
    c.stats.served(served("10.0.0.1", "http://dl.qualys.com/manifest.json", "MISS", 100));
    expect(c.stats.snapshot()).toMatchObject({ requests: 1, misses: 1, bytesServed: 100 });
  });

  test("each X-Cache label goes to its own counter and cache labels count as bytes from the cache", async () => {
    const c = await collector();
    for (const label of ["HIT", "MISS", "COALESCED", "REVALIDATED", "STALE", "BYPASS"])
      c.stats.served(served("a", "http://h/x.bin", label, 10));
    expect(c.stats.snapshot()).toMatchObject({
      requests: 6,
      hits: 1,
      misses: 1,
      coalesced: 1,
      revalidated: 1,
      stale: 1,
      bypass: 1,
      bytesServed: 60,
      bytesFromCache: 40,
    });
  });

  test("a response the gateway made itself (no X-Cache) counts as refused: no request, bytes, agent or table row", async () => {
    const c = await collector();
    c.stats.served(served("a", "http://h/setup.exe", null, 300));
    expect(c.stats.snapshot()).toMatchObject({
      refused: 1,
      requests: 0,
      bytesServed: 0,
      bandwidthSaved: 0,
      agents: { active: 0, total: 0 },
      bandwidth: [],
    });
  });

  test("counters from before a restart are added to, not replaced", async () => {
    const c = await collector();
    c.stats.served(served("a", "http://h/manifest.json", "HIT", 10));
    c.stats.upstream("http://h/manifest.json", 7);
    c.reopen();
    c.stats.served(served("b", "http://h/manifest.json", "HIT", 10));
    expect(c.stats.snapshot()).toMatchObject({
      requests: 2,
      hits: 2,
      bytesServed: 20,
      bytesUpstream: 7,
      agents: { active: 2, total: 2 },
    });
  });

  test("an agent seen exactly 60 minutes ago is still active", async () => {
    const c = await collector();
    c.stats.served(served("a", "http://h/manifest.json", "HIT", 1));
    c.stats.flush();
    c.clock.advance(60 * MINUTE);
    expect(c.stats.snapshot().agents).toEqual({ active: 1, total: 1 });
  });

  test("an agent last seen 60 minutes and 1 ms ago is no longer active but still counted in total", async () => {
    const c = await collector();
    c.stats.served(served("a", "http://h/manifest.json", "HIT", 1));
    c.stats.flush();
    c.clock.advance(60 * MINUTE + 1);
    c.stats.served(served("b", "http://h/manifest.json", "HIT", 1));
    expect(c.stats.snapshot().agents).toEqual({ active: 1, total: 2 });
  });

  test("an agent coming back becomes active again", async () => {
    const c = await collector();
    c.stats.served(served("a", "http://h/manifest.json", "HIT", 1));
    c.stats.flush();
    c.clock.advance(2 * 60 * MINUTE);
    c.stats.served(served("a", "http://h/manifest.json", "HIT", 1));
    expect(c.stats.snapshot().agents).toEqual({ active: 1, total: 1 });
  });

  test("an agent fetching the same kind twice in a day counts once for that kind", async () => {
    const c = await collector();
    c.stats.served(served("a", "http://h/manifest.json", "MISS", 5));
    c.stats.served(served("a", "http://h/manifest.json", "HIT", 5));
    c.stats.served(served("b", "http://h/manifest.json", "HIT", 5));
    expect(c.stats.snapshot().bandwidth).toEqual([
      {
        day: "2026-03-10",
        kind: "manifest",
        agents: 2,
        requests: 3,
        bytesWithoutCache: 15,
        bytesWithCache: 0,
        bytesSaved: 15,
      },
    ]);
  });

  test("traffic on both sides of UTC midnight is split into two days, newest first", async () => {
    const c = await collector({ start: Date.parse("2026-03-10T23:59:59.999Z") });
    c.stats.served(served("a", "http://h/setup.exe", "MISS", 5));
    c.stats.upstream("http://h/setup.exe", 5);
    c.clock.advance(1);
    c.stats.served(served("a", "http://h/setup.exe", "HIT", 5));
    const rows = c.stats.snapshot().bandwidth;
    expect(rows.map((r) => [r.day, r.kind, r.bytesWithoutCache, r.bytesWithCache])).toEqual([
      ["2026-03-11", "installer", 5, 0],
      ["2026-03-10", "installer", 5, 5],
    ]);
  });

  test("bytes saved never goes below zero when upstream sent more than agents received", async () => {
    const c = await collector();
    c.stats.served(served("a", "http://h/x.bin", "MISS", 5));
    c.stats.upstream("http://h/x.bin", 50);
    const s = c.stats.snapshot();
    expect(s.bandwidthSaved).toBe(0);
    expect(s.bandwidth[0]!.bytesSaved).toBe(0);
  });

  test("the kind rules are read at each request, so a changed rule applies to the next one", async () => {
    let rules: KindRuleConfig[] = DEFAULT_KIND_RULES;
    const c = await collector({ kinds: () => rules });
    c.stats.served(served("a", "http://h/firmware.img", "MISS", 1));
    rules = [{ kind: "firmware", pattern: "\\.img$" }, ...DEFAULT_KIND_RULES];
    c.stats.served(served("a", "http://h/firmware.img", "MISS", 1));
    expect(c.stats.snapshot().bandwidth.map((r) => r.kind)).toEqual(["firmware", "other"]);
  });
});

describe("kindOf with the default rules", () => {
  test.each([
    ["http://dl.qualys.com/manifest.json", "manifest"],
    ["http://dl.qualys.com/agent/Manifest", "manifest"],
    ["http://dl.qualys.com/catalog.xml", "manifest"],
    ["http://dl.qualys.com/agent-setup.exe", "installer"],
    ["http://dl.qualys.com/QualysCloudAgent.msi", "installer"],
    ["http://dl.qualys.com/qualys-cloud-agent.x86_64.rpm", "installer"],
    ["http://dl.qualys.com/agent.tar.gz", "installer"],
    ["http://dl.qualys.com/windows10.0-kb5034441-x64.msu", "patch"],
    ["http://dl.qualys.com/patches/fix.exe", "patch"],
    ["http://dl.qualys.com/update.cab", "patch"],
    ["http://dl.qualys.com/index.html", "other"],
    ["http://dl.qualys.com/", "other"],
  ])("%s is a %s", (url, kind) => {
    expect(kindOf(url, DEFAULT_KIND_RULES)).toBe(kind);
  });
});
