import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { createConnectionPool } from "../../src/upstream/pool.ts";
import type { ProxyHop } from "../../src/upstream/proxy-hop.ts";
import { admin, freePort } from "../support/admin.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type GatewayProcess, startGatewayProcess } from "../support/gateway-process.ts";
import { type Origin, startOrigin, viaProxy } from "../support/origin.ts";
import { ONLY_SQUID_RESOLVES, startSquid, type TestSquid } from "../support/squid.ts";
import { createTestCa, startCountingFront, startTlsOrigin, type TestCa, type TlsOrigin } from "../support/test-ca.ts";
import { exchange, tlsThroughTunnel } from "../support/tls-clients.ts";
import { waitFor } from "../support/wait.ts";

/**
 * Squid from Debian as the customer's corporate proxy, asking for basic
 * credentials: every upstream fetch of the gateway goes through it (its
 * access log shows each one), and its failures reach the agent as a 502
 * that names the proxy and what to check, with nothing cached.
 */

const PASSWORD = "s3cret";
const CACHEABLE = { "cache-control": "max-age=3600", "content-type": "application/json" };

let squid: TestSquid;
let origin: Origin;
let testCa: TestCa;
let tlsOrigin: TlsOrigin;
let gw: TestGateway;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cachegate-squid-test-"));
  squid = await startSquid("agent", PASSWORD);
  origin = startOrigin((req) => new Response(`body of ${new URL(req.url).pathname}`, { headers: CACHEABLE }));
  testCa = await createTestCa();
  tlsOrigin = await startTlsOrigin(
    testCa,
    (req) => new Response(`secure ${new URL(req.url).pathname}`, { headers: CACHEABLE }),
  );
  gw = await startTestGateway({
    config: { upstreamProxy: { url: squid.url }, connect: { ports: [443, tlsOrigin.port] } },
  });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([squid?.stop(), origin?.stop(), tlsOrigin?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

/** Access-log lines of Squid for `fragment`, once at least `n` are there (Squid writes them as it answers). */
async function squidLogged(fragment: string, n = 1): Promise<string[]> {
  return squidLoggedMore(fragment, 0, n);
}

/** As squidLogged, once `n` lines more than `before` are there. */
async function squidLoggedMore(fragment: string, before: number, n = 1): Promise<string[]> {
  const enough = async () => (await squid.logged(fragment)).length >= before + n;
  await waitFor(`${n} more line(s) with ${fragment} in Squid's access log`, enough);
  return squid.logged(fragment);
}

async function caPemOf(g: TestGateway): Promise<string> {
  return (await admin(g).get("/api/ca.pem")).text();
}

async function setProxy(upstreamProxy: Record<string, unknown>): Promise<void> {
  const res = await admin(gw).patch({ upstreamProxy });
  expect(res.status).toBe(200);
}

describe("through Squid with basic auth", () => {
  test("an http:// object goes through Squid in absolute form with the credentials, once; the second agent gets a HIT", async () => {
    const url = origin.url("/plain/manifest.json");
    const first = await viaProxy(gw.proxyUrl, url);
    expect(await first.text()).toBe("body of /plain/manifest.json");
    expect(first.headers.get("x-cache")).toBe("MISS");
    await gw.idle();
    const second = await viaProxy(gw.proxyUrl, url);
    expect(await second.text()).toBe("body of /plain/manifest.json");
    expect(second.headers.get("x-cache")).toBe("HIT");

    expect(origin.count("/plain/manifest.json")).toBe(1);
    const lines = await squidLogged("/plain/manifest.json");
    expect(lines).toHaveLength(1);
    // Squid's native format: … code/status bytes method URL user hierarchy/peer type
    expect(lines[0]).toMatch(new RegExp(`TCP_MISS/200 \\d+ GET ${url.replace(/[./]/g, "\\$&")} agent `));
    // The origin saw the request Squid forwarded: the origin's Host, the gateway's Via before Squid's.
    const seen = origin.requests.find((r) => r.path === "/plain/manifest.json")!;
    expect(seen.headers.get("host")).toBe(`localhost:${origin.port}`);
    expect(seen.headers.get("via")).toContain(gw.via);
    expect(seen.headers.get("proxy-authorization")).toBeNull();
  });

  test("an https:// origin is reached through Squid's CONNECT, its certificate verified inside the tunnel", async () => {
    // The gateway does not trust the test origin's CA: the handshake inside Squid's tunnel must fail.
    const gatewayCa = await admin(gw).get("/api/ca.pem");
    const ca = await gatewayCa.text();
    const refused = await fetch(tlsOrigin.url("/untrusted.json"), { proxy: gw.proxyUrl, tls: { ca } } as RequestInit);
    expect(refused.status).toBe(502);
    expect(await refused.text()).toContain("did not verify");
    expect(tlsOrigin.count()).toBe(0);
    const lines = await squidLogged(`CONNECT localhost:${tlsOrigin.port}`);
    expect(lines[0]).toContain(" agent ");
  });

  test("wrong credentials: a 502 naming the proxy and the credentials setting, nothing cached; the right ones, set live, fetch it", async () => {
    await setProxy({ url: `http://agent:wrong-pass@127.0.0.1:${squid.port}` });
    const url = origin.url("/auth/manifest.json");
    for (let i = 0; i < 2; i++) {
      const res = await viaProxy(gw.proxyUrl, url);
      expect(res.status).toBe(502);
      const body = await res.text();
      expect(body).toContain(`upstream proxy 127.0.0.1:${squid.port}`);
      expect(body).toContain("CACHEGATE_UPSTREAM_PROXY");
      expect(body).not.toContain("wrong-pass");
    }
    // CONNECT for https is refused the same way.
    const ca = await (await admin(gw).get("/api/ca.pem")).text();
    const secure = await fetch(tlsOrigin.url("/auth.json"), { proxy: gw.proxyUrl, tls: { ca } } as RequestInit);
    expect(secure.status).toBe(502);
    expect(await secure.text()).toContain("refused the gateway's credentials");
    expect(origin.count("/auth/manifest.json")).toBe(0);
    expect((await squidLogged("/auth/manifest.json", 2))[0]).toContain("TCP_DENIED/407");

    await setProxy({ url: squid.url });
    const fixed = await viaProxy(gw.proxyUrl, url);
    expect(await fixed.text()).toBe("body of /auth/manifest.json");
    expect(fixed.headers.get("x-cache")).toBe("MISS");
    expect(origin.count("/auth/manifest.json")).toBe(1);
  });

  test("an unreachable proxy: a 502 naming it and what to check, nothing cached", async () => {
    const closed = await freePort();
    await setProxy({ url: `http://agent:${PASSWORD}@127.0.0.1:${closed}` });
    try {
      const url = origin.url("/down/manifest.json");
      const res = await viaProxy(gw.proxyUrl, url);
      expect(res.status).toBe(502);
      const body = await res.text();
      expect(body).toContain(`cannot reach the upstream proxy 127.0.0.1:${closed}`);
      expect(body).toContain("running and reachable");
      expect(body).not.toContain(PASSWORD);
      expect(origin.count("/down/manifest.json")).toBe(0);
      await setProxy({ url: squid.url });
      const after = await viaProxy(gw.proxyUrl, url);
      expect(after.headers.get("x-cache")).toBe("MISS");
      expect(origin.count("/down/manifest.json")).toBe(1);
    } finally {
      await setProxy({ url: squid.url });
    }
  });

  test("a bypass domain is fetched directly: Squid's log does not show it", async () => {
    await setProxy({ bypass: ["localhost"] });
    try {
      const res = await viaProxy(gw.proxyUrl, origin.url("/direct/manifest.json"));
      expect(await res.text()).toBe("body of /direct/manifest.json");
      expect(origin.count("/direct/manifest.json")).toBe(1);
      // A request Squid does see, made after it, is logged: had the bypassed one gone through Squid, it would be too.
      await setProxy({ bypass: null });
      await viaProxy(gw.proxyUrl, origin.url("/after-direct/manifest.json"));
      await squidLogged("/after-direct/manifest.json");
      expect(await squid.logged("/direct/manifest.json")).toHaveLength(0);
    } finally {
      await setProxy({ bypass: null });
    }
  });

  test("a piped tunnel to an Allowed Domain goes through Squid's CONNECT, bytes untouched", async () => {
    const res = await admin(gw).patch({
      platformDomains: ["qualys.com"],
      allowedDomains: { enabled: true, domains: ["localhost"] },
    });
    expect(res.status).toBe(200);
    const before = (await squid.logged(`CONNECT localhost:${tlsOrigin.port}`)).length;
    try {
      const socket = await tlsThroughTunnel(gw.proxyPort, "localhost", tlsOrigin.port, { ca: testCa.certPem });
      const answer = await exchange(socket, "GET /piped.json HTTP/1.1\r\nHost: localhost\r\n\r\n");
      socket.destroy();
      expect(answer.status).toBe(200);
      expect(answer.body.toString()).toBe("secure /piped.json"); // the origin's own certificate: not intercepted
      const lines = await squidLoggedMore(`CONNECT localhost:${tlsOrigin.port}`, before);
      expect(lines.at(-1)).toMatch(/TCP_TUNNEL\/200 \d+ CONNECT localhost:\d+ agent /);
    } finally {
      await admin(gw).patch({ platformDomains: null, allowedDomains: null });
    }
  });

  test("a private origin is still refused through the proxy; a name only the proxy can resolve is left to it", async () => {
    const strict = await startTestGateway({
      allowPrivate: false,
      config: { platformDomains: ["localhost", ONLY_SQUID_RESOLVES], upstreamProxy: { url: squid.url } },
    });
    try {
      const refused = await viaProxy(strict.proxyUrl, origin.url("/private/manifest.json"));
      expect(refused.status).toBe(403);
      expect(await refused.text()).toContain("CACHEGATE_ALLOW_PRIVATE_UPSTREAMS");
      // Not resolvable here, only by Squid (its hosts file): left to Squid, which fetches it.
      const behind = await viaProxy(strict.proxyUrl, `http://${ONLY_SQUID_RESOLVES}:${origin.port}/behind.json`);
      expect(await behind.text()).toBe("body of /behind.json");
      await squidLogged(`${ONLY_SQUID_RESOLVES}:${origin.port}/behind.json`);
      expect(await squid.logged("/private/manifest.json")).toHaveLength(0);
      expect(origin.count("/private/manifest.json")).toBe(0);
    } finally {
      await strict.close();
    }
  });
});

describe("a gateway process seeded by CACHEGATE_UPSTREAM_PROXY", () => {
  let proc: GatewayProcess;
  beforeAll(async () => {
    const { certFile } = await testCa.writeTo(dir);
    proc = await startGatewayProcess({
      extraCaFile: certFile,
      connectPorts: [tlsOrigin.port],
      env: { CACHEGATE_UPSTREAM_PROXY: squid.url },
    });
  });
  afterAll(() => proc?.close());

  test("fetches https:// through Squid's CONNECT, the origin verified against NODE_EXTRA_CA_CERTS, and caches it", async () => {
    const ca = await (
      await fetch(`${proc.adminUrl}/api/ca.pem`, { headers: { authorization: `Bearer ${proc.token}` } })
    ).text();
    const url = tlsOrigin.url("/proc/manifest.json");
    const init = { proxy: proc.proxyUrl, tls: { ca }, keepalive: false } as RequestInit;
    const first = await fetch(url, init);
    expect(await first.text()).toBe("secure /proc/manifest.json");
    expect(first.headers.get("x-cache")).toBe("MISS");
    await proc.idle();
    const second = await fetch(url, init);
    expect(await second.text()).toBe("secure /proc/manifest.json");
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(tlsOrigin.count("/proc/manifest.json")).toBe(1);
    expect((await squidLogged(`CONNECT localhost:${tlsOrigin.port}`)).some((l) => l.includes("TCP_TUNNEL/200"))).toBe(
      true,
    );
  });

  test("a live change reaches every worker: wrong credentials refuse each request, the right ones serve again", async () => {
    await proc.configure({ upstreamProxy: { url: `http://agent:wrong@127.0.0.1:${squid.port}` } });
    try {
      // New connections each: the kernel spreads them over the workers.
      for (let i = 0; i < 6; i++) {
        const res = await fetch(origin.url(`/workers/${i}.json`), {
          proxy: proc.proxyUrl,
          keepalive: false,
        } as RequestInit);
        expect(res.status).toBe(502);
        expect(await res.text()).toContain("refused the gateway's credentials");
      }
    } finally {
      await proc.configure({ upstreamProxy: { url: null } }); // back to CACHEGATE_UPSTREAM_PROXY
    }
    const res = await fetch(origin.url("/workers/0.json"), { proxy: proc.proxyUrl, keepalive: false } as RequestInit);
    expect(await res.text()).toBe("body of /workers/0.json");
    expect(origin.count("/workers/0.json")).toBe(1);
  });

  test("GET /api/config shows the environment's proxy URL with its password masked", async () => {
    const { config, sources } = await proc.json("/api/config");
    expect(config.upstreamProxy.url).toBe(`http://agent:***@127.0.0.1:${squid.port}`);
    expect(sources["upstreamProxy.url"]).toBe("env");
    expect(proc.output()).not.toContain(PASSWORD);
  });
});

describe("connections to the proxy", () => {
  test("are kept: http:// misses share one connection, https:// misses to one origin one tunnel; closed with the gateway", async () => {
    const front = await startCountingFront(squid.port);
    const kept = await startTestGateway({
      config: {
        upstreamProxy: { url: `http://agent:${PASSWORD}@127.0.0.1:${front.port}` },
        connect: { ports: [443, tlsOrigin.port] },
      },
    });
    try {
      for (const path of ["/kept/a.json", "/kept/b.json", "/kept/c.json"]) {
        const res = await viaProxy(kept.proxyUrl, origin.url(path));
        expect(res.headers.get("x-cache")).toBe("MISS");
        await res.arrayBuffer();
        await kept.idle();
      }
      expect(front.connections()).toBe(1);
      expect(origin.count("/kept/c.json")).toBe(1);
      await kept.config.patch({ upstreamProxy: { caFile: (await testCa.writeTo(dir)).certFile } });
      const ca = await caPemOf(kept);
      for (const path of ["/kept/a-secure.json", "/kept/b-secure.json"]) {
        const res = await fetch(tlsOrigin.url(path), { proxy: kept.proxyUrl, tls: { ca } } as RequestInit);
        expect(await res.text()).toBe(`secure ${path}`);
        await kept.idle();
      }
      // Both https:// misses went through one CONNECT tunnel: the second connection to the proxy.
      expect(front.connections()).toBe(2);
    } finally {
      await kept.close();
    }
    await waitFor("the connections to the proxy to close with the gateway", () => front.open() === 0);
    await front.stop();
  });
});

describe("the connection pool through Squid", () => {
  test("checks the origin's certificate for the URL's host inside the tunnel, an IP literal included", async () => {
    // The origin at 127.0.0.2 shows a certificate for 127.0.0.1 (the proxy's address), not for its own.
    const { cert, key } = await testCa.leaf(["localhost", "127.0.0.1"]);
    const server = Bun.serve({ hostname: "127.0.0.2", port: 0, tls: { cert, key }, fetch: () => new Response("x") });
    const pool = createConnectionPool();
    const hop: ProxyHop = {
      host: "127.0.0.1",
      port: squid.port,
      label: `127.0.0.1:${squid.port}`,
      authorization: `Basic ${Buffer.from(`agent:${PASSWORD}`).toString("base64")}`,
      secureContext: createSecureContext({ ca: testCa.certPem }),
      key: "pool-test",
    };
    const target = (name: string) => ({ address: name, port: server.port!, tls: true, name, proxy: hop });
    try {
      await expect(pool.open(target("127.0.0.2"), AbortSignal.timeout(5000))).rejects.toMatchObject({
        code: "ERR_TLS_CERT_ALTNAME_INVALID",
      });
    } finally {
      pool.close();
      await server.stop(true);
    }
  });
});
