import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { BodyCursor } from "../../src/cache/body-source.ts";
import { Download } from "../../src/cache/download.ts";
import { fetchRange } from "../../src/cache/refetch.ts";
import { openCacheParts } from "../support/cache-core.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";

/**
 * A download whose disk fails mid-write: it stops being stored and relays
 * the rest from memory, never holding more than its window, and never
 * letting one agent that stopped reading hold up the others for good.
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
