import { describe, expect, test } from "bun:test";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { startTestGateway, type TestGatewayOptions } from "../support/gateway.ts";
import { pushedBody, startOrigin, viaProxy } from "../support/origin.ts";
import { gate, waitFor } from "../support/wait.ts";

/**
 * RFC 9111 rules for a shared cache that need the whole gateway to show:
 * each case names its section. A real gateway, a scripted origin, and a
 * clock the test moves instead of sleeping.
 */
const defer = cleanupAfterEach();

/** `handler` gets the gateway's clock, to send a Date that agrees with it. */
async function setup(
  handler: (req: Request, clock: ReturnType<typeof manualClock>) => Response | Promise<Response>,
  opts: TestGatewayOptions = {},
) {
  const clock = manualClock();
  const origin = startOrigin((req) => handler(req, clock));
  defer(() => origin.stop());
  const gw = await startTestGateway({ now: clock.now, ...opts });
  defer(() => gw.close());
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    viaProxy(gw.proxyUrl, origin.url(path), { headers, method });
  return { clock, origin, gw, get };
}

const label = (res: Response) => res.headers.get("x-cache");

/** An origin that sends the head at once and holds the body until the test releases it. */
function heldBody(headers: () => Record<string, string>) {
  const release = gate();
  return {
    release,
    handler: () => {
      const body = pushedBody();
      body.push(new TextEncoder().encode("first part;"));
      void release.opened.then(() => {
        body.push(new TextEncoder().encode("rest"));
        body.end();
      });
      return new Response(body.stream, { headers: headers() });
    },
  };
}

describe("§4, §4.2: a response is reused only while fresh, also while it is still downloading", () => {
  const date = () => new Date().toUTCString();
  test.each<[string, () => Record<string, string>, string, number]>([
    [
      "a response fresh for a minute is a HIT for a request after its head",
      () => ({ "cache-control": "max-age=60" }),
      "HIT",
      1,
    ],
    [
      "Expires equal to Date was never fresh: a request after its head asks upstream (§4.2.1)",
      () => ({ date: date(), expires: date() }),
      "MISS",
      2,
    ],
    [
      "an Age larger than Expires − Date was never fresh either (§4.2.3)",
      () => ({ date: date(), expires: date(), age: "30" }),
      "MISS",
      2,
    ],
  ])("%s", async (_name, headers, expected, upstream) => {
    const held = heldBody(headers);
    const { origin, gw, get } = await setup(held.handler);
    const first = await get("/m.json");
    expect(label(first)).toBe("MISS");
    const second = await get("/m.json"); // the first one's head has arrived; its body has not
    expect(label(second)).toBe(expected);
    held.release.open();
    expect(await first.text()).toBe("first part;rest");
    expect(await second.text()).toBe("first part;rest");
    expect(origin.count()).toBe(upstream);
    await gw.idle();
  });

  test("a download not fresh for a later request is revalidated with its validators, not downloaded again (§4.3)", async () => {
    const release = gate();
    const { origin, gw, get } = await setup((req) => {
      if (req.headers.get("if-none-match") === '"d1"') {
        return new Response(null, { status: 304, headers: { etag: '"d1"', "cache-control": "max-age=0" } });
      }
      const body = pushedBody();
      body.push(new TextEncoder().encode("first part;"));
      void release.opened.then(() => {
        body.push(new TextEncoder().encode("rest"));
        body.end();
      });
      return new Response(body.stream, { headers: { etag: '"d1"', "cache-control": "max-age=0" } });
    });
    const first = await get("/data");
    const later = [await get("/data"), await get("/data"), await get("/data")];
    expect(later.map(label)).toEqual(["REVALIDATED", "REVALIDATED", "REVALIDATED"]);
    release.open();
    for (const res of [first, ...later]) expect(await res.text()).toBe("first part;rest");
    const conditional = origin.requests.filter((r) => r.headers.get("if-none-match") === '"d1"');
    expect([origin.count(), conditional.length]).toEqual([4, 3]); // one download, three 304s
    await gw.idle();
  });

  test("requests already waiting when the head arrives share it, even a zero-lifetime one (collapsed forwarding, §4)", async () => {
    const head = gate();
    const { origin, gw, get } = await setup(async () => {
      await head.opened;
      return new Response("shared", { headers: { "cache-control": "max-age=0" } });
    });
    const all = [get("/m.json"), get("/m.json"), get("/m.json")];
    await waitFor("two requests on the waiting list", () => gw.pipeline.waiting() === 2);
    head.open();
    const responses = await Promise.all(all);
    expect(responses.map(label).sort()).toEqual(["COALESCED", "COALESCED", "MISS"]);
    for (const res of responses) expect(await res.text()).toBe("shared");
    expect(origin.count()).toBe(1);
  });
});

describe("§4.3.4, §3.2: freshening with a 304", () => {
  test("a 304 that carries Set-Cookie freshens the stored response and serves it; the cookie is never stored", async () => {
    const { clock, gw, get } = await setup((req, clock) =>
      req.headers.get("if-none-match") === '"v1"'
        ? new Response(null, {
            status: 304,
            headers: {
              etag: '"v1"',
              date: new Date(clock.now()).toUTCString(),
              "cache-control": "max-age=60",
              "x-meta": "b",
              "set-cookie": "s=1",
            },
          })
        : new Response("body", { headers: { etag: '"v1"', "cache-control": "max-age=60", "x-meta": "a" } }),
    );
    await (await get("/m.json")).text();
    await gw.idle();
    clock.advance(61_000);
    const revalidated = await get("/m.json");
    expect([revalidated.status, label(revalidated), revalidated.headers.get("x-meta")]).toEqual([
      200,
      "REVALIDATED",
      "b",
    ]);
    expect(await revalidated.text()).toBe("body");
    const hit = await get("/m.json");
    expect([label(hit), hit.headers.get("x-meta"), hit.headers.get("set-cookie")]).toEqual(["HIT", "b", null]);
  });
});

describe("RFC 9112 §6: framing as the origin sends it", () => {
  test("a response with an explicit Transfer-Encoding: chunked header is relayed whole and stored", async () => {
    const { gw, get } = await setup(
      () => new Response("chunky body", { headers: { "transfer-encoding": "chunked", "cache-control": "max-age=60" } }),
    );
    const first = await get("/te.bin");
    expect([first.status, await first.text()]).toEqual([200, "chunky body"]);
    await gw.idle();
    const hit = await get("/te.bin");
    expect([label(hit), hit.headers.get("content-length"), await hit.text()]).toEqual(["HIT", "11", "chunky body"]);
  });
});

describe("§4.3.5: a HEAD response freshens the stored GET response", () => {
  async function storedThenHead(headHeaders: Record<string, string>) {
    const t = await setup((req) =>
      req.method === "HEAD"
        ? new Response(null, { headers: { "cache-control": "max-age=60", ...headHeaders } })
        : new Response("body", { headers: { etag: '"v1"', "cache-control": "max-age=60", "x-meta": "a" } }),
    );
    await (await t.get("/m.json")).text();
    await t.gw.idle();
    // A HEAD that must not be answered from the cache goes upstream as a HEAD.
    const head = await t.get("/m.json", { "cache-control": "no-store" }, "HEAD");
    expect(head.status).toBe(200);
    return t;
  }

  test("with the same validator, a HEAD sent with no-store leaves the stored response as it was (§5.2.1.5)", async () => {
    const t = await storedThenHead({ etag: '"v1"', "x-meta": "b", "content-length": "4" });
    const hit = await t.get("/m.json");
    expect([label(hit), hit.headers.get("x-meta"), await hit.text()]).toEqual(["HIT", "a", "body"]);
    expect(t.origin.count()).toBe(2);
  });

  test("with another validator the stored response is out of date and goes", async () => {
    const t = await storedThenHead({ etag: '"v2"', "x-meta": "b" });
    expect(label(await t.get("/m.json"))).toBe("MISS");
    expect(t.origin.count()).toBe(3);
  });
});

describe("§5.2.2.3: must-understand", () => {
  test.each<[string, number, string]>([
    ["no-store, must-understand on a status the cache implements is stored", 200, "HIT"],
    ["must-understand on a status the cache does not implement is not stored", 299, "MISS"],
  ])("%s", async (_name, status, expected) => {
    const { gw, get } = await setup(
      () => new Response("x", { status, headers: { "cache-control": "no-store, must-understand, max-age=60" } }),
    );
    await (await get("/m.json")).text();
    await gw.idle();
    expect(label(await get("/m.json"))).toBe(expected);
  });
});

describe("§4.1: Vary, with Accept-Encoding normalised", () => {
  test("requests whose Accept-Encoding differs only in order, case or spaces share one variant; another coding does not", async () => {
    const { origin, gw, get } = await setup(
      (req) =>
        new Response(`for ${req.headers.get("accept-encoding")}`, {
          headers: { "cache-control": "max-age=60", vary: "Accept-Encoding" },
        }),
    );
    await (await get("/m.json", { "accept-encoding": "gzip, deflate" })).text();
    await gw.idle();
    for (const value of ["deflate,gzip", "GZIP ,  Deflate"]) {
      expect(label(await get("/m.json", { "accept-encoding": value }))).toBe("HIT");
    }
    expect(label(await get("/m.json", { "accept-encoding": "br" }))).toBe("MISS");
    expect(origin.count()).toBe(2);
  });
});
