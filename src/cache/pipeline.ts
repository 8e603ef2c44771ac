import type { Logger } from "../log.ts";
import type { BlobStore } from "../store/blob-store.ts";
import { discard } from "../upstream/client.ts";
import type { CacheIndex, StoredEntry } from "./cache-index.ts";
import type { EvictionPolicy } from "./eviction.ts";
import { createMemoryHits, type MemoryHit } from "./fast-hit.ts";
import { createFetch } from "./fetch.ts";
import { createFiller, type DownloadProgress } from "./fill.ts";
import { createFlights, type Flight } from "./flights.ts";
import { currentAge, parseCacheControl, type TtlRule } from "./freshness.ts";
import { cacheKey, variantOf } from "./key.ts";
import { lookup } from "./lookup.ts";
import { respond, type XCache } from "./respond.ts";
import { freshenFromHead } from "./revalidate.ts";
import { createEntryServer, labelled } from "./serve.ts";

/**
 * The cache pipeline: lookup → (hit | updating | busy | stale | miss) →
 * serve, wait, or fetch → store → serve.
 *
 * It takes a Fetch API Request and returns a Response, so it does not care
 * how the request arrived (plain HTTP proxy, or decrypted from a TLS tunnel).
 */
export interface PipelineDeps {
  index: CacheIndex;
  store: BlobStore;
  /** Sends a request upstream; hop-by-hop handling and connection security live behind it. */
  fetchUpstream: (req: Request) => Promise<Response>;
  ttlRules: () => readonly TtlRule[];
  /** When the cache is too full and whether a body fits (see eviction.ts). */
  eviction: EvictionPolicy;
  /** Told each time a broken download was resumed with a Range request (stats). */
  onResume?: (url: string) => void;
  log: Logger;
  now?: () => number;
  /** Upstream sends nothing for this long mid-body → the download fails. */
  idleTimeoutMs?: number;
  /** Serve a stale entry when the origin fails and no stale-if-error says otherwise (cache.serveStaleOnError). */
  serveStaleOnError?: () => boolean;
  /**
   * With several worker processes, one owns each URL's downloads: what this
   * process cannot answer from the shared store goes to the owner, so the
   * machine fetches each object once. None in a single process.
   */
  owner?: OwnerRoute;
}

/** How a worker reaches the process that owns a URL (see src/cluster/). */
export interface OwnerRoute {
  mine(url: string): boolean;
  /** The owner's response to the request, or undefined when the owner cannot be reached (then this process fetches). */
  relay(req: Request, url: string): Promise<Response | undefined>;
}

export interface CachePipeline {
  /** `relayed`: another process sent it here as the URL's owner; it is answered here, never sent on. */
  handle(req: Request, relayed?: boolean): Promise<Response>;
  /**
   * For the proxy's fast path: a fresh stored 200 held in memory for a plain GET or HEAD of `url`, judged as
   * handle() judges a hit; undefined for everything handle() must decide (see fast-hit.ts).
   */
  freshInMemory(url: URL, headers: Headers): Promise<MemoryHit | undefined>;
  /** RFC 9111 §4.4: a successful unsafe request invalidates the stored responses of its URL. */
  invalidate(url: string): Promise<void>;
  /** Downloads in progress (for graceful shutdown and stats). */
  inFlight(): number;
  /** The downloads inFlight() counts, each with its URL and progress (the admin API's /api/downloads). */
  downloads(): DownloadProgress[];
  /** Requests waiting on another request's download for its response head (Varnish's waiting list). */
  waiting(): number;
  /** Shutdown: aborts downloads in progress (nothing half-written is indexed) and waits for them to wind up. */
  stop(): Promise<void>;
}

export function createCachePipeline(deps: PipelineDeps): CachePipeline {
  const { index, log } = deps;
  const now = deps.now ?? Date.now;
  const flights = createFlights(now);
  const serveEntry = createEntryServer({ index, store: deps.store, log });
  const filler = createFiller({ ...deps, now, idleTimeoutMs: deps.idleTimeoutMs ?? 60_000 });
  const pass = async (req: Request, label: XCache) => {
    const res = await deps.fetchUpstream(req);
    if (req.method === "HEAD" && res.status === 200) await freshenFromHead(index, req, res, now);
    return labelled(res, label);
  };
  const lead = createFetch({ ...deps, flights, filler, serveEntry, pass, now });
  const lookupDeps = { index, flights, ttlRules: deps.ttlRules, now };

  async function handle(req: Request, relayed = false): Promise<Response> {
    const url = cacheKey(req.url);
    // RFC 9111 §5.2.1.5: no-store in the request: neither store nor reuse for it.
    if (parseCacheControl(req.headers.get("cache-control")).has("no-store")) return pass(req, "MISS");

    // Another process owns the URL's downloads: what needs one goes there (see OwnerRoute).
    const viaOwner = (): Promise<Response | undefined> | undefined =>
      !relayed && deps.owner && !deps.owner.mine(url) ? deps.owner.relay(req, url) : undefined;

    const found = lookup(req, url, lookupDeps);
    // A fresh stored response is served by whichever process holds the agent, and so is a download
    // this process runs itself (its owner was unreachable when it began); a miss or a revalidation
    // is the owner's to do.
    // (No await unless relaying: between this lookup and the flight it may start, nothing else may run.)
    const relay = found.kind === "miss" || found.kind === "stale" || found.kind === "updating" ? viaOwner() : undefined;
    if (relay) {
      const answer = await relay;
      if (answer) return answer;
      return handle(req, true); // the owner could not be reached: as its stand-in, look again and fetch here
    }
    switch (found.kind) {
      case "hit":
      case "updating": {
        if (found.kind === "updating" && found.refresh) refreshInBackground(req, url, found.entry);
        const label = found.kind === "hit" ? "HIT" : "UPDATING";
        const served = await serveEntry(req, found.entry, label, found.age);
        if (served) return served;
        // Its blob vanished from disk (and the entry is gone now): as a miss.
        const again = lookup(req, url, lookupDeps, { entry: false });
        if (again.kind === "busy") return join(req, again.flight);
        const relayed = viaOwner();
        return (relayed && (await relayed)) ?? lead(req, url, undefined);
      }
      case "hit-downloading": {
        const { head } = found;
        return respond(req, head.rep, () => head.download.retain(), "HIT", found.age);
      }
      case "busy":
        return join(req, found.flight);
      case "stale":
        return lead(req, url, found.entry);
      case "stale-downloading": {
        // Held while the conditional request is out: the download may end, and its readers leave, meanwhile.
        const download = found.head.download.retain();
        return lead(req, url, found.entry, found.head).finally(() => download.release());
      }
      case "miss":
        return lead(req, url, undefined);
    }
  }

  /**
   * RFC 5861 §3: one revalidation of a stale entry while it is served; it
   * becomes the URL's flight, so concurrent requests neither wait nor start
   * another. Nobody waits for its answer, so it is dropped once it lands.
   */
  function refreshInBackground(req: Request, url: string, entry: StoredEntry): void {
    const background = new Request(req.url, { method: "GET", headers: req.headers });
    void lead(background, url, entry).then(
      (res) => discard(res.body),
      (error) => log.warn("background revalidation failed; the stale entry stays", { url, error }),
    );
  }

  /** Waits on another request's fetch and serves what it brought. */
  async function join(req: Request, flight: Flight): Promise<Response> {
    const head = await flights.wait(flight);
    switch (head.kind) {
      case "download": {
        // RFC 9111 §4.1: a response that varies is shared only with requests of its variant.
        if (head.variant !== variantOf(head.vary, req.headers)) return pass(req, "MISS");
        const age = currentAge(head.rep.headers, head, now()); // RFC 9111 §4.2.3, as for a stored response
        return respond(req, head.rep, () => head.download.retain(), "COALESCED", age);
      }
      case "entry": {
        const age = currentAge(head.entry.headers, head.entry, now());
        const served = await serveEntry(req, head.entry, head.stale ? "STALE" : "COALESCED", age);
        return served ?? pass(req, "MISS");
      }
      case "pass":
        return pass(req, "MISS");
      case "error":
        throw head.error;
    }
  }

  return {
    handle,
    freshInMemory: createMemoryHits({ index, store: deps.store, lookup: lookupDeps }),
    async invalidate(url) {
      await index.purge({ url: cacheKey(url) });
    },
    // Fetches waiting for their head, and downloads still running (also those of a replaced flight).
    inFlight: () => flights.pending() + filler.active(),
    downloads: () => [
      ...flights.asking().map((f) => ({ ...f, state: "asking" as const, receivedBytes: 0, expectedBytes: null })),
      ...filler.progress(),
    ],
    waiting: flights.waiting,
    async stop() {
      filler.stop();
      for (let waited = 0; flights.pending() + filler.active() > 0 && waited < 5000; waited += 20) await Bun.sleep(20);
    },
  };
}
