import { describe, expect, spyOn, test } from "bun:test";
import { admin, eventually } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { startTestGateway, type TestGateway, type TestGatewayOptions } from "../support/gateway.ts";
import { type Origin, startOrigin } from "../support/origin.ts";
import { basic, startPatchGateway } from "../support/patch.ts";
import { type RawResponse, rawExchange } from "../support/raw-http.ts";
import { exchange, openTunnel } from "../support/tls-clients.ts";

/**
 * Small fresh hits are answered by the request handler's fast path
 * (src/proxy/fast-hit.ts), without a Request, a Response or the Hono app.
 * What an agent gets must not tell the two paths apart, and every rule the
 * app applies (domain policy, Patch Mode's agents only, RFC 9111 freshness,
 * purges, stats) must hold for a URL that is cached. Whether the app was
 * asked shows in the pipeline's handle(): the fast path never calls it.
 */
const defer = cleanupAfterEach();

const BODY = crypto.getRandomValues(new Uint8Array(10 * 1024));
const HEADERS = {
  "cache-control": "max-age=60",
  "content-type": "application/octet-stream",
  etag: '"v1"',
  "last-modified": "Tue, 01 Oct 2024 10:00:00 GMT",
  "x-vendor": "kept as stored",
};

/** A 10 KiB object, fresh for 60 s, behind a test gateway; `opts` may depend on the origin (its port). */
async function setup(
  opts: TestGatewayOptions | ((origin: Origin) => TestGatewayOptions) = {},
): Promise<{ origin: Origin; gw: TestGateway }> {
  const origin = startOrigin(() => new Response(BODY, { headers: HEADERS }));
  defer(() => origin.stop());
  const gw = await startTestGateway(typeof opts === "function" ? opts(origin) : opts);
  defer(() => gw.close());
  return { origin, gw };
}

/** One request on its own connection, every byte of the answer kept (field order and case too). */
function ask(gw: TestGateway, url: string, extra: Record<string, string> = {}, method = "GET"): Promise<RawResponse> {
  const fields = Object.entries({ host: new URL(url).host, ...extra, connection: "close" });
  const head = fields.map(([name, value]) => `${name}: ${value}\r\n`).join("");
  return rawExchange(gw.proxyPort, `${method} ${url} HTTP/1.1\r\n${head}\r\n`);
}

/** Stores the URL's response (a MISS) and waits until it is committed, so the next request can be a HIT. */
async function cache(gw: TestGateway, url: string, extra: Record<string, string> = {}): Promise<void> {
  const first = await ask(gw, url, extra);
  expect([first.status, first.header("x-cache")]).toEqual([200, "MISS"]);
  await gw.idle();
}

/** The fields of a response, in order, without the ones that may change between two requests. */
const comparable = (res: RawResponse) => res.fields.filter(([name]) => !["date", "age"].includes(name.toLowerCase()));

describe("a small fresh hit", () => {
  test("is answered without the proxy app, with the status, head and body the app sends for the same hit", async () => {
    const { origin, gw } = await setup();
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    const handle = spyOn(gw.pipeline, "handle");
    const fast = await ask(gw, url);
    expect(handle).toHaveBeenCalledTimes(0);
    // A conditional request the stored ETag does not match is left to the app, which answers it in full.
    const slow = await ask(gw, url, { "if-none-match": '"other"' });
    expect(handle).toHaveBeenCalledTimes(1);

    expect([fast.status, fast.header("x-cache")]).toEqual([200, "HIT"]);
    expect(fast.header("age")).toMatch(/^\d+$/); // RFC 9111 §5.1; its value depends on when the test runs
    expect(comparable(fast)).toEqual(comparable(slow));
    expect(comparable(fast).map(([name]) => name)).toContain("x-vendor");
    expect(fast.status).toBe(slow.status);
    expect(Buffer.compare(fast.body, Buffer.from(BODY))).toBe(0);
    expect(Buffer.compare(fast.body, slow.body)).toBe(0);
    expect(origin.count()).toBe(1);
  });

  test("answers a HEAD without the proxy app, with the app's head and no body", async () => {
    const { origin, gw } = await setup();
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    const handle = spyOn(gw.pipeline, "handle");
    const fast = await ask(gw, url, {}, "HEAD");
    expect(handle).toHaveBeenCalledTimes(0);
    const slow = await ask(gw, url, { "if-none-match": '"other"' }, "HEAD");
    expect(handle).toHaveBeenCalledTimes(1);

    expect([fast.status, fast.header("x-cache"), fast.header("content-length")]).toEqual([200, "HIT", "10240"]);
    expect(comparable(fast)).toEqual(comparable(slow));
    expect([fast.body.length, slow.body.length]).toEqual([0, 0]);
  });

  test("inside a CONNECT tunnel is answered without the proxy app too", async () => {
    const { origin, gw } = await setup((o) => ({ config: { connect: { ports: [443, o.port] } } }));
    const authority = `localhost:${origin.port}`;
    const inTunnel = async () => {
      const tunnel = await openTunnel(gw.proxyPort, authority);
      try {
        return await exchange(tunnel, `GET /tunnel.bin HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
      } finally {
        tunnel.destroy();
      }
    };
    expect((await inTunnel()).headers.get("x-cache")).toBe("MISS");
    await gw.idle();
    const handle = spyOn(gw.pipeline, "handle");
    const hit = await inTunnel();
    expect([hit.status, hit.headers.get("x-cache")]).toEqual([200, "HIT"]);
    expect(Buffer.compare(hit.body, Buffer.from(BODY))).toBe(0);
    expect(handle).toHaveBeenCalledTimes(0);
    expect(origin.count()).toBe(1);
  });

  test("is counted by GET /api/stats as a hit, its bytes as served from the cache", async () => {
    const { origin, gw } = await setup();
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    const handle = spyOn(gw.pipeline, "handle");
    await ask(gw, url);
    await ask(gw, url);
    expect(handle).toHaveBeenCalledTimes(0);
    const stats = await eventually(async () => {
      const s = await admin(gw).json("/api/stats");
      return s.requests === 3 ? s : undefined;
    }, "the stats to count three requests");
    expect([stats.misses, stats.hits]).toEqual([1, 2]);
    expect(stats.bytesServed).toBe(3 * BODY.length);
    expect(stats.bytesFromCache).toBe(2 * BODY.length);
  });

  test("leaves Range and matching conditional requests to the app: 206 and 304, from the cache", async () => {
    const { origin, gw } = await setup();
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    const range = await ask(gw, url, { range: "bytes=0-99" });
    expect([range.status, range.header("content-range"), range.body.length]).toEqual([206, "bytes 0-99/10240", 100]);
    const notModified = await ask(gw, url, { "if-none-match": '"v1"' });
    expect([notModified.status, notModified.header("x-cache")]).toEqual([304, "HIT"]);
    expect(origin.count()).toBe(1);
  });
});

describe("a URL that is cached still obeys", () => {
  test("the domain policy: once its host is no longer a platform domain it is refused with 403", async () => {
    const { origin, gw } = await setup({ config: { platformDomains: ["localhost", "qualys.com"] } });
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    expect((await admin(gw).patch({ platformDomains: ["qualys.com"] })).status).toBe(200);
    const refused = await ask(gw, url);
    expect(refused.status).toBe(403);
    expect(refused.body.toString()).toContain("localhost is not a domain this gateway may reach");
    expect(origin.count()).toBe(1);
  });

  test("Patch Mode's agents only: without credentials 407, with them a HIT, and not once revoked", async () => {
    const origin = startOrigin(() => new Response(BODY, { headers: HEADERS }));
    defer(() => origin.stop());
    const gw = await startPatchGateway();
    defer(() => gw.close());
    const agent = await gw.issueAgent("branch-office-7");
    const credentials = { "proxy-authorization": basic(agent.username, agent.password) };
    const url = origin.url("/manifest.bin");
    await cache(gw, url, credentials);

    const handle = spyOn(gw.pipeline, "handle");
    const anonymous = await ask(gw, url);
    expect(anonymous.status).toBe(407);
    expect(anonymous.header("proxy-authenticate")).toMatch(/^Basic realm="[^"]+"/);
    const wrong = await ask(gw, url, { "proxy-authorization": basic(agent.username, "not-the-password") });
    expect(wrong.status).toBe(407);
    const admitted = await ask(gw, url, credentials);
    expect([admitted.status, admitted.header("x-cache")]).toEqual([200, "HIT"]);
    expect(handle).toHaveBeenCalledTimes(0);

    expect((await admin(gw).send("DELETE", `/api/agents/${agent.id}`)).status).toBe(200);
    expect((await ask(gw, url, credentials)).status).toBe(407);
    expect(origin.count()).toBe(1);
  });

  test("RFC 9111 freshness: once stale it is revalidated with the origin, not served from memory", async () => {
    const clock = manualClock();
    const { origin, gw } = await setup({ now: clock.now });
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    clock.advance(61_000); // past max-age=60 (RFC 9111 §4.2)
    const stale = await ask(gw, url);
    expect(stale.status).toBe(200);
    expect(stale.header("x-cache")).not.toBe("HIT");
    expect(origin.count()).toBe(2);
    expect(origin.requests[1]?.headers.get("if-none-match")).toBe('"v1"');
  });

  test("the request's own Cache-Control: no-cache sends it to the origin (RFC 9111 §5.2.1.4)", async () => {
    const { origin, gw } = await setup();
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    const res = await ask(gw, url, { "cache-control": "no-cache" });
    expect(res.header("x-cache")).not.toBe("HIT");
    expect(origin.count()).toBe(2);
  });

  test("a purge: the next request goes to the origin", async () => {
    const { origin, gw } = await setup();
    const url = origin.url("/manifest.bin");
    await cache(gw, url);
    const purge = await admin(gw).send("DELETE", `/api/cache/entries?url=${encodeURIComponent(url)}`);
    expect(await purge.json()).toEqual({ purged: 1 });
    const after = await ask(gw, url);
    expect([after.status, after.header("x-cache")]).toEqual([200, "MISS"]);
    expect(origin.count()).toBe(2);
  });
});
