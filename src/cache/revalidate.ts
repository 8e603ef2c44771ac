import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import type { LeadFlight } from "./flights.ts";
import { currentAge, mergeNotModified, type ResponseTiming } from "./freshness.ts";
import type { XCache } from "./respond.ts";
import type { ServeEntry } from "./serve.ts";

/** Request headers that would make upstream answer something other than the full, current body. */
const CLIENT_CONDITIONALS = [
  "range",
  "if-range",
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
];

/**
 * The request the cache sends upstream: always a full GET, conditional only
 * on the validators of what the cache holds (RFC 9111 §4.3.1), never on the
 * agent's own (its Range or If-None-Match are answered from the cache).
 */
export function upstreamRequest(req: Request, url: string, stale: StoredEntry | undefined): Request {
  const headers = new Headers(req.headers);
  // A GET without a body: the agent's own framing fields do not describe this request.
  for (const name of [...CLIENT_CONDITIONALS, "content-length", "transfer-encoding"]) headers.delete(name);
  const etag = stale?.headers.get("etag");
  const lastModified = stale?.headers.get("last-modified");
  if (etag) headers.set("if-none-match", etag);
  if (lastModified) headers.set("if-modified-since", lastModified);
  return new Request(url, { method: "GET", headers });
}

export interface RevalidationDeps {
  index: CacheIndex;
  serveEntry: ServeEntry;
  /** Asks upstream again for this agent alone (the stored response turned out to be unreadable). */
  pass: (req: Request, label: XCache) => Promise<Response>;
  now: () => number;
}

/** The outcomes of revalidating a stale entry that keep serving it. */
export function createRevalidation(deps: RevalidationDeps) {
  const ageOf = (entry: StoredEntry) => currentAge(entry.headers, entry, deps.now());

  return {
    /** RFC 9111 §4.3.4: a 304 freshens the stored response with its headers; every waiting request shares it. */
    async freshen(
      req: Request,
      flight: LeadFlight,
      stale: StoredEntry,
      notModified: Response,
      timing: ResponseTiming,
    ): Promise<Response> {
      void notModified.body?.cancel();
      const headers = mergeNotModified(stale.headers, notModified.headers);
      const fresh = deps.index.refresh(stale, headers, timing.requestTime, timing.responseTime);
      flight.settle({ kind: "entry", entry: fresh, stale: false });
      return (await deps.serveEntry(req, fresh, "REVALIDATED", ageOf(fresh))) ?? deps.pass(req, "MISS");
    },

    /**
     * RFC 9111 §4.2.4: the origin failed and the stale response allows being
     * served anyway (the caller checked mayServeStale). Null if its blob is gone.
     */
    async serveStale(req: Request, flight: LeadFlight, stale: StoredEntry): Promise<Response | null> {
      flight.settle({ kind: "entry", entry: stale, stale: true });
      return deps.serveEntry(req, stale, "STALE", ageOf(stale));
    },
  };
}
