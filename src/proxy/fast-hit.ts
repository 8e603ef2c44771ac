import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { AgentGate } from "../agents/proxy-auth.ts";
import { hitHeaders, type MemoryHit } from "../cache/fast-hit.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { admitRequest } from "./agents-only.ts";
import type { ProxyBindings } from "./app.ts";
import { addVia, hasLooped } from "./hop-by-hop.ts";
import { nodeHeaders, writeResponse } from "./node-adapter.ts";
import { cacheFor, type Pipelines, reachOf } from "./policy.ts";
import { failedRequest } from "./refusal.ts";
import type { Outcome } from "./request-handler.ts";

export interface FastHitOptions {
  config: () => Config;
  pipelines: Pipelines;
  agents: AgentGate;
  via: string;
  log: Logger;
}

/**
 * Answers a request straight onto the node:http response, or resolves
 * undefined and leaves it to the proxy app, with `env` as admission left it.
 */
export type FastHit = (
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  headers: Headers,
  env: ProxyBindings,
) => Promise<Outcome | undefined>;

/**
 * The fast path for the commonest request, a small fresh hit: no Request,
 * no Response, no Hono. It applies the proxy app's rules in the app's order,
 * as plain functions (loops, Patch Mode's agents only, domain policy, the
 * pipeline's lookup and RFC 9111 freshness), and writes the head the app
 * would write. Whatever it does not answer goes to the app unchanged: the
 * app, not this, says what is wrong with a refused request (400, 403, 508),
 * except Patch Mode's 407, whose failures count against the client address
 * and must be counted once.
 */
export function createFastHit(opts: FastHitOptions): FastHit {
  const headOf = createHeads(opts.via);
  return async function fastHit(req, res, url, headers, env) {
    if (req.method !== "GET" && req.method !== "HEAD") return undefined;
    if (env.form !== "absolute" || hasLooped(headers, opts.via) || onlyRespondAnswers(headers)) return undefined;
    const config = opts.config();
    const { patchMode } = config;
    if (patchMode.enabled && !env.peer) {
      try {
        const header = headers.get("proxy-authorization");
        env.client = await admitRequest(opts.agents, patchMode.clientNetworks, env, header);
        env.authenticated = true;
      } catch (err) {
        const refusal = failedRequest(err, url.href, opts.via, opts.log);
        const contentType = refusal.headers.get("content-type");
        return { label: null, bytes: await writeResponse(res, refusal), contentType };
      }
    }
    const pipeline = cacheFor(reachOf(url.hostname, config), config, opts.pipelines);
    const hit = await pipeline?.freshInMemory(url, headers);
    return hit && writeHit(req, res, hit, headOf(hit));
  };
}

/**
 * Conditional requests (RFC 9110 §13.1.1, §13.1.3) and Range requests
 * (RFC 9110 §14.2) may be answered 304, 206 or 416: cache/respond.ts decides.
 */
function onlyRespondAnswers(headers: Headers): boolean {
  return headers.has("range") || headers.has("if-none-match") || headers.has("if-modified-since");
}

/**
 * The node:http head of a hit, as the app would send it: the head respond()
 * builds plus our Via (RFC 9110 §7.6.3). It is built once per stored
 * response, and only Age changes from one hit to the next.
 */
function createHeads(via: string) {
  const heads = new WeakMap<Headers, OutgoingHttpHeaders>();
  return function headOf(hit: MemoryHit): OutgoingHttpHeaders {
    let head = heads.get(hit.stored);
    if (!head) {
      const headers = hitHeaders(hit);
      addVia(headers, via);
      head = nodeHeaders(headers);
      heads.set(hit.stored, head);
    }
    return { ...head, age: String(hit.age) }; // a field assigned again keeps its place: the order stays sorted
  };
}

/** Writes a hit; a HEAD gets the head alone. */
function writeHit(req: IncomingMessage, res: ServerResponse, hit: MemoryHit, head: OutgoingHttpHeaders): Outcome {
  res.writeHead(200, head);
  const type = head["content-type"]; // from the head built once per stored response: no Headers lookup per hit
  const contentType = typeof type === "string" ? type : undefined;
  if (req.method === "HEAD") {
    res.end();
    return { label: "HIT", bytes: 0, contentType, fromMemory: true };
  }
  res.end(hit.body);
  return { label: "HIT", bytes: hit.body.length, contentType, fromMemory: true };
}
