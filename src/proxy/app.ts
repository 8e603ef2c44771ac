import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { CachePipeline } from "../cache/pipeline.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { addVia, hasLooped } from "./hop-by-hop.ts";
import { deniedMessage, reachOf } from "./policy.ts";
import type { UpstreamFetch } from "./upstream.ts";

/** What the listener knows about each request beyond the Request itself. */
export interface ProxyBindings {
  client: string;
  /** origin-form (`GET /path`) means the client did not treat us as a proxy. */
  form: "absolute" | "origin";
}

export interface ProxyAppOptions {
  config: () => Config;
  pipeline: CachePipeline;
  fetchUpstream: UpstreamFetch;
  via: string;
  log: Logger;
}

const ORIGIN_FORM_HELP =
  "This is cachegate's proxy port; it expects proxy requests (absolute URLs). Set it as your proxy instead of requesting it directly: " +
  "curl -x http://GATEWAY:PORT https://example.qualys.com/file, or http_proxy/https_proxy=http://GATEWAY:PORT, " +
  'or for apt: Acquire::http::Proxy "http://GATEWAY:PORT";';

/**
 * The proxy's routes: refuse what is not a proxy request, loops and
 * outsiders; cache what the platform serves; pass the rest through.
 */
export function createProxyApp(opts: ProxyAppOptions) {
  const app = new Hono<{ Bindings: ProxyBindings }>();

  app.use(async function guard(c, next) {
    if (c.env.form === "origin") throw new HTTPException(400, { message: ORIGIN_FORM_HELP });
    if (hasLooped(c.req.raw.headers, opts.via)) {
      throw new HTTPException(508, { message: "request loop: this request already passed through this gateway (see its Via header); check the proxy settings of the upstream" });
    }
    await next();
    addVia(c.res.headers, opts.via); // RFC 9110 §7.6.3: on responses too, cached or not
  });

  app.all("*", async function proxy(c) {
    const req = c.req.raw;
    const url = new URL(req.url);
    const config = opts.config();
    const reach = reachOf(url.hostname, config);
    if (reach === "denied") throw new HTTPException(403, { message: deniedMessage(url.hostname, config) });

    const cacheable = reach === "platform" && config.cacheMode.enabled;
    if (cacheable && (req.method === "GET" || req.method === "HEAD")) return opts.pipeline.handle(req);

    const res = await opts.fetchUpstream(req);
    if (cacheable && res.status < 400) await opts.pipeline.invalidate(req.url); // RFC 9111 §4.4
    const headers = new Headers(res.headers);
    headers.set("x-cache", "BYPASS");
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  });

  app.onError(function renderError(err, c) {
    const status = err instanceof HTTPException ? err.status : 500;
    if (status >= 500 && !(err instanceof HTTPException)) opts.log.error("proxy request failed", { url: c.req.url, error: err });
    const headers = new Headers({ "content-type": "text/plain; charset=utf-8" });
    addVia(headers, opts.via);
    const message = err instanceof HTTPException ? err.message : "internal error; see the gateway log";
    return new Response(`cachegate: ${message}\n`, { status, headers });
  });

  return app;
}
