import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { countRows, filesUnder } from "../support/data-dir.ts";
import { startTestGateway, type TestGateway, type TestGatewayOptions } from "../support/gateway.ts";
import { bytesOf, type Origin, type PushedBody, pushedBody, startOrigin, viaProxy } from "../support/origin.ts";
import { gate, waitFor, within } from "../support/wait.ts";

const defer = cleanupAfterEach();

async function setup(
  handler: (req: Request) => Response | Promise<Response>,
  opts: TestGatewayOptions = {},
): Promise<{ origin: Origin; gw: TestGateway }> {
  const origin = startOrigin(handler);
  defer(() => origin.stop());
  const gw = await startTestGateway(opts);
  defer(() => gw.close());
  return { origin, gw };
}

const FRESH = { "cache-control": "max-age=60" };

/** Bytes the gateway has written into its temp files: how far its downloads in progress have got. */
async function downloaded(gw: TestGateway): Promise<number> {
  const dir = join(gw.dataDir, "tmp");
  const sizes = await Promise.all((await filesUnder(dir)).map(async (f) => (await stat(join(dir, f))).size));
  return sizes.reduce((a, b) => a + b, 0);
}

/**
 * After the only MISS agent has dropped its connection: the gateway finds it gone only when it next has
 * bytes for it. Sends `body` from `from` a piece at a time, each once the gateway has it on disk, until the
 * gateway has let go of that agent (its response is counted as served, short); returns where it stopped,
 * with the rest of the body still to come.
 */
async function sendUntilLetGo(gw: TestGateway, out: PushedBody, body: Buffer, from: number, piece: number) {
  let at = from;
  while (gw.stats.snapshot().misses === 0) {
    if (at >= body.length) throw new Error("the whole body went out before the gateway let go of the agent that left");
    out.push(body.subarray(at, at + piece));
    at = Math.min(body.length, at + piece);
    const sent = at;
    await waitFor("the gateway to write the piece", async () => (await downloaded(gw)) === sent);
  }
  const served = gw.stats.snapshot();
  expect(served.bytesServed).toBeLessThan(body.length); // it stopped sending to the agent that left
  return at;
}

describe("single-flight", () => {
  test("ten concurrent requests for one URL make one upstream request and all get the full body", async () => {
    const body = randomBytes(300_000);
    const release = gate();
    const { origin, gw } = await setup(() => {
      const out = pushedBody();
      out.push(body.subarray(0, 1000)); // enough for every agent to get its response head
      void release.opened.then(() => {
        out.push(body.subarray(1000));
        out.end();
      });
      return new Response(out.stream, { headers: FRESH });
    });

    // Every agent has its response head (so has joined) before the origin sends the rest.
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => viaProxy(gw.proxyUrl, origin.url("/manifest"))),
    );
    release.open();
    const bodies = await Promise.all(responses.map(bytesOf));

    expect(origin.count("/manifest")).toBe(1);
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(responses.map((r) => r.headers.get("x-cache")).sort()).toEqual(
      ["MISS", ...Array(9).fill("COALESCED")].sort(),
    );
    for (const b of bodies) expect(b.equals(body)).toBe(true);
  });

  test("a late joiner gets its first bytes before the download completes", async () => {
    const body = randomBytes(200_000);
    const out = pushedBody();
    const { origin, gw } = await setup(() => new Response(out.stream, { headers: FRESH }));
    out.push(body.subarray(0, 50_000));

    const first = await viaProxy(gw.proxyUrl, origin.url("/big.bin"));
    const firstReader = first.body!.getReader();
    await firstReader.read(); // the download is under way

    const late = await viaProxy(gw.proxyUrl, origin.url("/big.bin"));
    expect(late.headers.get("x-cache")).toBe("HIT"); // it came after the head: judged on freshness, served from the download (RFC 9111 §4);
    const lateReader = late.body!.getReader();
    const lateFirst = await within(5000, "the late joiner's first bytes", lateReader.read());
    // The origin still has three quarters of the body to send.
    expect(out.pushed).toBe(50_000);
    expect(Buffer.from(lateFirst.value!).equals(body.subarray(0, lateFirst.value!.length))).toBe(true);

    out.push(body.subarray(50_000));
    out.end();
    const rest = async (reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> }, got: Uint8Array[]) => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return Buffer.concat(got);
        got.push(value!);
      }
    };
    expect((await rest(lateReader, [lateFirst.value!])).equals(body)).toBe(true);
    await rest(firstReader, []);
    expect(origin.count("/big.bin")).toBe(1);
  });

  test("when the agent that started a download disconnects, the download completes for the others and the cache", async () => {
    const body = randomBytes(300_000);
    const out = pushedBody();
    const { origin, gw } = await setup(() => new Response(out.stream, { headers: FRESH }));
    out.push(body.subarray(0, 10_000));

    const leaving = new AbortController();
    const starter = await viaProxy(gw.proxyUrl, origin.url("/patch.cab"), { signal: leaving.signal });
    expect(starter.headers.get("x-cache")).toBe("MISS");
    await starter.body!.getReader().read();
    const other = await viaProxy(gw.proxyUrl, origin.url("/patch.cab"));
    expect(other.headers.get("x-cache")).toBe("HIT");

    leaving.abort();
    const at = await sendUntilLetGo(gw, out, body, 10_000, 10_000);
    out.push(body.subarray(at)); // the rest arrives after the gateway has let go of the starter
    out.end();

    expect((await bytesOf(other)).equals(body)).toBe(true);
    await gw.idle();
    const later = await viaProxy(gw.proxyUrl, origin.url("/patch.cab"));
    expect(later.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(later)).equals(body)).toBe(true);
    expect(origin.count("/patch.cab")).toBe(1);
  });

  test("a download whose only agent disconnected still completes and is cached", async () => {
    const body = randomBytes(100_000);
    const out = pushedBody();
    const { origin, gw } = await setup(() => new Response(out.stream, { headers: FRESH }));
    out.push(body.subarray(0, 1000));

    const leaving = new AbortController();
    const starter = await viaProxy(gw.proxyUrl, origin.url("/agent.msi"), { signal: leaving.signal });
    await starter.body!.getReader().read();
    leaving.abort();
    const at = await sendUntilLetGo(gw, out, body, 1000, 10_000);
    out.push(body.subarray(at)); // the rest arrives after the gateway has let go of the agent
    out.end();

    await gw.idle();
    expect(countRows(gw.dataDir, "entries")).toBe(1);
    const later = await viaProxy(gw.proxyUrl, origin.url("/agent.msi"));
    expect(later.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(later)).equals(body)).toBe(true);
    expect(origin.count()).toBe(1);
  });

  test("a request after the download landed is a HIT that carries Age and Via", async () => {
    const { origin, gw } = await setup(() => new Response("manifest v1", { headers: FRESH }));
    const miss = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect(miss.headers.get("x-cache")).toBe("MISS");
    expect(await miss.text()).toBe("manifest v1");
    await gw.idle();

    const hit = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.headers.get("age")).toMatch(/^\d+$/);
    expect(hit.headers.get("via")).toMatch(/^1\.1 cachegate-/);
    expect(hit.headers.get("content-length")).toBe("11");
    expect(await hit.text()).toBe("manifest v1");
    expect(origin.count()).toBe(1);
  });

  test("a cached object is a HIT after the gateway restarts", async () => {
    const body = randomBytes(70_000);
    const origin = startOrigin(() => new Response(body, { headers: { "cache-control": "max-age=3600" } }));
    defer(() => origin.stop());
    let gw = await startTestGateway();
    defer(() => gw.close()); // whichever gateway is current at the end

    expect((await bytesOf(await viaProxy(gw.proxyUrl, origin.url("/setup.exe")))).equals(body)).toBe(true);
    await gw.idle();
    gw = await gw.restart();

    const hit = await viaProxy(gw.proxyUrl, origin.url("/setup.exe"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(hit)).equals(body)).toBe(true);
    expect(origin.count()).toBe(1);
  });

  test("a HEAD on a cached object answers from the cache without a body", async () => {
    const { origin, gw } = await setup(() => new Response("0123456789", { headers: FRESH }));
    await (await viaProxy(gw.proxyUrl, origin.url("/h"))).text();
    await gw.idle();

    const head = await viaProxy(gw.proxyUrl, origin.url("/h"), { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("x-cache")).toBe("HIT");
    expect(head.headers.get("content-length")).toBe("10");
    expect(await head.text()).toBe("");
    expect(origin.count()).toBe(1);
  });
});

describe("what gets stored", () => {
  test("a HEAD on a miss is answered without a body, and the full body it fetched serves later GETs", async () => {
    const { origin, gw } = await setup(() => new Response("the whole body", { headers: FRESH }));
    const head = await viaProxy(gw.proxyUrl, origin.url("/h"), { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(origin.requests[0]!.method).toBe("GET"); // as nginx's proxy_cache_convert_head
    await gw.idle();

    const get = await viaProxy(gw.proxyUrl, origin.url("/h"));
    expect(get.headers.get("x-cache")).toBe("HIT");
    expect(await get.text()).toBe("the whole body");
    expect(origin.count()).toBe(1);
  });

  test("a chunked upstream body is cached and later served with a Content-Length", async () => {
    const body = randomBytes(70_000);
    const out = pushedBody();
    const { origin, gw } = await setup(() => new Response(out.stream, { headers: FRESH }));
    out.push(body.subarray(0, 30_000));
    const miss = await viaProxy(gw.proxyUrl, origin.url("/chunked"));
    expect(miss.headers.get("content-length")).toBeNull();
    out.push(body.subarray(30_000));
    out.end();
    expect((await bytesOf(miss)).equals(body)).toBe(true);
    await gw.idle();

    const hit = await viaProxy(gw.proxyUrl, origin.url("/chunked"));
    expect(hit.headers.get("content-length")).toBe(String(body.length));
    expect((await bytesOf(hit)).equals(body)).toBe(true);
  });

  test("an empty body is cached and served as empty", async () => {
    const { origin, gw } = await setup(() => new Response("", { headers: FRESH }));
    expect(await (await viaProxy(gw.proxyUrl, origin.url("/empty"))).text()).toBe("");
    await gw.idle();
    const hit = await viaProxy(gw.proxyUrl, origin.url("/empty"));
    expect(hit.status).toBe(200);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.headers.get("content-length")).toBe("0");
    expect(await hit.text()).toBe("");
  });

  test("a 404 with max-age is cached and served as a 404", async () => {
    const { origin, gw } = await setup(() => new Response("no such package", { status: 404, headers: FRESH }));
    await (await viaProxy(gw.proxyUrl, origin.url("/missing.rpm"))).text();
    await gw.idle();
    const hit = await viaProxy(gw.proxyUrl, origin.url("/missing.rpm"));
    expect([hit.status, hit.headers.get("x-cache"), await hit.text()]).toEqual([404, "HIT", "no such package"]);
    expect(origin.count()).toBe(1);
  });

  test("URLs that differ only in their query are separate entries", async () => {
    const { origin, gw } = await setup((req) => new Response(`for ${new URL(req.url).search}`, { headers: FRESH }));
    for (const query of ["?v=1", "?v=2"]) {
      expect(await (await viaProxy(gw.proxyUrl, origin.url(`/q${query}`))).text()).toBe(`for ${query}`);
      await gw.idle();
    }
    const hit = await viaProxy(gw.proxyUrl, origin.url("/q?v=1"));
    expect([hit.headers.get("x-cache"), await hit.text()]).toEqual(["HIT", "for ?v=1"]);
    expect(origin.count()).toBe(2);
  });
});

describe("revalidation", () => {
  /**
   * An origin whose current version the test can change; it answers
   * conditionals with 304 when they match. Its Date follows the test's clock,
   * as a real origin's agrees with the gateway's.
   */
  function versionedOrigin(validator: "etag" | "last-modified", clock: { now: () => number }) {
    const state = { body: "version one", tag: '"v1"', modified: "Mon, 01 Jan 2024 00:00:00 GMT", fullResponses: 0 };
    const handler = (req: Request) => {
      const headers: Record<string, string> = {
        "cache-control": "max-age=60",
        date: new Date(clock.now()).toUTCString(),
      };
      if (validator === "etag") headers.etag = state.tag;
      else headers["last-modified"] = state.modified;
      const matches =
        validator === "etag"
          ? req.headers.get("if-none-match") === state.tag
          : req.headers.get("if-modified-since") === state.modified;
      if (matches) return new Response(null, { status: 304, headers });
      state.fullResponses++;
      return new Response(state.body, { headers });
    };
    return { state, handler };
  }

  test("a stale entry with an ETag is revalidated with If-None-Match, and the 304 serves the stored body as REVALIDATED", async () => {
    const clock = manualClock();
    const { state, handler } = versionedOrigin("etag", clock);
    const { origin, gw } = await setup(handler, { now: clock.now });
    await (await viaProxy(gw.proxyUrl, origin.url("/manifest.json"))).text();
    await gw.idle();

    clock.advance(61_000);
    const res = await viaProxy(gw.proxyUrl, origin.url("/manifest.json"));
    expect(res.headers.get("x-cache")).toBe("REVALIDATED");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("version one");
    expect(origin.count()).toBe(2);
    expect(origin.requests[1]!.headers.get("if-none-match")).toBe('"v1"');
    expect(state.fullResponses).toBe(1); // the body crossed the wire once
  });

  test("a stale entry with only Last-Modified is revalidated with If-Modified-Since", async () => {
    const clock = manualClock();
    const { state, handler } = versionedOrigin("last-modified", clock);
    const { origin, gw } = await setup(handler, { now: clock.now });
    await (await viaProxy(gw.proxyUrl, origin.url("/manifest.json"))).text();
    await gw.idle();

    clock.advance(61_000);
    const res = await viaProxy(gw.proxyUrl, origin.url("/manifest.json"));
    expect(res.headers.get("x-cache")).toBe("REVALIDATED");
    expect(await res.text()).toBe("version one");
    expect(origin.requests[1]!.headers.get("if-modified-since")).toBe(state.modified);
    expect(state.fullResponses).toBe(1);
  });

  test("a 304 makes the entry fresh again, so the next request is a HIT without asking upstream", async () => {
    const clock = manualClock();
    const { handler } = versionedOrigin("etag", clock);
    const { origin, gw } = await setup(handler, { now: clock.now });
    await (await viaProxy(gw.proxyUrl, origin.url("/m.json"))).text();
    await gw.idle();
    clock.advance(61_000);
    await (await viaProxy(gw.proxyUrl, origin.url("/m.json"))).text();

    clock.advance(30_000);
    const res = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect(res.headers.get("x-cache")).toBe("HIT");
    expect(Number(res.headers.get("age"))).toBe(30);
    expect(await res.text()).toBe("version one");
    expect(origin.count()).toBe(2);
  });

  test("after the origin changes, the revalidation's 200 replaces the stored body and its blob", async () => {
    const clock = manualClock();
    const { state, handler } = versionedOrigin("etag", clock);
    const { origin, gw } = await setup(handler, { now: clock.now });
    await (await viaProxy(gw.proxyUrl, origin.url("/m.json"))).text();
    await gw.idle();

    Object.assign(state, { body: "version two, longer", tag: '"v2"' });
    clock.advance(61_000);
    const changed = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect(changed.headers.get("x-cache")).toBe("MISS");
    expect(await changed.text()).toBe("version two, longer");
    await gw.idle();

    const hit = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.headers.get("etag")).toBe('"v2"');
    expect(await hit.text()).toBe("version two, longer");
    expect(origin.count()).toBe(2);
    expect(countRows(gw.dataDir, "entries")).toBe(1);
    await waitFor("the old blob to be removed", async () => (await filesUnder(join(gw.dataDir, "blobs"))).length === 1);
    expect(countRows(gw.dataDir, "blobs")).toBe(1);
  });

  test("an Age from upstream counts toward freshness, so the entry goes stale that much sooner (RFC 9111 §4.2.3)", async () => {
    const clock = manualClock();
    const { origin, gw } = await setup(
      () =>
        new Response("aged", {
          headers: { "cache-control": "max-age=60", age: "50", date: new Date(clock.now()).toUTCString() },
        }),
      { now: clock.now },
    );
    await (await viaProxy(gw.proxyUrl, origin.url("/aged.json"))).text();
    await gw.idle();

    clock.advance(5_000);
    const young = await viaProxy(gw.proxyUrl, origin.url("/aged.json"));
    expect(young.headers.get("x-cache")).toBe("HIT");
    expect(young.headers.get("age")).toBe("55");
    await young.text();

    clock.advance(6_000); // 61 s old: stale
    const old = await viaProxy(gw.proxyUrl, origin.url("/aged.json"));
    expect(old.headers.get("x-cache")).not.toBe("HIT");
    await old.text();
    expect(origin.count()).toBe(2);
  });

  test("concurrent revalidations of one stale entry make one conditional request upstream", async () => {
    const clock = manualClock();
    const answer = gate();
    const { origin, gw } = await setup(
      async (req) => {
        const headers = { etag: '"v1"', "cache-control": "max-age=60" };
        if (req.headers.get("if-none-match") !== '"v1"') return new Response("stored once", { headers });
        await answer.opened;
        return new Response(null, { status: 304, headers });
      },
      { now: clock.now },
    );
    await (await viaProxy(gw.proxyUrl, origin.url("/m.json"))).text();
    await gw.idle();
    clock.advance(61_000);

    const pending = Array.from({ length: 8 }, () => viaProxy(gw.proxyUrl, origin.url("/m.json")));
    await waitFor("the conditional request to reach the origin", () => origin.count() === 2);
    // As Varnish's coalescing test waits on its counters: the seven others are on the waiting list.
    await waitFor("the seven other requests to wait on the revalidation", () => gw.pipeline.waiting() === 7);
    expect(origin.count()).toBe(2);
    answer.open();
    const responses = await Promise.all(pending);

    expect(origin.count()).toBe(2);
    expect(responses.map((r) => r.headers.get("x-cache")).sort()).toEqual([
      ...Array(7).fill("COALESCED"),
      "REVALIDATED",
    ]);
    for (const r of responses) expect(await r.text()).toBe("stored once");
  });
});

describe("stale entries when the origin fails (RFC 9111 §4.2.4)", () => {
  async function staleEntry(cacheControl: string) {
    const clock = manualClock();
    const state = { fail: false };
    const { origin, gw } = await setup(
      () =>
        state.fail
          ? new Response("origin down", { status: 503 })
          : new Response("last good copy", {
              headers: { "cache-control": cacheControl, date: new Date(clock.now()).toUTCString() },
            }),
      { now: clock.now },
    );
    await (await viaProxy(gw.proxyUrl, origin.url("/m.json"))).text();
    await gw.idle();
    clock.advance(61_000);
    return { origin, gw, state };
  }

  test("a revalidation that gets a 5xx serves the stale copy, marked STALE", async () => {
    const { origin, gw, state } = await staleEntry("max-age=60");
    state.fail = true;
    const res = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect([res.status, res.headers.get("x-cache"), await res.text()]).toEqual([200, "STALE", "last good copy"]);
  });

  test("a revalidation that cannot reach the origin serves the stale copy, marked STALE", async () => {
    const { origin, gw } = await staleEntry("max-age=60");
    await origin.stop();
    const res = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect([res.status, res.headers.get("x-cache"), await res.text()]).toEqual([200, "STALE", "last good copy"]);
  });

  test("with must-revalidate, a 5xx on revalidation is passed on instead of the stale copy", async () => {
    const { origin, gw, state } = await staleEntry("max-age=60, must-revalidate");
    state.fail = true;
    const res = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
    expect(res.status).toBe(503);
    expect(await res.text()).toBe("origin down");
  });

  test("an agent's Cache-Control: no-cache makes the gateway revalidate a fresh entry", async () => {
    const { origin, gw } = await setup(
      () => new Response("body", { headers: { etag: '"e"', "cache-control": "max-age=600" } }),
    );
    await (await viaProxy(gw.proxyUrl, origin.url("/m.json"))).text();
    await gw.idle();
    const res = await viaProxy(gw.proxyUrl, origin.url("/m.json"), { headers: { "cache-control": "no-cache" } });
    expect(res.headers.get("x-cache")).not.toBe("HIT");
    expect(await res.text()).toBe("body");
    expect(origin.count()).toBe(2);
    expect(origin.requests[1]!.headers.get("if-none-match")).toBe('"e"');
  });
});

describe("conditional requests from agents", () => {
  const validators = {
    etag: '"abc"',
    "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT",
    "cache-control": "max-age=600",
  };

  async function cached() {
    const ctx = await setup(() => new Response("cached body", { headers: validators }));
    await (await viaProxy(ctx.gw.proxyUrl, ctx.origin.url("/c"))).text();
    await ctx.gw.idle();
    return ctx;
  }

  test("an If-None-Match that matches the cached ETag gets 304 without a body", async () => {
    const { origin, gw } = await cached();
    const res = await viaProxy(gw.proxyUrl, origin.url("/c"), { headers: { "if-none-match": '"abc"' } });
    expect(res.status).toBe(304);
    expect(res.headers.get("x-cache")).toBe("HIT");
    expect(res.headers.get("etag")).toBe('"abc"');
    expect(await res.text()).toBe("");
    expect(origin.count()).toBe(1);
  });

  test("an If-None-Match that does not match gets the full cached body", async () => {
    const { origin, gw } = await cached();
    const res = await viaProxy(gw.proxyUrl, origin.url("/c"), { headers: { "if-none-match": '"other"' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("cached body");
    expect(origin.count()).toBe(1);
  });

  test("an If-Modified-Since at Last-Modified gets 304, and one before it gets the body", async () => {
    const { origin, gw } = await cached();
    const same = await viaProxy(gw.proxyUrl, origin.url("/c"), {
      headers: { "if-modified-since": validators["last-modified"] },
    });
    expect(same.status).toBe(304);
    const earlier = await viaProxy(gw.proxyUrl, origin.url("/c"), {
      headers: { "if-modified-since": "Sun, 31 Dec 2023 00:00:00 GMT" },
    });
    expect(earlier.status).toBe(200);
    expect(await earlier.text()).toBe("cached body");
    expect(origin.count()).toBe(1);
  });

  test("an agent's conditional request on a miss is not forwarded, so the full body is still cached", async () => {
    const { origin, gw } = await setup(() => new Response("cached body", { headers: validators }));
    const res = await viaProxy(gw.proxyUrl, origin.url("/c"), { headers: { "if-none-match": '"abc"' } });
    expect(res.status).toBe(304);
    expect(origin.requests[0]!.headers.get("if-none-match")).toBeNull();
    await gw.idle();

    const hit = await viaProxy(gw.proxyUrl, origin.url("/c"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(await hit.text()).toBe("cached body");
    expect(origin.count()).toBe(1);
  });
});

describe("responses that are not stored", () => {
  /** Two requests in a row; returns both X-Cache labels and statuses after checking nothing was indexed. */
  async function twice(handler: () => Response, init: RequestInit = {}) {
    const { origin, gw } = await setup(handler);
    const results: [number, string | null][] = [];
    for (let i = 0; i < 2; i++) {
      const res = await viaProxy(gw.proxyUrl, origin.url("/x"), init);
      await res.arrayBuffer();
      await gw.idle();
      results.push([res.status, res.headers.get("x-cache")]);
    }
    expect(countRows(gw.dataDir, "entries")).toBe(0);
    return { origin, results };
  }

  test.each([500, 502, 503, 504])("a %d response is passed on but never stored", async (status) => {
    const { origin, results } = await twice(() => new Response("origin trouble", { status, headers: FRESH }));
    expect(results).toEqual([
      [status, "MISS"],
      [status, "MISS"],
    ]);
    expect(origin.count()).toBe(2);
  });

  test.each<[string, Record<string, string>]>([
    ["Cache-Control: no-store", { "cache-control": "no-store, max-age=60" }],
    ["Cache-Control: private", { "cache-control": "private, max-age=60" }],
    ["Set-Cookie", { "cache-control": "max-age=60", "set-cookie": "session=abc" }],
    ["Vary: *", { "cache-control": "max-age=60", vary: "*" }],
  ])("a response with %s is passed on but never stored", async (_name, headers) => {
    const { origin, results } = await twice(() => new Response("somebody's own", { headers }));
    expect(results).toEqual([
      [200, "MISS"],
      [200, "MISS"],
    ]);
    expect(origin.count()).toBe(2);
  });

  test("a response to a request with Authorization is not shared unless it says public", async () => {
    const { origin, results } = await twice(() => new Response("for one user", { headers: FRESH }), {
      headers: { authorization: "Bearer agent-1" },
    });
    expect(results.map(([, label]) => label)).toEqual(["MISS", "MISS"]);
    expect(origin.count()).toBe(2);
  });

  test("a Set-Cookie from the origin reaches the agent", async () => {
    const { origin, gw } = await setup(
      () => new Response("x", { headers: { "set-cookie": "session=abc; Path=/", ...FRESH } }),
    );
    const res = await viaProxy(gw.proxyUrl, origin.url("/x"));
    expect(res.headers.getSetCookie()).toEqual(["session=abc; Path=/"]);
  });
});

describe("Vary", () => {
  test("responses that vary on Accept-Encoding are stored as separate entries", async () => {
    const { origin, gw } = await setup(
      (req) =>
        new Response(`body for ${req.headers.get("accept-encoding")}`, {
          headers: { vary: "Accept-Encoding", ...FRESH },
        }),
    );
    const get = async (encoding: string) => {
      const res = await viaProxy(gw.proxyUrl, origin.url("/v"), { headers: { "accept-encoding": encoding } });
      const text = await res.text();
      await gw.idle();
      return [res.headers.get("x-cache"), text];
    };

    expect(await get("gzip")).toEqual(["MISS", "body for gzip"]);
    expect(await get("br")).toEqual(["MISS", "body for br"]);
    expect(await get("gzip")).toEqual(["HIT", "body for gzip"]);
    expect(await get("br")).toEqual(["HIT", "body for br"]);
    expect(origin.count()).toBe(2);
    expect(countRows(gw.dataDir, "entries")).toBe(2);
  });
});
