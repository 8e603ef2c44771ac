import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Served } from "../stats/collector.ts";
import type { ProxyBindings } from "./app.ts";
import type { FastHit } from "./fast-hit.ts";
import { PEER_HEADER, PEER_REFUSED } from "./hop-by-hop.ts";
import { headersOf, toRequest, writeResponse } from "./node-adapter.ts";
import { refusalResponse } from "./refusal.ts";

export interface RequestHandlerOptions {
  fetch: (req: Request, env: ProxyBindings) => Response | Promise<Response>;
  /** Answers small fresh hits without the app (fast-hit.ts); what it leaves goes to `fetch`. */
  fastHit?: FastHit;
  log: Logger;
  /** This gateway's Via pseudonym, for the responses it makes itself. */
  via: string;
  /** Told about every response once its body has been sent (bandwidth accounting). */
  onServed?: (served: Served) => void;
  /** The fleet member at a connection's address, if any (src/fleet/members.ts): only they may send peer requests. */
  memberAt?: (address: string | undefined) => string | undefined;
}

/** What a request target means: on the proxy port an absolute URL; inside an intercepted tunnel a path on its host. */
export type TargetOf = (req: IncomingMessage) => {
  url: string;
  form: ProxyBindings["form"];
  agent: string;
  /** The agent's address (`agent` is its user name in a tunnel it authorized). */
  address: string;
  authenticated?: boolean;
  /**
   * On the agent port, the connection's own address: a request with the fleet's mark is a member's
   * only from a member's address. Inside a tunnel there is none, and the mark is never trusted.
   */
  connection?: string;
};

/** How a response went out: its X-Cache label (null for a refusal), body bytes and type, and whether from memory. */
export interface Outcome {
  label: string | null;
  bytes: number;
  contentType?: string | null;
  fromMemory?: boolean;
}

const NOT_A_MEMBER =
  "x-cachegate-peer is for requests between the fleet members listed in CACHEGATE_PEERS (cluster.peers), " +
  "from their own addresses; send this request without it";

/**
 * Answers node:http requests: a small fresh hit straight from memory (the
 * fast path), everything else by turning it into a Fetch Request for the
 * proxy app and writing the app's Response back. Either way each response
 * is reported once to onServed.
 */
export function createRequestHandler(opts: RequestHandlerOptions, urlOf: TargetOf): RequestListener {
  function failed(res: ServerResponse, url: string, error: unknown): void {
    opts.log.error("writing a response failed", { url, error });
    res.destroy();
  }

  /** The proxy app's way: Request → Hono → Response → node:http. */
  function viaApp(req: IncomingMessage, res: ServerResponse, url: string, headers: Headers, served: Report) {
    let request: Request;
    try {
      request = toRequest(req, url, headers);
    } catch {
      return badTarget(req, res, served);
    }
    Promise.resolve(opts.fetch(request, served.env))
      .then(async (response) => {
        const bytes = await writeResponse(res, response);
        const contentType = response.headers.get("content-type");
        served.report({ label: response.headers.get("x-cache"), bytes, contentType });
      })
      .catch((error) => failed(res, url, error));
  }

  /** A refusal the handler makes itself, written and reported like any other response. */
  function refuse(res: ServerResponse, error: GatewayError, served: Report): void {
    const response = refusalResponse(error, opts.via);
    const contentType = response.headers.get("content-type");
    void writeResponse(res, response).then((bytes) => served.report({ label: null, bytes, contentType }));
  }

  function badTarget(req: IncomingMessage, res: ServerResponse, served: Report): void {
    const message = `"${req.url}" is not a valid request target; send an absolute URL with a valid host name`;
    refuse(res, new GatewayError(400, "bad_request_target", message), served);
  }

  return (req, res) => {
    const started = performance.now();
    const { url, form, agent, address, authenticated, connection } = urlOf(req);
    const env: ProxyBindings = { client: agent, form, authenticated };
    let headers: Headers | undefined;
    // The request's own fields once parsed (node's req.headers object is not built on the hot path).
    const field = (name: string) => (headers ? (headers.get(name) ?? undefined) : (req.headers[name] as string));
    const served: Report = {
      env,
      // Told once the body is sent; env.client is the agent's user name by then if it authenticated.
      report: (outcome) =>
        opts.onServed?.({
          agent: env.client,
          url,
          ...outcome,
          method: req.method ?? "GET",
          status: res.statusCode,
          elapsedMs: performance.now() - started,
          client: address,
          user: env.authenticated ? env.client : undefined,
          httpVersion: req.httpVersion,
          referer: field("referer"),
          userAgent: field("user-agent"),
          peer: env.peer,
        }),
    };
    let parsed: URL;
    try {
      // WHATWG URL rules, stricter than Request's: e.g. a host "xn--a" that is not valid punycode.
      parsed = new URL(url);
      headers = headersOf(req);
    } catch {
      return badTarget(req, res, served);
    }
    if (headers.has(PEER_HEADER)) {
      if (connection === undefined)
        headers.delete(PEER_HEADER); // inside a tunnel the mark means nothing
      else {
        const member = opts.memberAt?.(connection);
        if (!member) {
          const refused = { [PEER_HEADER]: PEER_REFUSED };
          return refuse(res, new GatewayError(403, "not_a_fleet_member", NOT_A_MEMBER, { headers: refused }), served);
        }
        env.peer = member;
      }
    }
    // Only GET and HEAD can be fast hits; a request with a body goes to the app at once.
    const bodiless = req.method === "GET" || req.method === "HEAD";
    if (!opts.fastHit || !bodiless) return viaApp(req, res, url, headers, served);
    opts.fastHit(req, res, parsed, headers, env).then(
      (answered) => {
        if (!answered) return viaApp(req, res, url, headers, served);
        served.report(answered);
      },
      (error) => failed(res, url, error),
    );
  };
}

/** One request's bindings for the app, and how its outcome is reported. */
interface Report {
  env: ProxyBindings;
  report(outcome: Outcome): void;
}
