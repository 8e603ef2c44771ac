import type { IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { domainToASCII } from "node:url";
import type { AgentGate } from "../agents/proxy-auth.ts";
import { domainMatches } from "../config/domain-name.ts";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type AddressGuard, checkBehindProxy } from "../net/address-guard.ts";
import type { ClientAddress } from "../net/client-address.ts";
import type { Served } from "../stats/collector.ts";
import { authorityOf, type ProxyHop, tunnelThrough } from "../upstream/proxy-hop.ts";
import { watchAgent } from "./agent-watch.ts";
import { admitAgent } from "./agents-only.ts";
import { hasLooped } from "./hop-by-hop.ts";
import type { Interceptor } from "./intercept.ts";
import { domainNotAllowed, reachOf } from "./policy.ts";
import { writeRefusal } from "./refusal.ts";

export interface TunnelOptions {
  config: () => Config;
  guard: AddressGuard;
  log: Logger;
  /** Decrypts tunnels to platform hosts in Cache Mode, so what flows through can be cached. */
  interceptor?: Interceptor;
  agents: AgentGate;
  /** The upstream proxy a tunnel to this host goes through (upstreamProxy), or undefined to connect directly. */
  proxyFor?: (host: string) => ProxyHop | undefined;
  /** This gateway's Via pseudonym: a CONNECT that already passed through it is a loop. */
  via?: string;
  /** Told about every CONNECT once answered: a refusal at once, an interception once set up, a pipe when it closes. */
  onServed?: (served: Served) => void;
  /** The agent's address: the socket's, or behind a trusted front end its X-Forwarded-For (net/client-address.ts). */
  clientAddress?: ClientAddress;
}

/** How a CONNECT ended, for onServed. */
type TunnelOutcome = Pick<Served, "label" | "status" | "bytes" | "contentType">;
type Report = (outcome: TunnelOutcome) => void;
/** The agent behind a CONNECT: its address (read once), and its user name once admitted under Patch Mode. */
type Who = { address: string; user?: string };

/** How long the upstream proxy may take to open a tunnel. */
const PROXY_TUNNEL_TIMEOUT_MS = 30_000;

/** Parses a CONNECT authority (`host:port`, `[v6]:port`), or returns null. */
export function parseAuthority(authority: string): { host: string; port: number } | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s/@]+):(\d{1,5})$/.exec(authority);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  const host = m[1]!.toLowerCase();
  // A name must be a valid IDNA host ("xn--a" is not valid punycode); an IPv6 literal keeps its brackets.
  if (!host.startsWith("[") && domainToASCII(host) === "") return null;
  return { host, port };
}

/**
 * CONNECT to a host that policy allows, on a port allowed for tunnels (443
 * by default, as Squid's SSL_ports). In Cache Mode a tunnel to a platform
 * host is intercepted (TLS terminated, requests cached); any other tunnel
 * (Allowed Domains, do-not-intercept hosts) is a byte pipe the gateway
 * never looks into. A refusal is written to the raw socket, which is closed.
 */
export function createTunnelHandler(opts: TunnelOptions) {
  const clientOf = (req: IncomingMessage) => {
    const socket = req.socket.remoteAddress ?? "unknown";
    return opts.clientAddress ? opts.clientAddress(socket, () => req.headers["x-forwarded-for"]) : socket;
  };
  // Tunnels outlive the listener's own connection tracking; shutdown must end them itself.
  const open = new Set<Duplex>();
  /** Tunnels opened with agent credentials (Patch Mode), so a revocation can close them at once. */
  const byAgent = new Map<string, Set<Duplex>>();

  function trackAgent(agent: string, client: Duplex): void {
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

  /** `who.user` is filled in as the agent is admitted: its user name under Patch Mode. */
  async function establish(
    req: IncomingMessage,
    client: Duplex,
    head: Buffer,
    who: Who,
    report: Report,
  ): Promise<void> {
    const via = req.headers.via;
    if (opts.via && via && hasLooped(new Headers({ via }), opts.via)) {
      const message =
        `CONNECT loop: this CONNECT already passed through this gateway (see its Via header); check the ` +
        "upstream proxy settings (upstreamProxy.url) of the gateways and proxies it went through";
      throw new GatewayError(508, "request_loop", message);
    }
    const target = parseAuthority(req.url ?? "");
    if (!target) {
      const example = '"CONNECT example.qualys.com:443"';
      throw new GatewayError(400, "bad_connect_target", `CONNECT needs host:port, e.g. ${example}; got "${req.url}"`);
    }
    const config = opts.config();
    let agent = who.address;
    if (config.patchMode.enabled) {
      const header = req.headers["proxy-authorization"];
      agent = await admitAgent(opts.agents, header, agent, config.patchMode.clientNetworks);
      who.user = agent;
      trackAgent(agent, client);
    }
    const reach = reachOf(target.host, config);
    if (reach === "denied") throw domainNotAllowed(target.host, config);
    if (!config.connect.ports.includes(target.port)) {
      const allowed = config.connect.ports.join(", ");
      throw new GatewayError(
        403,
        "connect_port_not_allowed",
        `CONNECT to port ${target.port} is refused; tunnels may only reach ports ${allowed} (connect.ports)`,
      );
    }
    const cached = (reach === "platform" && config.cacheMode.enabled) || reach === "patch";
    if (opts.interceptor && cached && !domainMatches(target.host, config.tls.doNotIntercept)) {
      // Upstream is resolved and checked per request, when (and only if) a request misses the cache.
      opts.log.debug("intercepting a tunnel", { target: req.url, agent });
      await opts.interceptor(client, head, target.host, target.port, agent, config.patchMode.enabled, who.address);
      return report({ label: "INTERCEPTED", status: 200, bytes: 0 });
    }
    const name = target.host.replace(/^\[|\]$/g, "");
    const proxy = opts.proxyFor?.(name);
    if (proxy) return pipeThroughProxy(req, client, head, target, authorityOf(name, target.port), proxy, report);
    const address = await opts.guard(target.host, target.port);
    pipe(req, client, head, address.address, target.port, report);
  }

  /**
   * The same byte pipe when upstream is reached through the upstream proxy:
   * CONNECT there first (the guard still refuses private origins; a name
   * only the proxy can resolve goes through), then splice.
   */
  async function pipeThroughProxy(
    req: IncomingMessage,
    client: Duplex,
    head: Buffer,
    target: { host: string; port: number },
    authority: string,
    proxy: ProxyHop,
    report: Report,
  ) {
    await checkBehindProxy(opts.guard, target.host, target.port);
    if (client.destroyed) return;
    let early: Buffer = Buffer.alloc(0);
    const timeout = AbortSignal.timeout(PROXY_TUNNEL_TIMEOUT_MS);
    // An agent that gives up before the proxy answers takes the connection to the proxy with it, not 30 s later.
    const agent = watchAgent(client);
    let upstream: Socket;
    try {
      // The CONNECT's Via as it came, and this gateway's (RFC 9110 §7.6.3), so a loop of proxies is seen.
      const via = [req.headers.via, opts.via && `1.1 ${opts.via}`].filter(Boolean).join(", ");
      upstream = await tunnelThrough(proxy, authority, AbortSignal.any([timeout, agent.gone]), via);
    } catch (err) {
      if (agent.gone.aborted) return;
      if (!timeout.aborted) throw err;
      const message =
        `the upstream proxy ${proxy.label} did not open a tunnel to ${authority} within ` +
        `${PROXY_TUNNEL_TIMEOUT_MS / 1000} s; check that it is running and reachable`;
      throw new GatewayError(504, "upstream_timeout", message, { cause: err });
    } finally {
      early = agent.stop();
    }
    if (client.destroyed || agent.gone.aborted) return void upstream.destroy();
    splice(req, client, early.length > 0 ? Buffer.concat([head, early]) : head, upstream, report);
    upstream.resume();
  }

  /** Answers 200 and joins the two sockets; either closing closes the other. */
  function splice(req: IncomingMessage, client: Duplex, head: Buffer, upstream: Socket, report: Report): void {
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    // Squid's TCP_TUNNEL line, written when the tunnel closes, with the bytes that went to the agent.
    upstream.once("close", () => {
      const bytes = upstream.bytesRead;
      opts.log.debug("tunnel closed", { target: req.url, bytesToAgent: bytes, bytesToUpstream: upstream.bytesWritten });
      report({ label: "TUNNEL", status: 200, bytes });
    });
  }

  /** A byte pipe to the checked address; the 200 goes out only once upstream has accepted. */
  function pipe(req: IncomingMessage, client: Duplex, head: Buffer, address: string, port: number, report: Report) {
    const upstream = connect({ host: address, port });
    const refuse = (err: Error) => {
      opts.log.warn("tunnel upstream failed", { target: req.url, error: err });
      const message = `could not connect to ${req.url}: ${err.message}`;
      report(writeRefusal(client, new GatewayError(502, "upstream_unreachable", message, { cause: err })));
      upstream.destroy();
    };
    upstream.once("error", refuse);
    upstream.once("connect", () => {
      upstream.off("error", refuse);
      splice(req, client, head, upstream, report);
    });
    client.on("close", () => upstream.destroy());
  }

  const tunnel = async function tunnel(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    const started = performance.now();
    client.on("error", () => {});
    open.add(client);
    client.once("close", () => open.delete(client));
    const address = clientOf(req);
    const who: Who = { address };
    const report = (outcome: TunnelOutcome) =>
      opts.onServed?.({
        ...outcome,
        agent: who.user ?? address,
        url: req.url ?? "",
        method: "CONNECT",
        elapsedMs: performance.now() - started,
        client: address,
        user: who.user,
        httpVersion: req.httpVersion,
        userAgent: req.headers["user-agent"],
      });
    try {
      await establish(req, client, head, who, report);
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err; // the listener logs it and drops the socket
      report(writeRefusal(client, err));
    }
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
