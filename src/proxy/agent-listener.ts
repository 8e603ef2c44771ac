import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { HTTPException } from "hono/http-exception";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";

/**
 * The agent-facing (cache) port as a thing that can move: a new listener
 * (another port, or new TLS settings) binds before the old one closes, and
 * requests in flight on the old one finish.
 */
export function createAgentListener(opts: { build: (c: Config) => Promise<Server>; host: string; log: Logger }) {
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
      return port;
    },

    /** Config applier. */
    async apply(next: Config, prev: Config): Promise<void> {
      if (next.cacheMode.port === prev.cacheMode.port && tlsOf(next) === tlsOf(prev)) return;
      let replacement: Server;
      try {
        replacement = await opts.build(next);
      } catch (err) {
        throw new HTTPException(400, {
          message: `tls.agentListener: cannot set up TLS (${(err as Error).message}); check certFile/keyFile; nothing was changed`,
        });
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
        throw new HTTPException(409, {
          message: `cannot listen on port ${next.cacheMode.port} (${(err as Error).message}); choose a free port; nothing was changed`,
        });
      }
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
