import { deltaSeconds, parseCacheControl, requestDirectives, type TtlRule } from "./freshness.ts";

/**
 * When a stale stored response may be served anyway (RFC 9111 §4.2.4 and
 * RFC 5861). Pure functions, like freshness.ts; staleness is in seconds past
 * the end of the response's freshness lifetime.
 */

/**
 * May a stale copy be served at all? Not when the response forbids it
 * (§5.2.2.2 must-revalidate, §5.2.2.8 proxy-revalidate, §5.2.2.4 no-cache;
 * §5.2.2.10: s-maxage implies proxy-revalidate for a shared cache).
 */
export function mayServeStale(res: { headers: Headers }): boolean {
  const cc = parseCacheControl(res.headers.get("cache-control"));
  return !["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage"].some((d) => cc.has(d));
}

/**
 * RFC 5861 §3: how many seconds past freshness the response may be served
 * while one revalidation runs in the background: its stale-while-revalidate,
 * else the operator's TTL rule for the URL (nginx's proxy_cache_background_update).
 * 0 when the response forbids stale, or the request wants a fresh or
 * validated answer (no-cache, max-age, min-fresh: §5.2.1).
 */
export function revalidateWindow(
  res: { status: number; headers: Headers },
  req: { headers: Headers },
  rule: TtlRule | undefined,
): number {
  if (!mayServeStale(res)) return 0;
  const asked = requestDirectives(req.headers);
  if (["no-cache", "max-age", "min-fresh"].some((d) => asked.has(d))) return 0;
  const cc = parseCacheControl(res.headers.get("cache-control"));
  // Operator rules speak for successful downloads only, as for heuristic freshness: never a stale 404.
  const byRule = res.status === 200 ? rule?.staleWhileRevalidate : undefined;
  return deltaSeconds(cc.get("stale-while-revalidate")) ?? byRule ?? 0;
}

/**
 * RFC 5861 §4: may a response this stale be served because the origin failed
 * (5xx, or unreachable)? A stale-if-error in the request or the response sets
 * the limit (the request's wins: it is the client's own tolerance); without
 * one, the operator's setting decides (cache.serveStaleOnError).
 */
export function mayServeOnError(
  res: { headers: Headers },
  req: { headers: Headers },
  staleness: number,
  byDefault: boolean,
): boolean {
  if (!mayServeStale(res)) return false;
  const fromRequest = deltaSeconds(requestDirectives(req.headers).get("stale-if-error"));
  const fromResponse = deltaSeconds(parseCacheControl(res.headers.get("cache-control")).get("stale-if-error"));
  const limit = fromRequest ?? fromResponse;
  return limit === undefined ? byDefault : staleness <= limit;
}
