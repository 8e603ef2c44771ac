import { createServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createTlsServer, type ServerOptions as TlsServerOptions } from "node:https";
import type { Duplex } from "node:stream";
import type { ClientAddress } from "../net/client-address.ts";
import type { Served } from "../stats/collector.ts";
import type { PortPages } from "./port-pages.ts";
import { createRequestHandler, type RequestHandlerOptions } from "./request-handler.ts";

export interface ProxyServerOptions extends RequestHandlerOptions {
  connect: (req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;
  /** When set, agents speak TLS to the proxy port itself (an HTTPS proxy). */
  tls?: TlsServerOptions;
  /** The port's own origin-form pages (/healthz, /proxy.pac): answered before the proxy sees the request. */
  pages?: PortPages;
  /** The agent's address: the socket's, or behind a trusted front end its X-Forwarded-For (net/client-address.ts). */
  clientOf?: ClientAddress;
}

/**
 * One node:http server for the agent port. Its own pages answer the few
 * origin-form requests it serves; absolute-form requests go to the
 * proxy app; CONNECT is handed the raw socket (node:http is used because it
 * is the server in Bun that gives up the socket of a CONNECT). The agent
 * listener builds a new one whenever the port or its TLS settings change.
 */
export function createProxyServer(opts: ProxyServerOptions): Server {
  const handler = createRequestHandler(opts, (req) => {
    const target = req.url ?? "/";
    const socket = req.socket.remoteAddress ?? "unknown";
    const agent = opts.clientOf ? opts.clientOf(socket, () => req.headers["x-forwarded-for"]) : socket;
    // `connection`: fleet members connect themselves, so their mark is judged by the socket's address.
    // origin-form (`GET /path`): the client did not treat us as a proxy.
    if (target.startsWith("/")) {
      return {
        url: `http://${req.headers.host || "gateway"}${target}`,
        form: "origin",
        agent,
        address: agent,
        connection: socket,
      };
    }
    return { url: target, form: "absolute", agent, address: agent, connection: socket };
  });
  const pages = opts.pages;
  const listener: typeof handler = pages
    ? (req, res) => {
        if (!req.url?.startsWith("/") || !pages(req, res)) handler(req, res);
      }
    : handler;
  const options = { maxHeaderSize: 32 * 1024 };
  const server = opts.tls
    ? (createTlsServer({ ...options, ...opts.tls }, listener) as unknown as Server)
    : createServer(options, listener);
  server.on("connect", (req, socket, head) => {
    opts.connect(req, socket, head).catch((error) => {
      opts.log.error("tunnel failed", { target: req.url, error });
      socket.destroy();
    });
  });
  server.on("clientError", (err: Error & { code?: string }, socket: Duplex & { remoteAddress?: string }) => {
    if (!socket.writable) return void socket.destroy(err);
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    // A request that could not be parsed is still one the access log shows, as Squid's error:invalid-request.
    if (err.code?.startsWith("HPE_")) opts.onServed?.(unparsable(socket.remoteAddress ?? "unknown"));
  });
  return server;
}

/** Squid logs a request it could not parse as `NONE_NONE/400 … NONE error:invalid-request`. */
function unparsable(client: string): Served {
  const no = { label: null, bytes: 0, elapsedMs: 0 };
  return { ...no, agent: client, client, url: "error:invalid-request", method: "NONE", status: 400 };
}
