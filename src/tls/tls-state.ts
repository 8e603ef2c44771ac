import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { agentListenerOptions } from "./agent-listener-options.ts";
import { type GatewayCa, loadCa } from "./ca.ts";
import { createLeafMinter, type LeafMinter } from "./leaf-minter.ts";

/**
 * The gateway's TLS material as the configuration says: the CA (generated
 * or the operator's), the minter of per-host certificates, and the options
 * of the TLS agent listener. Reloaded when the CA settings change.
 */
export async function createTlsState(dataDir: string, config: Config, log: Logger) {
  const load = (c: Config) => loadCa(dataDir, { certFile: c.tls.caCertFile, keyFile: c.tls.caKeyFile }, log);
  let ca: GatewayCa = await load(config);
  let minter: LeafMinter = createLeafMinter(ca);

  return {
    caPem: () => ca.certPem,
    /** Stable across reloads: always mints from the current CA. */
    minter: {
      leafFor: (host: string) => minter.leafFor(host),
      leafForNames: (n: readonly string[]) => minter.leafForNames(n),
      size: () => minter.size(),
    } satisfies LeafMinter,

    /** Loads the CA a config change names; throws a 400 that says why if it cannot. */
    async reload(next: Config, prev: Config): Promise<void> {
      if (next.tls.caCertFile === prev.tls.caCertFile && next.tls.caKeyFile === prev.tls.caKeyFile) return;
      try {
        ca = await load(next);
      } catch (err) {
        const why = (err as Error).message;
        throw new GatewayError(
          400,
          "tls_unusable",
          `tls.caCertFile/tls.caKeyFile: cannot load the CA (${why}); ` +
            "give PEM files readable by the gateway; nothing was changed",
          { cause: err },
        );
      }
      minter = createLeafMinter(ca);
      log.info("gateway CA loaded", { source: ca.source });
    },

    /** TLS options for the agent port, or undefined when it speaks plain HTTP. */
    agentListenerOptions: (c: Config) => agentListenerOptions(c, minter),
  };
}
