import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { discard, endUnproven } from "../upstream/client.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import { contentLength, type createFiller, storedHeaders } from "./fill.ts";
import type { DownloadHead, Flights, LeadFlight } from "./flights.ts";
import { freshness, matchTtlRule, type ResponseTiming, storability, type TtlRule } from "./freshness.ts";
import { parseVary, variantOf } from "./key.ts";
import { type Representation, respond, type XCache } from "./respond.ts";
import { createRevalidation, upstreamRequest } from "./revalidate.ts";
import { fetchedLabel, labelled, type ServeEntry } from "./serve.ts";
import { mayServeOnError } from "./stale.ts";

export interface FetchDeps {
  index: CacheIndex;
  flights: Flights;
  filler: ReturnType<typeof createFiller>;
  serveEntry: ServeEntry;
  fetchUpstream: (req: Request) => Promise<Response>;
  pass: (req: Request, label: XCache) => Promise<Response>;
  ttlRules: () => readonly TtlRule[];
  serveStaleOnError?: () => boolean;
  log: Logger;
  now: () => number;
}

/**
 * The leader's fetch (Varnish's backend fetch): one request upstream on
 * behalf of every request that waits on the flight, conditional when a
 * stale copy is held. Its answer is dispatched to one step: revalidate
 * (304, or stale on an origin failure), store (a shareable response), or
 * pass (anything the cache may not keep).
 */
export function createFetch(deps: FetchDeps) {
  const { index, log, now } = deps;
  const revalidation = createRevalidation(deps);

  /** RFC 9111 §4.2.4, RFC 5861 §4: may this stale entry stand in for an origin that failed? */
  const mayStandIn = (stale: StoredEntry, req: Request, url: string) => {
    const f = freshness({ headers: new Headers() }, stale, stale, url, deps.ttlRules(), now());
    return mayServeOnError(stale, req, f.age - f.lifetime, deps.serveStaleOnError?.() ?? true);
  };

  /**
   * `stale`: the stored response to revalidate; `downloading`: a response still
   * downloading that is not fresh for this request, revalidated with its own
   * validators so a 304 is served from it rather than downloaded again.
   */
  return async function lead(
    req: Request,
    url: string,
    stale: StoredEntry | undefined,
    downloading?: DownloadHead,
  ): Promise<Response> {
    const flight = deps.flights.begin(url);
    try {
      return await fetchFor(flight, req, url, stale, downloading);
    } catch (err) {
      flight.abandon(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  };

  async function fetchFor(
    flight: LeadFlight,
    req: Request,
    url: string,
    stale: StoredEntry | undefined,
    downloading: DownloadHead | undefined,
  ) {
    // The download is newer than any stored entry: its validators go upstream; the entry stays for stale-if-error.
    const upstreamReq = upstreamRequest(req, url, downloading?.rep ?? stale);
    const requestTime = now();
    let res: Response;
    try {
      res = await deps.fetchUpstream(upstreamReq);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      // A policy refusal (403) is not an origin failure: it must not be papered over with a stale copy.
      const refused = error instanceof GatewayError && error.status === 403;
      if (stale && !refused && mayStandIn(stale, req, url)) {
        log.warn("upstream unreachable; serving stale", { url, error });
        return (await revalidation.serveStale(req, flight, stale)) ?? Promise.reject(error);
      }
      flight.settle({ kind: "error", error });
      throw error;
    }
    const timing: ResponseTiming = { requestTime, responseTime: now() };

    if (downloading && res.status === 304) return revalidation.freshenDownload(req, flight, downloading, res, timing);
    if (stale && res.status === 304) return revalidation.freshen(req, flight, stale, res, timing);
    if (stale && res.status >= 500 && mayStandIn(stale, req, url)) {
      // RFC 9111 §4.2.4 allows a stale response when the origin fails, unless the response forbids it.
      discard(res.body);
      log.warn("upstream failed revalidation; serving stale", { url, status: res.status });
      return (await revalidation.serveStale(req, flight, stale)) ?? deps.pass(req, "MISS");
    }

    const verdict = endUnproven(res)
      ? { storable: false, reason: "a close-delimited body over TLS cannot prove its end (RFC 9112 §9.8)" }
      : storability(upstreamReq, res, matchTtlRule(url, deps.ttlRules()) !== undefined);
    if (!verdict.storable) {
      flight.settle({ kind: "pass" });
      if (stale && res.status < 500) await index.remove(stale); // replaced by something we may not keep
      return labelled(res, "MISS");
    }
    return store(req, upstreamReq, url, flight, res, timing);
  }

  /** Stores the response while streaming it to this agent and every waiting one. */
  async function store(
    req: Request,
    upstreamReq: Request,
    url: string,
    flight: LeadFlight,
    res: Response,
    timing: ResponseTiming,
  ): Promise<Response> {
    // Everything that could throw comes before the download exists: after it, nothing may leave it unrun.
    const vary = parseVary(res.headers.get("vary"));
    const rep: Representation = {
      status: res.status,
      headers: storedHeaders(res.headers),
      size: contentLength(res.headers),
    };
    const variant = variantOf(vary, req.headers);
    const download = await deps.filler.begin(res, url);
    if (!download) {
      flight.settle({ kind: "pass" });
      return labelled(res, "BYPASS");
    }
    flight.settle({ kind: "download", download, rep, vary, variant, ...timing });
    const meta = { url, vary, status: res.status, headers: rep.headers, ...timing };
    void deps.filler.run(download, res, upstreamReq, meta, req.headers, flight.land);
    return respond(req, rep, () => download.retain(), fetchedLabel(res));
  }
}
