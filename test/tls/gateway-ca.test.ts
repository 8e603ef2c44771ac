import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PeerCertificate } from "node:tls";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { createTestCa, describeCert } from "../support/test-ca.ts";
import { tlsThroughTunnel } from "../support/tls-clients.ts";

const defer = cleanupAfterEach();

async function gateway(): Promise<TestGateway> {
  const gw = await startTestGateway();
  defer(() => gw.close());
  return gw;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-opca-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function caPem(gw: TestGateway): Promise<string> {
  const res = await admin(gw).get("/api/ca.pem");
  expect(res.status).toBe(200);
  return res.text();
}

/** The certificate an agent is shown inside an intercepted tunnel to localhost:443, verified against `trust`. */
async function interceptedLeaf(gw: TestGateway, trust: string): Promise<PeerCertificate> {
  const socket = await tlsThroughTunnel(gw.proxyPort, "localhost", 443, { ca: trust });
  try {
    expect(socket.authorized).toBe(true);
    return socket.getPeerCertificate();
  } finally {
    socket.destroy();
  }
}

describe("GET /api/ca.pem", () => {
  test("answers only with the admin token", async () => {
    const gw = await gateway();
    expect((await fetch(`${gw.adminUrl}/api/ca.pem`)).status).toBe(401);
    expect((await admin(gw, "wrong-token").get("/api/ca.pem")).status).toBe(401);

    const res = await admin(gw).get("/api/ca.pem");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("pem");
    const pem = await res.text();
    expect(pem).toStartWith("-----BEGIN CERTIFICATE-----");
    expect(pem).not.toContain("PRIVATE KEY");
    expect(pem).toBe(await readFile(join(gw.dataDir, "ca", "ca.pem"), "utf8"));
  });

  test("returns the CA that signs the certificates agents see inside intercepted tunnels", async () => {
    const gw = await gateway();
    const pem = await caPem(gw);
    const leaf = await interceptedLeaf(gw, pem);
    expect(leaf.subjectaltname).toBe("DNS:localhost");
    expect(describeCert(leaf.raw).issuer).toBe(describeCert(pem).subject);
  });
});

describe("the gateway CA across restarts", () => {
  test("the CA survives a restart: the same certificate before and after, its key readable by the owner only", async () => {
    let gw = await startTestGateway();
    defer(() => gw.close());
    const before = await caPem(gw);
    gw = await gw.restart();
    const after = await caPem(gw);
    expect(after).toBe(before);
    expect((await stat(join(gw.dataDir, "ca", "ca.key"))).mode & 0o777).toBe(0o600);
    // Agents that installed the CA before the restart still trust what they are shown.
    expect((await interceptedLeaf(gw, before)).subjectaltname).toBe("DNS:localhost");
  });
});

describe("an operator CA set through the admin API", () => {
  test("signs the leaves agents see and is what GET /api/ca.pem returns, also after a restart", async () => {
    let gw = await startTestGateway();
    defer(() => gw.close());
    const operator = await createTestCa("operator CA");
    const files = await operator.writeTo(await tempDir());

    const res = await admin(gw).patch({ tls: { caCertFile: files.certFile, caKeyFile: files.keyFile } });
    expect(res.status).toBe(200);
    expect((await caPem(gw)).trim()).toBe(operator.certPem.trim());
    const leaf = await interceptedLeaf(gw, operator.certPem);
    expect(describeCert(leaf.raw).issuer).toBe(operator.subject);

    gw = await gw.restart();
    expect((await caPem(gw)).trim()).toBe(operator.certPem.trim());
    expect(describeCert((await interceptedLeaf(gw, operator.certPem)).raw).issuer).toBe(operator.subject);
  });

  test("a path to no file is refused with a 400 naming the field, and nothing changes", async () => {
    const gw = await gateway();
    const before = await caPem(gw);
    const configBefore = await admin(gw).configText();
    const dir = await tempDir();

    const res = await admin(gw).patch({
      tls: { caCertFile: join(dir, "missing.pem"), caKeyFile: join(dir, "missing.key") },
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string };
    expect(body.error).toContain("tls.caCertFile");
    expect(body.error).toContain("missing.pem");

    expect(await admin(gw).configText()).toBe(configBefore);
    expect(await caPem(gw)).toBe(before);
    expect(describeCert((await interceptedLeaf(gw, before)).raw).issuer).toBe(describeCert(before).subject);
  });

  test("a relative path is refused by validation with the field named in the details", async () => {
    const gw = await gateway();
    const res = await admin(gw).patch({ tls: { caCertFile: "ca.pem", caKeyFile: "/etc/cachegate/ca.key" } });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { details: { path: string; message: string }[] };
    expect(body.details.map((d) => d.path)).toContain("tls.caCertFile");
    expect((await admin(gw).json("/api/config")).config.tls.caCertFile).toBeUndefined();
  });

  test("a certificate without its key, or with someone else's key, is refused and the gateway CA stays", async () => {
    const gw = await gateway();
    const before = await caPem(gw);
    const a = await (await createTestCa("operator CA")).writeTo(await tempDir());
    const b = await (await createTestCa("another CA")).writeTo(await tempDir());

    const certOnly = await admin(gw).patch({ tls: { caCertFile: a.certFile } });
    expect(certOnly.status).toBe(400);
    const refusal = (await certOnly.json()) as { error: string; details: { path: string; message: string }[] };
    expect(refusal.details.map((d) => d.path)).toContain("tls.caKeyFile");

    const mismatched = await admin(gw).patch({ tls: { caCertFile: a.certFile, caKeyFile: b.keyFile } });
    expect(mismatched.status).toBe(400);
    expect(((await mismatched.json()) as { error: string }).error).toMatch(/does not belong/);

    expect(await caPem(gw)).toBe(before);
    expect((await admin(gw).json("/api/config")).config.tls.caCertFile).toBeUndefined();
  });
});
