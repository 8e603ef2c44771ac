import { discard } from "../upstream/client.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import type { DownloadHead, LeadFlight } from "./flights.ts";
import { currentAge, mergeNotModified, parseCacheControl, type ResponseTiming, storability } from "./freshness.ts";
import { cacheKey } from "./key.ts";
import { respond, type XCache } from "./respond.ts";
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
export function upstreamRequest(req: Request, url: string, stale: { headers: Headers } | undefined): Request {
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
      discard(notModified.body);
      const { headers, keep } = renewed(stale, notModified.headers);
      const fresh = deps.index.refresh(stale, headers, timing.requestTime, timing.responseTime);
      flight.settle({ kind: "entry", entry: fresh, stale: false });
      const served = (await deps.serveEntry(req, fresh, "REVALIDATED", ageOf(fresh))) ?? deps.pass(req, "MISS");
      // Served this once; if its new headers forbid keeping it (private, no-store), it goes now.
      if (!keep) await deps.index.remove(fresh);
      return served;
    },

    /**
     * The same for a response still downloading: its headers and timing are
     * renewed for this flight, which serves the same download until it ends;
     * nothing is downloaded twice. It is not shared when the download broke
     * or stopped being stored, when the 304 forbids storing, or when it
     * changes Vary: then it answers this request alone.
     */
    freshenDownload(
      req: Request,
      flight: LeadFlight,
      downloading: DownloadHead,
      notModified: Response,
      timing: ResponseTiming,
    ): Promise<Response> {
      discard(notModified.body);
      const { headers, keep } = renewed(downloading.rep, notModified.headers);
      const { download } = downloading;
      const rep = { ...downloading.rep, headers };
      const age = currentAge(headers, timing, deps.now());
      const sameVary = headers.get("vary") === downloading.rep.headers.get("vary");
      if (download.error || download.spilled || !sameVary || !keep) {
        flight.settle({ kind: "pass" });
        if (download.error) return deps.pass(req, "MISS");
        return respond(req, rep, () => download.retain(), "REVALIDATED", age);
      }
      download.retain(); // held for this flight's readers until the download ends
      const spill = download.onSpill;
      download.onSpill = () => {
        spill?.();
        flight.land(); // no new readers for a download that is no longer stored
      };
      flight.settle({ ...downloading, rep, ...timing });
      void download.whenSettled().then(() => {
        flight.land();
        download.release();
      });
      return respond(req, rep, () => download.retain(), "REVALIDATED", age);
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

/**
 * RFC 9111 §4.3.5: a 200 to a HEAD request that went upstream updates the
 * stored GET response it could stand for, when the validators it carries
 * (ETag, Last-Modified) and its Content-Length match; otherwise that stored
 * response is out of date, and is dropped.
 */
export async function freshenFromHead(index: CacheIndex, req: Request, head: Response, now: () => number) {
  const url = cacheKey(req.url);
  const stored = index.lookup(url, req.headers);
  if (!stored) return;
  const same = (name: string) => !head.headers.has(name) || head.headers.get(name) === stored.headers.get(name);
  const length = head.headers.get("content-length");
  const matches =
    (head.headers.has("etag") || head.headers.has("last-modified")) &&
    same("etag") &&
    same("last-modified") &&
    (length === null || Number(length) === stored.size);
  if (!matches) return void (await index.remove(stored));
  // §5.2.1.5: nothing of a response to a no-store request is stored, this update included.
  if (parseCacheControl(req.headers.get("cache-control")).has("no-store")) return;
  const { headers, keep } = renewed(stored, head.headers);
  if (!keep) return void (await index.remove(stored));
  const at = now();
  index.refresh(stored, headers, at, at);
}

/**
 * A stored (or downloading) response renewed by a 304 or a HEAD's 200
 * (RFC 9111 §3.2, §4.3.4): its headers merged with the update's, except the
 * update's Set-Cookie (product rule, as for storing: the fleet's copy never
 * carries one client's cookie), and whether it may still be kept now that
 * they may say private or no-store.
 */
function renewed(stored: { status: number; headers: Headers }, update: Headers): { headers: Headers; keep: boolean } {
  const headers = mergeNotModified(stored.headers, update);
  headers.delete("set-cookie");
  const keep = storability(
    { method: "GET", headers: new Headers() },
    { status: stored.status, headers },
    true,
  ).storable;
  return { headers, keep };
}
