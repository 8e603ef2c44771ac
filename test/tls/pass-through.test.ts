import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { TLSSocket } from "node:tls";
import type { ConfigInput } from "../../src/config/schema.ts";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { createTestCa, describeCert, startTlsOrigin, type TestCa, type TlsOrigin } from "../support/test-ca.ts";
import { exchange, opensslHandshake, tlsThroughTunnel } from "../support/tls-clients.ts";

/**
 * Hosts the gateway must not decrypt (Allowed Domains, tls.doNotIntercept,
 * and everything while Cache Mode is off) get a byte tunnel: the agent
 * shakes hands with the origin itself and sees the origin's certificate.
 */

const defer = cleanupAfterEach();
let originCa: TestCa;
let origin: TlsOrigin;

beforeAll(async () => {
  originCa = await createTestCa("test origin CA");
  origin = await startTlsOrigin(
    originCa,
    (req) => new Response(`origin says ${new URL(req.url).pathname}`, { headers: { "cache-control": "max-age=3600" } }),
  );
});

afterAll(async () => {
  await origin?.stop();
});

async function gateway(config: ConfigInput = {}): Promise<TestGateway> {
  const gw = await startTestGateway({ config: { connect: { ports: [443, origin.port] }, ...config } });
  defer(() => gw.close());
  return gw;
}

async function gatewayCa(gw: TestGateway): Promise<string> {
  return (await admin(gw).get("/api/ca.pem")).text();
}

/** TLS to localhost:<origin> through the gateway, trusting only `ca`; closed after the test. */
async function tunnel(gw: TestGateway, ca: string): Promise<TLSSocket> {
  const socket = await tlsThroughTunnel(gw.proxyPort, "localhost", origin.port, { ca });
  defer(() => void socket.destroy());
  return socket;
}

/** Checks that the agent talks to the origin itself: its certificate, its answers, nothing cached. */
async function expectUntouched(gw: TestGateway, path: string): Promise<void> {
  const socket = await tunnel(gw, originCa.certPem);
  expect(socket.authorized).toBe(true);
  const cert = describeCert(socket.getPeerCertificate().raw);
  expect(cert.issuer).toBe(originCa.subject);
  expect(cert.issuer).not.toBe(describeCert(await gatewayCa(gw)).subject);

  const before = origin.count(path);
  for (let i = 0; i < 2; i++) {
    const res = await exchange(socket, `GET ${path} HTTP/1.1\r\nHost: localhost:${origin.port}\r\n\r\n`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe(`origin says ${path}`);
    expect(res.headers.get("x-cache")).toBeNull(); // the gateway never saw the request
    expect(res.headers.get("via")).toBeNull();
  }
  expect(origin.count(path)).toBe(before + 2); // not cached: both went to the origin
  expect((await admin(gw).json("/api/cache/entries")).entries).toEqual([]);

  // An agent that trusts only the gateway CA cannot complete the handshake: the gateway is not in the middle.
  await expect(tlsThroughTunnel(gw.proxyPort, "localhost", origin.port, { ca: await gatewayCa(gw) })).rejects.toThrow();
}

describe("pass-through tunnels", () => {
  test("an Allowed Domain is tunnelled untouched: the agent sees the origin's own certificate and nothing is cached", async () => {
    const gw = await gateway({
      platformDomains: ["qualys.com"],
      allowedDomains: { enabled: true, domains: ["localhost"] },
    });
    await expectUntouched(gw, "/allowed.bin");
  });

  test("a platform host on the do-not-intercept list is tunnelled untouched, and intercepted again once removed", async () => {
    const gw = await gateway();
    expect((await admin(gw).patch({ tls: { doNotIntercept: ["localhost"] } })).status).toBe(200);
    await expectUntouched(gw, "/pinned.bin");

    expect((await admin(gw).patch({ tls: { doNotIntercept: [] } })).status).toBe(200);
    const socket = await tunnel(gw, await gatewayCa(gw));
    expect(socket.authorized).toBe(true);
    expect(describeCert(socket.getPeerCertificate().raw).issuer).toBe(describeCert(await gatewayCa(gw)).subject);
  });

  test("with Cache Mode off a platform host is tunnelled untouched", async () => {
    const gw = await gateway({ cacheMode: { enabled: false } });
    await expectUntouched(gw, "/cache-mode-off.bin");
  });

  test("openssl s_client through a pass-through tunnel reports the origin's issuer, not the gateway's", async () => {
    const gw = await gateway({ tls: { doNotIntercept: ["localhost"] } });
    const result = await opensslHandshake({
      connect: `localhost:${origin.port}`,
      servername: "localhost",
      version: "-tls1_2",
      proxyPort: gw.proxyPort,
    });
    expect(result.protocol).toBe("TLSv1.2");
    const issuerCn = /CN=([^,]+)/.exec(originCa.subject)![1]!;
    expect(result.stdout).toMatch(new RegExp(`issuer=.*${issuerCn}`));
    expect(result.stdout).not.toMatch(/issuer=.*cachegate CA/);
  });
});
