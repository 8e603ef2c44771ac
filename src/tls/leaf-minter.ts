import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { EC_P256, type GatewayCa, randomSerial } from "./ca.ts";
import { type Leaf, type LeafMinter, leafCache } from "./leaf-cache.ts";

export type { Leaf, LeafMinter } from "./leaf-cache.ts";

export interface MinterOptions {
  now?: () => number;
  /** Short validity: a leaked leaf is useless soon. */
  validityMs?: number;
  /** How many hosts' certificates are kept. */
  capacity?: number;
}

/**
 * Mints per-host certificates signed by the gateway CA, on the fly, kept as
 * leaf-cache.ts says. All leaves share one key pair (as mitmproxy does):
 * minting is then a signature, not a key generation.
 */
export function createLeafMinter(ca: GatewayCa, opts: MinterOptions = {}): LeafMinter {
  const now = opts.now ?? Date.now;
  const validityMs = opts.validityMs ?? 7 * 86400_000;
  const keys = crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
  const keyPem = keys.then(async (k) =>
    x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", k.privateKey), "PRIVATE KEY"),
  );
  const signing = ca.privateKey.algorithm.name === "ECDSA" ? EC_P256 : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };

  // The same for every leaf: build it once, not per minting (it is a fifth of the cost).
  const authorityKeyId = x509.AuthorityKeyIdentifierExtension.create(ca.cert);

  async function mint(names: readonly string[]): Promise<Leaf> {
    const { publicKey } = await keys;
    const t = now();
    const notAfter = Math.min(t + validityMs, ca.cert.notAfter.getTime());
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${names[0]}`,
      issuer: ca.cert.subject,
      notBefore: new Date(t - 3600_000), // tolerate agents whose clocks run a little behind
      notAfter: new Date(notAfter),
      signingKey: ca.privateKey,
      publicKey,
      signingAlgorithm: signing,
      extensions: [
        new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: isIP(n) ? "ip" : "dns", value: n }))),
        new x509.BasicConstraintsExtension(false),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        await authorityKeyId,
      ],
    });
    const chain = [cert.toString("pem"), ca.chainPem].filter((p) => p !== "").join("\n");
    return { cert: chain, key: await keyPem, notAfter, renewAt: t + (notAfter - t) / 2 };
  }

  return leafCache(mint, { now, capacity: opts.capacity ?? 1000 });
}
