import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/bun";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";

const digest = (s: string) => createHash("sha256").update(s).digest();

export interface AdminAuthOptions {
  token: string;
  /** A second token that may read `metricsPaths` and nothing else (CACHEGATE_METRICS_TOKEN). */
  metricsToken?: string;
  log: Logger;
  /** Paths anyone may read (/healthz). */
  open: readonly string[];
  /** Paths the metrics token may read with GET (/metrics). */
  metricsPaths: readonly string[];
}

/**
 * Bearer-token auth for the admin API. Tokens are compared as sha256
 * digests with timingSafeEqual, so neither the content nor the length of
 * the real token leaks through response timing. The metrics token is a
 * read-only credential for a Prometheus server: it reads /metrics, and
 * anywhere else it is recognised (403, saying what it is for) rather than
 * taken for a wrong admin token (401).
 */
export function adminAuth(opts: AdminAuthOptions): MiddlewareHandler {
  const expected = digest(opts.token);
  const metrics = opts.metricsToken === undefined ? undefined : digest(opts.metricsToken);
  return async function adminAuth(c, next) {
    if (opts.open.includes(c.req.path)) return next();
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const given = m ? digest(m[1]!) : undefined;
    if (given && timingSafeEqual(given, expected)) return next();
    if (given && metrics && timingSafeEqual(given, metrics)) {
      const readsMetrics =
        opts.metricsPaths.includes(c.req.path) && (c.req.method === "GET" || c.req.method === "HEAD");
      if (readsMetrics) return next();
      throw new GatewayError(
        403,
        "metrics_token_only",
        `the metrics token (CACHEGATE_METRICS_TOKEN) can only read GET ${opts.metricsPaths.join(", ")}; ` +
          `${c.req.method} ${c.req.path} needs the admin token`,
      );
    }
    let client = "unknown";
    try {
      client = getConnInfo(c).remote.address ?? client;
    } catch {}
    opts.log.warn("admin request refused: bad or missing token", { client, method: c.req.method, path: c.req.path });
    const problem = m ? "the bearer token is wrong" : "missing Authorization: Bearer <token> header";
    throw new GatewayError(
      401,
      "unauthorized",
      `${problem}; use the token from CACHEGATE_ADMIN_TOKEN or the admin-token file in the data dir`,
      { headers: { "www-authenticate": 'Bearer realm="cachegate admin"' } },
    );
  };
}
