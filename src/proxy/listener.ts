import { createServer, type IncomingMessage, type RequestListener, type Server } from "node:http";
import { createServer as createTlsServer, type ServerOptions as TlsServerOptions } from "node:https";
import type { Duplex } from "node:stream";
import type { Logger } from "../log.ts";
import type { ProxyBindings } from "./app.ts";
import { toRequest, writeResponse } from "./node-adapter.ts";

export interface Served {
  agent: string;
  url: string;
  label: string | null;
  bytes: number;
}

export interface RequestHandlerOptions {
  fetch: (req: Request, env: ProxyBindings) => Response | Promise<Response>;
  log: Logger;
  /** Told about every response once its body has been sent (bandwidth accounting). */
  onServed?: (served: Served) => void;
}

/**
 * Turns node:http requests into Fetch Requests for the proxy app and writes
 * the answers back. `urlOf` says what URL a request target means: on the
 * proxy port an absolute URL; inside an intercepted tunnel a path on the
 * tunnel's host.
 */
export function createRequestHandler(
  opts: RequestHandlerOptions,
  urlOf: (req: IncomingMessage) => { url: string; form: ProxyBindings["form"]; agent: string; authenticated?: boolean },
): RequestListener {
  return (req, res) => {
    const { url, form, agent, authenticated } = urlOf(req);
    let request: Request;
    try {
      request = toRequest(req, url);
    } catch {
      res
        .writeHead(400, { "content-type": "text/plain; charset=utf-8" })
        .end(`cachegate: "${req.url}" is not a valid request target\n`);
      return;
    }
    const env: ProxyBindings = { client: agent, form, authenticated };
    Promise.resolve(opts.fetch(request, env))
      .then(async (response) => {
        const bytes = await writeResponse(res, response);
        // env.client is the agent's user name if it authenticated.
        opts.onServed?.({ agent: env.client, url, label: response.headers.get("x-cache"), bytes });
      })
      .catch((error) => {
        opts.log.error("writing a response failed", { url, error });
        res.destroy();
      });
  };
}

export interface ProxyListenerOptions extends RequestHandlerOptions {
  connect: (req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;
  /** When set, agents speak TLS to the proxy port itself (an HTTPS proxy). */
  tls?: TlsServerOptions;
}

/**
 * The agent-facing listener. Absolute-form requests go to the proxy app;
 * CONNECT is handed the raw socket (node:http is used because it is the
 * server in Bun that gives up the socket of a CONNECT).
 */
export function createProxyServer(opts: ProxyListenerOptions): Server {
  const handler = createRequestHandler(opts, (req) => {
    const target = req.url ?? "/";
    const agent = req.socket.remoteAddress ?? "unknown";
    // origin-form (`GET /path`): the client did not treat us as a proxy.
    if (target.startsWith("/"))
      return { url: `http://${req.headers.host || "gateway"}${target}`, form: "origin", agent };
    return { url: target, form: "absolute", agent };
  });
  const options = { maxHeaderSize: 32 * 1024 };
  const server = opts.tls
    ? (createTlsServer({ ...options, ...opts.tls }, handler) as unknown as Server)
    : createServer(options, handler);
  server.on("connect", (req, socket, head) => {
    opts.connect(req, socket, head).catch((error) => {
      opts.log.error("tunnel failed", { target: req.url, error });
      socket.destroy();
    });
  });
  server.on("clientError", (err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy(err);
  });
  return server;
}
