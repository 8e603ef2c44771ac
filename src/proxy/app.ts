import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { AGENTS_ONLY, type AuthResult, PROXY_AUTHENTICATE } from "../agents/proxy-auth.ts";
import type { CachePipeline } from "../cache/pipeline.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { addVia, hasLooped } from "./hop-by-hop.ts";
import { deniedMessage, reachOf } from "./policy.ts";
import type { UpstreamFetch } from "./upstream.ts";

export type ProxyAuthorize = ((
  header: string | undefined | null,
  client: string,
  networks: readonly string[],
) => Promise<AuthResult>) & {
  /** Whether a tunnel's agent (user name, or admitted client address) is still admitted; see createProxyAuth. */
  stillAdmitted?: (agent: string, networks: readonly string[]) => boolean;
};

/** What the listener knows about each request beyond the Request itself. */
export interface ProxyBindings {
  /** Who is asking: the agent's user name once authenticated, else its address. */
  client: string;
  /** origin-form (`GET /path`) means the client did not treat us as a proxy. */
  form: "absolute" | "origin";
  /** Set for requests inside a tunnel whose CONNECT was already authorized. */
  authenticated?: boolean;
}

export interface ProxyAppOptions {
  config: () => Config;
  /** The platform cache (data dir) and, while Patch Mode is on, the patch cache (patch disk). */
  pipelines: { platform: CachePipeline; patch: () => CachePipeline | undefined };
  fetchUpstream: UpstreamFetch;
  authorize: ProxyAuthorize;
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
      throw new HTTPException(508, {
        message:
          "request loop: this request already passed through this gateway (see its Via header); check the proxy settings of the upstream",
      });
    }
    await next();
    // RFC 9110 §7.6.3: on responses too, cached or not; renderError has already added it to the error responses it makes.
    if (!c.error) addVia(c.res.headers, opts.via);
  });

  app.use(async function agentsOnly(c, next) {
    const config = opts.config();
    if (!config.patchMode.enabled) return next();
    const refuse = () => c.text(`cachegate: ${AGENTS_ONLY}\n`, 407, { "proxy-authenticate": PROXY_AUTHENTICATE });
    if (c.env.authenticated) {
      // Inside a tunnel authorized at its CONNECT: a revocation since then takes effect here too.
      return opts.authorize.stillAdmitted?.(c.env.client, config.patchMode.clientNetworks) === false
        ? refuse()
        : next();
    }
    const result = await opts.authorize(
      c.req.header("proxy-authorization"),
      c.env.client,
      config.patchMode.clientNetworks,
    );
    if (!result.ok) {
      if (result.delayMs > 0) await Bun.sleep(result.delayMs);
      return refuse();
    }
    c.env.client = result.agent;
    c.env.authenticated = true;
    await next();
  });

  app.all("*", async function proxy(c) {
    const req = c.req.raw;
    const url = new URL(req.url);
    const config = opts.config();
    const reach = reachOf(url.hostname, config);
    if (reach === "denied") throw new HTTPException(403, { message: deniedMessage(url.hostname, config) });

    const pipeline =
      reach === "platform" && config.cacheMode.enabled
        ? opts.pipelines.platform
        : reach === "patch"
          ? opts.pipelines.patch()
          : undefined;
    if (pipeline && (req.method === "GET" || req.method === "HEAD")) return pipeline.handle(req);

    const res = await opts.fetchUpstream(req);
    if (pipeline && res.status < 400) await pipeline.invalidate(req.url); // RFC 9111 §4.4
    const headers = new Headers(res.headers);
    headers.set("x-cache", "BYPASS");
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  });

  app.onError(function renderError(err, c) {
    const status = err instanceof HTTPException ? err.status : 500;
    if (status >= 500 && !(err instanceof HTTPException))
      opts.log.error("proxy request failed", { url: c.req.url, error: err });
    const headers = new Headers({ "content-type": "text/plain; charset=utf-8" });
    addVia(headers, opts.via);
    const message = err instanceof HTTPException ? err.message : "internal error; see the gateway log";
    return new Response(`cachegate: ${message}\n`, { status, headers });
  });

  return app;
}
