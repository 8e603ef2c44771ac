import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CacheIndex, createCacheIndex, type NewEntry } from "../../src/cache/cache-index.ts";
import { sizeLimit } from "../../src/cache/eviction.ts";
import { createCachePipeline } from "../../src/cache/pipeline.ts";
import { type Db, openDb } from "../../src/db/client.ts";
import { silentLogger } from "../../src/log.ts";
import { type BlobStore, createBlobStore } from "../../src/store/blob-store.ts";
import { manualClock } from "./clock.ts";

/**
 * The cache's parts built in-process, without a gateway: a real SQLite
 * index and a real blob store in a temp dir, on a clock the test moves.
 */
export interface CacheParts {
  dir: string;
  db: Db;
  store: BlobStore;
  index: CacheIndex;
  clock: ReturnType<typeof manualClock>;
}

/** Opens fresh parts; `defer` (from cleanupAfterEach) closes the database and removes the dir after the test. */
export async function openCacheParts(defer: (fn: () => unknown) => void): Promise<CacheParts> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-core-"));
  const db = openDb(join(dir, "index.sqlite"));
  const store = await createBlobStore(dir);
  const clock = manualClock();
  const index = createCacheIndex(db, store, clock.now);
  defer(async () => {
    index.flush(); // the index flushes touches on a timer; nothing must be left for it once the db is closed
    db.$client.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, db, store, index, clock };
}

/** Writes bytes through a temp file and commits them, as a download does; returns their sha256. */
export async function putBlob(store: BlobStore, bytes: Uint8Array): Promise<string> {
  const temp = await store.createTemp();
  try {
    await temp.write(bytes);
    return await store.commit(temp);
  } finally {
    await temp.handle.close();
  }
}

/** A stored blob and an index entry for it, with plain 200 headers; `over` changes any field. */
export async function putEntry(
  parts: Pick<CacheParts, "store" | "index" | "clock">,
  url: string,
  bytes: Uint8Array,
  over: Partial<NewEntry> = {},
  requestHeaders: Record<string, string> = {},
) {
  const sha256 = await putBlob(parts.store, bytes);
  const at = parts.clock.now();
  const entry: NewEntry = {
    url,
    vary: null,
    sha256,
    size: bytes.length,
    status: 200,
    headers: new Headers({ "cache-control": "max-age=60" }),
    requestTime: at,
    responseTime: at,
    ...over,
  };
  return parts.index.insert(entry, new Headers(requestHeaders));
}

/** An upstream the test answers in-process: it records each request and counts the calls, no sockets. */
export function fakeUpstream(answer: (req: Request, call: number) => Response | Promise<Response>) {
  const requests: Request[] = [];
  return {
    requests,
    calls: () => requests.length,
    fetch: async (req: Request): Promise<Response> => {
      requests.push(req);
      return answer(req, requests.length);
    },
  };
}

/**
 * A cache pipeline over fresh parts whose upstream answers with `answer`
 * (see fakeUpstream); `maxBytes` limits the cache. Stopped after the test.
 */
export async function pipelineOver(
  defer: (fn: () => unknown) => void,
  answer: (req: Request, call: number) => Response | Promise<Response>,
  maxBytes = Infinity,
) {
  const parts = await openCacheParts(defer);
  const upstream = fakeUpstream(answer);
  const pipeline = createCachePipeline({
    index: parts.index,
    store: parts.store,
    fetchUpstream: upstream.fetch,
    ttlRules: () => [],
    eviction: sizeLimit(() => maxBytes),
    log: silentLogger,
    now: parts.clock.now,
  });
  defer(() => pipeline.stop());
  return { ...parts, upstream, pipeline };
}
