import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import type { Flight, Flights } from "./flights.ts";
import { freshness, type TtlRule } from "./freshness.ts";

/**
 * What the cache holds for a request, in Varnish's terms: a fresh stored
 * response (hit), a fetch in progress to wait on (busy), a stored response
 * that must be revalidated first (stale), or nothing (miss).
 */
export type Lookup =
  | { kind: "hit"; entry: StoredEntry; age: number }
  | { kind: "busy"; flight: Flight }
  | { kind: "stale"; entry: StoredEntry }
  | { kind: "miss" };

export interface LookupDeps {
  index: CacheIndex;
  flights: Flights;
  ttlRules: () => readonly TtlRule[];
  now: () => number;
}

/** Looks a request up; `entry: false` skips the index (its stored response turned out to be unreadable). */
export function lookup(req: Request, url: string, deps: LookupDeps, opts: { entry?: false } = {}): Lookup {
  const entry = opts.entry === false ? undefined : deps.index.lookup(url, req.headers);
  if (entry) {
    // RFC 9111 §4.2 (fresh) and §5.2.1 (what the request accepts).
    const f = freshness(req, entry, entry, url, deps.ttlRules(), deps.now());
    if (f.verdict === "fresh") return { kind: "hit", entry, age: f.age };
  }
  const flight = deps.flights.get(url);
  if (flight) return { kind: "busy", flight };
  return entry ? { kind: "stale", entry } : { kind: "miss" };
}
