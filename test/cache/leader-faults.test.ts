import { describe, expect, test } from "bun:test";
import { freshenFromHead } from "../../src/cache/revalidate.ts";
import { markEndUnproven } from "../../src/upstream/client.ts";
import { pipelineOver } from "../support/cache-core.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { pushedBody } from "../support/origin.ts";
import { gate, waitFor, within } from "../support/wait.ts";

/**
 * Whatever goes wrong for the request that leads a fetch, the requests
 * waiting on it get an answer (the response, or the error), never silence,
 * and the URL can be fetched again afterwards.
 */
const defer = cleanupAfterEach();
const U = "http://origin.test";

async function setup(answer: (req: Request, call: number) => Response | Promise<Response>) {
  const parts = await pipelineOver(defer, answer);
  return { ...parts, get: (path: string) => parts.pipeline.handle(new Request(U + path)) };
}

describe("a leader that fails after the response head", () => {
  test("a Vary naming an invalid field is not stored, and the next request is answered too", async () => {
    const t = await setup(
      () => new Response("body", { headers: { "cache-control": "max-age=60", vary: "User Agent" } }),
    );
    expect((await t.get("/a")).headers.get("x-cache")).toBe("MISS");
    const again = await within(2000, "the second request", t.get("/a"));
    expect(await again.text()).toBe("body");
    expect(t.pipeline.inFlight()).toBe(0);
    expect(t.upstream.calls()).toBe(2);
  });

  test("when storing the revalidation fails, the waiting requests get the error and the URL is not wedged", async () => {
    const held = gate();
    const t = await setup(async (_req, call) => {
      if (call === 2) await held.opened;
      return call === 1
        ? new Response("v1", { headers: { "cache-control": "max-age=60", etag: '"v1"' } })
        : new Response(null, { status: 304, headers: { etag: '"v1"' } });
    });
    await (await t.get("/a")).text();
    await waitFor("the first download to land", () => t.pipeline.inFlight() === 0);
    t.clock.advance(61_000);
    t.index.refresh = () => {
      throw new Error("database or disk is full");
    };
    const failure = (p: Promise<Response>) =>
      p.then(
        () => undefined,
        (err: Error) => err.message,
      );
    const leader = failure(t.get("/a"));
    await waitFor("the conditional request to go out", () => t.upstream.calls() === 2);
    const waiting = failure(t.get("/a"));
    await waitFor("the second request to wait on the first", () => t.pipeline.waiting() === 1);
    held.open();
    expect(await leader).toBe("database or disk is full");
    expect(await within(2000, "the waiting request", waiting)).toBe("database or disk is full");
    expect(t.pipeline.inFlight()).toBe(0);
  });
});

describe("a body whose end cannot be proven", () => {
  test("a close-delimited response over TLS is relayed whole but not stored (RFC 9112 §9.8)", async () => {
    const t = await setup(() => {
      const res = new Response("manifest", { headers: { "cache-control": "max-age=60" } });
      markEndUnproven(res);
      return res;
    });
    const first = await t.get("/m.json");
    expect([first.headers.get("x-cache"), await first.text()]).toEqual(["MISS", "manifest"]);
    expect(t.index.lookup(`${U}/m.json`, new Headers())).toBeUndefined();
    expect((await t.get("/m.json")).headers.get("x-cache")).toBe("MISS");
  });
});

describe("RFC 9111 §4.3.5: a HEAD response and the stored GET response", () => {
  const storedAnd = async (head: Record<string, string>, requestHeaders: Record<string, string> = {}) => {
    const t = await setup(
      () => new Response("body", { headers: { etag: '"v1"', "cache-control": "max-age=60", "x-meta": "a" } }),
    );
    await (await t.get("/m.json")).text();
    await waitFor("the body to be stored", () => t.pipeline.inFlight() === 0);
    const req = new Request(`${U}/m.json`, { method: "HEAD", headers: requestHeaders });
    await freshenFromHead(t.index, req, new Response(null, { headers: head }), t.clock.now);
    return t.index.lookup(`${U}/m.json`, new Headers());
  };

  test("matching validators and length update the stored response's fields", async () => {
    const entry = await storedAnd({ etag: '"v1"', "content-length": "4", "x-meta": "b" });
    expect(entry?.headers.get("x-meta")).toBe("b");
  });

  test("a response that now says private is no longer kept", async () => {
    expect(await storedAnd({ etag: '"v1"', "cache-control": "private" })).toBeUndefined();
  });

  test("another validator, or another length, means the stored response is out of date: it goes", async () => {
    expect(await storedAnd({ etag: '"v2"' })).toBeUndefined();
    expect(await storedAnd({ etag: '"v1"', "content-length": "5" })).toBeUndefined();
  });
});

describe("revalidating a response that is still downloading", () => {
  test("a 304 that arrives after the download ended and its readers left still serves the whole body", async () => {
    const bodyGate = gate();
    const conditionalGate = gate();
    const t = await setup(async (req) => {
      if (req.headers.get("if-none-match") === '"d1"') {
        await conditionalGate.opened;
        return new Response(null, { status: 304, headers: { etag: '"d1"', "cache-control": "max-age=0" } });
      }
      const body = pushedBody();
      body.push(new TextEncoder().encode("first part;"));
      void bodyGate.opened.then(() => {
        body.push(new TextEncoder().encode("rest"));
        body.end();
      });
      return new Response(body.stream, { headers: { etag: '"d1"', "cache-control": "max-age=0" } });
    });
    const first = await t.get("/data");
    const later = t.get("/data"); // the download is not fresh for it: a conditional request goes out
    await waitFor("the conditional request to go out", () => t.upstream.calls() === 2);
    bodyGate.open();
    expect(await first.text()).toBe("first part;rest");
    await waitFor("the download to land", () => t.pipeline.inFlight() === 1); // only the conditional request
    conditionalGate.open();
    const res = await later;
    expect([res.headers.get("x-cache"), await res.text()]).toEqual(["REVALIDATED", "first part;rest"]);
  });

  test("a 304 that now says private answers its own request, and is not shared with the next one", async () => {
    const release = gate();
    const t = await setup(async (req) => {
      if (req.headers.get("if-none-match") === '"d1"') {
        return new Response(null, { status: 304, headers: { etag: '"d1"', "cache-control": "private, max-age=60" } });
      }
      const body = pushedBody();
      body.push(new TextEncoder().encode("part;"));
      void release.opened.then(() => body.end());
      return new Response(body.stream, { headers: { etag: '"d1"', "cache-control": "max-age=0" } });
    });
    const first = await t.get("/data");
    const second = await t.get("/data");
    expect(second.headers.get("x-cache")).toBe("REVALIDATED");
    const third = await t.get("/data");
    expect(third.headers.get("x-cache")).not.toBe("HIT");
    release.open();
    for (const res of [first, second, third]) expect(await res.text()).toBe("part;");
  });
});
