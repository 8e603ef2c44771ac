import { isIP } from "node:net";
import { type Cidr, canonical, inCidr, parseCidr, parseIp } from "./ip.ts";

/**
 * Who an agent is when a trusted front end (HAProxy with `option forwardfor`,
 * a load balancer) connects on its behalf: the rightmost X-Forwarded-For entry
 * that is not itself a trusted proxy, as nginx's `real_ip_recursive` and
 * Squid's `follow_x_forwarded_for` read it. Entries further left were written
 * by whoever sent them and prove nothing; from any other connection the
 * header is ignored and the socket's address is the agent's.
 */
export function createClientAddress(trustedProxies: () => readonly string[]) {
  let listed: readonly string[] | undefined;
  let networks: Cidr[] = [];
  const trusted = (address: string): boolean => {
    const now = trustedProxies();
    if (now !== listed) {
      listed = now;
      networks = now.map(parseCidr);
    }
    if (networks.length === 0) return false;
    try {
      const ip = canonical(parseIp(address));
      return networks.some((n) => inCidr(ip, n));
    } catch {
      return false;
    }
  };

  /** `forwardedFor` is read only for a connection from a trusted proxy (node builds req.headers on first use). */
  return (socketAddress: string, forwardedFor: () => string | string[] | undefined): string => {
    if (!trusted(socketAddress)) return socketAddress;
    const header = forwardedFor();
    const hops = (Array.isArray(header) ? header.join(",") : (header ?? "")).split(",").map((h) => h.trim());
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (hop === "") continue;
      if (isIP(hop) === 0) return socketAddress; // garbage where an address belongs: trust nothing further left
      if (!trusted(hop)) return hop;
    }
    return socketAddress;
  };
}

export type ClientAddress = ReturnType<typeof createClientAddress>;
