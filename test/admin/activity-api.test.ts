import { afterAll, describe, expect, test } from "bun:test";
import { createServer } from "node:http";
import { admin, agentGet, agentRequest, closeWhenIdle, eventually } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { listenOnLoopback } from "../support/listen.ts";
import { startOrigin } from "../support/origin.ts";
import { gate, waitFor } from "../support/wait.ts";

const defer = cleanupAfterEach();
afterAll(killAllGatewayProcesses);

const cacheable = { "cache-control": "public, max-age=3600" };

/**
 * An origin that sends a cacheable body of `size` bytes with its
 * Content-Length, but only its first `first` bytes until `finish()`:
 * a download that stays in progress as long as the test needs.
 */
async function halfwayOrigin(size: number, first: number) {
  const release = gate();
  let asked = 0;
  const server = createServer(async (_req, res) => {
    asked++;
    res.writeHead(200, { ...cacheable, "content-length": String(size) });
    res.write(Buffer.alloc(first, 1));
    await release.opened;
    res.end(Buffer.alloc(size - first, 2));
  });
  const listening = await listenOnLoopback(server);
  defer(() => listening.stop());
  return {
    url: (path: string) => `http://localhost:${listening.port}${path}`,
    asked: () => asked,
    finish: () => release.open(),
  };
}

async function gateway() {
  const gw = await startTestGateway();
  defer(() => closeWhenIdle(gw));
  return gw;
}

describe("GET /api/downloads", () => {
  test("lists a download in progress with the bytes received so far and the Content-Length, then forgets it", async () => {
    const origin = await halfwayOrigin(30_000, 10_000);
    const gw = await gateway();
    const url = origin.url("/agent-setup.exe");

    const agent = agentRequest(gw.proxyUrl, url);
    const listed = await eventually(async () => {
      const { downloads } = await admin(gw).json("/api/downloads");
      return downloads[0]?.receivedBytes === 10_000 ? downloads : undefined;
    }, "the download to have received its first 10 000 bytes");
    expect(listed).toEqual([
      {
        url,
        state: "downloading",
        receivedBytes: 10_000,
        expectedBytes: 30_000,
        startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        cache: "platform",
      },
    ]);

    origin.finish();
    expect((await (await agent).body).length).toBe(30_000);
    await gw.idle();
    expect(await admin(gw).json("/api/downloads")).toEqual({ downloads: [] });
  });

  test("a fetch still waiting for the origin's answer is listed as asking, with nothing received", async () => {
    const answer = gate();
    const origin = startOrigin(async () => {
      await answer.opened;
      return new Response("late", { headers: cacheable });
    });
    defer(() => origin.stop());
    const gw = await gateway();
    const url = origin.url("/manifest.json");

    const pending = agentGet(gw.proxyUrl, url);
    await waitFor("the origin to be asked", () => origin.count() > 0);
    const { downloads } = await admin(gw).json("/api/downloads");
    expect(downloads).toMatchObject([{ url, state: "asking", receivedBytes: 0, expectedBytes: null }]);
    answer.open();
    expect((await pending).body.toString()).toBe("late");
  });

  test("needs the admin token", async () => {
    const gw = await gateway();
    const res = await fetch(`${gw.adminUrl}/api/downloads`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe("unauthorized");
  });
});

describe("GET /api/stats/top-objects", () => {
  async function servedTwoObjects() {
    const small = Buffer.alloc(1000, "m");
    const large = Buffer.alloc(5000, "i");
    const origin = startOrigin((req) => {
      const path = new URL(req.url).pathname;
      return new Response(path === "/manifest.json" ? small : large, { headers: cacheable });
    });
    defer(() => origin.stop());
    const gw = await gateway();
    const manifest = origin.url("/manifest.json");
    const installer = origin.url("/agent-setup.exe");
    for (const url of [manifest, installer]) {
      expect((await agentGet(gw.proxyUrl, url)).headers["x-cache"]).toBe("MISS");
      await gw.idle();
    }
    for (let i = 0; i < 3; i++) expect((await agentGet(gw.proxyUrl, manifest)).headers["x-cache"]).toBe("HIT");
    expect((await agentGet(gw.proxyUrl, installer)).headers["x-cache"]).toBe("HIT");
    // A range saves what it carries, not the whole object (RFC 9110 §14.2).
    const range = await agentGet(gw.proxyUrl, manifest, "127.0.0.1", { range: "bytes=0-99" });
    expect([range.status, range.body.length]).toEqual([206, 100]);
    return { gw, manifest, installer };
  }

  test("ranks objects by the bytes agents got from the cache, misses not counted, a range counting its bytes", async () => {
    const { gw, manifest, installer } = await servedTwoObjects();
    const { objects } = await admin(gw).json("/api/stats/top-objects");
    expect(objects).toEqual([
      { url: installer, responses: 1, bytesSaved: 5000, size: 5000, lastServed: expect.any(String) },
      { url: manifest, responses: 4, bytesSaved: 3100, size: 1000, lastServed: expect.any(String) },
    ]);
  });

  test("?limit= keeps the first ones; a purged object stays ranked with no size", async () => {
    const { gw, manifest, installer } = await servedTwoObjects();
    const res = await admin(gw).send("DELETE", `/api/cache/entries?url=${encodeURIComponent(installer)}`);
    expect(res.status).toBe(200);
    const { objects } = await admin(gw).json("/api/stats/top-objects?limit=1");
    expect(objects).toEqual([expect.objectContaining({ url: installer, bytesSaved: 5000, size: null })]);
    const both = await admin(gw).json("/api/stats/top-objects?limit=2");
    expect(both.objects.map((o: { url: string }) => o.url)).toEqual([installer, manifest]);
  });

  test("survives a restart: the figures are in SQLite, not only in memory", async () => {
    const { gw, installer } = await servedTwoObjects();
    const again = await gw.restart();
    defer(() => closeWhenIdle(again));
    const { objects } = await admin(again).json("/api/stats/top-objects?limit=1");
    expect(objects).toMatchObject([{ url: installer, bytesSaved: 5000 }]);
  });

  for (const [limit, rule] of [
    ["0", "limit must be from 1 to 100"],
    ["101", "limit must be from 1 to 100"],
    ["ten", "limit must be a whole number from 1 to 100"],
  ] as const) {
    test(`refuses ?limit=${limit} with a 400 that names the parameter`, async () => {
      const gw = await gateway();
      const res = await admin(gw).get(`/api/stats/top-objects?limit=${limit}`);
      expect(res.status).toBe(400);
      const body = await res.json();
      expect(body).toMatchObject({ code: "invalid_request", details: [{ path: "limit", message: rule }] });
    });
  }
});

describe("with workers", () => {
  test("the primary lists the downloads running in its workers, each with the worker that runs it", async () => {
    const origin = await halfwayOrigin(20_000, 5000);
    const gw = await startGatewayProcess({ env: { CACHEGATE_WORKERS: "2" } });
    defer(() => gw.close());
    const url = origin.url("/patches/KB5034441.msu");

    const agent = agentRequest(gw.proxyUrl, url);
    const listed = await eventually(async () => {
      const { downloads } = await gw.json("/api/downloads");
      return downloads[0]?.receivedBytes === 5000 ? downloads : undefined;
    }, "a worker's download to have received 5000 bytes");
    expect(listed).toEqual([
      expect.objectContaining({ url, state: "downloading", expectedBytes: 20_000, cache: "platform" }),
    ]);
    expect([1, 2]).toContain(listed[0].worker);

    origin.finish();
    expect((await (await agent).body).length).toBe(20_000);
    await gw.idle();
    expect((await gw.json("/api/downloads")).downloads).toEqual([]);
    expect(origin.asked()).toBe(1);
  }, 30_000);

  test("top objects count the hits every worker served", async () => {
    const origin = startOrigin(() => new Response(Buffer.alloc(2000, "x"), { headers: cacheable }));
    defer(() => origin.stop());
    const gw = await startGatewayProcess({ env: { CACHEGATE_WORKERS: "2" } });
    defer(() => gw.close());
    const url = origin.url("/manifest.json");
    expect((await agentGet(gw.proxyUrl, url)).headers["x-cache"]).toBe("MISS");
    await gw.idle();
    // Each agent opens its own connection: the kernel spreads them over both workers.
    for (let i = 0; i < 10; i++) expect((await agentGet(gw.proxyUrl, url)).headers["x-cache"]).toBe("HIT");
    const { objects } = await gw.json("/api/stats/top-objects");
    expect(objects).toMatchObject([{ url, responses: 10, bytesSaved: 20_000, size: 2000 }]);
  }, 30_000);
});
