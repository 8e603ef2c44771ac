import { describe, expect, test } from "bun:test";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { admin, closeWhenIdle, eventually, jsonOf } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type Origin, startOrigin, viaProxy } from "../support/origin.ts";

const defer = cleanupAfterEach();

interface Entry {
  url: string;
  size: number;
  sha256: string;
  hits: number;
  lastAccess: string;
  storedAt: string;
  fresh: boolean;
  ttlSeconds: number;
  contentType?: string;
  status: number;
}

async function setup() {
  const origin = startOrigin((req) => {
    const path = new URL(req.url).pathname;
    return new Response(`content of ${path}`, {
      headers: { "cache-control": "max-age=3600", "content-type": "application/json" },
    });
  });
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => closeWhenIdle(gw));
  return { origin, gw, api: admin(gw) };
}

async function fetchThrough(gw: TestGateway, origin: Origin, path: string): Promise<string | null> {
  const res = await viaProxy(gw.proxyUrl, origin.url(path));
  expect(res.status).toBe(200);
  await res.text();
  return res.headers.get("x-cache");
}

/** Caches each path (one MISS each), in order: each is in the index before the next is asked for. */
async function fill(gw: TestGateway, origin: Origin, paths: string[]) {
  for (const p of paths) {
    expect(await fetchThrough(gw, origin, p)).toBe("MISS");
    await gw.idle();
  }
}

const query = (params: Record<string, string>) => new URLSearchParams(params).toString();

describe("GET /api/cache/entries", () => {
  test("an entry is listed with its size, hash, hits, last access and freshness", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/m.json"]);
    expect(await fetchThrough(gw, origin, "/m.json")).toBe("HIT");
    expect(await fetchThrough(gw, origin, "/m.json")).toBe("HIT");
    const { entries, nextCursor } = await api.json<{ entries: Entry[]; nextCursor: string | null }>(
      "/api/cache/entries",
    );
    expect(nextCursor).toBeNull();
    expect(entries).toHaveLength(1);
    const [e] = entries;
    expect(e).toMatchObject({
      url: origin.url("/m.json"),
      status: 200,
      size: "content of /m.json".length,
      hits: 2,
      fresh: true,
      ttlSeconds: 3600,
      contentType: "application/json",
    });
    expect(e!.sha256).toBe(new Bun.CryptoHasher("sha256").update("content of /m.json").digest("hex"));
    expect(Date.parse(e!.lastAccess)).toBeGreaterThan(Date.now() - 60_000);
    expect(Date.parse(e!.storedAt)).toBeLessThanOrEqual(Date.parse(e!.lastAccess));
  });

  test("an empty cache lists no entries", async () => {
    const { api } = await setup();
    expect(await api.json("/api/cache/entries")).toEqual({ entries: [], nextCursor: null });
  });

  test("pages of `limit` entries follow each other through nextCursor, each entry once", async () => {
    const { origin, gw, api } = await setup();
    const paths = ["/a/1.json", "/a/2.json", "/a/3.json", "/a/4.json", "/a/5.json"];
    await fill(gw, origin, paths);
    const seen: string[] = [];
    const pages: number[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 10; i++) {
      const q: string = query(cursor === null ? { limit: "2" } : { limit: "2", cursor });
      const page: { entries: Entry[]; nextCursor: string | null } = await api.json(`/api/cache/entries?${q}`);
      pages.push(page.entries.length);
      seen.push(...page.entries.map((e) => e.url));
      cursor = page.nextCursor;
      if (cursor === null) break;
    }
    expect(cursor).toBeNull();
    expect(pages.slice(0, 3)).toEqual([2, 2, 1]);
    expect(seen).toEqual(paths.map((p) => origin.url(p)));
  });

  test("a prefix lists only the entries under it", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json", "/b/1.json", "/a/2.json", "/ab.json"]);
    const { entries } = await api.json<{ entries: Entry[] }>(
      `/api/cache/entries?${query({ prefix: origin.url("/a/") })}`,
    );
    expect(entries.map((e) => e.url)).toEqual([origin.url("/a/1.json"), origin.url("/a/2.json")]);
  });

  test("the prefix is compared after the URL is normalised (upper-case scheme and host)", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const { entries } = await api.json<{ entries: Entry[] }>(
      `/api/cache/entries?${query({ prefix: `HTTP://LOCALHOST:${origin.port}/a/` })}`,
    );
    expect(entries).toHaveLength(1);
  });

  test("an underscore in a prefix matches only an underscore, not any character", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const { entries } = await api.json<{ entries: Entry[] }>(
      `/api/cache/entries?${query({ prefix: origin.url("/a_") })}`,
    );
    expect(entries).toEqual([]);
  });

  test("a prefix with a percent sign matches it literally", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const { entries } = await api.json<{ entries: Entry[] }>(
      `/api/cache/entries?${query({ prefix: origin.url("/%") })}`,
    );
    expect(entries).toEqual([]);
  });

  test.each([
    ["limit", "0"],
    ["limit", "1001"],
    ["limit", "ten"],
    ["limit", "-1"],
    ["cursor", "abc"],
    ["prefix", "localhost/a/"],
    ["prefix", "ftp://localhost/a/"],
  ])("?%s=%s is refused with 400 naming the parameter", async (name, value) => {
    const { api } = await setup();
    const res = await api.get(`/api/cache/entries?${query({ [name]: value })}`);
    expect(res.status).toBe(400);
    const body = await jsonOf(res);
    expect(body.error).toBe("invalid query parameters; nothing was changed");
    expect(body.details[0].path).toBe(name);
    expect(String(body.details[0].value)).toBe(value);
    expect(body.details[0].message).toStartWith(`${name} `);
  });

  test("limit 1000 is accepted", async () => {
    const { api } = await setup();
    expect((await api.get("/api/cache/entries?limit=1000")).status).toBe(200);
  });
});

describe("DELETE /api/cache/entries", () => {
  test("purging one URL drops it, and the next request for it is a MISS while others still HIT", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json", "/a/2.json"]);
    const res = await api.send("DELETE", `/api/cache/entries?${query({ url: origin.url("/a/1.json") })}`);
    expect(res.status).toBe(200);
    expect(await jsonOf(res)).toEqual({ purged: 1 });
    expect(await fetchThrough(gw, origin, "/a/1.json")).toBe("MISS");
    expect(await fetchThrough(gw, origin, "/a/2.json")).toBe("HIT");
    expect(origin.count("/a/1.json")).toBe(2);
  });

  test("purging a prefix drops every entry under it and nothing else", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json", "/a/2.json", "/a/3.json", "/b/1.json"]);
    const res = await api.send("DELETE", `/api/cache/entries?${query({ prefix: origin.url("/a/") })}`);
    expect(await jsonOf(res)).toEqual({ purged: 3 });
    expect(await fetchThrough(gw, origin, "/a/2.json")).toBe("MISS");
    expect(await fetchThrough(gw, origin, "/b/1.json")).toBe("HIT");
    await gw.idle();
    const { entries } = await api.json<{ entries: Entry[] }>("/api/cache/entries");
    expect(entries.map((e) => e.url).sort()).toEqual([origin.url("/a/2.json"), origin.url("/b/1.json")]);
  });

  test("purging a URL that is not cached answers purged 0", async () => {
    const { origin, api } = await setup();
    const res = await api.send("DELETE", `/api/cache/entries?${query({ url: origin.url("/never.json") })}`);
    expect(res.status).toBe(200);
    expect(await jsonOf(res)).toEqual({ purged: 0 });
  });

  test("purging without url or prefix is refused with 400 saying what to give", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const res = await api.send("DELETE", "/api/cache/entries");
    expect(res.status).toBe(400);
    expect(JSON.stringify(await jsonOf(res))).toContain("give exactly one of ?url=");
    expect(await fetchThrough(gw, origin, "/a/1.json")).toBe("HIT");
  });

  test("purging with both url and prefix is refused with 400", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const res = await api.send(
      "DELETE",
      `/api/cache/entries?${query({ url: origin.url("/a/1.json"), prefix: origin.url("/a/") })}`,
    );
    expect(res.status).toBe(400);
    expect(await fetchThrough(gw, origin, "/a/1.json")).toBe("HIT");
  });

  test("purging with a URL that is not absolute is refused with 400", async () => {
    const { api } = await setup();
    const res = await api.send("DELETE", "/api/cache/entries?url=/a/1.json");
    expect(res.status).toBe(400);
    expect((await jsonOf(res)).details[0]).toMatchObject({ path: "url", value: "/a/1.json" });
  });

  test("a purge removes the blob file too once no entry uses it", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const [e] = (await api.json<{ entries: Entry[] }>("/api/cache/entries")).entries;
    const file = join(gw.dataDir, "blobs", e!.sha256.slice(0, 2), e!.sha256);
    expect(await Bun.file(file).exists()).toBe(true);
    await api.send("DELETE", `/api/cache/entries?${query({ url: origin.url("/a/1.json") })}`);
    await eventually(async () => ((await Bun.file(file).exists()) ? undefined : true), "the blob file to go");
  });
});

describe("the verify job", () => {
  type VerifyState = {
    state: string;
    blobs: number;
    checked: number;
    damaged: string[];
    startedAt: string | null;
    finishedAt: string | null;
  };

  async function verify(api: ReturnType<typeof admin>): Promise<VerifyState> {
    const start = await api.send("POST", "/api/cache/verify");
    expect(start.status).toBe(202);
    expect((await jsonOf(start)).state).toBe("running");
    return eventually(async () => {
      const s = await api.json<VerifyState>("/api/cache/verify");
      return s.state === "running" ? undefined : s;
    }, "the verify job to finish");
  }

  const blobPath = (gw: TestGateway, sha: string) => join(gw.dataDir, "blobs", sha.slice(0, 2), sha);

  test("before any job the status is idle", async () => {
    const { api } = await setup();
    expect(await api.json("/api/cache/verify")).toMatchObject({ state: "idle", damaged: [], checked: 0 });
  });

  test("a verify over intact blobs finds nothing and keeps every entry", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json", "/a/2.json"]);
    const s = await verify(api);
    expect(s).toMatchObject({ state: "done", blobs: 2, checked: 2, damaged: [] });
    expect(s.finishedAt).not.toBeNull();
    expect(await fetchThrough(gw, origin, "/a/1.json")).toBe("HIT");
  });

  test("a blob whose bytes changed on disk is reported, its entry is dropped, and the next request is a MISS", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json", "/a/2.json"]);
    const { entries } = await api.json<{ entries: Entry[] }>("/api/cache/entries");
    const victim = entries.find((e) => e.url === origin.url("/a/1.json"))!;
    const intact = entries.find((e) => e.url === origin.url("/a/2.json"))!;
    // Same length, different bytes: what a disk fault looks like.
    await writeFile(blobPath(gw, victim.sha256), "X".repeat(victim.size));

    const s = await verify(api);
    expect(s).toMatchObject({ state: "done", blobs: 2, checked: 2, damaged: [victim.sha256] });
    expect(s.damaged).not.toContain(intact.sha256);
    const after = await api.json<{ entries: Entry[] }>("/api/cache/entries");
    expect(after.entries.map((e) => e.url)).toEqual([intact.url]);
    expect(await Bun.file(blobPath(gw, victim.sha256)).exists()).toBe(false);

    const res = await viaProxy(gw.proxyUrl, origin.url("/a/1.json"));
    expect(res.headers.get("x-cache")).toBe("MISS");
    expect(await res.text()).toBe("content of /a/1.json");
    expect(await fetchThrough(gw, origin, "/a/2.json")).toBe("HIT");
  });

  test("a blob file that disappeared is reported as damaged and its entry dropped", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const [e] = (await api.json<{ entries: Entry[] }>("/api/cache/entries")).entries;
    await rm(blobPath(gw, e!.sha256));
    const s = await verify(api);
    expect(s.damaged).toEqual([e!.sha256]);
    expect((await api.json<{ entries: Entry[] }>("/api/cache/entries")).entries).toEqual([]);
  });

  test("one damaged blob shared by two URLs drops both entries", async () => {
    const origin = startOrigin(() => new Response("same bytes", { headers: { "cache-control": "max-age=3600" } }));
    defer(() => origin.stop());
    const gw = await startTestGateway();
    defer(() => closeWhenIdle(gw));
    const api = admin(gw);
    await fill(gw, origin, ["/x.json", "/y.json"]);
    const { entries } = await api.json<{ entries: Entry[] }>("/api/cache/entries");
    expect(new Set(entries.map((e) => e.sha256)).size).toBe(1);
    await writeFile(blobPath(gw, entries[0]!.sha256), "SAME BYTES");
    const s = await verify(api);
    expect(s).toMatchObject({ blobs: 1, damaged: [entries[0]!.sha256] });
    expect((await api.json<{ entries: Entry[] }>("/api/cache/entries")).entries).toEqual([]);
  });

  /** A gateway holding one 64 MiB blob: long enough to hash that a verify is seen running. */
  async function bigCache() {
    const big = Buffer.alloc(64 * 1024 * 1024, 7);
    const origin = startOrigin(() => new Response(big, { headers: { "cache-control": "max-age=3600" } }));
    defer(() => origin.stop());
    const gw = await startTestGateway();
    defer(() => closeWhenIdle(gw));
    await fill(gw, origin, ["/big.iso"]);
    return { gw, api: admin(gw) };
  }

  test("the admin API keeps answering while a verify runs: the job is seen running, not finished before the POST returns", async () => {
    const { api } = await bigCache();
    expect((await api.send("POST", "/api/cache/verify")).status).toBe(202);
    expect(await api.json("/api/cache/verify")).toMatchObject({ state: "running", checked: 0 });
    const done = await eventually(
      async () => {
        const st = await api.json("/api/cache/verify");
        return st.state === "running" ? undefined : st;
      },
      "the verify job to finish",
      500,
    );
    expect(done).toMatchObject({ state: "done", blobs: 1, checked: 1, damaged: [] });
  });

  test("starting a verify while one is running gets 409 pointing at the status route", async () => {
    const { api } = await bigCache();
    const first = await api.send("POST", "/api/cache/verify");
    const second = await api.send("POST", "/api/cache/verify");
    expect(first.status).toBe(202);
    expect(second.status).toBe(409);
    expect((await jsonOf(second)).error).toContain("GET /api/cache/verify");
    await eventually(
      async () => ((await api.json("/api/cache/verify")).state === "running" ? undefined : true),
      "the verify job to finish",
      500,
    );
  });

  test("a second verify can run after the first finished and starts from a fresh report", async () => {
    const { origin, gw, api } = await setup();
    await fill(gw, origin, ["/a/1.json"]);
    const [e] = (await api.json<{ entries: Entry[] }>("/api/cache/entries")).entries;
    await writeFile(blobPath(gw, e!.sha256), "garbage");
    expect((await verify(api)).damaged).toEqual([e!.sha256]);
    expect(await verify(api)).toMatchObject({ state: "done", blobs: 0, checked: 0, damaged: [] });
  });
});
