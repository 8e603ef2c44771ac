import type { Logger } from "../log.ts";
import type { BlobStore } from "../store/blob-store.ts";
import { answeredByPeer } from "../upstream/client.ts";
import { BlobSource, type BodySource, MemorySource } from "./body-source.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import { respond, type XCache } from "./respond.ts";

/** Blobs up to this size are read into memory once and shared by the agents reading them at the same time. */
const SHARED_MAX_BYTES = 4 * 1024 * 1024;
/** What such shared copies may hold in all; past it, an agent reads the file with a buffer of its own. */
const SHARED_BUDGET_BYTES = 64 * 1024 * 1024;

/**
 * Serves stored responses: from memory for small hot blobs (the store's
 * LRU) and for blobs of a few MiB being read by agents at the same time,
 * else from the blob file, pinned so eviction leaves it alone while it is read.
 */
export function createEntryServer(deps: { index: CacheIndex; store: BlobStore; log: Logger }) {
  const { index, store, log } = deps;
  const openShared = sharedCopies(index, store);

  async function open(entry: StoredEntry): Promise<BodySource> {
    const small = await store.small(entry.sha256, entry.size);
    if (small) return new MemorySource(small);
    const shared = await openShared(entry);
    if (shared) return shared;
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

/**
 * A storm of agents on one stored object of a few MiB: reading the file,
 * each would hold a buffer or two of its own while its socket drains (500
 * agents, 100+ MiB); sharing, they all write views of one copy, which goes
 * when the last of them is done.
 */
function sharedCopies(index: CacheIndex, store: BlobStore) {
  const copies = new Map<string, { bytes: Promise<Uint8Array>; readers: number }>();
  let held = 0;

  async function read(entry: StoredEntry): Promise<Uint8Array> {
    index.pin(entry.sha256); // eviction leaves the blob alone while it is read
    try {
      const bytes = await Bun.file(store.pathOf(entry.sha256)).bytes();
      if (bytes.length !== entry.size) {
        throw new Error(`blob ${entry.sha256} has ${bytes.length} bytes on disk, the index says ${entry.size}`);
      }
      return bytes;
    } finally {
      index.unpin(entry.sha256);
    }
  }

  /** A source sharing the blob's bytes with its other readers; undefined if it is too large or the budget is spent. */
  return async function openShared(entry: StoredEntry): Promise<BodySource | undefined> {
    let copy = copies.get(entry.sha256);
    if (!copy) {
      if (entry.size > SHARED_MAX_BYTES || held + entry.size > SHARED_BUDGET_BYTES) return undefined;
      copy = { bytes: read(entry), readers: 0 };
      copies.set(entry.sha256, copy);
      held += entry.size;
    }
    const mine = copy;
    mine.readers++;
    const leave = () => {
      if (--mine.readers > 0) return;
      held -= entry.size;
      if (copies.get(entry.sha256) === mine) copies.delete(entry.sha256);
    };
    try {
      return new MemorySource(await mine.bytes, leave);
    } catch (err) {
      leave();
      throw err;
    }
  };
}

/** An upstream response passed on to the agent, with its X-Cache label (PEER for a miss a fleet member answered). */
export function labelled(res: Response, label: XCache): Response {
  const headers = new Headers(res.headers);
  headers.set("x-cache", label === "MISS" ? fetchedLabel(res) : label);
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

/** What the agent is told about a response fetched for it: from the origin, or through the member that owns it. */
export const fetchedLabel = (res: Response): XCache => (answeredByPeer(res) ? "PEER" : "MISS");
