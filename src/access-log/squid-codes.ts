import type { Served } from "../stats/collector.ts";

/** How Squid would have called a transaction: its result code and its hierarchy code with the next hop. */
export interface SquidResult {
  /** E.g. TCP_MISS, TCP_MEM_HIT, TCP_DENIED, NONE_NONE. */
  code: string;
  /** E.g. HIER_DIRECT, HIER_NONE, CARP. */
  hierarchy: string;
  /** The host the request went to, or null (Squid's `-`) when nothing was forwarded. */
  upstream: string | null;
}

/**
 * Our X-Cache labels in Squid's words, so Squid log analysers read our
 * access log as Squid's own (the result codes of Squid's LogTags.cc and the
 * SquidFaq/SquidLogs wiki page):
 *
 * - HIT: TCP_HIT, or TCP_MEM_HIT from memory (the fast path); answered 304
 *   to a conditional request, TCP_IMS_HIT. Nothing forwarded: HIER_NONE.
 * - MISS and BYPASS (not cacheable, passed through): TCP_MISS, HIER_DIRECT.
 * - REVALIDATED (the origin's 304 freshened a stale copy, RFC 9111 §4.3.4):
 *   TCP_REFRESH_UNMODIFIED, HIER_DIRECT.
 * - STALE (the origin failed, the stale copy was served, RFC 9111 §4.2.4):
 *   TCP_REFRESH_FAIL_OLD, HIER_DIRECT (it was asked).
 * - UPDATING (stale-while-revalidate, RFC 5861 §3): TCP_STALE_HIT, which the
 *   wiki gives for exactly that; the revalidation runs in the background.
 * - COALESCED (joined another agent's download): Squid's collapsed
 *   forwarding, TCP_CF_HIT, HIER_NONE.
 * - PEER (served through the fleet member that owns the URL): TCP_MISS via
 *   CARP, the hierarchy code of a parent chosen by URL hash.
 * - Refusals the gateway made: 403 and 407, TCP_DENIED; a bad request (400)
 *   or a loop (508), NONE_NONE (Squid 5's code for a transaction that never
 *   reached the cache); other 5xx (the upstream failed), TCP_MISS, HIER_NONE.
 * - CONNECT piped: TCP_TUNNEL, HIER_DIRECT; intercepted (Squid's ssl_bump):
 *   NONE_NONE/200, its requests logged one by one.
 *
 * A stale copy replaced by a new 200 is labelled MISS, so it is logged
 * TCP_MISS, not TCP_REFRESH_MODIFIED.
 */
export function squidResult(s: Served): SquidResult {
  const direct = (code: string): SquidResult => ({ code, hierarchy: "HIER_DIRECT", upstream: hostOf(s) });
  const none = (code: string): SquidResult => ({ code, hierarchy: "HIER_NONE", upstream: null });
  switch (s.label) {
    case null:
      if (s.status === 403 || s.status === 407) return none("TCP_DENIED");
      return none(s.status >= 500 && s.status !== 508 ? "TCP_MISS" : "NONE_NONE");
    case "HIT":
      return none(s.status === 304 ? "TCP_IMS_HIT" : s.fromMemory ? "TCP_MEM_HIT" : "TCP_HIT");
    case "COALESCED":
      return none("TCP_CF_HIT");
    case "UPDATING":
      return none("TCP_STALE_HIT");
    case "REVALIDATED":
      return direct("TCP_REFRESH_UNMODIFIED");
    case "STALE":
      return direct("TCP_REFRESH_FAIL_OLD");
    case "PEER":
      return { code: "TCP_MISS", hierarchy: "CARP", upstream: null };
    case "TUNNEL":
      return direct("TCP_TUNNEL");
    case "INTERCEPTED":
      return none("NONE_NONE");
    default: // MISS, BYPASS, and any label added later: fetched from the origin
      return direct("TCP_MISS");
  }
}

/** The host a request went to: a URL's host name, or a CONNECT authority's host. */
function hostOf(s: Served): string | null {
  if (s.method === "CONNECT") return s.url.replace(/:\d+$/, "").replace(/^\[|\]$/g, "") || null;
  try {
    return new URL(s.url).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return null;
  }
}
