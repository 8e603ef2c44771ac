import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { LRUCache } from "lru-cache";
import { EC_P256, type GatewayCa, randomSerial } from "./ca.ts";

export interface Leaf {
  /** Leaf certificate followed by the CA chain, PEM. */
  cert: string;
  key: string;
  notAfter: number;
  /** Halfway through the leaf's own validity: from then on it is replaced. */
  renewAt: number;
}

export interface MinterOptions {
  now?: () => number;
  /** Short validity: a leaked leaf is useless soon. */
  validityMs?: number;
  /** How many hosts' certificates are kept. */
  capacity?: number;
}

/**
 * Mints per-host certificates signed by the gateway CA, on the fly.
 * Certificates are kept in a bounded LRU and concurrent requests for one
 * host share one minting, so a burst of agents costs one signature. All
 * leaves share one key pair (as mitmproxy does): minting is then a signature,
 * not a key generation.
 */
export function createLeafMinter(ca: GatewayCa, opts: MinterOptions = {}) {
  const now = opts.now ?? Date.now;
  const validityMs = opts.validityMs ?? 7 * 86400_000;
  const capacity = opts.capacity ?? 1000;
  const cache = new LRUCache<string, Promise<Leaf>>({ max: capacity });
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

  return {
    /** The certificate for `host`, minted if absent or close to expiry. */
    async leafFor(host: string): Promise<Leaf> {
      const name = host.toLowerCase();
      const cached = cache.get(name);
      if (cached) {
        const leaf = await cached.catch(() => undefined);
        // Half of the leaf's own validity, not of validityMs: a leaf cut short by a CA that
        // expires soon would otherwise be replaced at every handshake.
        if (leaf && now() < leaf.renewAt) return leaf;
        if (cache.get(name) === cached) cache.delete(name);
        else return this.leafFor(name); // someone else already re-minted
      }
      const minting = mint([name]);
      cache.set(name, minting);
      minting.catch(() => cache.get(name) === minting && cache.delete(name));
      return minting;
    },
    /** A certificate for several names, not cached (the TLS agent listener's own). */
    leafForNames: (names: readonly string[]) => mint(names),
    size: () => cache.size,
  };
}

export type LeafMinter = ReturnType<typeof createLeafMinter>;
