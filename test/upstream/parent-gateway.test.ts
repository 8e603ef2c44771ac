import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admin, occupyPort } from "../support/admin.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type GatewayProcess, startGatewayProcess } from "../support/gateway-process.ts";
import { type Origin, startOrigin, viaProxy } from "../support/origin.ts";
import { createTestCa, startTlsOrigin, type TlsOrigin } from "../support/test-ca.ts";

/**
 * Two layers, as the appliance allows: two branch gateways whose upstream
 * proxy is one headquarters gateway. Plain HTTP is cached at both layers;
 * for HTTPS each branch trusts the parent's CA (upstreamProxy.caFile), so
 * the parent intercepts the branch's CONNECT and caches too. A second
 * branch's agent is served from the parent's cache: one origin fetch for
 * both branches.
 */

const CACHEABLE = { "cache-control": "max-age=3600", "content-type": "application/json" };

let dir: string;
let origin: Origin;
let tlsOrigin: TlsOrigin;
let parent: GatewayProcess;
let branches: TestGateway[] = [];

async function parentStats(): Promise<{ hits: number; misses: number }> {
  return parent.json("/api/stats");
}

async function caOf(gw: TestGateway): Promise<string> {
  return (await admin(gw).get("/api/ca.pem")).text();
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cachegate-parent-"));
  const originCa = await createTestCa();
  origin = startOrigin((req) => new Response(`plain ${new URL(req.url).pathname}`, { headers: CACHEABLE }));
  tlsOrigin = await startTlsOrigin(
    originCa,
    (req) => new Response(`secure ${new URL(req.url).pathname}`, { headers: CACHEABLE }),
  );
  // The parent trusts the origin's CA as any gateway trusts a public one (NODE_EXTRA_CA_CERTS); its own CA is what
  // the branches must trust: they get it from its admin API, as an operator would.
  parent = await startGatewayProcess({
    extraCaFile: (await originCa.writeTo(dir)).certFile,
    connectPorts: [tlsOrigin.port],
  });
  const parentCa = await fetch(`${parent.adminUrl}/api/ca.pem`, {
    headers: { authorization: `Bearer ${parent.token}` },
  });
  const caFile = join(dir, "parent-ca.pem");
  await writeFile(caFile, await parentCa.text());
  branches = await Promise.all(
    [1, 2].map(() =>
      startTestGateway({
        config: { upstreamProxy: { url: parent.proxyUrl, caFile }, connect: { ports: [443, tlsOrigin.port] } },
      }),
    ),
  );
});

afterAll(async () => {
  await Promise.all(branches.map((b) => b.close()));
  await parent?.close();
  await Promise.all([origin?.stop(), tlsOrigin?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

describe("a branch gateway behind a parent gateway", () => {
  test("http://: the second branch's agent is served from the parent's cache, one origin fetch for both", async () => {
    const [a, b] = branches as [TestGateway, TestGateway];
    const url = origin.url("/two-layers/manifest.json");
    const before = await parentStats();

    const first = await viaProxy(a.proxyUrl, url);
    expect(await first.text()).toBe("plain /two-layers/manifest.json");
    expect(first.headers.get("x-cache")).toBe("MISS");
    await a.idle();
    await parent.idle();
    const second = await viaProxy(b.proxyUrl, url);
    expect(await second.text()).toBe("plain /two-layers/manifest.json");
    // A miss at the second branch, a hit at the parent: the origin was asked once.
    expect(second.headers.get("x-cache")).toBe("MISS");
    expect(origin.count("/two-layers/manifest.json")).toBe(1);
    const after = await parentStats();
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(1);
    // Via names both layers: the parent's and then this branch's (RFC 9110 §7.6.3).
    const via = (second.headers.get("via") ?? "").split(",").map((s) => s.trim());
    expect(via).toHaveLength(2);
    expect(via[0]).toMatch(/^1\.1 cachegate-/);
    expect(via[0]).not.toContain(b.via);
    expect(via[1]).toBe(`1.1 ${b.via}`);
    // Each branch keeps its own copy: the next agent there is a hit without asking the parent.
    await b.idle();
    const third = await viaProxy(b.proxyUrl, url);
    expect(third.headers.get("x-cache")).toBe("HIT");
    await third.arrayBuffer();
    expect((await parentStats()).hits - before.hits).toBe(1);
  });

  test("https://: each branch trusts the parent's CA (caFile), both layers intercept, one origin fetch for both", async () => {
    const [a, b] = branches as [TestGateway, TestGateway];
    const url = tlsOrigin.url("/two-layers/secure.json");
    const before = await parentStats();

    const first = await fetch(url, { proxy: a.proxyUrl, tls: { ca: await caOf(a) } } as RequestInit);
    expect(await first.text()).toBe("secure /two-layers/secure.json");
    expect(first.headers.get("x-cache")).toBe("MISS");
    await a.idle();
    await parent.idle();
    const second = await fetch(url, { proxy: b.proxyUrl, tls: { ca: await caOf(b) } } as RequestInit);
    expect(await second.text()).toBe("secure /two-layers/secure.json");
    expect(second.headers.get("x-cache")).toBe("MISS");
    expect(tlsOrigin.count("/two-layers/secure.json")).toBe(1);
    const after = await parentStats();
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(1);
    expect((second.headers.get("via") ?? "").split(",")).toHaveLength(2);
  });

  test("a change refused by another setting keeps the parent's CA in use", async () => {
    const a = branches[0]!;
    const other = await createTestCa("another CA");
    const otherFile = join(dir, "other-ca.pem");
    await writeFile(otherFile, other.certPem);
    const busy = await occupyPort();
    try {
      const res = await admin(a).patch({
        upstreamProxy: { caFile: otherFile },
        cacheMode: { port: (busy.address() as { port: number }).port },
      });
      expect(res.status).toBe(409);
    } finally {
      busy.close();
    }
    const url = tlsOrigin.url("/two-layers/after-refusal.json");
    const res = await fetch(url, { proxy: a.proxyUrl, tls: { ca: await caOf(a) } } as RequestInit);
    expect(await res.text()).toBe("secure /two-layers/after-refusal.json");
  });

  test("without the parent's CA a branch refuses the parent's certificate and says where the CA goes", async () => {
    const lone = await startTestGateway({
      config: { upstreamProxy: { url: parent.proxyUrl }, connect: { ports: [443, tlsOrigin.port] } },
    });
    try {
      const res = await fetch(tlsOrigin.url("/two-layers/untrusted.json"), {
        proxy: lone.proxyUrl,
        tls: { ca: await caOf(lone) },
      } as RequestInit);
      expect(res.status).toBe(502);
      expect(await res.text()).toContain("upstreamProxy.caFile");
      expect(tlsOrigin.count("/two-layers/untrusted.json")).toBe(0);
    } finally {
      await lone.close();
    }
  });
});
