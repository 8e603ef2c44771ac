import type { Config } from "../config/schema.ts";
import { agentListenerOptions } from "./agent-listener-options.ts";
import { type Leaf, leafCache } from "./leaf-cache.ts";

/** A CA change makes every leaf signed by the old one useless. */
const caOf = (c: Config) => `${c.tls.caCertFile ?? ""}\0${c.tls.caKeyFile ?? ""}`;

/**
 * A worker's TLS material: leaves are minted by the primary, which holds the
 * CA, so all workers present the same certificate for a host and a burst of
 * tunnels to a new host costs one signature on the machine. The worker keeps
 * what it was given, as the primary does, and never loads the CA itself (nor
 * the X.509 library: a worker stays smaller).
 */
export function createWorkerTls(ask: (names: readonly string[]) => Promise<Leaf>, now: () => number) {
  let minter = leafCache(ask, { now, capacity: 1000 });
  return {
    minter: {
      leafFor: (host: string) => minter.leafFor(host),
      leafForNames: (names: readonly string[]) => minter.leafForNames(names),
      size: () => minter.size(),
    },
    /** Config applier: the primary loaded the new CA already; the leaves it signed before go. */
    async reload(next: Config, prev: Config): Promise<void> {
      if (caOf(next) !== caOf(prev)) minter = leafCache(ask, { now, capacity: 1000 });
    },
    agentListenerOptions: (c: Config) => agentListenerOptions(c, minter),
  };
}
