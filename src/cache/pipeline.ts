import { rm } from "node:fs/promises";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { BlobStore } from "../store/blob-store.ts";
import { BlobSource, type BodySource, Download, MemorySource } from "./body-source.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import {
  currentAge,
  freshness,
  matchTtlRule,
  mayServeStale,
  mergeNotModified,
  parseCacheControl,
  storability,
  type TtlRule,
} from "./freshness.ts";
import { cacheKey, parseVary, variantOf } from "./key.ts";
import { type Representation, respond, type XCache } from "./respond.ts";

/**
 * The cache pipeline: lookup → coalesce → fetch → store → serve.
 *
 * It takes a Fetch API Request and returns a Response, so it does not care
 * how the request arrived (plain HTTP proxy, or decrypted from a TLS tunnel).
 * As in Varnish, coalescing is part of lookup: a request for a URL that is
 * already being fetched waits on that fetch instead of starting its own.
 */
export interface PipelineDeps {
  index: CacheIndex;
  store: BlobStore;
  /** Sends a request upstream; hop-by-hop handling and connection security live behind it. */
  fetchUpstream: (req: Request) => Promise<Response>;
  ttlRules: () => readonly TtlRule[];
  maxBytes: () => number;
  /** Where eviction stops (default 90% of maxBytes); the patch disk uses its low watermark. */
  evictTo?: () => number;
  /** False when the store has no room for a body of this size (unknown: undefined): it is passed through uncached. */
  roomFor?: (bytes: number | undefined) => boolean;
  log: Logger;
  now?: () => number;
  /** Upstream sends nothing for this long mid-body → the download fails. */
  idleTimeoutMs?: number;
}

export interface CachePipeline {
  handle(req: Request): Promise<Response>;
  /** RFC 9111 §4.4: a successful unsafe request invalidates the stored responses of its URL. */
  invalidate(url: string): Promise<void>;
  /** Downloads in progress (for graceful shutdown and stats). */
  inFlight(): number;
  /** Requests waiting on another request's download for its response head (Varnish's waiting list). */
  waiting(): number;
  /** Shutdown: aborts downloads in progress (nothing half-written is indexed) and waits for them to wind up. */
  stop(): Promise<void>;
}

/** What joiners of a flight learn once the leader has the upstream response head. */
type FlightHead =
  | {
      kind: "download";
      download: Download;
      rep: Representation;
      variant: string;
      vary: string[] | null;
      responseTime: number;
    }
  | { kind: "entry"; entry: StoredEntry; stale: boolean }
  | { kind: "pass" } // not shareable (private, no-store, …): each joiner asks upstream itself
  | { kind: "error"; error: Error };

interface Flight {
  head: Promise<FlightHead>;
}

/** Write errors that mean the disk, not the download, is at fault. */
const DISK_ERRORS = new Set(["ENOSPC", "EDQUOT", "EIO", "EROFS"]);

/** Request headers that would make upstream answer something other than the full, current body. */
const CLIENT_CONDITIONALS = [
  "range",
  "if-range",
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
];

export function createCachePipeline(deps: PipelineDeps): CachePipeline {
  const { index, store, log } = deps;
  const now = deps.now ?? Date.now;
  const idleTimeoutMs = deps.idleTimeoutMs ?? 60_000;
  const flights = new Map<string, Flight>();
  let waiting = 0;
  /** After a disk error, new downloads pass through uncached for a while instead of failing too. */
  let diskTroubleUntil = 0;
  const DISK_TROUBLE_MS = 30_000;
  let stopping = false;
  const upstreamReaders = new Set<ReadableStreamDefaultReader<Uint8Array>>();
  const canStore = (bytes: number | undefined) => now() >= diskTroubleUntil && deps.roomFor?.(bytes) !== false;

  async function handle(req: Request): Promise<Response> {
    const url = cacheKey(req.url);
    // RFC 9111 §5.2.1.5: no-store in the request: neither store nor reuse for it.
    if (parseCacheControl(req.headers.get("cache-control")).has("no-store")) return pass(req, "MISS");

    let entry = index.lookup(url, req.headers);
    if (entry) {
      const f = freshness(req, entry, entry, url, deps.ttlRules(), now());
      if (f.verdict === "fresh") {
        const hit = await serveEntry(req, entry, "HIT", f.age);
        if (hit) return hit;
        entry = undefined; // blob vanished from disk: treat as a miss
      }
    }
    const flight = flights.get(url);
    if (flight) return join(req, flight);
    return lead(req, url, entry);
  }

  /** Serves a stored entry, or returns null (and forgets the entry) if its blob is gone. */
  async function serveEntry(req: Request, entry: StoredEntry, label: XCache, age: number): Promise<Response | null> {
    index.touch(entry);
    const open = async (): Promise<BodySource> => {
      const small = await store.small(entry.sha256, entry.size);
      if (small) return new MemorySource(small);
      index.pin(entry.sha256); // from here eviction leaves the blob alone
      try {
        return new BlobSource(await store.open(entry.sha256), entry.size, () => index.unpin(entry.sha256));
      } catch (err) {
        index.unpin(entry.sha256);
        throw err;
      }
    };
    try {
      return await respond(req, { status: entry.status, headers: entry.headers, size: entry.size }, open, label, age);
    } catch (err) {
      log.error("cached blob unreadable; dropping the entry", { url: entry.url, sha256: entry.sha256, error: err });
      await index.remove(entry);
      return null;
    }
  }

  async function join(req: Request, flight: Flight): Promise<Response> {
    waiting++;
    const head = await flight.head.finally(() => waiting--);
    switch (head.kind) {
      case "download":
        if (head.variant !== variantOf(head.vary, req.headers)) return pass(req, "MISS");
        return respond(req, head.rep, () => head.download.retain(), "COALESCED", ageSince(head.responseTime));
      case "entry": {
        const served = await serveEntry(
          req,
          head.entry,
          head.stale ? "STALE" : "COALESCED",
          currentAge(head.entry.headers, head.entry, now()),
        );
        return served ?? pass(req, "MISS");
      }
      case "pass":
        return pass(req, "MISS");
      case "error":
        throw head.error;
    }
  }

  async function lead(req: Request, url: string, stale: StoredEntry | undefined): Promise<Response> {
    let announce!: (head: FlightHead) => void;
    const flight: Flight = { head: new Promise((resolve) => (announce = resolve)) };
    flights.set(url, flight);
    const land = () => flights.get(url) === flight && flights.delete(url);
    const settle = (head: FlightHead) => {
      announce(head);
      if (head.kind !== "download") land();
    };

    const upstreamReq = upstreamRequest(req, url, stale);
    const requestTime = now();
    let res: Response;
    try {
      res = await deps.fetchUpstream(upstreamReq);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (stale && mayServeStale(stale) && !(err instanceof GatewayError && err.status === 403)) {
        log.warn("upstream unreachable; serving stale", { url, error });
        settle({ kind: "entry", entry: stale, stale: true });
        return (
          (await serveEntry(req, stale, "STALE", currentAge(stale.headers, stale, now()))) ?? Promise.reject(error)
        );
      }
      settle({ kind: "error", error });
      throw error;
    }
    const responseTime = now();

    if (stale && res.status === 304) {
      // RFC 9111 §4.3.4: freshen the stored response with the 304's headers.
      void res.body?.cancel();
      const fresh = index.refresh(stale, mergeNotModified(stale.headers, res.headers), requestTime, responseTime);
      settle({ kind: "entry", entry: fresh, stale: false });
      return (
        (await serveEntry(req, fresh, "REVALIDATED", currentAge(fresh.headers, fresh, now()))) ?? pass(req, "MISS")
      );
    }
    if (stale && res.status >= 500 && mayServeStale(stale)) {
      // RFC 9111 §4.2.4 allows a stale response when the origin fails, unless the response forbids it.
      void res.body?.cancel();
      log.warn("upstream failed revalidation; serving stale", { url, status: res.status });
      settle({ kind: "entry", entry: stale, stale: true });
      return (await serveEntry(req, stale, "STALE", currentAge(stale.headers, stale, now()))) ?? pass(req, "MISS");
    }

    const verdict = storable(upstreamReq, res, url);
    if (!verdict.storable) {
      settle({ kind: "pass" });
      if (stale && res.status < 500) await index.remove(stale); // replaced by something we may not keep
      return labelled(res, "MISS");
    }

    let download: Download;
    try {
      if (!canStore(contentLength(res.headers))) throw new Error("the cache disk is full or failing");
      download = new Download(await store.createTemp(), contentLength(res.headers));
    } catch (error) {
      log.warn("cannot store; passing the response through uncached", { url, error });
      settle({ kind: "pass" });
      return labelled(res, "BYPASS");
    }
    const vary = parseVary(res.headers.get("vary"));
    const rep: Representation = {
      status: res.status,
      headers: storedHeaders(res.headers),
      size: download.expectedSize,
    };
    settle({ kind: "download", download, rep, vary, variant: variantOf(vary, req.headers), responseTime });

    // The download belongs to the cache, not to this agent: it runs to the end even if the agent leaves.
    void fill(download, res)
      .then(() =>
        commit(
          download,
          { url, vary, status: res.status, headers: rep.headers, requestTime, responseTime },
          req.headers,
        ),
      )
      .catch((error) => {
        if (DISK_ERRORS.has((error as NodeJS.ErrnoException).code ?? "")) diskTroubleUntil = now() + DISK_TROUBLE_MS;
        download.fail(error);
        log.warn("download failed; nothing cached", { url, error, bytes: download.available() });
        void rm(download.temp.path, { force: true });
      })
      .finally(() => {
        land();
        download.release();
      });
    return respond(req, rep, () => download.retain(), "MISS");
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
        }, idleTimeoutMs);
      };
      upstreamReaders.add(reader);
      try {
        for (arm(); ; arm()) {
          const { done, value } = await reader.read();
          if (silent) throw new Error(`upstream sent nothing for ${idleTimeoutMs / 1000} s`);
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
  async function commit(
    download: Download,
    meta: Omit<StoredEntry, "id" | "variant" | "sha256" | "size">,
    requestHeaders: Headers,
  ): Promise<void> {
    if (stopping) throw new Error("the gateway is shutting down");
    const sha256 = await store.commit(download.temp);
    index.insert({ ...meta, sha256, size: download.available() }, requestHeaders);
    await index.evict(deps.maxBytes(), deps.evictTo?.());
  }

  function storable(upstreamReq: Request, res: Response, url: string) {
    const verdict = storability(upstreamReq, res, matchTtlRule(url, deps.ttlRules()) !== undefined);
    if (!verdict.storable) return verdict;
    // As nginx does: a response that sets a cookie is somebody's own, not the fleet's.
    if (res.headers.has("set-cookie")) return { storable: false as const, reason: "response sets a cookie" };
    return verdict;
  }

  async function pass(req: Request, label: XCache): Promise<Response> {
    return labelled(await deps.fetchUpstream(req), label);
  }

  const ageSince = (t: number) => Math.max(0, Math.floor((now() - t) / 1000));

  return {
    handle,
    async invalidate(url) {
      await index.purge({ url: cacheKey(url) });
    },
    inFlight: () => flights.size,
    waiting: () => waiting,
    async stop() {
      stopping = true;
      for (const reader of upstreamReaders) void reader.cancel().catch(() => {});
      for (let waited = 0; flights.size > 0 && waited < 5000; waited += 20) await Bun.sleep(20);
    },
  };
}

/** The request the cache sends upstream: always a full GET, conditional only on what the cache holds (§4.3.1). */
function upstreamRequest(req: Request, url: string, stale: StoredEntry | undefined): Request {
  const headers = new Headers(req.headers);
  for (const name of CLIENT_CONDITIONALS) headers.delete(name);
  const etag = stale?.headers.get("etag");
  const lastModified = stale?.headers.get("last-modified");
  if (etag) headers.set("if-none-match", etag);
  if (lastModified) headers.set("if-modified-since", lastModified);
  return new Request(url, { method: "GET", headers });
}

function labelled(res: Response, label: XCache): Response {
  const headers = new Headers(res.headers);
  headers.set("x-cache", label);
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

function storedHeaders(h: Headers): Headers {
  const out = new Headers(h);
  // Framing belongs to each response we send, not to the stored one. Age and
  // Via stay: upstream's Age counts toward the entry's age (RFC 9111 §4.2.3),
  // and upstream's hops are part of the message (RFC 9110 §7.6.3).
  for (const name of ["content-length", "transfer-encoding", "x-cache"]) out.delete(name);
  return out;
}

function contentLength(h: Headers): number | undefined {
  const v = h.get("content-length");
  return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
}
