import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";

/**
 * The agent-facing (cache) port as a thing that can move: a new listener
 * (another port, or new TLS settings) binds before the old one closes, and
 * requests in flight on the old one finish.
 */
export interface AgentListenerOptions {
  build: (c: Config) => Promise<Server>;
  host: string;
  /** The gateway's own ports: the agent port is added while bound, so the address guard refuses loops to it. */
  ownPorts: Set<number>;
  log: Logger;
}

export function createAgentListener(opts: AgentListenerOptions) {
  let server: Server | undefined;
  let port = 0;

  // What the TLS listener's certificate and handshake depend on (a new CA means a new certificate).
  const tlsOf = (c: Config) =>
    JSON.stringify(
      c.tls.agentListener.enabled ? [c.tls.agentListener, c.tls.minVersion, c.tls.caCertFile, c.tls.caKeyFile] : false,
    );

  return {
    port: () => port,

    async start(config: Config, portOverride?: number): Promise<number> {
      server = await opts.build(config);
      port = await listen(server, portOverride ?? config.cacheMode.port, opts.host);
      opts.ownPorts.add(port);
      return port;
    },

    /** Config applier. */
    async apply(next: Config, prev: Config): Promise<void> {
      if (next.cacheMode.port === prev.cacheMode.port && tlsOf(next) === tlsOf(prev)) return;
      let replacement: Server;
      try {
        replacement = await opts.build(next);
      } catch (err) {
        const why = (err as Error).message;
        throw new GatewayError(
          400,
          "tls_unusable",
          `tls.agentListener: cannot set up TLS (${why}); check certFile/keyFile; nothing was changed`,
          { cause: err },
        );
      }
      const samePort = next.cacheMode.port === prev.cacheMode.port;
      const old = server!;
      // Same port (only the TLS settings change): the old listener must let go first, a brief gap.
      if (samePort) await new Promise<void>((resolve) => old.close(() => resolve()));
      let bound: number;
      try {
        bound = await listen(replacement, samePort ? port : next.cacheMode.port, opts.host);
      } catch (err) {
        if (samePort) await listen(old, port, opts.host);
        const why = (err as Error).message;
        throw new GatewayError(
          409,
          "port_unavailable",
          `cannot listen on port ${next.cacheMode.port} (${why}); choose a free port; nothing was changed`,
          { cause: err },
        );
      }
      opts.ownPorts.add(bound);
      if (bound !== port) opts.ownPorts.delete(port);
      server = replacement;
      port = bound;
      if (old.listening) old.close();
      old.closeIdleConnections();
      opts.log.info("agent listener rebound", { port, tls: next.tls.agentListener.enabled });
    },

    async stop(): Promise<void> {
      if (!server) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
