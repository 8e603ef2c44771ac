import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../log.ts";
import type { ProxyBindings } from "./app.ts";
import { toRequest, writeResponse } from "./node-adapter.ts";

export interface ProxyListenerOptions {
  fetch: (req: Request, env: ProxyBindings) => Response | Promise<Response>;
  connect: (req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;
  log: Logger;
  /** Told about every response once its body has been sent (bandwidth accounting). */
  onServed?: (served: { agent: string; url: string; label: string | null; bytes: number }) => void;
}

/**
 * The agent-facing listener. Absolute-form requests become Fetch Requests
 * for the Hono proxy app; CONNECT is handed the raw socket.
 */
export function createProxyServer(opts: ProxyListenerOptions): Server {
  const server = createServer({ maxHeaderSize: 32 * 1024 }, (req, res) => {
    const client = req.socket.remoteAddress ?? "unknown";
    const target = req.url ?? "/";
    const form = target.startsWith("/") ? "origin" : "absolute";
    let request: Request;
    try {
      request = toRequest(req, form === "origin" ? `http://${req.headers.host || "gateway"}${target}` : target);
    } catch {
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" }).end(`cachegate: "${target}" is not a valid request target\n`);
      return;
    }
    Promise.resolve(opts.fetch(request, { client, form }))
      .then(async (response) => {
        const bytes = await writeResponse(res, response);
        opts.onServed?.({ agent: client, url: target, label: response.headers.get("x-cache"), bytes });
      })
      .catch((error) => {
        opts.log.error("writing a response failed", { url: target, error });
        res.destroy();
      });
  });
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
