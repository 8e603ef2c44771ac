import type { Socket } from "node:net";
import { type Exchanged, exchange, NoResponse, type OutgoingRequest } from "./exchange.ts";
import { createConnectionPool, type PoolOptions, type UpstreamTarget } from "./pool.ts";

export type { OutgoingRequest } from "./exchange.ts";
export type { UpstreamTarget } from "./pool.ts";

/** Responses whose body ends when the connection does, over TLS: a clean end there does not prove completeness. */
const unproven = new WeakSet<Response>();

/**
 * A close-delimited body over TLS: Bun does not tell a TLS close_notify from
 * a bare TCP FIN, so a cut connection looks like a clean end (the "incomplete
 * close" of RFC 9112 §9.8). Such a response may be relayed, never stored.
 */
export const endUnproven = (res: Response) => unproven.has(res);
export const markEndUnproven = (res: Response) => void unproven.add(res);

/** Responses a fleet member sent (src/fleet/), not the origin: the agent is told X-Cache: PEER. */
const fromPeer = new WeakSet<Response>();
export const answeredByPeer = (res: Response) => fromPeer.has(res);
export const markAnsweredByPeer = (res: Response) => void fromPeer.add(res);

/**
 * Drops a response body that will not be read. Cancelling a body that has
 * already failed (its connection cut, or a broken chunk, in the packet that
 * brought the head) rejects with that failure: known already, and left
 * unhandled it would end the process.
 */
export function discard(body: ReadableStream<Uint8Array> | null | undefined): void {
  body?.cancel().catch(() => {});
}

/** Upstream sent no response head in time (connect, TLS and head together). */
export class UpstreamTimeout extends Error {
  override name = "UpstreamTimeout";
}

/**
 * The gateway's own HTTP/1.1 client for upstreams. Bun's fetch reports a
 * connection reset in a close-delimited body as a clean end, and passes on a
 * Content-Length that chunked framing overrides; a cache cannot store on that
 * word. This client frames every response itself (framing.ts), so a body
 * stream closes only when its end was proven, and errors otherwise.
 */
export function createHttp1Client(opts: PoolOptions & { headersTimeoutMs?: number } = {}) {
  const pool = createConnectionPool(opts);
  const headersTimeoutMs = opts.headersTimeoutMs ?? 30_000;

  async function send(target: UpstreamTarget, req: OutgoingRequest, signal: AbortSignal): Promise<Exchanged> {
    const release = (socket: Socket) => pool.give(target, socket);
    const reused = pool.take(target);
    if (reused) {
      try {
        return await exchange(reused, req, release, signal);
      } catch (err) {
        // The origin closed the kept connection as we reused it: once more on a new one, if the request can be replayed.
        if (!(err instanceof NoResponse) || req.body !== null || signal.aborted) throw err;
      }
    }
    return exchange(await pool.open(target, signal), req, release, signal);
  }

  return {
    /**
     * Sends a request; resolves with the response head once it arrived, its body still streaming.
     * `giveUp` abandons it before the head (with its reason), as the headers timeout does.
     */
    async request(target: UpstreamTarget, req: OutgoingRequest, giveUp?: AbortSignal): Promise<Exchanged> {
      const abort = new AbortController();
      const timeout = new UpstreamTimeout(`no response within ${headersTimeoutMs / 1000} s`);
      const timer = setTimeout(() => abort.abort(timeout), headersTimeoutMs);
      const stop = () => abort.abort(giveUp?.reason);
      giveUp?.addEventListener("abort", stop, { once: true });
      try {
        return await send(target, req, abort.signal);
      } catch (err) {
        throw abort.signal.aborted ? abort.signal.reason : err;
      } finally {
        clearTimeout(timer);
        giveUp?.removeEventListener("abort", stop);
      }
    },
    close: pool.close,
  };
}

export type Http1Client = ReturnType<typeof createHttp1Client>;
