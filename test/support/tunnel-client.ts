import { connect as netConnect, type Socket } from "node:net";
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from "node:tls";

/**
 * The agent's side of an HTTPS request through the gateway, one step at a
 * time: a TCP connection to the proxy port, a CONNECT tunnel on it, TLS
 * inside the tunnel. Each step is bounded, and a failure leaves no socket
 * open. The tests (through ./tls-clients.ts) and the TLS load generator
 * (bench/tls-client.ts) both use it, so it imports nothing from bun:test.
 */

const TIMEOUT_MS = 5000;

/** Settles as `promise` does, or after `ms` calls `onTimeout` and rejects naming `what`. */
function bounded<T>(promise: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`${what}: no answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A TCP connection (Nagle off, as curl and browsers have it) to `host:port`. */
export function tcpConnect(port: number, host = "127.0.0.1", timeoutMs = TIMEOUT_MS): Promise<Socket> {
  const socket = netConnect({ port, host, noDelay: true });
  return bounded(
    new Promise<Socket>((resolve, reject) => {
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(socket);
      });
      socket.once("error", reject);
    }),
    timeoutMs,
    `connecting to ${host}:${port}`,
    () => socket.destroy(),
  );
}

export interface TunnelOptions {
  /** Extra CONNECT request headers (Proxy-Authorization). */
  headers?: Record<string, string>;
  /** For the TCP connection, and again for the answer to CONNECT. */
  timeoutMs?: number;
}

/**
 * Opens a CONNECT tunnel to `authority` through the proxy at
 * 127.0.0.1:`proxyPort` and resolves with the raw socket once the gateway
 * answered 200; rejects with the answer's status line (and what followed
 * it) otherwise, or when the connection closes first.
 */
export async function openTunnel(proxyPort: number, authority: string, opts: TunnelOptions = {}): Promise<Socket> {
  const timeoutMs = opts.timeoutMs ?? TIMEOUT_MS;
  const socket = await tcpConnect(proxyPort, "127.0.0.1", timeoutMs);
  return bounded(
    new Promise<Socket>((resolve, reject) => {
      let buffered: Buffer = Buffer.alloc(0);
      const stop = () => {
        socket.off("data", onData);
        socket.off("error", fail);
        socket.off("close", closed);
      };
      const fail = (err: Error) => {
        stop();
        socket.destroy();
        reject(err);
      };
      const closed = () => fail(new Error(`CONNECT ${authority}: the connection closed before an answer`));
      const onData = (data: Buffer) => {
        buffered = buffered.length === 0 ? data : Buffer.concat([buffered, data]);
        const end = buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString("latin1");
        if (!/^HTTP\/1\.[01] 200/.test(head)) {
          const rest = buffered.subarray(end + 4).toString();
          return fail(new Error(`CONNECT ${authority} answered: ${head.split("\r\n")[0]} ${rest}`));
        }
        stop();
        const rest = buffered.subarray(end + 4);
        if (rest.length > 0) socket.unshift(rest);
        resolve(socket);
      };
      socket.on("data", onData);
      socket.on("error", fail);
      socket.on("close", closed);
      const extra = Object.entries(opts.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`);
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${extra.join("")}\r\n`);
    }),
    timeoutMs,
    `CONNECT ${authority}`,
    () => socket.destroy(),
  );
}

/**
 * A TLS client handshake (ALPN http/1.1) on `raw`, or on a fresh TCP
 * connection when it is undefined (`host` and `port` in `options`):
 * resolves once the handshake is done (the certificate verified against
 * `ca` unless rejectUnauthorized is false), rejects with its error.
 */
export function tlsOver(
  raw: Socket | undefined,
  options: ConnectionOptions,
  timeoutMs = TIMEOUT_MS,
): Promise<TLSSocket> {
  const secure = tlsConnect({ ...(raw ? { socket: raw } : {}), ALPNProtocols: ["http/1.1"], ...options });
  const drop = () => {
    secure.destroy();
    raw?.destroy();
  };
  return bounded(
    new Promise<TLSSocket>((resolve, reject) => {
      const fail = (err: Error) => {
        secure.off("secureConnect", done);
        secure.off("close", closed);
        drop();
        reject(err);
      };
      const closed = () => fail(new Error("connection closed during the TLS handshake"));
      const done = () => {
        secure.off("error", fail);
        secure.off("close", closed);
        secure.on("error", () => {}); // from here its user watches "close"
        resolve(secure);
      };
      secure.once("secureConnect", done);
      secure.once("error", fail);
      secure.once("close", closed);
    }),
    timeoutMs,
    "TLS handshake",
    drop,
  );
}

/** CONNECT to `host:port` through the proxy, then TLS inside the tunnel for `host` (SNI and certificate check). */
export async function tlsThroughTunnel(
  proxyPort: number,
  host: string,
  port: number,
  options: ConnectionOptions = {},
  timeoutMs = TIMEOUT_MS,
): Promise<TLSSocket> {
  const raw = await openTunnel(proxyPort, `${host}:${port}`, { timeoutMs });
  return tlsOver(raw, { servername: host, ...options }, timeoutMs);
}
