import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import type { Config } from "../config/schema.ts";
import { VERSION } from "../version.ts";
import { pacFile } from "./pac-file.ts";

export interface PortPagesOptions {
  config: () => Config;
  /** True once graceful shutdown has begun: /healthz answers 503 so load balancers stop sending agents here. */
  stopping: () => boolean;
}

/** Answers a request if it is one of the agent port's own pages (true), else leaves it to the proxy (false). */
export type PortPages = (req: IncomingMessage, res: ServerResponse) => boolean;

/** The WPAD convention (draft-ietf-wrec-wpad-01) asks for /wpad.dat; it is the same file as /proxy.pac. */
const PAC_PATHS = new Set(["/proxy.pac", "/wpad.dat"]);

/**
 * The agent port's own pages, the only origin-form requests it answers
 * (every other one keeps the proxy app's 400 that explains how to use a
 * proxy): `GET /proxy.pac` (and `/wpad.dat`) for agents configured by
 * PAC/WPAD, and `GET /healthz` for load balancers, which must check the
 * port agents actually use. These are not proxied requests: they are not
 * counted in the stats, and need no agent credentials in Patch Mode.
 */
export function createPortPages(opts: PortPagesOptions): PortPages {
  return function portPages(req, res) {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const path = (req.url ?? "").split("?", 1)[0]!;
    if (path === "/healthz") {
      const [status, body] = opts.stopping() ? [503, "stopping\n"] : [200, "ok\n"];
      send(req, res, status, "text/plain; charset=utf-8", body);
      return true;
    }
    if (PAC_PATHS.has(path)) {
      const config = opts.config();
      const target = { ...gatewayAddress(req), tls: config.tls.agentListener.enabled };
      send(req, res, 200, "application/x-ns-proxy-autoconfig", pacFile(target, config, VERSION));
      return true;
    }
    return false;
  };
}

function send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    // Both change with the gateway's state (shutdown, Patch Mode, the domain lists): never served from a cache.
    "cache-control": "no-store",
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

/**
 * Where the agent reached the gateway: the Host header's name (it goes into
 * a script, so only a valid host name or IP address is taken), and its port
 * if it names one (a container's published port differs from the one the
 * gateway binds), else the agent port the request came in on. Without a
 * usable Host header, the address the agent connected to.
 */
function gatewayAddress(req: IncomingMessage): { host: string; port: number } {
  const local = req.socket.localPort ?? 8080;
  const header = req.headers.host;
  if (header) {
    try {
      const u = new URL(`http://${header}`);
      const plain = u.hostname.replace(/^\[|\]$/g, "");
      const valid =
        isIP(plain) !== 0 || /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(plain);
      if (valid && u.username === "" && u.pathname === "/") {
        return { host: u.hostname, port: u.port ? Number(u.port) : local };
      }
    } catch {}
  }
  const address = (req.socket.localAddress ?? "127.0.0.1").replace(/^::ffff:(?=\d+\.)/, "");
  return { host: isIP(address) === 6 ? `[${address}]` : address, port: local };
}
