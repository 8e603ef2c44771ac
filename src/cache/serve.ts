import type { Logger } from "../log.ts";
import type { BlobStore } from "../store/blob-store.ts";
import { BlobSource, type BodySource, MemorySource } from "./body-source.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import { respond, type XCache } from "./respond.ts";

/**
 * Serves stored responses: from memory for small hot blobs, else from the
 * blob file, pinned so eviction leaves it alone while it is read.
 */
export function createEntryServer(deps: { index: CacheIndex; store: BlobStore; log: Logger }) {
  const { index, store, log } = deps;

  async function open(entry: StoredEntry): Promise<BodySource> {
    const small = await store.small(entry.sha256, entry.size);
    if (small) return new MemorySource(small);
    index.pin(entry.sha256); // from here eviction leaves the blob alone
    try {
      return new BlobSource(await store.open(entry.sha256), entry.size, () => index.unpin(entry.sha256));
    } catch (err) {
      index.unpin(entry.sha256);
      throw err;
    }
  }

  /** The response for a stored entry, or null (and the entry is forgotten) if its blob is gone or unreadable. */
  return async function serveEntry(
    req: Request,
    entry: StoredEntry,
    label: XCache,
    age: number,
  ): Promise<Response | null> {
    index.touch(entry);
    try {
      const rep = { status: entry.status, headers: entry.headers, size: entry.size };
      return await respond(req, rep, () => open(entry), label, age);
    } catch (err) {
      log.error("cached blob unreadable; dropping the entry", { url: entry.url, sha256: entry.sha256, error: err });
      await index.remove(entry);
      return null;
    }
  };
}

export type ServeEntry = ReturnType<typeof createEntryServer>;

/** An upstream response passed on to the agent, with its X-Cache label. */
export function labelled(res: Response, label: XCache): Response {
  const headers = new Headers(res.headers);
  headers.set("x-cache", label);
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}
