import { createServer, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { TLSSocket, type SecureVersion } from "node:tls";
import type { Logger } from "../log.ts";
import type { LeafMinter } from "../tls/leaf-minter.ts";
import { createRequestHandler, type RequestHandlerOptions } from "./listener.ts";

interface TunnelInfo {
  origin: string; // https://host[:port]
  agent: string;
}

export interface InterceptorOptions extends RequestHandlerOptions {
  minter: LeafMinter;
  minVersion: () => SecureVersion;
}

/**
 * TLS interception of CONNECT tunnels: the gateway answers the agent's TLS
 * with a certificate for the tunnel's host signed by the gateway CA, then
 * parses the HTTP/1.1 requests inside (keep-alive: many per tunnel) and
 * sends each through the same proxy app as plain HTTP, as https://host/path.
 */
export function createInterceptor(opts: InterceptorOptions) {
  const tunnels = new WeakMap<object, TunnelInfo>();
  const handler = createRequestHandler(opts, (req: IncomingMessage) => {
    const info = tunnels.get(req.socket) ?? { origin: "https://unknown.invalid", agent: "unknown" };
    // The tunnel's host decides where requests go, whatever Host header they carry:
    // otherwise a tunnel opened to a platform host could reach any host.
    let path = req.url ?? "/";
    if (!path.startsWith("/")) {
      const u = new URL(path, info.origin);
      path = `${u.pathname}${u.search}`;
    }
    return { url: `${info.origin}${path}`, form: "absolute", agent: info.agent };
  });
  const inner = createServer({ maxHeaderSize: 32 * 1024 }, handler);

  return async function intercept(client: Duplex, head: Buffer, host: string, port: number, agent: string): Promise<void> {
    const leaf = await opts.minter.leafFor(host.replace(/^\[|\]$/g, ""));
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) client.unshift(head); // the start of the ClientHello, if the agent did not wait
    const secure = new TLSSocket(client as Socket, {
      isServer: true,
      key: leaf.key,
      cert: leaf.cert,
      minVersion: opts.minVersion(),
      ALPNProtocols: ["http/1.1"],
    });
    secure.on("error", (error) => {
      // Mostly agents that offered too old a TLS version or do not trust the CA yet.
      opts.log.warn("intercepted TLS failed", { host, agent, error: error.message });
      secure.destroy();
      client.destroy();
    });
    tunnels.set(secure, { origin: port === 443 ? `https://${host}` : `https://${host}:${port}`, agent });
    inner.emit("connection", secure);
  };
}

export type Interceptor = ReturnType<typeof createInterceptor>;
