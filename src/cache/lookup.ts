import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import type { DownloadHead, Flight, Flights } from "./flights.ts";
import { freshness, matchTtlRule, type TtlRule } from "./freshness.ts";
import { variantOf } from "./key.ts";
import { revalidateWindow } from "./stale.ts";

/**
 * What the cache holds for a request, in Varnish's terms:
 * - hit: a fresh stored response;
 * - hit-downloading: a fresh response still downloading, for a request that
 *   arrived after its head (it is judged on freshness like a stored one);
 * - updating: a stale stored response inside its stale-while-revalidate
 *   window (RFC 5861 §3): served now, while one revalidation runs (`refresh`:
 *   none runs yet, start it);
 * - busy: a fetch in progress whose head has not arrived: wait on it;
 * - stale: a stored response that must be revalidated first;
 * - stale-downloading: a response still downloading that is not fresh for
 *   this request: revalidated with its validators, not downloaded again;
 * - miss: nothing.
 */
export type Lookup =
  | { kind: "hit"; entry: StoredEntry; age: number }
  | { kind: "hit-downloading"; head: DownloadHead; age: number }
  | { kind: "updating"; entry: StoredEntry; age: number; refresh: boolean }
  | { kind: "busy"; flight: Flight }
  | { kind: "stale"; entry: StoredEntry }
  | { kind: "stale-downloading"; head: DownloadHead; entry: StoredEntry | undefined }
  | { kind: "miss" };

export interface LookupDeps {
  index: CacheIndex;
  flights: Flights;
  ttlRules: () => readonly TtlRule[];
  now: () => number;
}

/** Looks a request up; `entry: false` skips the index (its stored response turned out to be unreadable). */
export function lookup(req: { headers: Headers }, url: string, deps: LookupDeps, opts: { entry?: false } = {}): Lookup {
  const rules = deps.ttlRules();
  const now = deps.now();
  const entry = opts.entry === false ? undefined : deps.index.lookup(url, req.headers);
  // RFC 9111 §4.2 (fresh) and §5.2.1 (what the request accepts).
  const stored = entry && freshness(req, entry, entry, url, rules, now);
  if (entry && stored?.verdict === "fresh") return { kind: "hit", entry, age: stored.age };

  const flight = deps.flights.get(url);
  const head = flight?.settled;
  let downloading: DownloadHead | undefined;
  if (head?.kind === "download" && head.variant === variantOf(head.vary, req.headers)) {
    const timing = { requestTime: head.requestTime, responseTime: head.responseTime };
    const f = freshness(req, head.rep, timing, url, rules, now);
    if (f.verdict === "fresh") return { kind: "hit-downloading", head, age: f.age };
    downloading = head;
  }
  if (entry && stored) {
    // Stale by time (not merely refused by the request's own directives), and within its window.
    const staleness = stored.age - stored.lifetime;
    const window = revalidateWindow(entry, req, matchTtlRule(url, rules));
    if (staleness >= 0 && staleness < window) {
      return { kind: "updating", entry, age: stored.age, refresh: flight === undefined };
    }
  }
  // A fetch whose head has not come yet is waited on; one whose head came before this request and
  // cannot serve it is not: this request asks upstream itself.
  if (flight && !head) return { kind: "busy", flight };
  if (downloading) return { kind: "stale-downloading", head: downloading, entry };
  return entry ? { kind: "stale", entry } : { kind: "miss" };
}
