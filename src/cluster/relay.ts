import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { CachePipeline, OwnerRoute } from "../cache/pipeline.ts";
import type { Logger } from "../log.ts";
import { toRequest, writeResponse } from "../proxy/node-adapter.ts";
import { failedRequest } from "../proxy/refusal.ts";
import { createHttp1Client, discard } from "../upstream/client.ts";
import { ownerOf } from "./owner.ts";
import { shareIdenticalRelays } from "./relay-sharing.ts";

/**
 * Worker to worker: a request the agent's worker cannot answer from the
 * shared store goes to the URL's owner, which runs the single download and
 * stores it, and whose answer streams back as it arrives. The asking worker
 * passes those bytes on and keeps nothing (only when the owner cannot be
 * reached does it fetch, and store, itself).
 *
 * The relay speaks HTTP/1.1 on loopback, with the request target in
 * absolute form (as to a proxy) and two fields: the shared secret every
 * worker got from the primary (no other local process may use the relay)
 * and which cache the request is for.
 */
const SECRET = "x-cachegate-relay";
const CACHE = "x-cachegate-cache";
/** Said by an owner that cannot take a request (its cache is not open): the asking worker does the work itself. */
const DECLINED = "x-cachegate-declined";

export type CacheName = "platform" | "patch";

export interface RelayServerOptions {
  secret: string;
  pipelines: Record<CacheName, () => CachePipeline | undefined>;
  via: string;
  log: Logger;
}

/** The owner's side: answers relayed requests from its own pipelines, on a loopback port of its own. */
export async function startRelayServer(opts: RelayServerOptions): Promise<{ port: number; stop(): Promise<void> }> {
  const secret = Buffer.from(opts.secret);
  const server: Server = createServer((req, res) => void answer(req, res));

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const given = Buffer.from(String(req.headers[SECRET] ?? ""));
    if (given.length !== secret.length || !timingSafeEqual(given, secret)) {
      res.writeHead(403).end("cachegate: relay requests come from this gateway's own workers only\n");
      return;
    }
    const pipeline = opts.pipelines[req.headers[CACHE] === "patch" ? "patch" : "platform"]();
    // Said with the secret: an origin's response can carry any header, but not that.
    if (!pipeline) return void res.writeHead(503, { [DECLINED]: opts.secret }).end();
    try {
      const request = toRequest(req, req.url ?? "");
      request.headers.delete(SECRET);
      request.headers.delete(CACHE);
      const url = request.url;
      const response = await pipeline.handle(request, true).catch((err) => {
        const refusal = failedRequest(err, url, opts.via, opts.log);
        refusal.headers.delete("via"); // the asking worker's proxy app adds it, once
        return refusal;
      });
      await writeResponse(res, response);
    } catch (error) {
      opts.log.error("answering a relayed request failed", { url: req.url, error });
      res.destroy();
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface RelayClientOptions {
  /** This worker's slot. */
  self: number;
  secret: string;
  /** The relay ports of the workers running now, by slot (the primary keeps every worker told). */
  peers: () => ReadonlyMap<number, number>;
  log: Logger;
}

/** The asking side: one OwnerRoute per cache, over kept-alive loopback connections. */
export function createRelayClient(opts: RelayClientOptions) {
  // The owner answers once its own upstream did; its head timeout (30 s) runs first.
  const client = createHttp1Client({ headersTimeoutMs: 40_000 });
  let slots: number[] = [];
  let slotsOf: ReadonlyMap<number, number> | undefined;
  const live = () => {
    const peers = opts.peers();
    if (peers !== slotsOf) {
      slotsOf = peers;
      slots = [...new Set([opts.self, ...peers.keys()])];
    }
    return slots;
  };

  const owner = (url: string) => ownerOf(url, live()) ?? opts.self;

  function route(cache: CacheName): OwnerRoute {
    const shared = shareIdenticalRelays((req, url) => toOwner(req, url, cache));
    return {
      mine: (url) => owner(url) === opts.self,
      // Only bodiless GET and HEAD are cached, and relayed.
      relay: (req, url) => (req.body === null ? shared(req, url) : Promise.resolve(undefined)),
    };
  }

  /** One request to the owner's relay port; undefined when the owner cannot take it (this worker then fetches). */
  async function toOwner(req: Request, url: string, cache: CacheName): Promise<Response | undefined> {
    const port = opts.peers().get(owner(url));
    if (port === undefined) return undefined;
    const headers = new Headers(req.headers);
    headers.set(SECRET, opts.secret);
    headers.set(CACHE, cache);
    try {
      const target = { address: "127.0.0.1", port, tls: false, name: "127.0.0.1" };
      const res = await client.request(target, { method: req.method, path: req.url, headers, body: null });
      const answer = new Headers(res.head.fields);
      // Declined (its cache is closed), or a body whose end a dying owner could fake with a FIN:
      // the owner speaks HTTP/1.1 with a length or chunks, so this worker does the work itself.
      if (answer.get(DECLINED) === opts.secret || res.framing.kind === "close") {
        discard(res.body);
        return undefined;
      }
      // RFC 9112 §6.3: a chunked body's Content-Length is wrong by definition.
      if (res.framing.kind === "chunked") answer.delete("content-length");
      for (const name of ["connection", "keep-alive", "transfer-encoding"]) answer.delete(name);
      return new Response(res.body, { status: res.head.status, statusText: res.head.statusText, headers: answer });
    } catch (error) {
      // Nothing reached the agent yet: the owner being restarted costs a second download, not a failure.
      opts.log.warn("the owner worker did not answer; fetching here", { url: req.url, error });
      return undefined;
    }
  }

  return { route, close: client.close };
}
