import "reflect-metadata"; // @peculiar/x509's dependency injection needs it loaded first
import { access, chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import type { Logger } from "../log.ts";

export const EC_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** The certificate authority that signs the per-host certificates agents see inside intercepted tunnels. */
export interface GatewayCa {
  cert: x509.X509Certificate;
  /** The certificate as PEM: what agents install into their trust store. */
  certPem: string;
  /** Extra certificates to send after a leaf (an operator's intermediate chain). */
  chainPem: string;
  privateKey: CryptoKey;
  /** Where it came from, for the start-up log. */
  source: string;
}

export interface CaFiles {
  certFile?: string;
  keyFile?: string;
}

/**
 * Loads the operator's CA (a customer-signed intermediate: certificate,
 * optionally followed by its chain, and its private key), or the one this
 * gateway generated on first start, or generates it: ECDSA P-256, kept in
 * `<dataDir>/ca/` with the key readable by the owner only.
 */
export async function loadCa(dataDir: string, files: CaFiles, log: Logger): Promise<GatewayCa> {
  if (files.certFile || files.keyFile) {
    if (!files.certFile || !files.keyFile)
      throw new Error("an operator CA needs both tls.caCertFile and tls.caKeyFile");
    return readCa(files.certFile, files.keyFile, files.certFile);
  }
  const dir = join(dataDir, "ca");
  const certFile = join(dir, "ca.pem");
  const keyFile = join(dir, "ca.key");
  const present = await Promise.all(
    [certFile, keyFile].map((f) =>
      access(f).then(
        () => true,
        () => false,
      ),
    ),
  );
  if (present[0] && present[1]) return readCa(certFile, keyFile, certFile);
  if (present[0] !== present[1]) {
    // Half a CA: regenerating would silently invalidate what agents already trust.
    const [missing, found] = present[0] ? [keyFile, certFile] : [certFile, keyFile];
    throw new Error(
      `${missing} is missing while ${found} exists; restore it, or remove ${dir} to generate a new CA ` +
        "(agents must then trust the new one)",
    );
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  const { cert, keys, keyPem } = await createSelfSignedCa(
    `CN=cachegate CA ${new Date(now).toISOString().slice(0, 10)}, O=cachegate`,
    10 * 365 * 86400_000,
  );
  await writeFile(keyFile, keyPem, { mode: 0o600 });
  await chmod(keyFile, 0o600);
  await writeFile(certFile, cert.toString("pem"), { mode: 0o600 });
  log.info("gateway CA generated; agents must trust its certificate (GET /api/ca.pem)", { certFile });
  return { cert, certPem: cert.toString("pem"), chainPem: "", privateKey: keys.privateKey, source: certFile };
}

/**
 * A self-signed ECDSA P-256 CA that may sign leaves (not intermediates),
 * valid from an hour ago (clocks that run a little behind) for `validityMs`.
 */
export async function createSelfSignedCa(name: string, validityMs: number) {
  const keys = (await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + validityMs),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  return { cert, certPem: cert.toString("pem"), keys, keyPem };
}

async function readCa(certFile: string, keyFile: string, source: string): Promise<GatewayCa> {
  const pems = x509.PemConverter.decode(await readFile(certFile, "utf8"));
  const first = pems[0];
  if (!first) throw new Error(`${certFile} holds no PEM certificate`);
  const cert = new x509.X509Certificate(first);
  // Leaves are issued by `cert`; an agent that trusts only the root above an intermediate
  // needs the intermediate itself in the chain, then whatever the file holds after it.
  const chain = cert.subject === cert.issuer ? pems.slice(1) : pems;
  const chainPem = chain.map((der) => new x509.X509Certificate(der).toString("pem")).join("\n");
  const keyDer = x509.PemConverter.decode(await readFile(keyFile, "utf8"))[0];
  if (!keyDer) throw new Error(`${keyFile} holds no PEM private key (PKCS#8 "BEGIN PRIVATE KEY" expected)`);
  const algorithm = await signingAlgorithmOf(cert);
  const privateKey = await crypto.subtle.importKey("pkcs8", keyDer, algorithm, false, ["sign"]);
  if (!(await keyMatches(cert, privateKey, algorithm)))
    throw new Error(`the private key in ${keyFile} does not belong to the certificate in ${certFile}`);
  return { cert, certPem: cert.toString("pem"), chainPem, privateKey, source };
}

/** Signs a probe with the key and checks it with the certificate's public key. */
async function keyMatches(
  cert: x509.X509Certificate,
  privateKey: CryptoKey,
  algorithm: { name: string; hash?: string },
): Promise<boolean> {
  const params = { ...algorithm, hash: algorithm.hash ?? "SHA-256" };
  const probe = crypto.getRandomValues(new Uint8Array(32));
  try {
    const signature = await crypto.subtle.sign(params, privateKey, probe);
    return await crypto.subtle.verify(params, await cert.publicKey.export(params, ["verify"]), signature, probe);
  } catch {
    return false; // e.g. an EC key for an RSA certificate
  }
}

/** The import parameters for the CA's private key: ECDSA on the certificate's curve, else RSA. */
async function signingAlgorithmOf(
  cert: x509.X509Certificate,
): Promise<{ name: string; namedCurve?: string; hash?: string }> {
  const alg = cert.publicKey.algorithm as { name: string; namedCurve?: string };
  if (alg.name === "ECDSA") return { name: "ECDSA", namedCurve: alg.namedCurve };
  return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
}

export function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // positive, as RFC 5280 §4.1.2.2 requires
  return Buffer.from(bytes).toString("hex");
}
