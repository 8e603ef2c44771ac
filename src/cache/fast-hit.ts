import type { BlobStore } from "../store/blob-store.ts";
import type { CacheIndex } from "./cache-index.ts";
import { parseCacheControl } from "./freshness.ts";
import { cacheKey } from "./key.ts";
import { type LookupDeps, lookup } from "./lookup.ts";
import { storedHead } from "./respond.ts";

/** A fresh stored 200 whose body is in memory: all a fast path needs to answer without a Response. */
export interface MemoryHit {
  /** The stored response's headers. Never changed in place, so a head built from them may be kept with them. */
  stored: Headers;
  /** Current age in seconds (RFC 9111 §4.2.3). */
  age: number;
  body: Uint8Array;
}

/**
 * The cheap case of the pipeline's "hit": a plain GET or HEAD whose stored
 * response is fresh (the same lookup() and RFC 9111 freshness as handle())
 * and small enough to be held in memory. Anything else (a miss, stale, a
 * download in progress, a large body, a status other than 200) answers
 * undefined and is left to handle(). Conditional and Range requests are the
 * caller's to leave out: only respond() answers them.
 */
export function createMemoryHits(deps: { index: CacheIndex; store: BlobStore; lookup: LookupDeps }) {
  const { index, store } = deps;

  return async function freshInMemory(url: URL, headers: Headers): Promise<MemoryHit | undefined> {
    // RFC 9111 §5.2.1.5: no-store in the request: handle() passes it upstream.
    if (parseCacheControl(headers.get("cache-control")).has("no-store")) return undefined;
    const found = lookup({ headers }, cacheKey(url), deps.lookup);
    if (found.kind !== "hit" || found.entry.status !== 200) return undefined;
    const { entry, age } = found;
    // A blob that is gone or unreadable throws here: handle() finds that out again, and forgets the entry.
    const body = await store.small(entry.sha256, entry.size).catch(() => undefined);
    if (body === undefined) return undefined;
    index.touch(entry); // as serveEntry() does: LRU order and hit counts
    return { stored: entry.headers, age, body };
  };
}

/** The head respond() gives a whole stored 200 labelled HIT: the same fields, built by the same function. */
export function hitHeaders(hit: MemoryHit): Headers {
  const headers = storedHead({ status: 200, headers: hit.stored }, "HIT", hit.age);
  headers.set("content-length", String(hit.body.length));
  return headers;
}
