import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BlobStore, createBlobStore } from "../../src/store/blob-store.ts";
import { putBlob } from "../support/cache-core.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { filesUnder } from "../support/data-dir.ts";

// The blob store's contract on its own, in a temp dir. What the gateway makes
// of it end to end (downloads land as blobs, the start-up sweep) is in store.test.ts.

const defer = cleanupAfterEach();
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const SMALL_MAX = 256 * 1024;

async function openStore(): Promise<BlobStore> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-blobs-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  return createBlobStore(dir);
}

describe("blob store: temp and commit", () => {
  test("a committed temp is named by the sha256 of all its chunks and sits at pathOf(sha)", async () => {
    const store = await openStore();
    const body = randomBytes(70_000);
    const temp = await store.createTemp();
    defer(() => temp.handle.close());
    await temp.write(body.subarray(0, 30_000));
    await temp.write(body.subarray(30_000));
    expect(temp.size).toBe(70_000);
    expect(await filesUnder(join(store.dir, "tmp"))).toHaveLength(1);

    const sha = await store.commit(temp);

    expect(sha).toBe(sha256(body));
    expect(store.pathOf(sha)).toBe(join(store.dir, "blobs", sha.slice(0, 2), sha));
    expect((await readFile(store.pathOf(sha))).equals(body)).toBe(true);
    expect(await filesUnder(join(store.dir, "tmp"))).toEqual([]);
  });

  test("the temp's handle still reads the body after the commit renamed its file", async () => {
    const store = await openStore();
    const body = randomBytes(1000);
    const temp = await store.createTemp();
    defer(() => temp.handle.close());
    await temp.write(body);
    await store.commit(temp);

    const buf = Buffer.alloc(1000);
    expect((await temp.handle.read(buf, 0, 1000, 0)).bytesRead).toBe(1000);
    expect(buf.equals(body)).toBe(true);
  });

  test("committing identical bytes twice keeps one file and leaves no temp behind", async () => {
    const store = await openStore();
    const body = randomBytes(5000);

    const first = await putBlob(store, body);
    const second = await putBlob(store, body);

    expect(second).toBe(first);
    expect(await filesUnder(join(store.dir, "blobs"))).toEqual([join(first.slice(0, 2), first)]);
    expect(await filesUnder(join(store.dir, "tmp"))).toEqual([]);
  });

  test("open reads a committed blob", async () => {
    const store = await openStore();
    const body = randomBytes(3000);
    const sha = await putBlob(store, body);

    const file = await store.open(sha);
    defer(() => file.close());
    expect((await file.readFile()).equals(body)).toBe(true);
  });
});

describe("blob store: sweep", () => {
  test("sweep removes temps and blobs the index does not know, keeps known ones, and counts both", async () => {
    const store = await openStore();
    const kept = await putBlob(store, randomBytes(100));
    const orphan = await putBlob(store, randomBytes(100));
    const unfinished = await store.createTemp();
    await unfinished.write(randomBytes(100));
    await unfinished.handle.close();
    await mkdir(join(store.dir, "tmp", "stray-dir"));
    await writeFile(join(store.dir, "tmp", "stray-dir", "x"), "x");

    const swept = await store.sweep((sha) => sha === kept);

    expect(swept).toEqual({ temps: 2, orphans: 1 });
    expect(await filesUnder(join(store.dir, "tmp"))).toEqual([]);
    expect(await filesUnder(join(store.dir, "blobs"))).toEqual([join(kept.slice(0, 2), kept)]);
    expect(await Bun.file(store.pathOf(orphan)).exists()).toBe(false);
  });

  test("sweeping a clean store removes nothing", async () => {
    const store = await openStore();
    const sha = await putBlob(store, randomBytes(100));

    expect(await store.sweep(() => true)).toEqual({ temps: 0, orphans: 0 });
    expect(await Bun.file(store.pathOf(sha)).exists()).toBe(true);
  });
});

describe("blob store: small blobs in memory", () => {
  test("a small blob is read from disk once, then served from memory", async () => {
    const store = await openStore();
    const body = randomBytes(1000);
    const sha = await putBlob(store, body);

    expect(Buffer.from((await store.small(sha, 1000))!).equals(body)).toBe(true);
    await writeFile(store.pathOf(sha), randomBytes(1000)); // the disk changes under it

    expect(Buffer.from((await store.small(sha, 1000))!).equals(body)).toBe(true);
  });

  test("small() throws when the file's size disagrees with the index", async () => {
    const store = await openStore();
    const sha = await putBlob(store, randomBytes(1000));

    await expect(store.small(sha, 999)).rejects.toThrow("has 1000 bytes on disk, the index says 999");
  });

  test("small() leaves a blob over 256 KiB to be read from its file", async () => {
    const store = await openStore();
    const body = randomBytes(SMALL_MAX + 1);
    const sha = await putBlob(store, body);

    expect(await store.small(sha, SMALL_MAX + 1)).toBeUndefined();
    expect(await store.small(await putBlob(store, body.subarray(0, SMALL_MAX)), SMALL_MAX)).toHaveLength(SMALL_MAX);
  });
});

describe("blob store: rehash and remove", () => {
  test("rehash returns the sha256 of what is on disk now, so a changed file shows", async () => {
    const store = await openStore();
    const sha = await putBlob(store, randomBytes(3 * 1024 * 1024)); // more than one rehash chunk
    expect(await store.rehash(sha)).toBe(sha);

    const changed = randomBytes(3 * 1024 * 1024);
    await writeFile(store.pathOf(sha), changed);

    expect(await store.rehash(sha)).toBe(sha256(changed));
  });

  test("remove deletes the file and forgets the copy in memory; removing again is no error", async () => {
    const store = await openStore();
    const sha = await putBlob(store, randomBytes(1000));
    await store.small(sha, 1000);

    await store.remove(sha);

    expect(await Bun.file(store.pathOf(sha)).exists()).toBe(false);
    await expect(store.small(sha, 1000)).rejects.toThrow();
    await expect(store.remove(sha)).resolves.toBeUndefined();
    await expect(store.rehash(sha)).rejects.toThrow();
  });
});
