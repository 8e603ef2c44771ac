import { describe, expect, test } from "bun:test";
import type { ConfigInput } from "../../src/config/schema.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin, viaProxy } from "../support/origin.ts";
import { gate, waitFor } from "../support/wait.ts";

/**
 * RFC 5861 for a cache in front of slow, distant origins: stale entries
 * served while they revalidate (§3), or when the origin fails (§4), and the
 * operator's own background refresh for URLs whose origin says neither.
 * Each case names its section; time is a clock the test moves.
 */
const defer = cleanupAfterEach();

/** An origin answering with `respond(req, call)`, dated by the gateway's clock (so ages agree with it). */
async function setup(respond: (req: Request, call: number) => Response | Promise<Response>, config: ConfigInput = {}) {
  const clock = manualClock();
  let calls = 0;
  const origin = startOrigin(async (req) => {
    const res = await respond(req, ++calls);
    res.headers.set("date", new Date(clock.now()).toUTCString());
    return res;
  });
  defer(() => origin.stop());
  const gw = await startTestGateway({ now: clock.now, config });
  defer(() => gw.close());
  const get = async (headers: Record<string, string> = {}) => {
    const res = await viaProxy(gw.proxyUrl, origin.url("/manifest.json"), { headers });
    return {
      label: res.headers.get("x-cache"),
      age: res.headers.get("age"),
      status: res.status,
      body: await res.text(),
    };
  };
  /** The first response, stored; then the clock moves `seconds` on. */
  const storeThenWait = async (seconds: number) => {
    expect((await get()).label).toBe("MISS");
    await gw.idle();
    clock.advance(seconds * 1000);
  };
  return { clock, origin, gw, get, storeThenWait };
}

const versioned = (cacheControl: string) => (_req: Request, call: number) =>
  new Response(`v${call}`, { headers: { "cache-control": cacheControl } });

describe("§3 stale-while-revalidate", () => {
  test("inside the window the stale entry is served at once, and one background revalidation refreshes it", async () => {
    const answer = gate();
    const t = await setup(async (req, call) => {
      if (call > 1) await answer.opened; // the origin is slow: nobody may wait for it
      return versioned("max-age=60, stale-while-revalidate=30")(req, call);
    });
    await t.storeThenWait(70);
    const served = await Promise.all([t.get(), t.get(), t.get()]);
    for (const r of served) expect([r.label, r.body, r.age]).toEqual(["UPDATING", "v1", "70"]);
    await waitFor("the one background revalidation to reach the origin", () => t.origin.count() === 2);
    answer.open();
    await waitFor("the refreshed entry to land", () => t.gw.pipeline.inFlight() === 0);
    expect([(await t.get()).label, (await t.get()).body]).toEqual(["HIT", "v2"]);
    expect(t.origin.count()).toBe(2);
  });

  test("past the window the entry is revalidated as usual, and the agent waits for it", async () => {
    const t = await setup(versioned("max-age=60, stale-while-revalidate=30"));
    await t.storeThenWait(95);
    expect(await t.get()).toMatchObject({ label: "MISS", body: "v2" });
  });

  test("must-revalidate wins over stale-while-revalidate (RFC 9111 §4.2.4)", async () => {
    const t = await setup(versioned("max-age=60, stale-while-revalidate=30, must-revalidate"));
    await t.storeThenWait(70);
    expect(await t.get()).toMatchObject({ label: "MISS", body: "v2" });
  });

  test("an agent asking for a validated answer (no-cache) is not served stale", async () => {
    const t = await setup(versioned("max-age=60, stale-while-revalidate=30"));
    await t.storeThenWait(70);
    expect(await t.get({ "cache-control": "no-cache" })).toMatchObject({ label: "MISS", body: "v2" });
  });
});

describe("background refresh as an operator setting (nginx's proxy_cache_background_update)", () => {
  const rule = { pattern: "manifest", min: 0, lmFactor: 0.1, max: 3600, staleWhileRevalidate: 300 };

  test("a TTL rule's staleWhileRevalidate serves matching stale entries while they refresh, with no directive from the origin", async () => {
    const t = await setup(versioned("max-age=60"), { cache: { ttlRules: [rule] } });
    await t.storeThenWait(120);
    expect(await t.get()).toMatchObject({ label: "UPDATING", body: "v1" });
    await waitFor("the background refresh to land", () => t.origin.count() === 2 && t.gw.pipeline.inFlight() === 0);
    expect(await t.get()).toMatchObject({ label: "HIT", body: "v2" });
  });

  test("an origin's no-cache still forbids it", async () => {
    const t = await setup(versioned("no-cache"), { cache: { ttlRules: [rule] } });
    await t.storeThenWait(1);
    expect((await t.get()).label).not.toBe("UPDATING");
  });
});

describe("§4 stale-if-error", () => {
  const failingAfterFirst =
    (cacheControl: string, status = 503) =>
    (req: Request, call: number) =>
      call === 1 ? versioned(cacheControl)(req, call) : new Response("down", { status });

  test.each<[string, string, number, string, number]>([
    [
      "inside the response's stale-if-error a 5xx gets the stale entry",
      "max-age=60, stale-if-error=30",
      80,
      "STALE",
      200,
    ],
    ["past the response's stale-if-error the 5xx is passed on", "max-age=60, stale-if-error=30", 100, "MISS", 503],
  ])("%s", async (_name, cacheControl, seconds, label, status) => {
    const t = await setup(failingAfterFirst(cacheControl));
    await t.storeThenWait(seconds);
    expect(await t.get()).toMatchObject({ label, status });
  });

  test("a request's stale-if-error sets its own limit, also where the operator turned serving stale off", async () => {
    const t = await setup(failingAfterFirst("max-age=60"), { cache: { serveStaleOnError: false } });
    await t.storeThenWait(80);
    expect(await t.get()).toMatchObject({ status: 503 }); // the setting: no stale without a directive
    expect(await t.get({ "cache-control": "stale-if-error=60" })).toMatchObject({ label: "STALE", body: "v1" });
    expect(await t.get({ "cache-control": "stale-if-error=5" })).toMatchObject({ status: 503 });
  });

  test("without a directive, a stale entry stands in for a failing origin (cache.serveStaleOnError, the default)", async () => {
    const t = await setup(failingAfterFirst("max-age=60"));
    await t.storeThenWait(3600);
    expect(await t.get()).toMatchObject({ label: "STALE", status: 200, body: "v1" });
  });
});
