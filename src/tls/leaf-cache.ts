import { LRUCache } from "lru-cache";

export interface Leaf {
  /** Leaf certificate followed by the CA chain, PEM. */
  cert: string;
  key: string;
  notAfter: number;
  /** Halfway through the leaf's own validity: from then on it is replaced. */
  renewAt: number;
}

/** What the interceptor and the TLS agent listener need: certificates by name. */
export interface LeafMinter {
  /** The certificate for `host`, minted if absent or close to expiry. */
  leafFor(host: string): Promise<Leaf>;
  /** A certificate for several names, not cached (the TLS agent listener's own). */
  leafForNames(names: readonly string[]): Promise<Leaf>;
  size(): number;
}

/**
 * Per-host certificates kept in a bounded LRU, where concurrent requests for
 * one host share one minting, so a burst of agents costs one signature.
 * `mint` makes a certificate: signed here (leaf-minter.ts), or asked of the
 * primary process by a worker, so all workers share its leaves.
 */
export function leafCache(
  mint: (names: readonly string[]) => Promise<Leaf>,
  opts: { now: () => number; capacity: number },
): LeafMinter {
  const { now } = opts;
  const cache = new LRUCache<string, Promise<Leaf>>({ max: opts.capacity });
  return {
    async leafFor(host) {
      const name = host.toLowerCase();
      const cached = cache.get(name);
      if (cached) {
        const leaf = await cached.catch(() => undefined);
        // Half of the leaf's own validity, not of the minter's: a leaf cut short by a CA that
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
    leafForNames: (names) => mint(names),
    size: () => cache.size,
  };
}
