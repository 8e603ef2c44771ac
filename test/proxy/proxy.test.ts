import { describe, expect, test } from "bun:test";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGatewayOptions } from "../support/gateway.ts";
import { startOrigin, viaProxy } from "../support/origin.ts";
import { parseResponse, rawExchange } from "../support/raw-http.ts";

const defer = cleanupAfterEach();
const FRESH = { "cache-control": "max-age=60" };

async function setup(
  handler: (req: Request) => Response | Promise<Response> = () => new Response("ok", { headers: FRESH }),
  opts: TestGatewayOptions = {},
) {
  const origin = startOrigin(handler);
  defer(() => origin.stop());
  const gw = await startTestGateway(opts);
  defer(() => gw.close());
  return { origin, gw };
}

describe("real clients", () => {
  /** `curl -x`, as the README tells a newcomer to run it; only PATH is passed, so no *_proxy or no_proxy setting interferes. */
  async function curlVia(proxyUrl: string, url: string) {
    const child = Bun.spawn(["curl", "-s", "-i", "-x", proxyUrl, url], {
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    const [code, out] = await Promise.all([child.exited, new Response(child.stdout).arrayBuffer()]);
    expect(code).toBe(0);
    return parseResponse(Buffer.from(out));
  }

  test("curl -x gets the first download fetched upstream and the second served from the cache", async () => {
    const { origin, gw } = await setup(
      () => new Response("agent installer bytes", { headers: { "cache-control": "max-age=3600" } }),
    );
    const first = await curlVia(gw.proxyUrl, origin.url("/agent/setup.exe"));
    expect([first.status, first.header("x-cache"), first.body.toString()]).toEqual([
      200,
      "MISS",
      "agent installer bytes",
    ]);
    await gw.idle();
    const second = await curlVia(gw.proxyUrl, origin.url("/agent/setup.exe"));
    expect([second.status, second.header("x-cache"), second.body.toString()]).toEqual([
      200,
      "HIT",
      "agent installer bytes",
    ]);
    expect(origin.count()).toBe(1);
  });
});

describe("connection security", () => {
  test("a host outside the platform domains gets 403 naming CACHEGATE_PLATFORM_DOMAINS, and is never contacted", async () => {
    const { origin, gw } = await setup();
    // 127.0.0.1 is the origin's address, but not a platform domain (only `localhost` is).
    const res = await viaProxy(gw.proxyUrl, `http://127.0.0.1:${origin.port}/agent.exe`);
    expect(res.status).toBe(403);
    const text = await res.text();
    expect(text).toContain("CACHEGATE_PLATFORM_DOMAINS");
    expect(text).toContain("127.0.0.1");
    expect(origin.count()).toBe(0);
  });

  test("a POST to a host outside the platform domains is refused too", async () => {
    const { origin, gw } = await setup();
    const res = await viaProxy(gw.proxyUrl, `http://127.0.0.1:${origin.port}/upload`, { method: "POST", body: "data" });
    expect(res.status).toBe(403);
    expect(origin.count()).toBe(0);
  });

  test("without private upstreams allowed, a platform name that resolves to 127.0.0.1 gets 403 naming CACHEGATE_ALLOW_PRIVATE_UPSTREAMS", async () => {
    const { origin, gw } = await setup(undefined, { allowPrivate: false });
    const res = await viaProxy(gw.proxyUrl, origin.url("/agent.exe"));
    expect(res.status).toBe(403);
    const text = await res.text();
    expect(text).toContain("CACHEGATE_ALLOW_PRIVATE_UPSTREAMS");
    expect(text).toContain("loopback");
    expect(origin.count()).toBe(0);
  });

  test("without private upstreams allowed, a non-GET to a loopback platform name is refused too", async () => {
    const { origin, gw } = await setup(undefined, { allowPrivate: false });
    const res = await viaProxy(gw.proxyUrl, origin.url("/upload"), { method: "PUT", body: "data" });
    expect(res.status).toBe(403);
    expect(origin.count()).toBe(0);
  });

  test("a request aimed at the gateway's own proxy port is refused even with private upstreams allowed", async () => {
    const { gw } = await setup();
    const res = await viaProxy(gw.proxyUrl, `http://localhost:${gw.proxyPort}/anything`);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("own listener");
  });

  test("a request aimed at the gateway's admin port is refused even with private upstreams allowed", async () => {
    const { gw } = await setup();
    const res = await viaProxy(gw.proxyUrl, `http://localhost:${gw.adminPort}/healthz`);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("own listener");
  });
});

describe("request forms", () => {
  test("an origin-form request on the proxy port gets 400 explaining how to use the gateway as a proxy", async () => {
    const { origin, gw } = await setup();
    const res = await fetch(`${gw.proxyUrl}/agent.exe`);
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text).toContain("proxy");
    expect(text).toContain("curl -x");
    expect(text).toContain("https_proxy");
    expect(origin.count()).toBe(0);
  });

  test("a request line the server cannot parse gets 400 and the connection closes", async () => {
    const { gw } = await setup();
    const res = await rawExchange(gw.proxyPort, "GET http://localhost/ HTTP/1.1\r\nHost localhost\r\n\r\n");
    expect(res.status).toBe(400);
  });
});

describe("loops", () => {
  test("a request whose Via already names this gateway is refused with 508", async () => {
    const { origin, gw } = await setup();
    const first = await viaProxy(gw.proxyUrl, origin.url("/a"));
    await first.text();
    const ours = first.headers.get("via")!;
    expect(ours).toMatch(/^1\.1 cachegate-[0-9a-f]+$/);

    const looped = await viaProxy(gw.proxyUrl, origin.url("/b"), { headers: { via: `1.1 agent-side-proxy, ${ours}` } });
    expect(looped.status).toBe(508);
    expect(await looped.text()).toContain("loop");
    expect(origin.count("/b")).toBe(0);
  });

  test("a Via naming another cachegate instance is not a loop", async () => {
    const { origin, gw } = await setup();
    const res = await viaProxy(gw.proxyUrl, origin.url("/a"), { headers: { via: "1.1 cachegate-000000" } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok");
  });
});

describe("methods other than GET and HEAD", () => {
  test("a POST is forwarded uncached with its body and labelled BYPASS", async () => {
    const { origin, gw } = await setup(
      async (req) => new Response(`got ${req.method} ${await req.text()}`, { headers: FRESH }),
    );
    for (let i = 0; i < 2; i++) {
      const res = await viaProxy(gw.proxyUrl, origin.url("/submit"), { method: "POST", body: `report ${i}` });
      expect(res.headers.get("x-cache")).toBe("BYPASS");
      expect(await res.text()).toBe(`got POST report ${i}`);
    }
    expect(origin.count("/submit")).toBe(2);
  });

  test("a POST with a chunked body reaches the origin whole, without the agent's Transfer-Encoding framing", async () => {
    const { origin, gw } = await setup(async (req) => new Response(`got ${(await req.text()).length} bytes`));
    const part = "x".repeat(3000);
    const res = await rawExchange(
      gw.proxyPort,
      `POST ${origin.url("/upload")} HTTP/1.1\r\nHost: localhost:${origin.port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
        `bb8\r\n${part}\r\nbb8\r\n${part}\r\n0\r\n\r\n`,
    );
    expect(res.status).toBe(200);
    expect(res.header("x-cache")).toBe("BYPASS");
    expect(res.body.toString()).toContain("got 6000 bytes");
  });

  test.each(["PUT", "DELETE", "PATCH", "OPTIONS"])(
    "a %s is forwarded with its method and labelled BYPASS",
    async (method) => {
      const { origin, gw } = await setup((req) => new Response(`got ${req.method}`));
      const res = await viaProxy(gw.proxyUrl, origin.url("/thing"), { method });
      expect(res.headers.get("x-cache")).toBe("BYPASS");
      expect(await res.text()).toBe(`got ${method}`);
      expect(origin.requests[0]!.method).toBe(method);
    },
  );

  test("a successful POST invalidates the cached response of its URL (RFC 9111 §4.4)", async () => {
    const { origin, gw } = await setup();
    await (await viaProxy(gw.proxyUrl, origin.url("/state"))).text();
    await gw.idle();
    expect((await viaProxy(gw.proxyUrl, origin.url("/state"))).headers.get("x-cache")).toBe("HIT");

    const post = await viaProxy(gw.proxyUrl, origin.url("/state"), { method: "POST", body: "change" });
    expect(post.headers.get("x-cache")).toBe("BYPASS");
    await post.text();

    const after = await viaProxy(gw.proxyUrl, origin.url("/state"));
    expect(after.headers.get("x-cache")).toBe("MISS");
    await after.text();
    expect(origin.count("/state")).toBe(3);
  });

  test("a POST that fails with 4xx leaves the cached response alone", async () => {
    const { origin, gw } = await setup((req) =>
      req.method === "POST" ? new Response("no", { status: 400 }) : new Response("ok", { headers: FRESH }),
    );
    await (await viaProxy(gw.proxyUrl, origin.url("/state"))).text();
    await gw.idle();

    const post = await viaProxy(gw.proxyUrl, origin.url("/state"), { method: "POST", body: "change" });
    expect(post.status).toBe(400);
    await post.text();

    expect((await viaProxy(gw.proxyUrl, origin.url("/state"))).headers.get("x-cache")).toBe("HIT");
  });

  test("with Cache Mode off, GETs to a platform host are forwarded uncached as BYPASS", async () => {
    const { origin, gw } = await setup(undefined, { config: { cacheMode: { enabled: false } } });
    for (let i = 0; i < 2; i++) {
      const res = await viaProxy(gw.proxyUrl, origin.url("/m.json"));
      expect(res.headers.get("x-cache")).toBe("BYPASS");
      expect(await res.text()).toBe("ok");
    }
    expect(origin.count()).toBe(2);
  });
});
