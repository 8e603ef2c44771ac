import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { bytesOf, type Origin, pushedBody, startOrigin, viaProxy } from "../support/origin.ts";
import { responseHead, startRawOrigin } from "../support/raw-http.ts";
import { gate, within } from "../support/wait.ts";

const SIZE = 1000;
const body = randomBytes(SIZE);
const ETAG = '"r1"';
const LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT";

describe("Range on a cached object (RFC 9110 §14)", () => {
  let origin: Origin;
  let gw: TestGateway;

  beforeAll(async () => {
    origin = startOrigin(
      () =>
        new Response(body, {
          headers: { etag: ETAG, "last-modified": LAST_MODIFIED, "cache-control": "max-age=3600" },
        }),
    );
    gw = await startTestGateway();
    await (await viaProxy(gw.proxyUrl, origin.url("/file.bin"))).arrayBuffer();
    await gw.idle();
  });
  afterAll(async () => {
    // Every case was served from disk: the origin saw only the first download.
    expect(origin.count()).toBe(1);
    await gw.close();
    await origin.stop();
  });

  const get = (headers: Record<string, string>) => viaProxy(gw.proxyUrl, origin.url("/file.bin"), { headers });

  test.each<[string, string, string, number, number]>([
    ["a closed range", "bytes=0-99", "bytes 0-99/1000", 0, 100],
    ["a closed range in the middle", "bytes=100-199", "bytes 100-199/1000", 100, 200],
    ["a closed range ending past the end, clamped (§14.1.1)", "bytes=900-5000", "bytes 900-999/1000", 900, 1000],
    ["a one-byte range", "bytes=999-999", "bytes 999-999/1000", 999, 1000],
    ["an open-ended range", "bytes=990-", "bytes 990-999/1000", 990, 1000],
    ["a suffix range (§14.1.2)", "bytes=-10", "bytes 990-999/1000", 990, 1000],
    ["a suffix range longer than the body", "bytes=-5000", "bytes 0-999/1000", 0, 1000],
  ])("%s gets 206 from disk with the right Content-Range", async (_name, range, contentRange, start, end) => {
    const res = await get({ range });
    expect(res.status).toBe(206);
    expect(res.headers.get("x-cache")).toBe("HIT");
    expect(res.headers.get("content-range")).toBe(contentRange);
    expect(res.headers.get("content-length")).toBe(String(end - start));
    expect((await bytesOf(res)).equals(body.subarray(start, end))).toBe(true);
  });

  test.each(["bytes=1000-", "bytes=5000-6000", "bytes=-0"])(
    "an unsatisfiable range %s gets 416 with Content-Range bytes */1000",
    async (range) => {
      const res = await get({ range });
      expect(res.status).toBe(416);
      expect(res.headers.get("content-range")).toBe("bytes */1000");
      expect(await res.text()).toBe("");
    },
  );

  test.each(["bytes=0-1,5-6", "bytes=abc", "items=0-10", "bytes=20-10"])(
    "a Range it does not serve (%s) is ignored and the full body sent",
    async (range) => {
      const res = await get({ range });
      expect(res.status).toBe(200);
      expect((await bytesOf(res)).equals(body)).toBe(true);
    },
  );

  test("If-Range with the current ETag gets the range", async () => {
    const res = await get({ range: "bytes=0-9", "if-range": ETAG });
    expect(res.status).toBe(206);
    expect((await bytesOf(res)).equals(body.subarray(0, 10))).toBe(true);
  });

  test("If-Range with another ETag gets the whole body (§13.1.5)", async () => {
    const res = await get({ range: "bytes=0-9", "if-range": '"r0"' });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-range")).toBeNull();
    expect((await bytesOf(res)).equals(body)).toBe(true);
  });

  test("If-Range with a weak ETag gets the whole body, as If-Range needs a strong match", async () => {
    const res = await get({ range: "bytes=0-9", "if-range": `W/${ETAG}` });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });

  test("If-Range with the exact Last-Modified date gets the range", async () => {
    const res = await get({ range: "bytes=10-19", "if-range": LAST_MODIFIED });
    expect(res.status).toBe(206);
    expect((await bytesOf(res)).equals(body.subarray(10, 20))).toBe(true);
  });

  test("If-Range with another date gets the whole body", async () => {
    const res = await get({ range: "bytes=10-19", "if-range": "Tue, 02 Jan 2024 00:00:00 GMT" });
    expect(res.status).toBe(200);
    expect((await bytesOf(res)).equals(body)).toBe(true);
  });

  test("a HEAD with a Range gets 206 headers and no body", async () => {
    const res = await viaProxy(gw.proxyUrl, origin.url("/file.bin"), {
      method: "HEAD",
      headers: { range: "bytes=0-9" },
    });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe("bytes 0-9/1000");
    expect(await res.text()).toBe("");
  });
});

describe("Range on an object not cached yet", () => {
  const defer = cleanupAfterEach();

  /** An origin that sends a Content-Length, the first `early` bytes, then the rest once `rest` opens. */
  async function heldOrigin(early: number) {
    const rest = gate();
    const origin = await startRawOrigin(async (_req, socket) => {
      socket.write(
        responseHead("200 OK", [
          ["Content-Length", String(SIZE)],
          ["Cache-Control", "max-age=3600"],
          ["Connection", "close"],
        ]),
      );
      socket.write(body.subarray(0, early));
      await rest.opened;
      socket.end(body.subarray(early));
    });
    defer(() => origin.stop());
    const gw = await startTestGateway();
    defer(() => gw.close());
    return { origin, gw, rest };
  }

  test("a Range request on a miss starts the full download and gets its bytes as soon as they are on disk", async () => {
    const { origin, gw, rest } = await heldOrigin(100);
    const res = await viaProxy(gw.proxyUrl, origin.url("/file.bin"), { headers: { range: "bytes=10-19" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("x-cache")).toBe("MISS");
    expect(res.headers.get("content-range")).toBe("bytes 10-19/1000");
    // Answered while the origin still holds 900 bytes back.
    expect((await within(5000, "the ranged body", bytesOf(res))).equals(body.subarray(10, 20))).toBe(true);
    expect(origin.requests[0]!.headers.get("range")).toBeNull();

    rest.open();
    await gw.idle();
    const full = await viaProxy(gw.proxyUrl, origin.url("/file.bin"));
    expect(full.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(full)).equals(body)).toBe(true);
    expect(origin.count()).toBe(1);
  });

  test("a Range request that joins a download in progress gets 206 spanning bytes on disk and bytes still to come", async () => {
    const { origin, gw, rest } = await heldOrigin(100);
    const first = await viaProxy(gw.proxyUrl, origin.url("/file.bin"));
    const joined = await viaProxy(gw.proxyUrl, origin.url("/file.bin"), { headers: { range: "bytes=50-599" } });
    expect(joined.status).toBe(206);
    expect(joined.headers.get("x-cache")).toBe("HIT");
    expect(joined.headers.get("content-range")).toBe("bytes 50-599/1000");

    rest.open();
    expect((await bytesOf(joined)).equals(body.subarray(50, 600))).toBe(true);
    expect((await bytesOf(first)).equals(body)).toBe(true);
    expect(origin.count()).toBe(1);
  });

  test("a Range request on a miss of a chunked body is answered once the size is known", async () => {
    const out = pushedBody();
    const origin = startOrigin(() => new Response(out.stream, { headers: { "cache-control": "max-age=3600" } }));
    defer(() => origin.stop());
    const gw = await startTestGateway();
    defer(() => gw.close());
    out.push(body.subarray(0, 400));

    const pending = viaProxy(gw.proxyUrl, origin.url("/chunked.bin"), { headers: { range: "bytes=-10" } });
    out.push(body.subarray(400));
    out.end();
    const res = await pending;
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe("bytes 990-999/1000");
    expect((await bytesOf(res)).equals(body.subarray(990))).toBe(true);
    expect(origin.count()).toBe(1);
  });
});
