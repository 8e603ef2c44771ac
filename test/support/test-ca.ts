import "reflect-metadata"; // @peculiar/x509's dependency injection needs it loaded first
import { chmod, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";

/**
 * Certificates for test TLS servers: a throwaway CA (standing in for a
 * public CA the gateway trusts, or for an operator's CA) and leaves it
 * signs. Keys are ECDSA P-256, as the gateway's own.
 */

const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface TestCa {
  cert: x509.X509Certificate;
  certPem: string;
  keyPem: string;
  privateKey: CryptoKey;
  /** The CA's subject, e.g. "CN=test origin CA 1a2b". */
  subject: string;
  /** A server certificate for `names` (DNS names and IP addresses), signed by this CA; valid for a week unless told. */
  leaf(names: string[], validity?: { notBefore: Date; notAfter: Date }): Promise<{ cert: string; key: string }>;
  /** Writes ca.pem and ca.key (0600) into `dir`; returns their paths. */
  writeTo(dir: string): Promise<{ certFile: string; keyFile: string }>;
}

function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f;
  return Buffer.from(bytes).toString("hex");
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

export async function createTestCa(name = "test origin CA"): Promise<TestCa> {
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const subject = `CN=${name} ${serial().slice(0, 8)}, O=cachegate tests`;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 30 * 86400_000),
    keys,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = cert.toString("pem");
  const keyPem = await pkcs8Pem(keys.privateKey);

  return {
    cert,
    certPem,
    keyPem,
    privateKey: keys.privateKey,
    subject,
    async leaf(names, validity) {
      const leafKeys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
      const isIp = (n: string) => /^[\d.]+$/.test(n) || n.includes(":");
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${names[0]}`,
        issuer: cert.subject,
        notBefore: validity?.notBefore ?? new Date(now - 3600_000),
        notAfter: validity?.notAfter ?? new Date(now + 7 * 86400_000),
        signingKey: keys.privateKey,
        publicKey: leafKeys.publicKey,
        signingAlgorithm: EC,
        extensions: [
          new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: isIp(n) ? "ip" : "dns", value: n }))),
          new x509.BasicConstraintsExtension(false),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          await x509.AuthorityKeyIdentifierExtension.create(cert),
        ],
      });
      return { cert: leaf.toString("pem"), key: await pkcs8Pem(leafKeys.privateKey) };
    },
    async writeTo(dir) {
      const certFile = join(dir, "ca.pem");
      const keyFile = join(dir, "ca.key");
      await writeFile(certFile, certPem);
      await writeFile(keyFile, keyPem, { mode: 0o600 });
      await chmod(keyFile, 0o600);
      return { certFile, keyFile };
    },
  };
}

/** The issuer and subject alternative names of a PEM (or DER) certificate, for assertions. */
export function describeCert(cert: string | Buffer): {
  subject: string;
  issuer: string;
  names: string[];
  notBefore: Date;
  notAfter: Date;
} {
  const c = new x509.X509Certificate(cert);
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  return {
    subject: c.subject,
    issuer: c.issuer,
    names: san ? san.names.items.map((n) => n.value) : [],
    notBefore: c.notBefore,
    notAfter: c.notAfter,
  };
}

export interface TlsOrigin {
  port: number;
  url(path: string): string;
  count(path?: string): number;
  /** Request headers as they arrived, in order. */
  requests: { path: string; headers: Headers }[];
  stop(): Promise<void>;
}

/**
 * An HTTPS origin on 127.0.0.1 with a certificate for localhost and
 * 127.0.0.1 signed by `ca`, counting the requests it serves per path.
 */
export async function startTlsOrigin(
  ca: TestCa,
  handler: (req: Request) => Response | Promise<Response>,
): Promise<TlsOrigin> {
  const { cert, key } = await ca.leaf(["localhost", "127.0.0.1"]);
  const counts = new Map<string, number>();
  const requests: { path: string; headers: Headers }[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    tls: { cert, key },
    fetch(req) {
      const path = new URL(req.url).pathname;
      counts.set(path, (counts.get(path) ?? 0) + 1);
      requests.push({ path, headers: new Headers(req.headers) });
      return handler(req);
    },
  });
  return {
    port: server.port!,
    url: (path) => `https://localhost:${server.port}${path}`,
    count: (path) => (path === undefined ? [...counts.values()].reduce((a, b) => a + b, 0) : (counts.get(path) ?? 0)),
    requests,
    stop: () => server.stop(true),
  };
}

export interface CountingFront {
  port: number;
  /** TCP connections accepted so far (each one a TLS handshake attempt towards the origin). */
  connections(): number;
  /** Sockets (accepted, and the relay's own to the target) not closed yet. */
  open(): number;
  stop(): Promise<void>;
}

/**
 * A TCP relay in front of 127.0.0.1:`targetPort` that counts connections:
 * how often the gateway tried an origin whose handshake fails before any
 * HTTP request is made.
 */
export async function startCountingFront(targetPort: number): Promise<CountingFront> {
  let count = 0;
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  const server = createServer((client) => {
    count++;
    const upstream = connect(targetPort, "127.0.0.1");
    track(client);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => count,
    open: () => sockets.size,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
