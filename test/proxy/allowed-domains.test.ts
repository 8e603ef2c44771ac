import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { admin, closeWhenIdle } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin, viaProxy } from "../support/origin.ts";

const defer = cleanupAfterEach();

/**
 * `localhost` (which resolves to 127.0.0.1) plays an outside vendor site: the
 * platform domain is something else, so only Allowed Domains can let it through.
 */
async function setup(allowedDomains: { enabled?: boolean; domains?: string[] }, platformDomains = ["qualys.com"]) {
  const origin = startOrigin((req) => {
    const path = new URL(req.url).pathname;
    return new Response(`body of ${path}`, { headers: { "cache-control": "public, max-age=3600", etag: '"v1"' } });
  });
  defer(() => origin.stop());
  const gw = await startTestGateway({
    config: { platformDomains, allowedDomains, connect: { ports: [443, origin.port] } },
  });
  defer(() => closeWhenIdle(gw));
  return { origin, gw };
}

interface TunnelResult {
  status: number;
  head: string;
  /** What came back through the tunnel after the CONNECT answer, when it was 200. */
  inner: string;
}

/** CONNECT host:port through the proxy; if it answers 200, sends a plain HTTP request through the tunnel. */
function tunnel(proxyPort: number, authority: string, path: string): Promise<TunnelResult> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port: proxyPort });
    let buffered = Buffer.alloc(0);
    let head: string | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("the tunnel did not finish within 5 s"));
    }, 5000);
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      if (head !== undefined) return;
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      head = buffered.subarray(0, end).toString("latin1");
      buffered = buffered.subarray(end + 4);
      if (/^HTTP\/1\.1 200/.test(head))
        socket.write(`GET ${path} HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      if (head === undefined) return reject(new Error("no answer to CONNECT"));
      resolve({ status: Number(head.split(" ")[1]), head, inner: buffered.toString("latin1") });
    });
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  });
}

describe("Allowed Domains", () => {
  test("a request to an allowed domain passes through with X-Cache BYPASS", async () => {
    const { origin, gw } = await setup({ enabled: true, domains: ["localhost"] });
    const res = await viaProxy(gw.proxyUrl, origin.url("/vendor/update.json"));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache")).toBe("BYPASS");
    expect(await res.text()).toBe("body of /vendor/update.json");
  });

  test("an allowed domain is never cached: every request reaches the origin, even with a cacheable response", async () => {
    const { origin, gw } = await setup({ enabled: true, domains: ["localhost"] });
    for (let i = 0; i < 3; i++) {
      const res = await viaProxy(gw.proxyUrl, origin.url("/vendor/setup.exe"));
      expect(res.headers.get("x-cache")).toBe("BYPASS");
      await res.arrayBuffer();
    }
    expect(origin.count("/vendor/setup.exe")).toBe(3);
    expect((await admin(gw).json("/api/cache/entries")).entries).toEqual([]);
  });

  test("with allowedDomains disabled the same request gets 403 and the origin is not reached", async () => {
    const { origin, gw } = await setup({ enabled: false, domains: ["localhost"] });
    const res = await viaProxy(gw.proxyUrl, origin.url("/vendor/update.json"));
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("allowedDomains.enabled");
    expect(origin.count()).toBe(0);
  });

  test("a domain not on the enabled list gets 403", async () => {
    const { origin, gw } = await setup({ enabled: true, domains: ["microsoft.com"] });
    const res = await viaProxy(gw.proxyUrl, origin.url("/x"));
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("microsoft.com");
    expect(origin.count()).toBe(0);
  });

  test("enabling Allowed Domains through the admin API takes effect on the next request", async () => {
    const { origin, gw } = await setup({ enabled: false });
    expect((await viaProxy(gw.proxyUrl, origin.url("/a"))).status).toBe(403);
    expect((await admin(gw).patch({ allowedDomains: { enabled: true, domains: ["LocalHost"] } })).status).toBe(200);
    const res = await viaProxy(gw.proxyUrl, origin.url("/a"));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache")).toBe("BYPASS");
  });

  test("disabling Allowed Domains through the admin API refuses the next request", async () => {
    const { origin, gw } = await setup({ enabled: true, domains: ["localhost"] });
    expect((await viaProxy(gw.proxyUrl, origin.url("/a"))).status).toBe(200);
    expect((await admin(gw).patch({ allowedDomains: { enabled: false } })).status).toBe(200);
    expect((await viaProxy(gw.proxyUrl, origin.url("/a"))).status).toBe(403);
    expect(origin.count("/a")).toBe(1);
  });

  test("CONNECT to an allowed domain opens a tunnel the gateway passes through untouched", async () => {
    const { origin, gw } = await setup({ enabled: true, domains: ["localhost"] });
    const result = await tunnel(gw.proxyPort, `localhost:${origin.port}`, "/tunnelled.bin");
    expect(result.status).toBe(200);
    expect(result.inner).toStartWith("HTTP/1.1 200");
    expect(result.inner).toContain("body of /tunnelled.bin");
    expect(result.inner.toLowerCase()).not.toContain("x-cache");
    expect(origin.count("/tunnelled.bin")).toBe(1);
  });

  test("CONNECT to the same domain with Allowed Domains disabled gets 403", async () => {
    const { origin, gw } = await setup({ enabled: false, domains: ["localhost"] });
    const result = await tunnel(gw.proxyPort, `localhost:${origin.port}`, "/tunnelled.bin");
    expect(result.status).toBe(403);
    expect(result.inner).toContain("allowedDomains");
    expect(origin.count()).toBe(0);
  });

  test("a platform domain stays cached even when it is also on the Allowed Domains list", async () => {
    const { origin, gw } = await setup({ enabled: true, domains: ["localhost"] }, ["localhost"]);
    const first = await viaProxy(gw.proxyUrl, origin.url("/manifest.json"));
    await first.text();
    await gw.idle();
    const second = await viaProxy(gw.proxyUrl, origin.url("/manifest.json"));
    expect([first.headers.get("x-cache"), second.headers.get("x-cache")]).toEqual(["MISS", "HIT"]);
    expect(origin.count("/manifest.json")).toBe(1);
  });

  test("a platform domain stays reachable whatever the Allowed Domains list holds", async () => {
    const { origin, gw } = await setup({ enabled: false, domains: [] }, ["localhost"]);
    const res = await viaProxy(gw.proxyUrl, origin.url("/manifest.json"));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache")).toBe("MISS");
  });
});
