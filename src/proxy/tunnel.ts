import type { IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { AGENTS_ONLY, PROXY_AUTHENTICATE } from "../agents/proxy-auth.ts";
import { domainMatches } from "../config/domain-name.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { type ResolvedUpstream, UpstreamRefused } from "./address-guard.ts";
import type { ProxyAuthorize } from "./app.ts";
import type { Interceptor } from "./intercept.ts";
import { deniedMessage, reachOf } from "./policy.ts";

export interface TunnelOptions {
  config: () => Config;
  guard: (host: string, port: number) => Promise<ResolvedUpstream>;
  log: Logger;
  /** Decrypts tunnels to platform hosts in Cache Mode, so what flows through can be cached. */
  interceptor?: () => Interceptor | undefined;
  authorize: ProxyAuthorize;
}

/** Parses a CONNECT authority (`host:port`, `[v6]:port`), or returns null. */
export function parseAuthority(authority: string): { host: string; port: number } | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s/@]+):(\d{1,5})$/.exec(authority);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1]!.toLowerCase(), port };
}

/**
 * CONNECT to a host that policy allows, on a port allowed for tunnels (443
 * by default, as Squid's SSL_ports). In Cache Mode a tunnel to a platform
 * host is intercepted (TLS terminated, requests cached); any other tunnel
 * (Allowed Domains, do-not-intercept hosts) is a byte pipe the gateway
 * never looks into.
 */
export function createTunnelHandler(opts: TunnelOptions) {
  // Tunnels outlive the listener's own connection tracking; shutdown must end them itself.
  const open = new Set<Duplex>();
  /** Tunnels opened with agent credentials (Patch Mode), so a revocation can close them at once. */
  const byAgent = new Map<string, Set<Duplex>>();
  const tunnel = async function tunnel(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    client.on("error", () => {});
    open.add(client);
    client.once("close", () => open.delete(client));
    const target = parseAuthority(req.url ?? "");
    if (!target)
      return refuse(client, 400, `CONNECT needs host:port, e.g. "CONNECT example.qualys.com:443"; got "${req.url}"`);
    const config = opts.config();
    let agent = req.socket.remoteAddress ?? "unknown";
    if (config.patchMode.enabled) {
      const auth = await opts.authorize(req.headers["proxy-authorization"], agent, config.patchMode.clientNetworks);
      if (!auth.ok) {
        if (auth.delayMs > 0) await Bun.sleep(auth.delayMs);
        return refuse(client, 407, AGENTS_ONLY, `Proxy-Authenticate: ${PROXY_AUTHENTICATE}\r\n`);
      }
      agent = auth.agent;
      let tunnels = byAgent.get(agent);
      if (!tunnels) {
        tunnels = new Set();
        byAgent.set(agent, tunnels);
      }
      tunnels.add(client);
      client.once("close", () => {
        tunnels.delete(client);
        if (tunnels.size === 0 && byAgent.get(agent) === tunnels) byAgent.delete(agent);
      });
    }
    const reach = reachOf(target.host, config);
    if (reach === "denied") return refuse(client, 403, deniedMessage(target.host, config));
    if (!config.connect.ports.includes(target.port)) {
      return refuse(
        client,
        403,
        `CONNECT to port ${target.port} is refused; tunnels may only reach ports ${config.connect.ports.join(", ")} (connect.ports)`,
      );
    }
    const intercept = opts.interceptor?.();
    const cached = (reach === "platform" && config.cacheMode.enabled) || reach === "patch";
    if (intercept && cached && !domainMatches(target.host, config.tls.doNotIntercept)) {
      // Upstream is resolved and checked per request, when (and only if) a request misses the cache.
      return intercept(client, head, target.host, target.port, agent, config.patchMode.enabled);
    }
    let address: ResolvedUpstream;
    try {
      address = await opts.guard(target.host, target.port);
    } catch (err) {
      const status = err instanceof UpstreamRefused ? err.status : 502;
      return refuse(client, status, (err as Error).message);
    }
    const upstream: Socket = connect({ host: address.address, port: target.port });
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on("error", (err) => {
      if (!connected) {
        opts.log.warn("tunnel upstream failed", { target: req.url, error: err });
        return refuse(client, 502, `could not connect to ${req.url}: ${err.message}`);
      }
      client.destroy();
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  };
  return Object.assign(tunnel, {
    /** Ends every open tunnel (shutdown). */
    closeAll() {
      for (const socket of open) socket.destroy();
    },
    /** Ends the tunnels a revoked agent opened. */
    closeAgent(username: string) {
      for (const socket of byAgent.get(username) ?? []) socket.destroy();
    },
  });
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  407: "Proxy Authentication Required",
  502: "Bad Gateway",
};

function refuse(client: Duplex, status: number, message: string, extraHeaders = ""): void {
  const body = `cachegate: ${message}\n`;
  client.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\nContent-Type: text/plain; charset=utf-8\r\n${extraHeaders}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
