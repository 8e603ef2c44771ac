import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { truncate } from "node:fs/promises";
import { join } from "node:path";
import { GatewayError } from "../../src/errors.ts";
import { pipelineOver } from "../support/cache-core.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { filesUnder } from "../support/data-dir.ts";
import { gate, waitFor } from "../support/wait.ts";

// The cache pipeline on its own: a real index, blob store and SQLite file in a
// temp dir, a hand-moved clock, and an upstream that is a function in this file.

const defer = cleanupAfterEach();
const U = "http://origin.test";
const FRESH = { "cache-control": "max-age=60" };
const MiB = 1024 * 1024;

/** A pipeline over fresh cache parts whose upstream answers with `answer`; `maxBytes` limits the cache. */
async function setup(answer: (req: Request, call: number) => Response | Promise<Response>, maxBytes = Infinity) {
  const parts = await pipelineOver(defer, answer, maxBytes);
  const { pipeline } = parts;
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await pipeline.handle(new Request(U + path, { headers }));
    // A body left unread (a failed assertion) would hold its file open past the test.
    defer(() => res.body?.cancel().catch(() => {}));
    return res;
  };
  /** Every download committed to the index (or failed and dropped). */
  const idle = () => waitFor("downloads to land", () => pipeline.inFlight() === 0);
  const stored = (path: string, headers: Record<string, string> = {}) =>
    parts.index.lookup(U + path, new Headers(headers));
  return { ...parts, get, idle, stored };
}

/** What an agent sees of a small response: its X-Cache label and its body. */
const labelAndBody = async (res: Response) => [res.headers.get("x-cache"), await res.text()];
const bytes = async (res: Response) => Buffer.from(await res.arrayBuffer());

/** A stored entry made stale by the clock, and a pipeline whose upstream answers `later` from the second call on. */
async function staleEntry(headers: Record<string, string>, later: (req: Request) => Response | Promise<Response>) {
  const t = await setup((req, call) =>
    call === 1 ? new Response("v1", { headers: { etag: '"v1"', ...headers } }) : later(req),
  );
  await (await t.get("/a")).text();
  await t.idle();
  t.clock.advance(61_000);
  return t;
}

describe("pipeline: miss, hit and coalescing", () => {
  test("a miss is fetched once and stored, and the next request is a HIT with its Age", async () => {
    const body = randomBytes(10_000);
    const t = await setup(() => new Response(body, { headers: FRESH }));

    const miss = await t.get("/a");
    expect(miss.headers.get("x-cache")).toBe("MISS");
    expect((await bytes(miss)).equals(body)).toBe(true);
    await t.idle();
    expect(t.stored("/a")?.size).toBe(10_000);
    t.clock.advance(7000);

    const hit = await t.get("/a");
    expect([hit.headers.get("x-cache"), hit.headers.get("age")]).toEqual(["HIT", "7"]);
    expect((await bytes(hit)).equals(body)).toBe(true);
    expect(t.upstream.calls()).toBe(1);
  });

  test("N concurrent requests make one upstream call, and all get the same body", async () => {
    const N = 8;
    const body = randomBytes(300_000);
    const held = gate();
    const t = await setup(async () => {
      await held.opened;
      return new Response(body, { headers: FRESH });
    });

    const pending = Array.from({ length: N }, () => t.get("/a"));
    await waitFor("N-1 requests on the waiting list", () => t.pipeline.waiting() === N - 1);
    expect(t.pipeline.inFlight()).toBe(1);
    held.open();
    const responses = await Promise.all(pending);
    const bodies = await Promise.all(responses.map(bytes));

    expect(t.upstream.calls()).toBe(1);
    expect(t.pipeline.waiting()).toBe(0);
    expect(responses.map((r) => r.headers.get("x-cache")).sort()).toEqual([...Array(N - 1).fill("COALESCED"), "MISS"]);
    for (const b of bodies) expect(b.equals(body)).toBe(true);
  });

  test("waiting requests for a response that may not be stored each ask upstream themselves", async () => {
    const held = gate();
    const t = await setup(async (_req, call) => {
      await held.opened;
      return new Response(`for caller ${call}`, { headers: { "cache-control": "private" } });
    });

    const pending = [t.get("/a"), t.get("/a"), t.get("/a")];
    await waitFor("two requests on the waiting list", () => t.pipeline.waiting() === 2);
    held.open();
    const answers = await Promise.all(pending.map(async (r) => labelAndBody(await r)));

    expect(t.upstream.calls()).toBe(3);
    expect(answers.map(([, b]) => b).sort()).toEqual(["for caller 1", "for caller 2", "for caller 3"]);
    expect(answers.every(([label]) => label === "MISS")).toBe(true);
  });

  test("an upstream failure on a miss reaches the leader and every waiting request", async () => {
    const held = gate();
    const refused = new Error("connection refused");
    const t = await setup(async () => {
      await held.opened;
      throw refused;
    });

    const pending = [t.get("/a"), t.get("/a")].map((p) => p.catch((e: unknown) => e));
    await waitFor("one request on the waiting list", () => t.pipeline.waiting() === 1);
    held.open();

    expect(await Promise.all(pending)).toEqual([refused, refused]);
    expect(t.pipeline.inFlight()).toBe(0);
    expect(t.upstream.calls()).toBe(1);
  });
});

describe("pipeline: revalidation", () => {
  test("a stale entry is revalidated with If-None-Match, and a 304 freshens it (REVALIDATED)", async () => {
    const t = await staleEntry(
      FRESH,
      () => new Response(null, { status: 304, headers: { "cache-control": "max-age=600" } }),
    );

    expect(await labelAndBody(await t.get("/a"))).toEqual(["REVALIDATED", "v1"]);
    expect(t.upstream.requests[1]?.headers.get("if-none-match")).toBe('"v1"');
    expect(t.stored("/a")?.responseTime).toBe(t.clock.now());
    expect(t.stored("/a")?.headers.get("cache-control")).toBe("max-age=600");
    t.clock.advance(300_000);
    expect(await labelAndBody(await t.get("/a"))).toEqual(["HIT", "v1"]);
    expect(t.upstream.calls()).toBe(2);
  });

  test("a 5xx during revalidation serves the stale copy (STALE) and keeps it", async () => {
    const t = await staleEntry(FRESH, () => new Response("down", { status: 503 }));

    const res = await t.get("/a");
    expect(res.status).toBe(200);
    expect(await labelAndBody(res)).toEqual(["STALE", "v1"]);
    expect(t.stored("/a")).toBeDefined();
  });

  test("a 5xx during revalidation of a must-revalidate response is passed on, not the stale copy", async () => {
    const t = await staleEntry(
      { "cache-control": "max-age=60, must-revalidate" },
      () => new Response("down", { status: 503 }),
    );

    const res = await t.get("/a");
    expect(res.status).toBe(503);
    expect(await labelAndBody(res)).toEqual(["MISS", "down"]);
  });

  test("an upstream fetch that throws serves the stale copy (STALE)", async () => {
    const t = await staleEntry(FRESH, () => {
      throw new Error("connection reset");
    });

    expect(await labelAndBody(await t.get("/a"))).toEqual(["STALE", "v1"]);
    expect(t.upstream.calls()).toBe(2);
  });

  test("a policy refusal (GatewayError 403) is rethrown to the agent, not papered over with the stale copy", async () => {
    const refusal = new GatewayError(403, "domain_not_allowed", "origin.test is no longer allowed");
    const t = await staleEntry(FRESH, () => {
      throw refusal;
    });

    expect(await t.get("/a").catch((e: unknown) => e)).toBe(refusal);
    expect(t.pipeline.inFlight()).toBe(0);
  });
});

describe("pipeline: what is not stored or not reused", () => {
  test.each([
    ["Set-Cookie", { ...FRESH, "set-cookie": "session=1" }],
    ["Cache-Control: private", { "cache-control": "private, max-age=60" }],
    ["Cache-Control: no-store", { "cache-control": "no-store" }],
  ])("a response with %s is passed through (MISS) and not stored", async (_name, headers) => {
    const t = await setup((_req, call) => new Response(`answer ${call}`, { headers }));

    expect(await labelAndBody(await t.get("/a"))).toEqual(["MISS", "answer 1"]);
    await t.idle();
    expect(await labelAndBody(await t.get("/a"))).toEqual(["MISS", "answer 2"]);
    expect(t.stored("/a")).toBeUndefined();
    expect(await filesUnder(join(t.dir, "blobs"))).toEqual([]);
  });

  test("a request with Cache-Control: no-store is not served from the cache, nor is its answer stored", async () => {
    const t = await setup((_req, call) => new Response(`answer ${call}`, { headers: FRESH }));
    await (await t.get("/a")).text();
    await t.idle();

    expect(await labelAndBody(await t.get("/a", { "cache-control": "no-store" }))).toEqual(["MISS", "answer 2"]);
    await t.idle();
    expect(await labelAndBody(await t.get("/a"))).toEqual(["HIT", "answer 1"]);
    expect(t.upstream.calls()).toBe(2);
  });

  test("a body shorter than its Content-Length fails every reader, and nothing is indexed", async () => {
    const held = gate();
    const t = await setup(async () => {
      await held.opened;
      return new Response(new Blob([randomBytes(500)]).stream(), { headers: { ...FRESH, "content-length": "1000" } });
    });

    const pending = [t.get("/a"), t.get("/a")];
    await waitFor("one request on the waiting list", () => t.pipeline.waiting() === 1);
    held.open();
    const responses = await Promise.all(pending);
    expect(responses.map((r) => r.headers.get("x-cache")).sort()).toEqual(["COALESCED", "MISS"]);

    for (const res of responses)
      await expect(res.arrayBuffer()).rejects.toThrow("upstream body ended after 500 of 1000");
    await t.idle();
    expect(t.stored("/a")).toBeUndefined();
    expect(t.index.totalBytes()).toBe(0);
    expect(await filesUnder(join(t.dir, "blobs"))).toEqual([]);
    await waitFor("the temp file to be removed", async () => (await filesUnder(join(t.dir, "tmp"))).length === 0);
  });
});

describe("pipeline: variants, invalidation and eviction", () => {
  const varying = (req: Request) =>
    new Response(`in ${req.headers.get("accept-encoding")}`, { headers: { ...FRESH, vary: "Accept-Encoding" } });

  test("a stored Vary response is served only to requests of the same variant", async () => {
    const t = await setup(varying);
    await (await t.get("/a", { "accept-encoding": "gzip" })).text();
    await t.idle();

    expect(await labelAndBody(await t.get("/a", { "accept-encoding": "gzip" }))).toEqual(["HIT", "in gzip"]);
    expect(await labelAndBody(await t.get("/a", { "accept-encoding": "br" }))).toEqual(["MISS", "in br"]);
    await t.idle();
    expect(await labelAndBody(await t.get("/a", { "accept-encoding": "br" }))).toEqual(["HIT", "in br"]);
    expect(t.upstream.calls()).toBe(2);
  });

  test("a request of another variant that arrives during a download asks upstream itself", async () => {
    const held = gate();
    const t = await setup(async (req) => {
      await held.opened;
      return varying(req);
    });

    const pending = [t.get("/a", { "accept-encoding": "gzip" }), t.get("/a", { "accept-encoding": "br" })];
    await waitFor("one request on the waiting list", () => t.pipeline.waiting() === 1);
    held.open();
    const [gzip, br] = await Promise.all(pending.map(async (r) => labelAndBody(await r)));

    expect(gzip).toEqual(["MISS", "in gzip"]);
    expect(br).toEqual(["MISS", "in br"]);
    expect(t.upstream.calls()).toBe(2);
  });

  test("invalidate() drops every stored response of its URL, however the URL is spelled", async () => {
    const t = await setup((req) => new Response(new URL(req.url).pathname, { headers: FRESH }));
    for (const path of ["/a", "/b"]) await (await t.get(path)).text();
    await t.idle();

    await t.pipeline.invalidate("HTTP://ORIGIN.TEST:80/a");

    expect(t.stored("/a")).toBeUndefined();
    expect(t.stored("/b")).toBeDefined();
    expect(await labelAndBody(await t.get("/a"))).toEqual(["MISS", "/a"]);
    expect(await labelAndBody(await t.get("/b"))).toEqual(["HIT", "/b"]);
  });

  test("over its size limit the cache drops the least recently used entries first", async () => {
    const bodies: Record<string, Uint8Array> = {
      "/a": randomBytes(1000),
      "/b": randomBytes(1000),
      "/c": randomBytes(1000),
    };
    const t = await setup((req) => new Response(bodies[new URL(req.url).pathname], { headers: FRESH }), 2500);
    const fetchAndLand = async (path: string) => {
      t.clock.advance(1000);
      const label = (await labelAndBody(await t.get(path)))[0];
      await t.idle();
      return label;
    };

    expect(await fetchAndLand("/a")).toBe("MISS");
    expect(await fetchAndLand("/b")).toBe("MISS");
    expect(await fetchAndLand("/a")).toBe("HIT"); // /a is now used more recently than /b
    expect(await fetchAndLand("/c")).toBe("MISS"); // 3000 bytes > 2500: /b goes

    expect([t.stored("/a"), t.stored("/b"), t.stored("/c")].map((e) => e !== undefined)).toEqual([true, false, true]);
    expect(t.index.totalBytes()).toBe(2000);
    expect(await filesUnder(join(t.dir, "blobs"))).toHaveLength(2);
  });

  test("eviction never drops a blob an agent is reading, and drops it once it is read", async () => {
    const size = 5 * MiB; // too big for an in-memory copy: a hit reads (and pins) the file
    const bodies: Record<string, Uint8Array> = {
      "/a": randomBytes(size),
      "/b": randomBytes(size),
      "/c": randomBytes(size),
    };
    const t = await setup((req) => new Response(bodies[new URL(req.url).pathname], { headers: FRESH }), 7 * MiB);
    await (await t.get("/a")).arrayBuffer();
    await t.idle();
    const a = t.stored("/a")!;

    const reading = await t.get("/a"); // a HIT whose body the agent has not read yet
    expect(reading.headers.get("x-cache")).toBe("HIT");
    expect(t.index.isPinned(a.sha256)).toBe(true);
    t.clock.advance(1000);
    await (await t.get("/b")).arrayBuffer();
    await t.idle();

    expect([t.stored("/a")?.sha256, t.stored("/b")]).toEqual([a.sha256, undefined]);
    expect((await bytes(reading)).equals(Buffer.from(bodies["/a"]!))).toBe(true);
    await waitFor("the blob to be unpinned", () => !t.index.isPinned(a.sha256));

    t.clock.advance(1000);
    await (await t.get("/c")).arrayBuffer();
    await t.idle();
    expect([t.stored("/a"), t.stored("/c")?.size]).toEqual([undefined, size]);
    expect(await Bun.file(t.store.pathOf(a.sha256)).exists()).toBe(false);
  });

  test("agents on a stored object of a few MiB share one copy: its blob may go, they get every byte", async () => {
    const bodies: Record<string, Uint8Array> = { "/a": randomBytes(2 * MiB), "/b": randomBytes(2 * MiB) };
    const t = await setup((req) => new Response(bodies[new URL(req.url).pathname], { headers: FRESH }), 3 * MiB);
    await (await t.get("/a")).arrayBuffer();
    await t.idle();
    const a = t.stored("/a")!;

    const readers = [await t.get("/a"), await t.get("/a")]; // HITs whose bodies are not read yet
    expect(readers.map((r) => r.headers.get("x-cache"))).toEqual(["HIT", "HIT"]);
    expect(t.index.isPinned(a.sha256)).toBe(false); // read into memory: the file is not needed any more
    t.clock.advance(1000);
    await (await t.get("/b")).arrayBuffer(); // 4 MiB > 3 MiB: /a goes
    await t.idle();
    expect(await Bun.file(t.store.pathOf(a.sha256)).exists()).toBe(false);

    for (const reader of readers) expect((await bytes(reader)).equals(Buffer.from(bodies["/a"]!))).toBe(true);
  });

  test("a stored blob that lost bytes on disk is not served: its entry goes, and upstream is asked again", async () => {
    const body = randomBytes(MiB);
    const t = await setup(() => new Response(body, { headers: FRESH }));
    await (await t.get("/a")).arrayBuffer();
    await t.idle();
    await truncate(t.store.pathOf(t.stored("/a")!.sha256), 1000);

    const again = await t.get("/a");
    expect(again.headers.get("x-cache")).toBe("MISS");
    expect((await bytes(again)).equals(body)).toBe(true);
    expect(t.upstream.calls()).toBe(2);
  });
});
