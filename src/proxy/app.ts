import { Hono } from "hono";
import type { AgentGate } from "../agents/proxy-auth.ts";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { admitRequest } from "./agents-only.ts";
import { addVia, hasLooped } from "./hop-by-hop.ts";
import { cacheFor, domainNotAllowed, type Pipelines, reachOf } from "./policy.ts";
import { failedRequest } from "./refusal.ts";
import type { UpstreamFetch } from "./upstream.ts";

/** What the listener knows about each request beyond the Request itself. */
export interface ProxyBindings {
  /** Who is asking: the agent's user name once authenticated, else its address. */
  client: string;
  /** origin-form (`GET /path`) means the client did not treat us as a proxy. */
  form: "absolute" | "origin";
  /** Set once Patch Mode admitted the agent: at a tunnel's CONNECT, or by the fast path (the app checks again). */
  authenticated?: boolean;
  /**
   * The fleet member (src/fleet/) that sent this request for one of its agents, which it admitted:
   * answered here, never sent on to another member, and counted there.
   */
  peer?: string;
}

export interface ProxyAppOptions {
  config: () => Config;
  pipelines: Pipelines;
  fetchUpstream: UpstreamFetch;
  agents: AgentGate;
  via: string;
  log: Logger;
}

const ORIGIN_FORM_HELP =
  "This is cachegate's proxy port; it expects proxy requests (absolute URLs). " +
  "Set it as your proxy instead of requesting it directly: " +
  "curl -x http://GATEWAY:PORT https://example.qualys.com/file, or http_proxy/https_proxy=http://GATEWAY:PORT, " +
  'or for apt: Acquire::http::Proxy "http://GATEWAY:PORT"; ' +
  "or point agents at the PAC file GET /proxy.pac on this port. GET /healthz here is for load balancers.";

const LOOP_HELP =
  "request loop: this request already passed through this gateway (see its Via header); " +
  "check the proxy settings of the upstream";

/**
 * The proxy's routes: refuse what is not a proxy request, loops and
 * outsiders; cache what the platform serves; pass the rest through.
 */
export function createProxyApp(opts: ProxyAppOptions) {
  const app = new Hono<{ Bindings: ProxyBindings }>();

  app.use(async function guard(c, next) {
    if (c.env.form === "origin") throw new GatewayError(400, "not_a_proxy_request", ORIGIN_FORM_HELP);
    if (hasLooped(c.req.raw.headers, opts.via)) throw new GatewayError(508, "request_loop", LOOP_HELP);
    await next();
    // RFC 9110 §7.6.3: on responses too, cached or not; refusalResponse adds it to the error responses it makes.
    if (!c.error) addVia(c.res.headers, opts.via);
  });

  app.use(async function agentsOnlyInPatchMode(c, next) {
    const { patchMode } = opts.config();
    if (!patchMode.enabled || c.env.peer) return next();
    const header = c.req.header("proxy-authorization");
    c.env.client = await admitRequest(opts.agents, patchMode.clientNetworks, c.env, header);
    c.env.authenticated = true;
    await next();
  });

  app.all("*", async function proxy(c) {
    const req = c.req.raw;
    const url = new URL(req.url);
    const config = opts.config();
    const reach = reachOf(url.hostname, config);
    if (reach === "denied") throw domainNotAllowed(url.hostname, config);

    const pipeline = cacheFor(reach, config, opts.pipelines);
    if (pipeline && (req.method === "GET" || req.method === "HEAD")) return pipeline.handle(req);

    const res = await opts.fetchUpstream(req);
    if (pipeline && res.status < 400) await pipeline.invalidate(req.url); // RFC 9111 §4.4
    const headers = new Headers(res.headers);
    headers.set("x-cache", "BYPASS");
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  });

  app.onError(function renderError(err, c) {
    return failedRequest(err, c.req.url, opts.via, opts.log);
  });

  return app;
}
