import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type Origin, startOrigin } from "../support/origin.ts";
import { createTestCa, describeCert } from "../support/test-ca.ts";
import { curl, tlsOver } from "../support/tls-clients.ts";

/** tls.agentListener: the agent port speaks TLS itself (an HTTPS proxy, `curl --proxy https://…`). */

const defer = cleanupAfterEach();
let origin: Origin;
let dir: string;

beforeAll(async () => {
  origin = startOrigin(
    (req) => new Response(`plain ${new URL(req.url).pathname}`, { headers: { "cache-control": "max-age=3600" } }),
  );
  dir = await mkdtemp(join(tmpdir(), "cachegate-listener-"));
});

afterAll(async () => {
  await origin?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function gateway(): Promise<{ gw: TestGateway; caFile: string; caPem: string }> {
  const gw = await startTestGateway();
  defer(() => gw.close());
  const caPem = await (await admin(gw).get("/api/ca.pem")).text();
  const caFile = join(dir, `gateway-ca-${gw.proxyPort}.pem`);
  await writeFile(caFile, caPem);
  return { gw, caFile, caPem };
}

async function enable(gw: TestGateway, listener: Record<string, unknown> = {}): Promise<void> {
  const res = await admin(gw).patch({ tls: { agentListener: { enabled: true, ...listener } } });
  expect(res.status).toBe(200);
}

/** The certificate the agent port presents, verified against `ca` for `servername`. */
async function listenerCert(gw: TestGateway, ca: string, servername = "localhost") {
  const socket = await tlsOver(undefined, { host: "127.0.0.1", port: gw.proxyPort, servername, ca });
  try {
    expect(socket.authorized).toBe(true);
    return socket.getPeerCertificate();
  } finally {
    socket.destroy();
  }
}

describe("the TLS agent listener", () => {
  test("curl with an https:// proxy and the gateway CA downloads through it, and the second download is a cache hit", async () => {
    const { gw, caFile } = await gateway();
    await enable(gw);
    const proxy = ["--proxy", `https://127.0.0.1:${gw.proxyPort}`, "--proxy-cacert", caFile];

    const first = await curl([...proxy, origin.url("/listener/agent.msi")]);
    expect(first.stderr).toBe("");
    expect(first.status).toBe(200);
    expect(first.body.toString()).toBe("plain /listener/agent.msi");
    expect(first.headers.get("x-cache")).toBe("MISS");

    const second = await curl([...proxy, origin.url("/listener/agent.msi")]);
    expect(second.status).toBe(200);
    expect(second.body.toString()).toBe("plain /listener/agent.msi");
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(origin.count("/listener/agent.msi")).toBe(1);
  });

  test("a client that does not trust the gateway CA cannot use the TLS listener", async () => {
    const { gw } = await gateway();
    await enable(gw);
    const res = await curl(["--proxy", `https://127.0.0.1:${gw.proxyPort}`, origin.url("/listener/untrusted.txt")]);
    expect(res.exitCode).not.toBe(0);
    expect(res.stderr).toMatch(/certificate/i);
    expect(origin.count("/listener/untrusted.txt")).toBe(0);
  });

  test("its certificate names localhost and 127.0.0.1 by default, is signed by the gateway CA, and follows tls.agentListener.names", async () => {
    const { gw, caPem } = await gateway();
    await enable(gw);
    const cert = await listenerCert(gw, caPem);
    expect(cert.subjectaltname).toBe("DNS:localhost, IP Address:127.0.0.1");
    expect(describeCert(cert.raw).issuer).toBe(describeCert(caPem).subject);

    await enable(gw, { names: ["gateway.example.com"] });
    expect((await listenerCert(gw, caPem, "gateway.example.com")).subjectaltname).toBe("DNS:gateway.example.com");
  });

  test("turning it off returns the agent port to plain HTTP on the same port", async () => {
    const { gw, caFile } = await gateway();
    const port = gw.proxyPort;
    await enable(gw);
    expect(
      (
        await curl([
          "--proxy",
          `https://127.0.0.1:${port}`,
          "--proxy-cacert",
          caFile,
          origin.url("/listener/toggle.txt"),
        ])
      ).status,
    ).toBe(200);
    expect((await admin(gw).patch({ tls: { agentListener: { enabled: false } } })).status).toBe(200);
    expect(gw.proxyPort).toBe(port);
    const plain = await curl(["--proxy", `http://127.0.0.1:${port}`, origin.url("/listener/toggle.txt")]);
    expect(plain.status).toBe(200);
    expect(plain.headers.get("x-cache")).toBe("HIT");
  });

  test("an operator certificate for the listener is what agents are shown", async () => {
    const { gw } = await gateway();
    const operator = await createTestCa("operator listener CA");
    const leaf = await operator.leaf(["proxy.corp.example"]);
    const certFile = join(dir, "listener.pem");
    const keyFile = join(dir, "listener.key");
    await writeFile(certFile, leaf.cert);
    await writeFile(keyFile, leaf.key, { mode: 0o600 });
    await enable(gw, { certFile, keyFile });
    const cert = await listenerCert(gw, operator.certPem, "proxy.corp.example");
    expect(cert.subjectaltname).toBe("DNS:proxy.corp.example");
    expect(describeCert(cert.raw).issuer).toBe(operator.subject);
  });

  test("a listener certificate path to no file is refused with a 400 and the port keeps speaking plain HTTP", async () => {
    const { gw } = await gateway();
    const configBefore = await admin(gw).configText();
    const res = await admin(gw).patch({
      tls: { agentListener: { enabled: true, certFile: join(dir, "nope.pem"), keyFile: join(dir, "nope.key") } },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toContain("tls.agentListener");
    expect(await admin(gw).configText()).toBe(configBefore);
    const plain = await curl(["--proxy", `http://127.0.0.1:${gw.proxyPort}`, origin.url("/listener/still-plain.txt")]);
    expect(plain.status).toBe(200);
  });
});
