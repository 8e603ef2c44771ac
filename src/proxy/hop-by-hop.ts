/**
 * Set on every request one fleet member sends another (src/fleet/), with the
 * sender's entry of cluster.peers. A request that carries it, from a listed
 * member's address (proxy/proxy-server.ts), is answered by the member it
 * reached and never sent on to a third: no loops, and no URL fetched twice
 * because two members briefly disagreed about who owns it. It is meant for
 * that one hop, so it is hop-by-hop.
 */
export const PEER_HEADER = "x-cachegate-peer";

/**
 * PEER_HEADER's value on a member's 403 for a marked request from an
 * address that is not a member's: the sender takes it as "ask someone else"
 * (src/fleet/peer-fetch.ts), not as the answer for its agent. The owner
 * strips PEER_HEADER from every upstream response, so an origin's 403 never
 * carries it.
 */
export const PEER_REFUSED = "refused";

/**
 * Hop-by-hop headers describe one connection, not the message, so a proxy
 * must not forward them (RFC 9110 §7.6.1): Connection and every header it
 * names, plus the ones listed here. Proxy-Authorization and
 * Proxy-Authenticate are meant for this proxy alone (RFC 9110 §11.7).
 */
const HOP_BY_HOP = [
  "connection",
  "proxy-connection",
  "keep-alive",
  "te",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
  PEER_HEADER,
];

/** A copy of `headers` without hop-by-hop fields. */
export function stripHopByHop(headers: Headers): Headers {
  const out = new Headers(headers);
  for (const token of (headers.get("connection") ?? "").split(",")) {
    const name = token.trim().toLowerCase();
    if (name !== "") out.delete(name);
  }
  for (const name of HOP_BY_HOP) out.delete(name);
  return out;
}

/** Appends this gateway to Via (RFC 9110 §7.6.3); `pseudonym` identifies this instance for loop detection. */
export function addVia(headers: Headers, pseudonym: string): void {
  headers.append("via", `1.1 ${pseudonym}`);
}

/** True when the message already passed through this gateway instance. */
export function hasLooped(headers: Headers, pseudonym: string): boolean {
  const via = headers.get("via");
  if (via === null) return false;
  return via.split(",").some((hop) => hop.trim().split(/\s+/)[1] === pseudonym);
}
