import { isIP, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { authorityOf, connectToProxy, type ProxyHop, tunnelThrough } from "./proxy-hop.ts";

/** Where a request goes: the checked address, and the name TLS verifies the certificate for. */
export interface UpstreamTarget {
  address: string;
  port: number;
  tls: boolean;
  /** The host name (or IP literal) of the URL: TLS server name and certificate identity. */
  name: string;
  /**
   * Through this proxy: plain HTTP goes over a connection to the proxy (any origin), TLS through a CONNECT
   * tunnel to `name:port` (the proxy resolves the name; `address` is then unused).
   */
  proxy?: ProxyHop;
}

export interface PoolOptions {
  /** How long an idle connection is kept for the next request (origins often close theirs after 5 s). */
  idleMs?: number;
  /** Idle connections kept per target. */
  maxIdlePerTarget?: number;
  /** A connection not made (and for TLS, verified) within this long fails; unset, only the caller's signal bounds it. */
  connectTimeoutMs?: number;
  /** This gateway's Via pseudonym, sent with the CONNECTs that open tunnels through an upstream proxy. */
  via?: string;
}

/**
 * Connections to upstreams: opened on demand (TCP, or TLS verified against
 * the system store plus NODE_EXTRA_CA_CERTS), and kept for reuse after a
 * response whose end was proven and which allows it (RFC 9112 §9.3).
 */
export function createConnectionPool(opts: PoolOptions = {}) {
  const idleMs = opts.idleMs ?? 4000;
  const maxIdle = opts.maxIdlePerTarget ?? 32;
  const idle = new Map<string, Set<Socket>>();
  /** The Via of the CONNECTs that open tunnels through an upstream proxy. */
  const via = opts.via === undefined ? undefined : `1.1 ${opts.via}`;
  const keyOf = (t: UpstreamTarget) => {
    if (!t.proxy) return `${t.tls ? "https" : "http"}|${t.address}|${t.port}|${t.name}`;
    // Absolute-form requests to any origin share the connections to the proxy; a tunnel leads to one origin.
    return t.tls ? `https|via ${t.proxy.key}|${t.name}|${t.port}` : `http|via ${t.proxy.key}`;
  };

  function forget(key: string, socket: Socket): void {
    const set = idle.get(key);
    set?.delete(socket);
    if (set?.size === 0) idle.delete(key);
  }

  return {
    /** An idle connection to `target`, if one is kept. */
    take(target: UpstreamTarget): Socket | undefined {
      const key = keyOf(target);
      for (const socket of idle.get(key) ?? []) {
        forget(key, socket);
        socket.emit("cachegate:taken");
        if (!socket.destroyed) return socket;
      }
      return undefined;
    },

    /** Keeps a connection whose last response ended cleanly; it closes itself when idle too long. */
    give(target: UpstreamTarget, socket: Socket): void {
      const key = keyOf(target);
      const set = idle.get(key) ?? new Set<Socket>();
      if (socket.destroyed || set.size >= maxIdle) return void socket.destroy();
      idle.set(key, set);
      set.add(socket);
      const drop = () => {
        forget(key, socket);
        socket.destroy();
      };
      const timer = setTimeout(drop, idleMs);
      socket.once("close", drop);
      socket.on("error", drop);
      // Bytes on an idle connection are a protocol error (or the server closing it): drop it.
      socket.once("data", drop);
      socket.resume();
      socket.once("cachegate:taken", () => {
        clearTimeout(timer);
        socket.off("close", drop);
        socket.off("error", drop);
        socket.off("data", drop);
        socket.pause();
      });
    },

    /** Opens a new connection; resolves once it is connected (and for TLS, verified). */
    async open(target: UpstreamTarget, signal: AbortSignal): Promise<Socket> {
      const { proxy } = target;
      if (proxy && !target.tls) return connectToProxy(proxy, signal);
      const tunnel = proxy && (await tunnelThrough(proxy, authorityOf(target.name, target.port), signal, via));
      return new Promise((resolve, reject) => {
        const socket = target.tls
          ? tlsConnect({
              // Over a tunnel, `host` is only the identity the certificate is checked against (an IP literal has no
              // SNI): left out, it would not be the origin's.
              ...(tunnel
                ? { socket: tunnel, host: target.name, secureContext: proxy.secureContext }
                : { host: target.address, port: target.port }),
              // RFC 6066 §3: SNI carries host names only; an IP literal is checked against the certificate's IP SANs.
              servername: isIP(target.name) === 0 ? target.name : undefined,
              ALPNProtocols: ["http/1.1"],
            })
          : netConnect({ host: target.address, port: target.port });
        const abandon = () => {
          socket.destroy();
          tunnel?.destroy();
          reject(signal.reason);
        };
        signal.addEventListener("abort", abandon, { once: true });
        const slow =
          opts.connectTimeoutMs === undefined
            ? undefined
            : setTimeout(() => {
                signal.removeEventListener("abort", abandon);
                socket.destroy();
                reject(
                  Object.assign(new Error(`no connection within ${opts.connectTimeoutMs} ms`), { code: "ETIMEDOUT" }),
                );
              }, opts.connectTimeoutMs);
        socket.once(target.tls ? "secureConnect" : "connect", () => {
          clearTimeout(slow);
          signal.removeEventListener("abort", abandon);
          socket.off("error", reject);
          socket.setNoDelay(true);
          resolve(socket);
        });
        socket.once("error", (err) => {
          clearTimeout(slow);
          signal.removeEventListener("abort", abandon);
          tunnel?.destroy();
          reject(err);
        });
      });
    },

    /** Closes every idle connection (shutdown). */
    close(): void {
      for (const set of idle.values()) for (const socket of set) socket.destroy();
      idle.clear();
    },
  };
}

export type ConnectionPool = ReturnType<typeof createConnectionPool>;
