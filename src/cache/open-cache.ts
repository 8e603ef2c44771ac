import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { type Db, openDb } from "../db/client.ts";
import { type BlobStore, createBlobStore } from "../store/blob-store.ts";
import { type CacheIndex, createCacheIndex } from "./cache-index.ts";
import { type CachePipeline, createCachePipeline, type PipelineDeps } from "./pipeline.ts";
import { createVerifier } from "./verify.ts";

/** One cache on one disk: blobs, their SQLite index next to them, and the pipeline that serves them. */
export interface Cache {
  dir: string;
  db: Db;
  store: BlobStore;
  index: CacheIndex;
  pipeline: CachePipeline;
  verifier: ReturnType<typeof createVerifier>;
  close(): void;
}

export type CacheOptions = Omit<PipelineDeps, "index" | "store" | "now"> & {
  now: () => number;
  /** The database to keep the index in; by default the cache opens (and closes) its own in `dir`. */
  db?: Db;
  /**
   * Sweep leftovers at open (default). A worker process started while its
   * siblings run must not: their downloads in progress look like leftovers.
   */
  sweep?: boolean;
  /** Other processes (workers) use this cache too: see IndexOptions.shared. */
  shared?: boolean;
};

/**
 * Opens the cache kept in `dir` (the data dir, or the patch disk): applies
 * migrations, sweeps what an interrupted download left behind, and builds
 * its pipeline.
 */
export async function openCache(dir: string, opts: CacheOptions): Promise<Cache> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const db = opts.db ?? openDb(join(dir, "index.sqlite"));
  const store = await createBlobStore(dir);
  const index = createCacheIndex(db, store, opts.now, { log: opts.log, shared: opts.shared });
  if (opts.sweep !== false) {
    const swept = await store.sweep(index.knowsBlob);
    if (swept.temps + swept.orphans > 0) opts.log.info("swept leftovers of interrupted downloads", { dir, ...swept });
  }
  const pipeline = createCachePipeline({ ...opts, index, store });
  return {
    dir,
    db,
    store,
    index,
    pipeline,
    verifier: createVerifier(index, store, opts.log),
    close() {
      index.close();
      if (!opts.db) db.$client.close(); // a borrowed database is its owner's to close
    },
  };
}
