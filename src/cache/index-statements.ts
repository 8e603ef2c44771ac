import { eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { blobs, entries } from "../db/schema.ts";

/**
 * The index's statements, prepared once per process: the miss and hit paths
 * run them per request, and building and preparing SQL per call was a fifth
 * of a cold storm's CPU.
 */
export function indexStatements(db: Db) {
  // Raw statements on tables the migrations keep by triggers (0003_shared_index.sql), outside drizzle's schema.
  const totalBytes = db.$client.prepare<{ bytes: number }, []>("SELECT bytes FROM blob_total WHERE id = 1");
  const lastChange = db.$client.prepare<{ seq: number }, []>("SELECT max(seq) AS seq FROM entry_changes");
  const changesSince = db.$client.prepare<{ seq: number; url: string }, [number]>(
    "SELECT seq, url FROM entry_changes WHERE seq > ? ORDER BY seq",
  );
  const trimChanges = db.$client.prepare<unknown, [number]>("DELETE FROM entry_changes WHERE seq <= ?");
  const unreferenced = db.$client.prepare<{ size: number }, [string, string]>(
    "DELETE FROM blobs WHERE sha256 = ? AND NOT EXISTS (SELECT 1 FROM entries WHERE sha256 = ?) RETURNING size",
  );
  const byUrl = db
    .select()
    .from(entries)
    .where(eq(entries.url, sql.placeholder("url")))
    .prepare();
  const sizeOf = db
    .select({ size: blobs.size })
    .from(blobs)
    .where(eq(blobs.sha256, sql.placeholder("sha")))
    .prepare();

  const ph = (name: string) => sql.placeholder(name);
  const insertBlob = db
    .insert(blobs)
    .values({ sha256: ph("sha256"), size: ph("size"), createdAt: ph("at") })
    .onConflictDoNothing()
    .prepare();
  const upsertEntry = db
    .insert(entries)
    .values({
      url: ph("url"),
      variant: ph("variant"),
      vary: ph("vary"),
      sha256: ph("sha256"),
      status: ph("status"),
      headers: ph("headers"),
      requestTime: ph("requestTime"),
      responseTime: ph("responseTime"),
      lastAccess: ph("lastAccess"),
    })
    .onConflictDoUpdate({
      target: [entries.url, entries.variant],
      // SQLite's upsert: `excluded` is the row that was to be inserted (the same values, bound once).
      set: {
        vary: sql`excluded.vary`,
        sha256: sql`excluded.sha256`,
        status: sql`excluded.status`,
        headers: sql`excluded.headers`,
        requestTime: sql`excluded.request_time`,
        responseTime: sql`excluded.response_time`,
        lastAccess: sql`excluded.last_access`,
        hits: 0,
      },
    })
    .returning()
    .prepare();
  const touchRow = db
    .update(entries)
    .set({ lastAccess: sql`${ph("at")}`, hits: sql`${entries.hits} + ${ph("hits")}` })
    .where(eq(entries.id, ph("id")))
    .prepare();
  const refreshRow = db
    .update(entries)
    .set({
      headers: sql`${ph("headers")}`,
      requestTime: sql`${ph("requestTime")}`,
      responseTime: sql`${ph("responseTime")}`,
      lastAccess: sql`${ph("at")}`,
    })
    .where(eq(entries.id, ph("id")))
    .prepare();

  return {
    totalBytes,
    lastChange,
    changesSince,
    trimChanges,
    unreferenced,
    byUrl,
    sizeOf,
    insertBlob,
    upsertEntry,
    touchRow,
    refreshRow,
  };
}
