import { isIP, connect as netConnect, type Socket } from "node:net";
import type { SecureContext } from "node:tls";
import { GatewayError } from "../errors.ts";
import { parseResponseHead } from "./framing.ts";

/**
 * An upstream proxy (a corporate proxy or a parent gateway) that requests
 * go through: plain `http://` ones in absolute form over a kept connection
 * to it, everything else through a CONNECT tunnel (RFC 9110 §9.3.6).
 */
export interface ProxyHop {
  host: string;
  port: number;
  /** `Basic …` for Proxy-Authorization (RFC 9110 §11.7.1), when the proxy URL carries credentials. */
  authorization?: string;
  /** `host:port`: how messages name the proxy (never with its password). */
  label: string;
  /**
   * Trust for the origins behind the proxy when it adds a CA (caFile): the default store plus that CA, built
   * once (building it costs ~17 ms of CPU, too much per connection). Undefined: the default store alone.
   */
  secureContext?: SecureContext;
  /** Changes with every new proxy setting, so kept connections of an old one are never reused. */
  key: string;
}

/** Longest answer head to CONNECT accepted. */
const MAX_HEAD = 16 * 1024;
const HEAD_END = Buffer.from("\r\n\r\n");
const WHAT_TO_CHECK = "CACHEGATE_UPSTREAM_PROXY / upstreamProxy.url";

/**
 * `host:port` of a CONNECT request: IPv6 literals in brackets (RFC 9110 §9.3.6 uses the authority form); also
 * how logs and messages name the proxy itself (its `label`, never with credentials).
 */
export function authorityOf(name: string, port: number): string {
  return `${isIP(name) === 6 ? `[${name}]` : name}:${port}`;
}

/** A 407 from the proxy: the gateway's credentials are missing or wrong. */
export function proxyAuthError(hop: ProxyHop): GatewayError {
  const what = hop.authorization
    ? `refused the gateway's credentials (407 Proxy Authentication Required); check the user and password in ${WHAT_TO_CHECK}`
    : `asks for credentials (407 Proxy Authentication Required); add user:pass@ to ${WHAT_TO_CHECK}`;
  return new GatewayError(502, "upstream_proxy_auth", `the upstream proxy ${hop.label} ${what}`);
}

function unreachable(hop: ProxyHop, err: unknown): GatewayError {
  const why = (err as { code?: string }).code ?? (err as Error).message;
  return new GatewayError(
    502,
    "upstream_proxy_unreachable",
    `cannot reach the upstream proxy ${hop.label} (${why}); check that the proxy is running and reachable ` +
      `from the gateway, and its address in ${WHAT_TO_CHECK}`,
    { cause: err },
  );
}

/** A TCP connection to the proxy; a failure names the proxy, not the origin the request was for. */
export function connectToProxy(hop: ProxyHop, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason); // its abort event has fired already
    const socket = netConnect({ host: hop.host, port: hop.port });
    const abandon = () => {
      socket.destroy();
      reject(signal.reason);
    };
    signal.addEventListener("abort", abandon, { once: true });
    socket.once("connect", () => {
      signal.removeEventListener("abort", abandon);
      socket.off("error", fail);
      socket.setNoDelay(true);
      resolve(socket);
    });
    const fail = (err: Error) => {
      signal.removeEventListener("abort", abandon);
      reject(unreachable(hop, err));
    };
    socket.once("error", fail);
  });
}

/**
 * Opens a tunnel to `authority` through the proxy: CONNECT, and resolves
 * with the socket once the proxy answered 2xx (RFC 9110 §9.3.6: any 2xx
 * means the tunnel is open). A 407 or any other answer is a 502 that says
 * what the proxy refused; the socket is then closed. `via` is the CONNECT's
 * Via (RFC 9110 §7.6.3: a forwarded CONNECT is a message like any other),
 * so a proxy that already passed it on, a gateway set as its own proxy's
 * proxy, refuses it as a loop instead of tunnelling round for ever.
 */
export async function tunnelThrough(
  hop: ProxyHop,
  authority: string,
  signal: AbortSignal,
  via?: string,
): Promise<Socket> {
  const socket = await connectToProxy(hop, signal);
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (via) lines.push(`Via: ${via}`);
  if (hop.authorization) lines.push(`Proxy-Authorization: ${hop.authorization}`);
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  return new Promise<Socket>((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const done = (err?: Error) => {
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      signal.removeEventListener("abort", abandon);
      if (!err) return resolve(socket);
      socket.destroy();
      reject(err);
    };
    const abandon = () => done(signal.reason as Error);
    const onError = (err: Error) => done(unreachable(hop, err));
    const onClose = () =>
      done(unreachable(hop, new Error(`the proxy closed the connection after CONNECT ${authority}`)));
    function onData(chunk: Buffer) {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf(HEAD_END);
      if (end < 0) {
        if (buffered.length > MAX_HEAD) done(refused(hop, authority, `an answer head over ${MAX_HEAD} bytes`));
        return;
      }
      let status: number;
      let statusText: string;
      try {
        ({ status, statusText } = parseResponseHead(buffered.subarray(0, end).toString("latin1")));
      } catch (err) {
        return done(refused(hop, authority, (err as Error).message));
      }
      if (status === 407) return done(proxyAuthError(hop));
      if (status < 200 || status > 299) return done(refused(hop, authority, `${status} ${statusText}`.trim()));
      socket.pause();
      const rest = buffered.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest); // the tunnel's first bytes, if the proxy sent any with its answer
      done();
    }
    signal.addEventListener("abort", abandon, { once: true });
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
  });
}

function refused(hop: ProxyHop, authority: string, answer: string): GatewayError {
  return new GatewayError(
    502,
    "upstream_proxy_refused",
    `the upstream proxy ${hop.label} refused CONNECT ${authority} (${answer}); check the proxy's rules for this ` +
      "host and port, or list the domain in upstreamProxy.bypass to fetch it directly",
  );
}
