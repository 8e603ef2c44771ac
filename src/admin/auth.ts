import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/bun";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * Bearer-token auth for the admin API. Tokens are compared as sha256
 * digests with timingSafeEqual, so neither the content nor the length of
 * the real token leaks through response timing.
 */
export function adminAuth(opts: { token: string; log: Logger; open: readonly string[] }): MiddlewareHandler {
  const expected = digest(opts.token);
  return async function adminAuth(c, next) {
    if (opts.open.includes(c.req.path)) return next();
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m && timingSafeEqual(digest(m[1]!), expected)) return next();
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
