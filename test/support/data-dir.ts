import { Database } from "bun:sqlite";
import { readdir } from "node:fs/promises";
import { join, relative } from "node:path";

/** Looking at what the gateway left on disk: files under its data dir and rows in its index. */

/** Paths of the regular files under `dir`, relative to it; [] when it does not exist. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

/** Rows in a table of the index (`entries`, `blobs`), read through a separate read-only connection. */
export function countRows(dataDir: string, table: "entries" | "blobs"): number {
  const db = new Database(join(dataDir, "index.sqlite"), { readonly: true });
  try {
    return (db.query(`select count(*) as n from ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** The last access time the index has recorded for a URL's entry (ms, the gateway's clock); undefined without one. */
export function lastAccessOf(dataDir: string, url: string): number | undefined {
  const db = new Database(join(dataDir, "index.sqlite"), { readonly: true });
  try {
    return (db.query("select last_access as t from entries where url = ?").get(url) as { t: number } | null)?.t;
  } finally {
    db.close();
  }
}

/** A counter as written to the index database (stats flush every 5 s, at SIGHUP and at stop); 0 if not yet. */
export function counterOf(dataDir: string, name: string): number {
  const db = new Database(join(dataDir, "index.sqlite"), { readonly: true });
  try {
    return (db.query("select value from counters where name = ?").get(name) as { value: number } | null)?.value ?? 0;
  } finally {
    db.close();
  }
}
