import { createServer, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, type SecureVersion, TLSSocket } from "node:tls";
import type { Leaf, LeafMinter } from "../tls/leaf-minter.ts";
import { createRequestHandler, type RequestHandlerOptions } from "./request-handler.ts";

interface TunnelInfo {
  origin: string; // https://host[:port]
  /** The agent's user name if its CONNECT was authorized (Patch Mode), else its address. */
  agent: string;
  /** The agent's address, for the access log. */
  address: string;
  authenticated: boolean;
}

export interface InterceptorOptions extends RequestHandlerOptions {
  minter: LeafMinter;
  minVersion: () => SecureVersion;
  /**
   * How long a tunnel may wait for its first request, and sit idle between
   * requests, before it is closed. node:http's own keep-alive and header
   * timeouts do not reach sockets handed to it with "connection", so
   * without these an idle agent would hold its tunnel open forever.
   */
  timeouts?: { firstRequestMs?: number; keepAliveMs?: number };
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
    const info = tunnels.get(req.socket) ?? {
      origin: "https://unknown.invalid",
      agent: "unknown",
      address: "unknown",
      authenticated: false,
    };
    // The tunnel's host decides where requests go, whatever Host header they carry:
    // otherwise a tunnel opened to a platform host could reach any host.
    let path = req.url ?? "/";
    if (!path.startsWith("/")) {
      const u = new URL(path, info.origin);
      path = `${u.pathname}${u.search}`;
    }
    const { agent, address, authenticated } = info;
    return { url: `${info.origin}${path}`, form: "absolute", agent, address, authenticated };
  });
  const inner = createServer({ maxHeaderSize: 32 * 1024 }, handler);
  const firstRequestMs = opts.timeouts?.firstRequestMs ?? 30_000;
  const keepAliveMs = opts.timeouts?.keepAliveMs ?? 5_000; // as node:http's keepAliveTimeout on the agent port
  const idle = new WeakMap<object, { active: number; arm(ms: number): void; disarm(): void }>();
  inner.on("request", (req: IncomingMessage, res) => {
    const state = idle.get(req.socket);
    if (!state) return;
    state.active++;
    state.disarm(); // a request in flight may take as long as its download does
    res.once("close", () => {
      if (--state.active === 0) state.arm(keepAliveMs);
    });
  });

  /** Hands a tunnel's socket (TLS-terminated, or plain) to the inner HTTP server, with its idle timers. */
  function serve(socket: Duplex, client: Duplex, info: TunnelInfo): void {
    let timer: Timer | undefined;
    const state = {
      active: 0,
      arm(ms: number) {
        clearTimeout(timer);
        timer = setTimeout(() => {
          socket.destroy();
          client.destroy();
        }, ms);
      },
      disarm: () => clearTimeout(timer),
    };
    state.arm(firstRequestMs);
    socket.once("close", state.disarm);
    client.once("close", state.disarm);
    idle.set(socket, state);
    tunnels.set(socket, info);
    inner.emit("connection", socket);
  }

  return async function intercept(
    client: Duplex,
    head: Buffer,
    host: string,
    port: number,
    agent: string,
    authenticated: boolean,
    address = agent,
  ): Promise<void> {
    const leaf = await opts.minter.leafFor(host.replace(/^\[|\]$/g, ""));
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    // Most agents speak TLS in a tunnel, but some (Node's undici ProxyAgent for http:// URLs) send plain
    // HTTP: the first byte tells them apart (a TLS record of type handshake is 0x16, RFC 8446 §5.1).
    const first = head.length > 0 ? head : await firstBytes(client, firstRequestMs);
    if (!first) return void client.destroy();
    client.unshift(first);
    const authority = (scheme: string, standard: number) =>
      port === standard ? `${scheme}://${host}` : `${scheme}://${host}:${port}`;
    if (first[0] !== 0x16) {
      serve(client, client, { origin: authority("http", 80), agent, address, authenticated });
      return void client.resume(); // paused while its first bytes were looked at
    }

    const secure = new TLSSocket(client as Socket, {
      isServer: true,
      secureContext: contextFor(leaf, opts.minVersion()),
      ALPNProtocols: ["http/1.1"],
    });
    secure.on("error", (error) => {
      // Mostly agents that offered too old a TLS version or do not trust the CA yet.
      opts.log.warn("intercepted TLS failed", { host, agent, error: error.message });
      secure.destroy();
      client.destroy();
    });
    // An agent that drops the connection without closing TLS (killed, reset, gave up mid-handshake)
    // leaves the TLS socket waiting forever: nothing else ends it, and the listener cannot close.
    client.once("end", () => {
      if (secure.writableEnded) return; // a clean TLS close: the HTTP server is already ending it
      secure.destroy();
      client.destroy();
    });
    serve(secure, client, { origin: authority("https", 443), agent, address, authenticated });
  };
}

/** The first bytes an agent sends into its tunnel, or undefined if it closes or stays silent for `ms`. */
function firstBytes(client: Duplex, ms: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const done = (chunk: Buffer | undefined) => {
      clearTimeout(timer);
      client.off("data", onData);
      for (const event of ["end", "close", "error"]) client.off(event, onClose);
      client.pause();
      resolve(chunk);
    };
    const onData = (chunk: Buffer) => done(chunk);
    const onClose = () => done(undefined);
    const timer = setTimeout(onClose, ms);
    client.on("data", onData);
    for (const event of ["end", "close", "error"]) client.on(event, onClose);
  });
}

/** One TLS context per leaf and minimum version, instead of parsing the PEMs again for every tunnel. */
const contexts = new WeakMap<Leaf, Map<SecureVersion, SecureContext>>();
function contextFor(leaf: Leaf, minVersion: SecureVersion): SecureContext {
  let byVersion = contexts.get(leaf);
  if (!byVersion) {
    byVersion = new Map();
    contexts.set(leaf, byVersion);
  }
  let context = byVersion.get(minVersion);
  if (!context) {
    context = createSecureContext({ key: leaf.key, cert: leaf.cert, minVersion });
    byVersion.set(minVersion, context);
  }
  return context;
}

export type Interceptor = ReturnType<typeof createInterceptor>;
