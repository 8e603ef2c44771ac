import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { BodyCursor } from "../../src/cache/body-source.ts";
import { Download } from "../../src/cache/download.ts";
import { fetchRange } from "../../src/cache/refetch.ts";
import { openCacheParts } from "../support/cache-core.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { gate, within } from "../support/wait.ts";

/**
 * A download in memory and on disk: readers get bytes as they arrive, the
 * file gets them in block-sized writes behind the readers, and a late joiner
 * reads the file. A download whose disk fails mid-write stops being stored
 * and relays the rest from memory, never holding more than its window, and
 * never letting one agent that stopped reading hold up the others for good.
 */
const defer = cleanupAfterEach();
const MiB = 1024 * 1024;

/** A download whose temp file takes `diskBytes` and then fails as a full disk does. */
async function downloadOnFullDisk(diskBytes: number, expected?: number) {
  const { store } = await openCacheParts(defer);
  const temp = await store.createTemp();
  const write = temp.write.bind(temp);
  temp.write = async (chunk) => {
    if (temp.size + chunk.length > diskBytes) throw Object.assign(new Error("no space left"), { code: "ENOSPC" });
    return write(chunk);
  };
  const download = new Download(temp, expected);
  defer(() => download.release());
  return download;
}

async function readAll(cursor: BodyCursor): Promise<Buffer> {
  const parts: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (let n = await cursor.read(buf); n > 0; n = await cursor.read(buf)) parts.push(Buffer.from(buf.subarray(0, n)));
  return Buffer.concat(parts);
}

/** A download whose temp file's writes go through `write` (which may hold them, or fail them). */
async function downloadWithDisk(
  write: (chunk: Uint8Array, next: (chunk: Uint8Array) => Promise<void>) => Promise<void>,
  expected?: number,
) {
  const { store } = await openCacheParts(defer);
  const temp = await store.createTemp();
  const next = temp.write.bind(temp);
  temp.write = (chunk) => write(chunk, next);
  const download = new Download(temp, expected);
  defer(() => download.release());
  return { download, temp };
}

describe("a download and its readers", () => {
  test("small upstream chunks reach the file in blocks growing to 256 KiB, and the file holds the body", async () => {
    const body = randomBytes(MiB + 1000);
    const sizes: number[] = [];
    const { download, temp } = await downloadWithDisk((chunk, next) => {
      sizes.push(chunk.length);
      return next(chunk);
    });
    for (let at = 0; at < body.length; at += 1000) await download.append(body.subarray(at, at + 1000));
    await download.flush();
    // 16 KiB first, then as large as what came so far: a small body never holds a large block.
    const KiB = 1024;
    expect(sizes).toEqual([16 * KiB, 16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 256 * KiB, 256 * KiB, 1000]);
    expect(Buffer.from(await Bun.file(temp.path).bytes()).equals(body)).toBe(true);
  });

  test("a reader gets the bytes that arrived while the disk has not taken them yet", async () => {
    const disk = gate();
    const { download } = await downloadWithDisk(async (chunk, next) => {
      await disk.opened;
      return next(chunk);
    });
    const reader = new BodyCursor(download.retain(), 0, undefined);
    defer(() => reader.release());
    const body = randomBytes(300 * 1024);
    await download.append(body);
    const buf = Buffer.alloc(body.length);
    expect(await within(1000, "the read", reader.read(buf))).toBe(body.length);
    expect(buf.equals(body)).toBe(true);
    disk.open();
  });

  test("a reader waiting at the head is told of a small chunk at once", async () => {
    const { download } = await downloadWithDisk((chunk, next) => next(chunk));
    const reader = new BodyCursor(download.retain(), 0, undefined);
    defer(() => reader.release());
    const reading = reader.read(Buffer.alloc(10));
    await download.append(Buffer.from("abc"));
    expect(await within(1000, "the read", reading)).toBe(3);
  });

  test("a slow disk holds the writer back once a megabyte is waiting for it", async () => {
    const disk = gate();
    const { download } = await downloadWithDisk(async (chunk, next) => {
      await disk.opened;
      return next(chunk);
    });
    for (let i = 0; i < 4; i++) await download.append(randomBytes(256 * 1024)); // a megabyte waits for the disk
    let appended = false;
    const fifth = download.append(randomBytes(256 * 1024)).then(() => (appended = true));
    await new Promise((resolve) => setImmediate(resolve)); // nothing but the disk could hold it now
    expect(appended).toBe(false);
    disk.open();
    await within(5000, "the fifth append", fifth);
  });

  test("a late joiner reads from the file what memory let go of, byte for byte", async () => {
    const body = randomBytes(8 * MiB);
    const { download } = await downloadWithDisk((chunk, next) => next(chunk), body.length);
    for (let at = 0; at < body.length; at += 100 * 1024) await download.append(body.subarray(at, at + 100 * 1024));
    await download.flush();
    expect(download.view(0, 1)).toBeUndefined(); // written, and no reader was behind: not kept in memory
    const late = new BodyCursor(download.retain(), 0, body.length);
    defer(() => late.release());
    download.complete();
    expect((await readAll(late)).equals(body)).toBe(true);
  });

  test("bytes handed to a reader without a copy stay as they were while more arrive", async () => {
    const { download } = await downloadWithDisk((chunk, next) => next(chunk));
    const reader = new BodyCursor(download.retain(), 0, undefined);
    defer(() => reader.release());
    await download.append(Buffer.alloc(1000, 1));
    const first = await reader.next(64 * 1024, () => Buffer.alloc(64 * 1024));
    for (let i = 2; i < 100; i++) await download.append(Buffer.alloc(1000, i));
    expect(first).toEqual(Buffer.alloc(1000, 1));
    const second = await reader.next(64 * 1024, () => Buffer.alloc(64 * 1024));
    expect(second.subarray(0, 1000)).toEqual(Buffer.alloc(1000, 2));
  });

  test("a write that fails for another reason than the disk fails the download", async () => {
    const { download } = await downloadWithDisk(async () => {
      throw Object.assign(new Error("bad file descriptor"), { code: "EBADF" });
    });
    await download.append(randomBytes(256 * 1024));
    await expect(download.flush()).rejects.toThrow("bad file descriptor");
    expect(download.spilled).toBeUndefined();
  });
});

describe("a download the disk cannot hold", () => {
  test("its readers get every byte, from the file and then from memory, and it is marked as not storable", async () => {
    const body = randomBytes(20 * MiB);
    const download = await downloadOnFullDisk(3 * MiB);
    const reader = new BodyCursor(download.retain(), 0, undefined);
    const reading = readAll(reader);
    for (let at = 0; at < body.length; at += 256 * 1024) await download.append(body.subarray(at, at + 256 * 1024));
    download.complete();
    expect((await reading).equals(body)).toBe(true);
    expect(download.spilled?.message).toBe("no space left");
    reader.release();
  });

  test("an agent that stops reading is cut loose after the download's patience; the others get the whole body", async () => {
    const body = randomBytes(24 * MiB);
    const download = await downloadOnFullDisk(MiB);
    download.patienceMs = 50;
    const stuck = new BodyCursor(download.retain(), 0, undefined);
    const fast = new BodyCursor(download.retain(), 0, undefined);
    await download.append(body.subarray(0, 256 * 1024));
    await stuck.read(Buffer.allocUnsafe(1024)); // reads once, then never again (its agent stopped reading)
    const reading = readAll(fast);
    for (let at = 256 * 1024; at < body.length; at += 256 * 1024)
      await download.append(body.subarray(at, at + 256 * 1024));
    download.complete();
    expect((await reading).equals(body)).toBe(true);
    await expect(stuck.read(Buffer.allocUnsafe(1024))).rejects.toThrow("stopped reading");
    stuck.release();
    fast.release();
  });

  test("a reader that fell behind the window continues from upstream by range when the response can be asked for again", async () => {
    const body = randomBytes(24 * MiB);
    const download = await downloadOnFullDisk(MiB, body.length);
    const asked: string[] = [];
    download.refetch = async (from, to) => {
      asked.push(`${from}-${to}`);
      return { body: new Response(body.subarray(from, to)).body!, end: to! };
    };
    const late = new BodyCursor(download.retain(), 0, body.length);
    await download.append(body.subarray(0, 256 * 1024));
    await late.read(Buffer.allocUnsafe(1024)); // 1 KiB, then it waits while the rest streams past
    for (let at = 256 * 1024; at < body.length; at += 256 * 1024)
      await download.append(body.subarray(at, at + 256 * 1024));
    download.complete();
    const rest = await readAll(late);
    expect(Buffer.concat([body.subarray(0, 1024), rest]).equals(body)).toBe(true);
    expect(asked).toEqual([`${MiB}-${body.length}`]); // from where the file ended
    late.release();
  });
});

describe("asking upstream again (RFC 9110 §14.4, §13.1.5)", () => {
  const answering = (status: number, headers: Record<string, string>) => async (req: Request) => {
    answering.seen = req;
    return new Response("x".repeat(100), { status, headers });
  };
  answering.seen = undefined as Request | undefined;
  const original = new Request("http://origin.test/iso", {
    headers: { "content-length": "5", "if-none-match": '"a"' },
  });

  test("sends Range and If-Range, without the original request's conditionals or framing", async () => {
    await fetchRange(answering(206, { "content-range": "bytes 10-109/110" }), original, '"v1"', 10, 110);
    const sent = answering.seen!.headers;
    expect([sent.get("range"), sent.get("if-range")]).toEqual(["bytes=10-109", '"v1"']);
    expect([sent.get("if-none-match"), sent.get("content-length")]).toEqual([null, null]);
  });

  test.each([
    ["a 200 (the object changed)", 200, {}],
    ["a 206 for other bytes", 206, { "content-range": "bytes 0-99/110" }],
    ["an open-ended 206 without its complete length", 206, { "content-range": "bytes 10-109/*" }],
  ])("refuses %s", async (_name, status, headers) => {
    await expect(fetchRange(answering(status, headers), original, '"v1"', 10, undefined)).rejects.toThrow(
      "the object changed or ranges are refused",
    );
  });

  test("an open-ended range ends where upstream says the object ends", async () => {
    const got = await fetchRange(
      answering(206, { "content-range": "bytes 10-109/110" }),
      original,
      '"v1"',
      10,
      undefined,
    );
    expect(got.end).toBe(110);
  });
});
