import "reflect-metadata";
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { silentLogger } from "../../src/log.ts";
import { type GatewayCa, loadCa } from "../../src/tls/ca.ts";
import { createLeafMinter } from "../../src/tls/leaf-minter.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { manualClock } from "../support/clock.ts";
import { createTestCa, describeCert } from "../support/test-ca.ts";

const defer = cleanupAfterEach();
let ca: GatewayCa;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-minter-"));
  try {
    ca = await loadCa(dir, {}, silentLogger);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

const DAY = 86400_000;

function leafOf(chainPem: string): x509.X509Certificate {
  return new x509.X509Certificate(x509.PemConverter.decode(chainPem)[0]!);
}

describe("leaf certificates", () => {
  test("a leaf names its host in the subject alternative name, is a server certificate and is signed by the gateway CA", async () => {
    const minter = createLeafMinter(ca);
    const leaf = await minter.leafFor("dl.qualys.com");
    const cert = leafOf(leaf.cert);

    expect(describeCert(leaf.cert).names).toEqual(["dl.qualys.com"]);
    expect(cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.items[0]!.type).toBe("dns");
    expect(cert.issuer).toBe(ca.cert.subject);
    expect(await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true })).toBe(true);
    expect(cert.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toContain(x509.ExtendedKeyUsage.serverAuth);
    expect(leaf.key).toContain("BEGIN PRIVATE KEY");
  });

  test("an IP address host gets an IP address in the subject alternative name, not a DNS name", async () => {
    const leaf = await createLeafMinter(ca).leafFor("192.0.2.10");
    const names = leafOf(leaf.cert).getExtension(x509.SubjectAlternativeNameExtension)!.names.items;
    expect(names.map((n) => [n.type, n.value])).toEqual([["ip", "192.0.2.10"]]);
  });

  test("a leaf is valid for a short time only, from a little before now", async () => {
    const clock = manualClock(Date.now());
    const leaf = await createLeafMinter(ca, { now: clock.now }).leafFor("dl.qualys.com");
    const { notBefore, notAfter } = describeCert(leaf.cert);
    expect(notBefore.getTime()).toBeLessThan(clock.now());
    expect(notAfter.getTime() - clock.now()).toBeLessThanOrEqual(7 * DAY);
    expect(notAfter.getTime() - clock.now()).toBeGreaterThan(DAY);
    expect(Math.abs(leaf.notAfter - notAfter.getTime())).toBeLessThan(1000); // certificates keep whole seconds
  });

  test("a leaf never outlives the CA that signed it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cachegate-minter-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    const shortLived = await shortLivedCa(dir, 2 * DAY);
    const leaf = await createLeafMinter(shortLived).leafFor("dl.qualys.com");
    expect(describeCert(leaf.cert).notAfter.getTime()).toBeLessThanOrEqual(shortLived.cert.notAfter.getTime());
  });
});

describe("the leaf cache", () => {
  test("minting the same host twice returns the same certificate, whatever the case of the name", async () => {
    const minter = createLeafMinter(ca);
    const first = await minter.leafFor("dl.qualys.com");
    const second = await minter.leafFor("dl.qualys.com");
    const upper = await minter.leafFor("DL.Qualys.COM");
    expect(second.cert).toBe(first.cert);
    expect(upper.cert).toBe(first.cert);
    expect(minter.size()).toBe(1);
  });

  test("different hosts get different certificates, each with its own name", async () => {
    const minter = createLeafMinter(ca);
    const a = await minter.leafFor("a.qualys.com");
    const b = await minter.leafFor("b.qualys.eu");
    expect(a.cert).not.toBe(b.cert);
    expect(describeCert(a.cert).names).toEqual(["a.qualys.com"]);
    expect(describeCert(b.cert).names).toEqual(["b.qualys.eu"]);
    expect(minter.size()).toBe(2);
  });

  test("fifty handshakes for one host at once mint one certificate", async () => {
    const minter = createLeafMinter(ca);
    const leaves = await Promise.all(Array.from({ length: 50 }, () => minter.leafFor("burst.qualys.com")));
    const serials = new Set(leaves.map((l) => leafOf(l.cert).serialNumber));
    expect(serials.size).toBe(1);
    expect(minter.size()).toBe(1);
  });

  test("a leaf past half its validity is replaced by a new one", async () => {
    const clock = manualClock(Date.now());
    const minter = createLeafMinter(ca, { now: clock.now, validityMs: 4 * DAY });
    const first = await minter.leafFor("dl.qualys.com");
    clock.advance(1 * DAY);
    expect((await minter.leafFor("dl.qualys.com")).cert).toBe(first.cert);
    clock.advance(1.5 * DAY);
    const renewed = await minter.leafFor("dl.qualys.com");
    expect(renewed.cert).not.toBe(first.cert);
    expect(renewed.notAfter).toBeGreaterThan(first.notAfter);
    expect(minter.size()).toBe(1);
  });

  test("the cache is bounded: the least recently used host is dropped first", async () => {
    const minter = createLeafMinter(ca, { capacity: 3 });
    const a = await minter.leafFor("a.qualys.com");
    const b = await minter.leafFor("b.qualys.com");
    await minter.leafFor("c.qualys.com");
    await minter.leafFor("a.qualys.com"); // a is now the most recently used
    await minter.leafFor("d.qualys.com"); // evicts b
    expect(minter.size()).toBe(3);
    expect((await minter.leafFor("a.qualys.com")).cert).toBe(a.cert);
    expect((await minter.leafFor("b.qualys.com")).cert).not.toBe(b.cert);
  });

  test("with a CA close to its own expiry, a burst of handshakes still mints one certificate", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cachegate-minter-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    // The CA expires in two days, sooner than half the leaves' usual validity.
    const minter = createLeafMinter(await shortLivedCa(dir, 2 * DAY));
    const leaves = await Promise.all(Array.from({ length: 20 }, () => minter.leafFor("dl.qualys.com")));
    const again = await minter.leafFor("dl.qualys.com");
    const serials = new Set([...leaves, again].map((l) => leafOf(l.cert).serialNumber));
    expect(serials.size).toBe(1);
  });

  test("the listener's certificate carries every name it is given and is not kept in the host cache", async () => {
    const minter = createLeafMinter(ca);
    const leaf = await minter.leafForNames(["gateway.example.com", "localhost", "127.0.0.1"]);
    expect(describeCert(leaf.cert).names).toEqual(["gateway.example.com", "localhost", "127.0.0.1"]);
    expect(minter.size()).toBe(0);
  });
});

/** An operator CA whose certificate expires in `lifetimeMs`. */
async function shortLivedCa(dir: string, lifetimeMs: number): Promise<GatewayCa> {
  const test = await createTestCa("short-lived CA");
  const keys = { privateKey: test.privateKey, publicKey: await test.cert.publicKey.export() };
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "02",
    name: "CN=short-lived CA",
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + lifetimeMs),
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const certFile = join(dir, "short.pem");
  const keyFile = join(dir, "short.key");
  await Bun.write(certFile, cert.toString("pem"));
  await Bun.write(keyFile, test.keyPem);
  return loadCa(dir, { certFile, keyFile }, silentLogger);
}
