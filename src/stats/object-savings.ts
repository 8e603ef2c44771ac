import { cacheKey } from "../cache/key.ts";
import type { Db } from "../db/client.ts";

/** Rows kept: past KEEP + SLACK, all but the KEEP that saved most are dropped (agents choose URLs). */
const KEEP = 10_000;
const SLACK = 2_000;

/** One object on the status page's "top objects by bytes saved". */
export interface ObjectSaving {
  url: string;
  /** Responses served from the cache for it. */
  responses: number;
  bytesSaved: number;
  lastServed: string;
  /** The stored body's size, or null if it is no longer in the cache. */
  size: number | null;
}

/**
 * Bytes saved per object: what agents received from the cache for each URL
 * (HIT, COALESCED, REVALIDATED, STALE, UPDATING), which without the cache
 * would each have crossed the internet. Counted exactly as sent (a Range
 * request saves its range, a HEAD nothing), in memory per request, and
 * written with the stats collector's batch: `write()` runs inside its
 * transaction, on the same connection. Counting hits per index entry would
 * have needed a size guess per hit; this table also outlives an eviction.
 */
export function createObjectSavings(db: Db) {
  const pending = new Map<string, { responses: number; bytes: number }>();
  const sqlite = db.$client;
  const upsert = sqlite.prepare<unknown, [string, number, number, number]>(
    `INSERT INTO object_savings (url, responses, bytes_saved, last_served) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (url) DO UPDATE SET responses = responses + excluded.responses,
       bytes_saved = bytes_saved + excluded.bytes_saved, last_served = max(last_served, excluded.last_served)`,
  );
  const count = sqlite.prepare<{ n: number }, []>("SELECT count(*) AS n FROM object_savings");
  const trim = sqlite.prepare<unknown, [number]>(
    `DELETE FROM object_savings WHERE url NOT IN
       (SELECT url FROM object_savings ORDER BY bytes_saved DESC LIMIT ?1)`,
  );
  // The size of what the cache holds for the URL now (the largest variant's), null once evicted.
  const top = sqlite.prepare<
    { url: string; responses: number; bytes_saved: number; last_served: number; size: number | null },
    [number]
  >(
    `SELECT o.url, o.responses, o.bytes_saved, o.last_served,
       (SELECT max(b.size) FROM entries e JOIN blobs b ON b.sha256 = e.sha256 WHERE e.url = o.url) AS size
     FROM object_savings o ORDER BY o.bytes_saved DESC, o.url LIMIT ?1`,
  );

  return {
    /** One response served from the cache: `url` as the agent asked for it (normalised when written). */
    record(url: string, bytes: number): void {
      const row = pending.get(url);
      if (row) {
        row.responses++;
        row.bytes += bytes;
      } else pending.set(url, { responses: 1, bytes });
    },

    pending: () => pending.size,

    /** Writes what is pending; call inside the collector's transaction (a failure rolls it back and keeps it). */
    write(at: number): void {
      if (pending.size === 0) return;
      for (const [url, row] of pending) upsert.run(keyOf(url), row.responses, row.bytes, at);
      if ((count.get()?.n ?? 0) > KEEP + SLACK) trim.run(KEEP);
    },

    /** Call once the transaction committed. */
    written: () => pending.clear(),

    /** The objects that saved the most bytes, most first. */
    top(limit: number): ObjectSaving[] {
      return top.all(limit).map((r) => ({
        url: r.url,
        responses: r.responses,
        bytesSaved: r.bytes_saved,
        lastServed: new Date(r.last_served).toISOString(),
        size: r.size,
      }));
    },
  };
}

/** The URL as the cache index keys it (so it joins with entries); a URL that cannot be parsed stays as it came. */
function keyOf(url: string): string {
  try {
    return cacheKey(url);
  } catch {
    return url;
  }
}

export type ObjectSavings = ReturnType<typeof createObjectSavings>;
