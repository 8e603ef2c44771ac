import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_KIND_RULES } from "../../src/config/schema.ts";
import { openDb } from "../../src/db/client.ts";
import { createStats } from "../../src/stats/collector.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { served } from "../support/served.ts";

const defer = cleanupAfterEach();

async function collector() {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-savings-"));
  const db = openDb(join(dir, "index.sqlite"));
  const stats = createStats(db, { kinds: () => DEFAULT_KIND_RULES });
  defer(async () => {
    stats.stop();
    db.$client.close();
    await rm(dir, { recursive: true, force: true });
  });
  const rows = () => db.$client.prepare<{ n: number }, []>("SELECT count(*) AS n FROM object_savings").get()!.n;
  const least = () =>
    db.$client.prepare<{ n: number }, []>("SELECT min(bytes_saved) AS n FROM object_savings").get()!.n;
  return { stats, rows, least };
}

const hit = (url: string, bytes: number) => served("10.0.0.1", url, "HIT", bytes);

describe("bytes saved per object", () => {
  test("only responses from the cache count: a MISS, a BYPASS or a refusal saves nothing", async () => {
    const { stats } = await collector();
    stats.served(served("10.0.0.1", "http://dl.qualys.com/a", "MISS", 100));
    stats.served(served("10.0.0.1", "http://dl.qualys.com/a", "BYPASS", 100));
    stats.served(served("10.0.0.1", "http://dl.qualys.com/a", null, 100));
    expect(stats.topObjects(10)).toEqual([]);
    for (const label of ["HIT", "COALESCED", "REVALIDATED", "STALE", "UPDATING"])
      stats.served(served("10.0.0.1", "http://dl.qualys.com/a", label, 10));
    expect(stats.topObjects(10)).toMatchObject([{ url: "http://dl.qualys.com/a", responses: 5, bytesSaved: 50 }]);
  });

  test("URLs are counted under the cache's key: HTTP://DL.Qualys.com:80/a is http://dl.qualys.com/a", async () => {
    const { stats } = await collector();
    stats.served(hit("HTTP://DL.Qualys.com:80/a", 7));
    stats.served(hit("http://dl.qualys.com/a", 3));
    expect(stats.topObjects(10)).toMatchObject([{ url: "http://dl.qualys.com/a", responses: 2, bytesSaved: 10 }]);
  });

  test("past 12,000 URLs the table keeps the 10,000 that saved the most", async () => {
    const { stats, rows, least } = await collector();
    for (let i = 1; i <= 12_001; i++) stats.served(hit(`http://dl.qualys.com/f${i}`, i));
    stats.flush();
    expect(rows()).toBe(10_000);
    const top = stats.topObjects(100);
    expect(top[0]).toMatchObject({ url: "http://dl.qualys.com/f12001", bytesSaved: 12_001 });
    expect(least()).toBe(2002); // the 10,000th largest
    // Below the threshold again, new URLs are added without trimming.
    stats.served(hit("http://dl.qualys.com/new", 1));
    stats.flush();
    expect(rows()).toBe(10_001);
  });
});
