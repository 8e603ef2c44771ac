import { rm } from "node:fs/promises";
import type { Logger } from "../log.ts";
import { type BlobStore, isDiskError } from "../store/blob-store.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import { Download } from "./download.ts";
import { type EvictionPolicy, evict, makeRoom } from "./eviction.ts";
import { fetchRange, strongValidator } from "./refetch.ts";

export interface FillDeps {
  index: CacheIndex;
  store: BlobStore;
  eviction: EvictionPolicy;
  /** For resuming a broken download, and for readers that fell behind a spilled one. */
  fetchUpstream: (req: Request) => Promise<Response>;
  /** Told each time a broken download was resumed (stats). */
  onResume?: (url: string) => void;
  log: Logger;
  now: () => number;
  /** Upstream sends nothing for this long mid-body → the connection counts as broken. */
  idleTimeoutMs: number;
}

/** A download in progress, as the admin API reports it. */
export interface DownloadProgress {
  url: string;
  /** "asking": upstream's answer head has not come yet; "downloading": its body is being stored. */
  state: "asking" | "downloading";
  receivedBytes: number;
  /** Content-Length; null for a chunked or close-delimited body, or before the head came. */
  expectedBytes: number | null;
  /** When it began (ms since the epoch). */
  startedAt: number;
}

/** What is indexed with the body once it is complete. */
export type EntryMeta = Omit<StoredEntry, "id" | "variant" | "sha256" | "size">;

/** After a disk error, new downloads pass through uncached for this long instead of failing too. */
const DISK_TROUBLE_MS = 30_000;
/** Resume attempts in a row that bring no new byte before a download fails, and their backoff. */
const RESUME_ATTEMPTS = 4;
const RESUME_BACKOFF_MS = 100;
/** Resumes of one download in all (an origin that breaks every few bytes is not worth following forever). */
const MAX_RESUMES = 64;

/** The upstream connection broke or fell silent mid-body (as opposed to the gateway's own disk failing). */
class UpstreamBroke extends Error {
  override name = "UpstreamBroke";
}

/**
 * The store step: an upstream body is written to a temp file that agents
 * read as it grows, checked against its Content-Length, committed
 * (flushed, renamed to its sha256, indexed), and then eviction runs. Only
 * a complete body is ever indexed. A connection that breaks mid-body is
 * resumed with a Range request when the response allows it; a disk that
 * fails mid-body stops the storing, not the agents (see download.ts).
 */
export function createFiller(deps: FillDeps) {
  const { index, store, log, now } = deps;
  let diskTroubleUntil = 0;
  let stopping = false;
  const upstreamReaders = new Set<ReadableStreamDefaultReader<Uint8Array>>();
  /** Downloads running, with the URL each stores and when it began (the status page shows them). */
  const active = new Map<Download, { url: string; startedAt: number }>();

  /** Bytes the downloads in progress will still write (those of known size). */
  const reserved = () => {
    let bytes = 0;
    for (const d of active.keys())
      if (d.expectedSize !== undefined && !d.spilled) bytes += d.expectedSize - d.available();
    return Math.max(0, bytes);
  };

  /** A download for this response, or undefined when the disk cannot take it now (it is then passed through). */
  async function begin(res: Response, url: string): Promise<Download | undefined> {
    const expected = contentLength(res.headers);
    try {
      if (now() < diskTroubleUntil) throw new Error("the cache disk failed a moment ago");
      const need = (expected ?? 0) + reserved();
      if (!deps.eviction.roomFor(need) && !(await makeRoom(index, deps.eviction, need))) {
        throw new Error("the cache disk has no room for it, even after evicting what can go");
      }
      const download = new Download(await store.createTemp(), expected);
      active.set(download, { url, startedAt: now() });
      return download;
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
    upstreamReq: Request,
    meta: EntryMeta,
    requestHeaders: Headers,
    land: () => void,
  ): Promise<void> {
    download.onSpill = land; // a download that can no longer be stored takes no new readers
    download.patienceMs = deps.idleTimeoutMs;
    const validator = strongValidator(res.headers);
    if (validator) {
      download.refetch = (from, to) => fetchRange(deps.fetchUpstream, upstreamReq, validator, from, to);
    }
    let committed = false;
    try {
      await fill(download, res.body, meta.url);
      if (download.spilled) {
        diskTroubleUntil = now() + DISK_TROUBLE_MS;
        log.warn("the cache disk failed mid-download; its agents got the whole body from upstream, nothing stored", {
          url: meta.url,
          error: download.spilled,
        });
        void evict(index, deps.eviction).catch(() => {});
      } else {
        await commit(download, meta, requestHeaders);
        committed = true;
      }
    } catch (err) {
      const error = err as Error;
      if (isDiskError(error)) diskTroubleUntil = now() + DISK_TROUBLE_MS;
      download.fail(error);
      log.warn("download failed; nothing cached", { url: meta.url, error, bytes: download.available() });
    } finally {
      active.delete(download);
      // Readers keep their open handle. A disk that fails may refuse the unlink too: the start-up sweep removes it.
      if (!committed) void rm(download.temp.path, { force: true }).catch(() => {});
      land();
      download.release();
    }
  }

  /** Copies the upstream body into the download, resuming it if the connection breaks; fails on a short body. */
  async function fill(download: Download, body: ReadableStream<Uint8Array> | null, url: string): Promise<void> {
    let stream = body;
    let attempts = 0;
    let resumes = 0;
    let progressAt = 0;
    while (stream) {
      try {
        await copy(download, stream);
        break;
      } catch (err) {
        const resumable = err instanceof UpstreamBroke && download.refetch && download.expectedSize !== undefined;
        if (!resumable || stopping || ++resumes > MAX_RESUMES) throw err;
        if (download.available() > progressAt) attempts = 0;
        progressAt = download.available();
        if (++attempts > RESUME_ATTEMPTS) throw err;
        await Bun.sleep(RESUME_BACKOFF_MS * 3 ** (attempts - 1));
        if (stopping) throw err;
        const from = download.available();
        log.info("upstream broke mid-download; resuming with a Range request", { url, from, error: err });
        try {
          stream = (await download.refetch!(from, download.expectedSize)).body;
        } catch (retry) {
          throw new Error(`${(err as Error).message}; resuming failed: ${(retry as Error).message}`);
        }
        deps.onResume?.(url);
      }
    }
    const got = download.available();
    if (download.expectedSize !== undefined && got !== download.expectedSize) {
      throw new Error(`upstream body ended after ${got} of ${download.expectedSize} bytes`);
    }
    await download.flush(); // the file holds every byte before it is committed
    download.complete();
  }

  /** Appends one upstream body stream to the download; throws UpstreamBroke if the connection breaks or stalls. */
  async function copy(download: Download, stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    let timer: Timer | undefined;
    let silent = false;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        silent = true;
        reader.cancel().catch(() => {}); // the read in progress fails, and says why
      }, deps.idleTimeoutMs);
    };
    upstreamReaders.add(reader);
    try {
      for (arm(); ; arm()) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw new UpstreamBroke((err as Error).message, { cause: err });
        }
        clearTimeout(timer); // the clock is upstream's: time spent writing (or waiting for readers) is not its silence
        if (stopping) throw new Error("the gateway is shutting down");
        if (silent) throw new UpstreamBroke(`upstream sent nothing for ${deps.idleTimeoutMs / 1000} s`);
        if (chunk.done) return;
        const room =
          download.expectedSize === undefined ? chunk.value.length : download.expectedSize - download.available();
        if (chunk.value.length > room) throw new Error("upstream sent more bytes than its Content-Length");
        await download.append(chunk.value);
      }
    } catch (err) {
      // A failure leaves the upstream body unread: let go of it and its connection now.
      void reader.cancel(err).catch(() => {});
      throw err;
    } finally {
      clearTimeout(timer);
      upstreamReaders.delete(reader);
    }
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
    /** Downloads running (a flight replaced by a newer one still counts until its download ends). */
    active: () => active.size,
    /** What each running download has received so far, of how much (when upstream said). */
    progress: (): DownloadProgress[] =>
      [...active].map(([d, { url, startedAt }]) => ({
        url,
        state: "downloading",
        receivedBytes: d.available(),
        expectedBytes: d.expectedSize ?? null,
        startedAt,
      })),
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
