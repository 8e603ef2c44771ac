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
