import { rm } from "node:fs/promises";
import type { Logger } from "../log.ts";
import type { BlobStore } from "../store/blob-store.ts";
import { Download } from "./body-source.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import { type EvictionPolicy, evict } from "./eviction.ts";

export interface FillDeps {
  index: CacheIndex;
  store: BlobStore;
  eviction: EvictionPolicy;
  log: Logger;
  now: () => number;
  /** Upstream sends nothing for this long mid-body → the download fails. */
  idleTimeoutMs: number;
}

/** What is indexed with the body once it is complete. */
export type EntryMeta = Omit<StoredEntry, "id" | "variant" | "sha256" | "size">;

/** Write errors that mean the disk, not the download, is at fault. */
const DISK_ERRORS = new Set(["ENOSPC", "EDQUOT", "EIO", "EROFS"]);
/** After a disk error, new downloads pass through uncached for this long instead of failing too. */
const DISK_TROUBLE_MS = 30_000;

/**
 * The store step: an upstream body is written to a temp file that agents
 * read as it grows, checked against its Content-Length, committed
 * (flushed, renamed to its sha256, indexed), and then eviction runs. Only
 * a complete body is ever indexed; a failed one fails every reader.
 */
export function createFiller(deps: FillDeps) {
  const { index, store, log, now } = deps;
  let diskTroubleUntil = 0;
  let stopping = false;
  const upstreamReaders = new Set<ReadableStreamDefaultReader<Uint8Array>>();

  /** A download for this response, or undefined when the disk cannot take it now (it is then passed through). */
  async function begin(res: Response, url: string): Promise<Download | undefined> {
    const expected = contentLength(res.headers);
    try {
      if (now() < diskTroubleUntil || !deps.eviction.roomFor(expected)) {
        throw new Error("the cache disk is full or failing");
      }
      return new Download(await store.createTemp(), expected);
    } catch (error) {
      log.warn("cannot store; passing the response through uncached", { url, error });
      return undefined;
    }
  }

  /**
   * Runs a download to its end. It belongs to the cache, not to the agent
   * that started it: it goes on if that agent leaves. Never rejects.
   * `land` ends the flight before the writer lets go of the temp file, so
   * no request can join a download whose file is closing.
   */
  async function run(
    download: Download,
    res: Response,
    meta: EntryMeta,
    requestHeaders: Headers,
    land: () => void,
  ): Promise<void> {
    try {
      await fill(download, res);
      await commit(download, meta, requestHeaders);
    } catch (err) {
      const error = err as NodeJS.ErrnoException;
      if (DISK_ERRORS.has(error.code ?? "")) diskTroubleUntil = now() + DISK_TROUBLE_MS;
      download.fail(error);
      log.warn("download failed; nothing cached", { url: meta.url, error, bytes: download.available() });
      void rm(download.temp.path, { force: true });
    } finally {
      land();
      download.release();
    }
  }

  /** Copies the upstream body into the download, failing on silence or a short body. */
  async function fill(download: Download, res: Response): Promise<void> {
    if (res.body) {
      const reader = res.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      let timer: Timer | undefined;
      let silent = false;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          silent = true;
          void reader.cancel();
        }, deps.idleTimeoutMs);
      };
      upstreamReaders.add(reader);
      try {
        for (arm(); ; arm()) {
          const { done, value } = await reader.read();
          if (silent) throw new Error(`upstream sent nothing for ${deps.idleTimeoutMs / 1000} s`);
          if (stopping) throw new Error("the gateway is shutting down");
          if (done) break;
          await download.append(value);
        }
      } catch (err) {
        // A write that failed (full disk) leaves the upstream body unread: let go of it and its connection now.
        void reader.cancel(err).catch(() => {});
        throw err;
      } finally {
        clearTimeout(timer);
        upstreamReaders.delete(reader);
      }
    }
    const got = download.available();
    if (download.expectedSize !== undefined && got !== download.expectedSize) {
      throw new Error(`upstream body ended after ${got} of ${download.expectedSize} bytes`);
    }
    download.complete();
  }

  /** Flushes the blob into place and indexes it: only now can a later request hit it. */
  async function commit(download: Download, meta: EntryMeta, requestHeaders: Headers): Promise<void> {
    if (stopping) throw new Error("the gateway is shutting down");
    const sha256 = await store.commit(download.temp);
    index.insert({ ...meta, sha256, size: download.available() }, requestHeaders);
    await evict(index, deps.eviction);
  }

  return {
    begin,
    run,
    /** Shutdown: every download in progress fails (nothing half-written is indexed). */
    stop() {
      stopping = true;
      for (const reader of upstreamReaders) void reader.cancel().catch(() => {});
    },
  };
}

/** The headers kept with a stored response. */
export function storedHeaders(h: Headers): Headers {
  const out = new Headers(h);
  // Framing belongs to each response we send, not to the stored one. Age and
  // Via stay: upstream's Age counts toward the entry's age (RFC 9111 §4.2.3),
  // and upstream's hops are part of the message (RFC 9110 §7.6.3).
  for (const name of ["content-length", "transfer-encoding", "x-cache"]) out.delete(name);
  return out;
}

export function contentLength(h: Headers): number | undefined {
  const v = h.get("content-length");
  return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
}
