import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { createCacheIndex } from "../../src/cache/cache-index.ts";
import { openDb } from "../../src/db/client.ts";
import { entries } from "../../src/db/schema.ts";
import { type CacheParts, openCacheParts, putBlob, putEntry } from "../support/cache-core.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { filesUnder } from "../support/data-dir.ts";
import { waitFor } from "../support/wait.ts";

const defer = cleanupAfterEach();
const U = "http://origin.test";
const VARY = ["accept-encoding"];

/** The row the database holds for an entry (hits and last access are batched in memory until a flush). */
function row(parts: CacheParts, id: number) {
  return parts.db.$client.query("select hits, last_access as lastAccess from entries where id = ?").get(id) as {
    hits: number;
    lastAccess: number;
  } | null;
}

const onDisk = (parts: CacheParts, sha: string) => Bun.file(parts.store.pathOf(sha)).exists();
const urls = (parts: CacheParts, prefix?: string) => parts.index.list({ prefix, limit: 100 }).map((e) => e.url);

describe("cache index: lookup by variant", () => {
  test("an entry is found only by a request of the variant it was stored for", async () => {
    const parts = await openCacheParts(defer);
    await putEntry(parts, `${U}/a`, randomBytes(10), { vary: VARY }, { "accept-encoding": "gzip" });

    expect(parts.index.lookup(`${U}/a`, new Headers({ "accept-encoding": "gzip" }))?.variant).toBe(
      "accept-encoding:gzip",
    );
    expect(parts.index.lookup(`${U}/a`, new Headers({ "accept-encoding": "br" }))).toBeUndefined();
    expect(parts.index.lookup(`${U}/a`, new Headers())).toBeUndefined();
  });

  test("two variants of one URL are kept side by side, each with its own body", async () => {
    const parts = await openCacheParts(defer);
    const gzip = await putEntry(parts, `${U}/a`, randomBytes(10), { vary: VARY }, { "accept-encoding": "gzip" });
    const br = await putEntry(parts, `${U}/a`, randomBytes(20), { vary: VARY }, { "accept-encoding": "br" });

    expect(parts.index.lookup(`${U}/a`, new Headers({ "accept-encoding": "gzip" }))?.sha256).toBe(gzip.sha256);
    expect(parts.index.lookup(`${U}/a`, new Headers({ "accept-encoding": "br" }))?.sha256).toBe(br.sha256);
    expect(parts.index.totalBytes()).toBe(30);
  });

  test("storing the same variant again replaces it, and the old body's blob is collected", async () => {
    const parts = await openCacheParts(defer);
    const old = await putEntry(parts, `${U}/a`, randomBytes(10));
    const next = await putEntry(parts, `${U}/a`, randomBytes(25));

    expect(parts.index.lookup(`${U}/a`, new Headers())?.sha256).toBe(next.sha256);
    expect(urls(parts)).toEqual([`${U}/a`]);
    await waitFor("the replaced blob to be collected", async () => !(await onDisk(parts, old.sha256)));
    expect(parts.index.knowsBlob(old.sha256)).toBe(false);
    expect(parts.index.totalBytes()).toBe(25);
  });
});

describe("cache index: refresh, touch and flush", () => {
  test("a refresh after a 304 keeps the body and stores the new headers and timing", async () => {
    const parts = await openCacheParts(defer);
    const entry = await putEntry(parts, `${U}/a`, randomBytes(10));
    parts.clock.advance(90_000);
    const t = parts.clock.now();

    parts.index.refresh(entry, new Headers({ "cache-control": "max-age=600", etag: '"v2"' }), t - 5, t);

    // Read back from the database, not from what refresh returned.
    const [listed] = parts.index.list({ limit: 10 });
    expect(listed?.sha256).toBe(entry.sha256);
    expect(listed?.headers.get("etag")).toBe('"v2"');
    expect([listed?.requestTime, listed?.responseTime, listed?.lastAccess]).toEqual([t - 5, t, t]);
    expect(parts.index.lookup(`${U}/a`, new Headers())?.headers.get("cache-control")).toBe("max-age=600");
  });

  test("touches are counted in memory and written by flush as hits and the flush's time", async () => {
    const parts = await openCacheParts(defer);
    const entry = await putEntry(parts, `${U}/a`, randomBytes(10));
    const insertedAt = parts.clock.now();
    parts.clock.advance(5000);

    parts.index.touch(entry);
    parts.index.touch(entry);
    expect(row(parts, entry.id)).toEqual({ hits: 0, lastAccess: insertedAt });

    parts.index.flush();
    expect(row(parts, entry.id)).toEqual({ hits: 2, lastAccess: insertedAt + 5000 });
    parts.index.touch(entry);
    parts.index.flush();
    expect(row(parts, entry.id)?.hits).toBe(3);
  });

  test("least recently used lists entries by last access, oldest first, from an offset", async () => {
    const parts = await openCacheParts(defer);
    const ids: Record<string, number> = {};
    for (const name of ["a", "b", "c"]) {
      parts.clock.advance(1000);
      ids[name] = (await putEntry(parts, `${U}/${name}`, randomBytes(10))).id;
    }
    parts.clock.advance(1000);
    parts.index.touch(parts.index.lookup(`${U}/a`, new Headers())!);
    parts.index.flush();

    expect(parts.index.leastRecentlyUsed(10, 0).map((e) => e.url)).toEqual([`${U}/b`, `${U}/c`, `${U}/a`]);
    expect(parts.index.leastRecentlyUsed(1, 1)).toEqual([{ id: ids.c!, url: `${U}/c`, sha256: expect.any(String) }]);
  });
});

describe("cache index: purge", () => {
  test("purging a URL drops every variant of it and no other URL", async () => {
    const parts = await openCacheParts(defer);
    await putEntry(parts, `${U}/a`, randomBytes(10), { vary: VARY }, { "accept-encoding": "gzip" });
    await putEntry(parts, `${U}/a`, randomBytes(10), { vary: VARY }, { "accept-encoding": "br" });
    const other = await putEntry(parts, `${U}/a/b`, randomBytes(10));

    expect(await parts.index.purge({ url: `${U}/a` })).toBe(2);
    expect(urls(parts)).toEqual([`${U}/a/b`]);
    expect(await filesUnder(`${parts.dir}/blobs`)).toHaveLength(1);
    expect(parts.index.totalBytes()).toBe(other.size);
  });

  test("purging a prefix drops the URLs under it", async () => {
    const parts = await openCacheParts(defer);
    for (const path of ["/pkg/1", "/pkg/2", "/pkgs/1", "/other"]) await putEntry(parts, U + path, randomBytes(10));

    expect(await parts.index.purge({ prefix: `${U}/pkg/` })).toBe(2);
    expect(urls(parts)).toEqual([`${U}/pkgs/1`, `${U}/other`]);
  });

  test("% and _ in a prefix match themselves, not any characters", async () => {
    const parts = await openCacheParts(defer);
    for (const path of ["/v1%2Bbeta/pkg", "/v1X2Bbeta/pkg", "/a_c/1", "/abc/1"]) {
      await putEntry(parts, U + path, randomBytes(10));
    }

    expect(await parts.index.purge({ prefix: `${U}/v1%2B` })).toBe(1);
    expect(await parts.index.purge({ prefix: `${U}/a_` })).toBe(1);
    expect(urls(parts)).toEqual([`${U}/v1X2Bbeta/pkg`, `${U}/abc/1`]);
    expect(urls(parts, `${U}/v1%`)).toEqual([]);
    expect(urls(parts, `${U}/a_`)).toEqual([]);
  });

  test("a prefix is case-sensitive past the host, as URL paths are (RFC 3986 §6.2.2.1)", async () => {
    const parts = await openCacheParts(defer);
    for (const path of ["/Foo/1", "/foo/1", "/FOO/1"]) await putEntry(parts, U + path, randomBytes(10));

    expect(urls(parts, `${U}/Foo/`)).toEqual([`${U}/Foo/1`]);
    expect(await parts.index.purge({ prefix: `${U}/Foo/` })).toBe(1);
    expect(urls(parts)).toEqual([`${U}/foo/1`, `${U}/FOO/1`]);
  });
});

describe("cache index: blobs", () => {
  test("removing the only entry of a blob deletes its row and its file", async () => {
    const parts = await openCacheParts(defer);
    const entry = await putEntry(parts, `${U}/a`, randomBytes(10));

    await parts.index.remove(entry);

    expect(parts.index.lookup(`${U}/a`, new Headers())).toBeUndefined();
    expect(parts.index.knowsBlob(entry.sha256)).toBe(false);
    expect(await onDisk(parts, entry.sha256)).toBe(false);
    expect(parts.index.totalBytes()).toBe(0);
  });

  test("a pinned blob outlives its entry and is collected at its last unpin", async () => {
    const parts = await openCacheParts(defer);
    const entry = await putEntry(parts, `${U}/a`, randomBytes(10));
    parts.index.pin(entry.sha256);
    parts.index.pin(entry.sha256); // two agents are reading it

    await parts.index.remove(entry);
    expect(parts.index.lookup(`${U}/a`, new Headers())).toBeUndefined();
    expect(await onDisk(parts, entry.sha256)).toBe(true);
    parts.index.unpin(entry.sha256);
    expect(parts.index.isPinned(entry.sha256)).toBe(true);
    expect(await onDisk(parts, entry.sha256)).toBe(true);
    expect(parts.index.totalBytes()).toBe(10);

    parts.index.unpin(entry.sha256);
    await waitFor("the unpinned blob to be collected", async () => !(await onDisk(parts, entry.sha256)));
    expect(parts.index.knowsBlob(entry.sha256)).toBe(false);
    expect(parts.index.totalBytes()).toBe(0);
  });

  test("two URLs sharing one body count its bytes once, and the blob goes with the last of them", async () => {
    const parts = await openCacheParts(defer);
    const body = randomBytes(1000);
    const one = await putEntry(parts, `${U}/one`, body);
    const two = await putEntry(parts, `${U}/two`, body);

    expect(two.sha256).toBe(one.sha256);
    expect(parts.index.blobHashes()).toEqual([one.sha256]);
    expect(parts.index.totalBytes()).toBe(1000);
    await parts.index.remove(one);
    expect(await onDisk(parts, one.sha256)).toBe(true);
    expect(parts.index.totalBytes()).toBe(1000);
    await parts.index.remove(two);
    expect(await onDisk(parts, one.sha256)).toBe(false);
    expect(parts.index.totalBytes()).toBe(0);
  });

  test("dropping a damaged blob removes every entry pointing at it, then the file", async () => {
    const parts = await openCacheParts(defer);
    const body = randomBytes(100);
    const shared = await putEntry(parts, `${U}/one`, body);
    await putEntry(parts, `${U}/two`, body);
    const kept = await putEntry(parts, `${U}/three`, randomBytes(50));

    expect(parts.index.knowsBlob(shared.sha256)).toBe(true);
    expect(await parts.index.dropBlob(shared.sha256)).toBe(2);
    expect(parts.index.knowsBlob(shared.sha256)).toBe(false);
    expect(await onDisk(parts, shared.sha256)).toBe(false);
    expect(urls(parts)).toEqual([`${U}/three`]);
    expect(parts.index.totalBytes()).toBe(kept.size);
    expect(await parts.index.dropBlob("0".repeat(64))).toBe(0);
  });

  test("a new index over the same database starts from the bytes already stored", async () => {
    const parts = await openCacheParts(defer);
    await putEntry(parts, `${U}/a`, randomBytes(300));
    await putEntry(parts, `${U}/b`, randomBytes(200));
    await putBlob(parts.store, randomBytes(999)); // a file no row knows: not counted

    expect(createCacheIndex(parts.db, parts.store, parts.clock.now).totalBytes()).toBe(500);
  });
});

describe("cache index: list", () => {
  test("entries are listed in pages in id order, with hits and last access, optionally under a prefix", async () => {
    const parts = await openCacheParts(defer);
    const ids: number[] = [];
    for (const path of ["/x/1", "/y/1", "/x/2", "/x/3", "/y/2"]) {
      ids.push((await putEntry(parts, U + path, randomBytes(10))).id);
    }
    parts.index.touch(parts.index.lookup(`${U}/x/1`, new Headers())!);

    const first = parts.index.list({ limit: 2 });
    expect(first.map((e) => e.id)).toEqual(ids.slice(0, 2));
    expect(first[0]?.hits).toBe(1); // list flushes pending touches first
    expect(parts.index.list({ after: first[1]!.id, limit: 2 }).map((e) => e.id)).toEqual(ids.slice(2, 4));
    expect(parts.index.list({ after: ids[4]!, limit: 2 })).toEqual([]);
    expect(parts.index.list({ prefix: `${U}/x/`, after: ids[0]!, limit: 10 }).map((e) => e.url)).toEqual([
      `${U}/x/2`,
      `${U}/x/3`,
    ]);
  });

  test("a response older than the stored one for its variant does not replace it (RFC 9111 §4)", async () => {
    const parts = await openCacheParts(defer);
    const at = parts.clock.now();
    await putEntry(parts, `${U}/race`, Buffer.from("newer"), { responseTime: at + 5000, requestTime: at + 4000 });
    const older = await putEntry(parts, `${U}/race`, Buffer.from("older"), { responseTime: at, requestTime: at });
    const kept = parts.index.lookup(`${U}/race`, new Headers());
    expect(kept?.size).toBe(5);
    expect(older.responseTime).toBe(at + 5000); // insert answers with the entry that stayed
    await waitFor("the older body's blob to be collected", () => parts.index.blobHashes().length === 1);
  });

  test("a row stored under an earlier Vary normalisation is replaced by the new one, not shadowing it", async () => {
    const parts = await openCacheParts(defer);
    const at = parts.clock.now();
    const ae = { "accept-encoding": "gzip, deflate" };
    const old = await putEntry(
      parts,
      `${U}/v`,
      Buffer.from("old"),
      {
        vary: ["accept-encoding"],
        responseTime: at - 100_000,
        requestTime: at - 100_000,
      },
      ae,
    );
    parts.db.update(entries).set({ variant: "accept-encoding:gzip, deflate" }).where(eq(entries.id, old.id)).run();
    const fresh = await putEntry(parts, `${U}/v`, Buffer.from("newer"), { vary: ["accept-encoding"] }, ae);
    expect(parts.index.lookup(`${U}/v`, new Headers(ae))?.id).toBe(fresh.id);
    expect(urls(parts)).toEqual([`${U}/v`]);
  });
});

describe("cache index shared by processes (workers)", () => {
  /** A second process's view: its own connection and memo over the same database and blobs. */
  const sibling = (parts: CacheParts) => {
    const db = openDb(join(parts.dir, "index.sqlite"));
    const index = createCacheIndex(db, parts.store, parts.clock.now, { shared: true });
    defer(() => {
      index.close();
      db.$client.close();
    });
    return index;
  };

  test("what one process stores, replaces or purges, the other's lookups see at once", async () => {
    const parts = await openCacheParts(defer);
    const other = sibling(parts);
    expect(other.lookup(`${U}/a`, new Headers())).toBeUndefined(); // remembered as absent

    const first = await putEntry(parts, `${U}/a`, randomBytes(10));
    expect(other.lookup(`${U}/a`, new Headers())?.sha256).toBe(first.sha256);

    const second = await putEntry(parts, `${U}/a`, randomBytes(20), { responseTime: parts.clock.now() + 1 });
    expect(other.lookup(`${U}/a`, new Headers())?.sha256).toBe(second.sha256);

    await parts.index.purge({ url: `${U}/a` });
    expect(other.lookup(`${U}/a`, new Headers())).toBeUndefined();
    expect(other.totalBytes()).toBe(0);
  });
});
