import type { Logger } from "../log.ts";
import { addVia, PEER_HEADER, PEER_REFUSED, stripHopByHop } from "../proxy/hop-by-hop.ts";
import type { UpstreamFetch } from "../proxy/upstream.ts";
import { createHttp1Client, discard, markAnsweredByPeer, markEndUnproven } from "../upstream/client.ts";
import type { Exchanged } from "../upstream/exchange.ts";
import type { Fleet } from "./members.ts";

export interface PeerFetchOptions {
  fleet: Fleet;
  /** How the cache fetches what no other member should: the origin, or the upstream proxy. */
  upstream: UpstreamFetch;
  via: string;
  log: Logger;
}

/** A member that has not accepted the connection by then is skipped. */
const CONNECT_TIMEOUT_MS = 1000;
/** While waiting for a member's answer, how often to look whether the health checks found it down. */
const WATCH_EVERY_MS = 250;

/** A member that could not take the request: the next one in the ranking gets it, or the origin. */
class MemberUnavailable extends Error {
  override name = "MemberUnavailable";
}

/**
 * A member that serves, but does not take this one's peer requests: its list does not hold the address this
 * member's connections come from (another interface of a multi-homed host, or a name it has not resolved yet).
 * Skipped for this request, not taken down (its health checks pass), and told to the operator once.
 */
class MemberRefused extends Error {
  override name = "MemberRefused";
}

/**
 * The cache pipelines' upstream in a fleet: a URL this member does not own
 * is asked of the member that does, as of a parent proxy (absolute-form,
 * streaming; an `https://` URL too, over the members' own network), so the
 * fleet fetches each object once. The owner's pipeline single-flights and
 * stores it; this member stores its own copy as from any upstream (so a hot
 * object is served here without the hop, and revalidated through the owner),
 * and tells the agent X-Cache: PEER.
 *
 * A member that refuses the connection, does not accept it within a second,
 * or fails its health checks while the agent waits is skipped for
 * the next in the ranking, and finally the origin: a member down never fails
 * an agent. Once the head has come, the response is the owner's, errors
 * included (a 502 because the origin is down is the fleet's answer, not a
 * reason to ask the origin twice); a body cut off midway is resumed by the
 * pipeline with a Range request, which goes to whoever owns the URL then.
 */
export function createPeerFetch(opts: PeerFetchOptions): UpstreamFetch & { close(): void } {
  // The owner answers once its own upstream did: its head timeout (30 s) runs first.
  const client = createHttp1Client({ headersTimeoutMs: 40_000, connectTimeoutMs: CONNECT_TIMEOUT_MS });
  /** Members that refused this one's peer requests, each told to the operator once. */
  const refusedBy = new Set<string>();

  async function ask(member: string, req: Request, self: string): Promise<Response> {
    const { hostname, port } = new URL(member);
    const headers = stripHopByHop(req.headers);
    headers.set("host", new URL(req.url).host);
    headers.set(PEER_HEADER, self);
    addVia(headers, opts.via);
    const target = { address: hostname.replace(/^\[|\]$/g, ""), port: Number(port), tls: false, name: hostname };
    // The head may take as long as the origin does; meanwhile, a member the health checks find down is left.
    const watch = new AbortController();
    const watchdog = setInterval(() => {
      if (!opts.fleet.isUp(member)) watch.abort(new MemberUnavailable(`${member} stopped answering its health checks`));
    }, WATCH_EVERY_MS);
    let res: Exchanged;
    try {
      res = await client.request(target, { method: req.method, path: req.url, headers, body: null }, watch.signal);
    } catch (err) {
      throw new MemberUnavailable((err as Error).message, { cause: err });
    } finally {
      clearInterval(watchdog);
    }
    // A status no proxy may relay (101 to a plain GET, or outside 1xx–5xx): not a member that serves, so not the
    // agent's answer (upstream.ts refuses the same from an origin).
    if (res.head.status < 200 || res.head.status > 599) {
      discard(res.body);
      throw new MemberUnavailable(`${member} answered status ${res.head.status}, which a proxy cannot relay`);
    }
    const fields = new Headers(res.head.fields);
    if (res.head.status === 403 && fields.get(PEER_HEADER) === PEER_REFUSED) {
      discard(res.body);
      throw new MemberRefused(`${member} does not take peer requests from this member's address`);
    }
    // RFC 9112 §6.3: a chunked body's Content-Length is wrong by definition.
    if (res.framing.kind === "chunked") fields.delete("content-length");
    const response = new Response(res.body, {
      status: res.head.status,
      statusText: res.head.statusText,
      headers: stripHopByHop(fields),
    });
    markAnsweredByPeer(response);
    // A member always frames its bodies; one that ends with the connection cannot prove it is whole.
    if (res.framing.kind === "close") markEndUnproven(response);
    return response;
  }

  const fetchViaFleet = async function fetchViaFleet(req: Request): Promise<Response> {
    const self = opts.fleet.self();
    // Sent by another member: answered here (the marker is hop-by-hop, so it goes no further).
    if (self === undefined || req.headers.has(PEER_HEADER) || req.body !== null) return opts.upstream(req);
    for (const member of opts.fleet.ask(req.url)) {
      try {
        return await ask(member, req, self);
      } catch (err) {
        if (err instanceof MemberRefused) {
          if (!refusedBy.has(member)) {
            refusedBy.add(member);
            opts.log.warn(
              "a fleet member refuses this member's peer requests; list the address this member connects from " +
                "in CACHEGATE_PEERS on every member (meanwhile its URLs are fetched without it)",
              { member, self },
            );
          }
          continue;
        }
        if (!(err instanceof MemberUnavailable)) throw err;
        opts.fleet.down(member, err.message);
      }
    }
    return opts.upstream(req);
  };
  return Object.assign(fetchViaFleet, { close: client.close });
}
