import "reflect-metadata";
import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { silentLogger } from "../../src/log.ts";
import { loadCa } from "../../src/tls/ca.ts";
import { createLeafMinter } from "../../src/tls/leaf-minter.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { createTestCa } from "../support/test-ca.ts";
import { tlsOver } from "../support/tls-clients.ts";

const defer = cleanupAfterEach();

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-ca-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** True when `leafPem`'s signature was made by the key of `ca`. */
async function signedBy(leafPem: string, ca: x509.X509Certificate): Promise<boolean> {
  return new x509.X509Certificate(leafPem).verify({ publicKey: ca.publicKey, signatureOnly: true });
}

describe("the generated gateway CA", () => {
  test("first start generates an ECDSA P-256 CA certificate and a private key readable only by the owner", async () => {
    const dataDir = await tempDir();
    const ca = await loadCa(dataDir, {}, silentLogger);

    const keyMode = (await stat(join(dataDir, "ca", "ca.key"))).mode & 0o777;
    expect(keyMode).toBe(0o600);
    expect(await stat(join(dataDir, "ca")).then((s) => s.mode & 0o077)).toBe(0); // the directory is private too
    expect(await readFile(join(dataDir, "ca", "ca.pem"), "utf8")).toBe(ca.certPem);
    expect(await readFile(join(dataDir, "ca", "ca.key"), "utf8")).toContain("BEGIN PRIVATE KEY");

    const cert = new x509.X509Certificate(ca.certPem);
    expect((cert.publicKey.algorithm as { namedCurve?: string }).namedCurve).toBe("P-256");
    expect(cert.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(true);
    const usages = cert.getExtension(x509.KeyUsagesExtension)!.usages;
    expect(usages & x509.KeyUsageFlags.keyCertSign).toBeTruthy();
    expect(await cert.isSelfSigned()).toBe(true);
    expect(cert.notBefore.getTime()).toBeLessThanOrEqual(Date.now());
    expect(cert.notAfter.getTime()).toBeGreaterThan(Date.now() + 365 * 86400_000);
  });

  test("a second start loads the same CA instead of generating a new one, and its key still signs for it", async () => {
    const dataDir = await tempDir();
    const first = await loadCa(dataDir, {}, silentLogger);
    const second = await loadCa(dataDir, {}, silentLogger);
    expect(second.certPem).toBe(first.certPem);

    const leaf = await createLeafMinter(second).leafFor("dl.qualys.com");
    expect(await signedBy(leaf.cert, first.cert)).toBe(true);
  });

  test("a CA certificate file that is not PEM stops the start instead of being silently replaced", async () => {
    const dataDir = await tempDir();
    await loadCa(dataDir, {}, silentLogger);
    await writeFile(join(dataDir, "ca", "ca.pem"), "not a certificate\n");
    await expect(loadCa(dataDir, {}, silentLogger)).rejects.toThrow(/holds no PEM certificate/);
    expect(await readFile(join(dataDir, "ca", "ca.pem"), "utf8")).toBe("not a certificate\n");
  });
});

describe("an operator-supplied CA", () => {
  test("is used as it is, and the leaves it signs name it as their issuer", async () => {
    const dir = await tempDir();
    const operator = await createTestCa("operator CA");
    const files = await operator.writeTo(dir);
    const dataDir = await tempDir();

    const ca = await loadCa(dataDir, { certFile: files.certFile, keyFile: files.keyFile }, silentLogger);
    expect(ca.certPem.trim()).toBe(operator.certPem.trim());
    expect(await stat(join(dataDir, "ca")).catch(() => null)).toBeNull(); // nothing generated next to it

    const leaf = await createLeafMinter(ca).leafFor("dl.qualys.com");
    const cert = new x509.X509Certificate(leaf.cert);
    expect(cert.issuer).toBe(operator.cert.subject);
    expect(await signedBy(leaf.cert, operator.cert)).toBe(true);
  });

  test("an intermediate given with its chain sends that chain after every leaf", async () => {
    const dir = await tempDir();
    const root = await createTestCa("customer root");
    // An intermediate signed by the root: the operator's file holds intermediate then root.
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const intermediate = await x509.X509CertificateGenerator.create({
      serialNumber: "01",
      subject: "CN=customer intermediate for cachegate",
      issuer: root.cert.subject,
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + 86400_000 * 30),
      signingKey: root.privateKey,
      publicKey: keys.publicKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      ],
    });
    const certFile = join(dir, "intermediate-chain.pem");
    const keyFile = join(dir, "intermediate.key");
    await writeFile(certFile, `${intermediate.toString("pem")}\n${root.certPem}`);
    await writeFile(
      keyFile,
      x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY"),
      { mode: 0o600 },
    );

    const ca = await loadCa(await tempDir(), { certFile, keyFile }, silentLogger);
    const leaf = await createLeafMinter(ca).leafFor("localhost");
    const chain = x509.PemConverter.decode(leaf.cert).map((der) => new x509.X509Certificate(der).subject);
    expect(chain.slice(0, 2)).toEqual(["CN=localhost", intermediate.subject]);

    // An agent that trusts only the customer's root accepts the leaf: the intermediate travels with it.
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: leaf.cert, key: leaf.key },
      fetch: () => new Response("ok"),
    });
    defer(() => server.stop(true));
    const socket = await tlsOver(undefined, {
      host: "127.0.0.1",
      port: server.port!,
      servername: "localhost",
      ca: root.certPem,
    });
    expect(socket.authorized).toBe(true);
    socket.destroy();
  });

  test("a certificate without its key is refused with a message naming the missing setting", async () => {
    const dir = await tempDir();
    const files = await (await createTestCa("operator CA")).writeTo(dir);
    await expect(loadCa(await tempDir(), { certFile: files.certFile }, silentLogger)).rejects.toThrow(/tls\.caKeyFile/);
  });

  test("a private key that does not belong to the certificate is refused, so no agent is ever shown leaves that cannot verify", async () => {
    const dir = await tempDir();
    const a = await (await createTestCa("operator CA")).writeTo(join(await tempDir()));
    const b = await (await createTestCa("another CA")).writeTo(dir);
    await expect(loadCa(await tempDir(), { certFile: a.certFile, keyFile: b.keyFile }, silentLogger)).rejects.toThrow(
      /does not belong|does not match/,
    );
  });
});
