import { and, asc, eq, gt, inArray, sql } from "drizzle-orm";
import { LRUCache } from "lru-cache";
import { every } from "../background.ts";
import type { Db } from "../db/client.ts";
import { blobs, type EntryRow, entries } from "../db/schema.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { BlobStore } from "../store/blob-store.ts";
import { indexStatements } from "./index-statements.ts";
import { renormalise, variantOf } from "./key.ts";

/** A cached response as the pipeline uses it. */
export interface StoredEntry {
  id: number;
  url: string;
  variant: string;
  vary: string[] | null;
  sha256: string;
  size: number;
  status: number;
  headers: Headers;
  requestTime: number;
  responseTime: number;
}

export type NewEntry = Omit<StoredEntry, "id" | "variant">;

/** Enough of an entry to remove it. */
export type EntryRef = Pick<StoredEntry, "id" | "url" | "sha256">;

export interface CacheIndex {
  lookup(url: string, requestHeaders: Headers): StoredEntry | undefined;
  /** Records a complete, committed blob and its response; replaces the same variant. */
  insert(entry: NewEntry, requestHeaders: Headers): StoredEntry;
  /** After a 304: new headers and timing, same body (RFC 9111 §4.3.4). */
  refresh(entry: StoredEntry, headers: Headers, requestTime: number, responseTime: number): StoredEntry;
  touch(entry: StoredEntry): void;
  /** Drops every variant of the URLs matching; returns how many entries went. */
  purge(match: { url: string } | { prefix: string }): Promise<number>;
  remove(entry: EntryRef): Promise<void>;
  /** Marks a blob as being read, so eviction leaves it alone. */
  pin(sha256: string): void;
  unpin(sha256: string): void;
  totalBytes(): number;
  /** Entries in least recently used order (eviction's), skipping the first `offset`. */
  leastRecentlyUsed(limit: number, offset: number): EntryRef[];
  isPinned(sha256: string): boolean;
  /** Writes batched hits and last-access times; never throws (a failure is logged and retried later). */
  flush(): void;
  /** Stops the periodic flush after a last one (shutdown). */
  close(): void;
  knowsBlob(sha256: string): boolean;
  /** A page of entries in id order, optionally under a URL prefix (admin listing). */
  list(opts: { prefix?: string; after?: number; limit: number }): ListedEntry[];
  blobHashes(): string[];
  /** Forgets a blob that is damaged: every entry pointing at it goes, then the file. */
  dropBlob(sha256: string): Promise<number>;
}

export type ListedEntry = StoredEntry & { hits: number; lastAccess: number };

const headersToJson = (h: Headers) => JSON.stringify([...h]);
const headersFromJson = (s: string) => new Headers(JSON.parse(s) as [string, string][]);

/** Writes of last-access times are batched; LRU order only needs to be roughly right. */
const TOUCH_FLUSH_MS = 1000;
/** Lookups are served from memory; this bounds how many URLs are remembered (least recently used go). */
const MEMO_URLS = 20_000;
const MEMO_BYTES = 64 * 1024 * 1024;
/** Entries of the change log kept behind the newest; a process that fell further behind forgets its whole memo. */
const CHANGES_KEPT = 10_000;

export interface IndexOptions {
  log?: Logger;
  /**
   * Other processes (workers) write the same database: lookups first catch
   * up on what they changed. A gateway of one process skips that read.
   */
  shared?: boolean;
}

export function createCacheIndex(db: Db, store: BlobStore, now: () => number, opts: IndexOptions = {}): CacheIndex {
  const log = opts.log ?? silentLogger;
  const memo = new LRUCache<string, StoredEntry[]>({
    max: MEMO_URLS,
    // Bounded in bytes too: request targets may be long, and agents choose them.
    maxSize: MEMO_BYTES,
    sizeCalculation: (list, url) => url.length + list.length * 1024 + 1,
  });
  const touched = new Map<number, number>(); // entry id → hit count since last flush
  const pins = new Map<string, number>();
  const statements = indexStatements(db);
  let seen = statements.lastChange.get()?.seq ?? 0;
  let trimmedAt = 0;

  /**
   * Other processes (workers) change the same index: before the memo answers,
   * drop what changed since this process last looked. One indexed read of the
   * log's last number per lookup; the URLs only when it moved. A log trimmed
   * past what this process saw leaves no way to tell what changed: forget all.
   */
  const catchUp = () => {
    if (!opts.shared) return; // this process's own changes already dropped what they touched
    const last = statements.lastChange.get()?.seq ?? 0;
    if (last === seen) return;
    const changes = statements.changesSince.all(seen);
    if (changes[0] === undefined || changes[0].seq !== seen + 1) memo.clear();
    else for (const c of changes) memo.delete(c.url);
    seen = last;
  };

  // URLs are case-sensitive past the host (RFC 3986 §6.2.2.1); LIKE would compare ASCII letters case-insensitively.
  const prefixed = (prefix: string) => sql`substr(${entries.url}, 1, length(${prefix})) = ${prefix}`;

  const toEntry = (row: EntryRow): StoredEntry => ({
    id: row.id,
    url: row.url,
    variant: renormalise(row.variant),
    vary: row.vary === null ? null : (JSON.parse(row.vary) as string[]),
    sha256: row.sha256,
    size: statements.sizeOf.get({ sha: row.sha256 })?.size ?? 0,
    status: row.status,
    headers: headersFromJson(row.headers),
    requestTime: row.requestTime,
    responseTime: row.responseTime,
  });

  const variantsOf = (url: string): StoredEntry[] => {
    catchUp();
    let list = memo.get(url);
    if (!list) {
      list = statements.byUrl.all({ url }).map(toEntry);
      memo.set(url, list);
    }
    return list;
  };

  /** Deletes blobs no entry references any more, unless an agent is reading them. */
  const collect = async (shas: Iterable<string>) => {
    for (const sha of new Set(shas)) {
      if (pins.has(sha)) continue; // unpin() collects it later
      // One statement: another process (a worker) may index an entry for the same bytes meanwhile.
      if (statements.unreferenced.get(sha, sha)) await store.remove(sha);
    }
  };

  /**
   * Collection nobody waits for (after an insert, or when the last reader of
   * a blob leaves). It must not reject unheard: an unhandled rejection ends
   * the process, and the last reader can leave after stop() closed the index.
   * A blob it could not collect costs only disk space.
   */
  const collectInBackground = (shas: string[]) => void collect(shas).catch(() => {});

  const deleteRows = async (rows: EntryRef[]) => {
    if (rows.length === 0) return;
    db.delete(entries)
      .where(
        inArray(
          entries.id,
          rows.map((r) => r.id),
        ),
      )
      .run();
    for (const r of rows) {
      memo.delete(r.url);
      touched.delete(r.id);
    }
    await collect(rows.map((r) => r.sha256));
  };

  const trim = () => {
    // Keep the change log short. A process that fell further behind (it looked nothing up meanwhile)
    // sees the gap and forgets its whole memo.
    if (seen - trimmedAt < CHANGES_KEPT) return;
    statements.trimChanges.run(seen - CHANGES_KEPT);
    trimmedAt = seen;
  };
  const flush = () => {
    if (touched.size === 0) return trim();
    const at = now();
    db.transaction(() => {
      for (const [id, hits] of touched) statements.touchRow.run({ at, hits, id });
    });
    touched.clear();
    trim();
  };
  // Touches wait in memory while a flush fails (disk full): LRU order is only a little older meanwhile.
  const flusher = every(TOUCH_FLUSH_MS, flush, log, "writing cache hits to the index database");

  return {
    lookup(url, requestHeaders) {
      return variantsOf(url).find((e) => e.variant === variantOf(e.vary, requestHeaders));
    },

    insert(e, requestHeaders) {
      const variant = variantOf(e.vary, requestHeaders);
      const at = now();
      const row = db.transaction((tx) => {
        statements.insertBlob.run({ sha256: e.sha256, size: e.size, at });
        const values = {
          url: e.url,
          variant,
          vary: e.vary === null ? null : JSON.stringify(e.vary),
          sha256: e.sha256,
          status: e.status,
          headers: headersToJson(e.headers),
          requestTime: e.requestTime,
          responseTime: e.responseTime,
          lastAccess: at,
        };
        // Rows of the same variant: the current one, and any stored under an earlier normalisation (key.ts).
        const same = statements.byUrl.all({ url: e.url }).filter((r) => renormalise(r.variant) === variant);
        const previous = same.sort((a, b) => b.responseTime - a.responseTime)[0];
        // RFC 9111 §4: the most recent response wins. A slow download that lands after a newer one for the
        // same variant (stored by a request that could not wait for it) does not replace it.
        if (previous && previous.responseTime > e.responseTime)
          return { inserted: previous, previous, kept: true, gone: [] };
        const gone = same.filter((r) => r.variant !== variant);
        if (gone.length > 0)
          tx.delete(entries)
            .where(
              inArray(
                entries.id,
                gone.map((r) => r.id),
              ),
            )
            .run();
        const inserted = statements.upsertEntry.get(values)!;
        return { inserted, previous, kept: false, gone };
      });
      memo.delete(e.url);
      for (const r of row.gone) touched.delete(r.id);
      if (row.gone.length > 0) collectInBackground(row.gone.map((r) => r.sha256));
      if (row.kept) {
        collectInBackground([e.sha256]); // the older body's blob, unless another entry shares it
        return toEntry(row.inserted);
      }
      if (row.previous && row.previous.sha256 !== e.sha256) collectInBackground([row.previous.sha256]);
      return { ...e, id: row.inserted.id, variant };
    },

    refresh(entry, headers, requestTime, responseTime) {
      statements.refreshRow.run({
        headers: headersToJson(headers),
        requestTime,
        responseTime,
        at: now(),
        id: entry.id,
      });
      memo.delete(entry.url);
      return { ...entry, headers, requestTime, responseTime };
    },

    touch(entry) {
      touched.set(entry.id, (touched.get(entry.id) ?? 0) + 1);
    },

    async purge(match) {
      const where = "url" in match ? eq(entries.url, match.url) : prefixed(match.prefix);
      const rows = db
        .select({ id: entries.id, url: entries.url, sha256: entries.sha256 })
        .from(entries)
        .where(where)
        .all();
      await deleteRows(rows);
      return rows.length;
    },

    remove: (entry) => deleteRows([entry]),

    pin(sha) {
      pins.set(sha, (pins.get(sha) ?? 0) + 1);
    },

    unpin(sha) {
      const n = (pins.get(sha) ?? 1) - 1;
      if (n > 0) return void pins.set(sha, n);
      pins.delete(sha);
      collectInBackground([sha]);
    },

    totalBytes: () => statements.totalBytes.get()?.bytes ?? 0,

    leastRecentlyUsed: (limit, offset) =>
      db
        .select({ id: entries.id, url: entries.url, sha256: entries.sha256 })
        .from(entries)
        .orderBy(asc(entries.lastAccess), asc(entries.id)) // ties: the older entry first
        .limit(limit)
        .offset(offset)
        .all(),

    isPinned: (sha) => pins.has(sha),

    flush: () => void flusher.now(),
    close() {
      flusher.stop();
      flusher.now();
    },
    knowsBlob: (sha) => statements.sizeOf.get({ sha }) !== undefined,

    list({ prefix, after = 0, limit }) {
      flusher.now();
      const where = prefix === undefined ? gt(entries.id, after) : and(gt(entries.id, after), prefixed(prefix));
      return db
        .select()
        .from(entries)
        .where(where)
        .orderBy(asc(entries.id))
        .limit(limit)
        .all()
        .map((row) => ({ ...toEntry(row), hits: row.hits, lastAccess: row.lastAccess }));
    },

    blobHashes: () =>
      db
        .select({ sha256: blobs.sha256 })
        .from(blobs)
        .all()
        .map((r) => r.sha256),

    async dropBlob(sha256) {
      const rows = db
        .select({ id: entries.id, url: entries.url, sha256: entries.sha256 })
        .from(entries)
        .where(eq(entries.sha256, sha256))
        .all();
      await deleteRows(rows);
      await collect([sha256]); // also when no entry pointed at it
      return rows.length;
    },
  };
}
