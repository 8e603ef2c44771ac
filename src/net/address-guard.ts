/**
 * Upstream address guard: the gateway resolves the upstream host itself, refuses
 * addresses an agent must never reach through it (loopback, RFC 1918, cloud
 * metadata, ...), and hands back the exact address it checked so the caller
 * connects to that address. Re-resolving at connect time would let a DNS answer
 * change between check and connect (DNS rebinding).
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { GatewayError } from "../errors.ts";
import { canonical, inCidr, type Parsed, parseCidr, parseIp } from "./ip.ts";

export type AddressClass =
  | "loopback"
  | "private"
  | "unique-local"
  | "link-local"
  | "cgnat"
  | "unspecified"
  | "multicast"
  | "broadcast"
  | "reserved";

export interface ResolvedUpstream {
  host: string;
  address: string;
  family: 4 | 6;
  port: number;
}

export type AddressGuard = (host: string, port: number) => Promise<ResolvedUpstream>;

export interface GuardOptions {
  allowPrivate: boolean;
  /** The ports this gateway listens on now (they can move while it runs). */
  ownPorts: { has(port: number): boolean };
  lookup?: (host: string) => Promise<{ address: string; family: number }[]>;
}

const NAT64 = parseIp("64:ff9b::").value; // 64:ff9b::/96, RFC 6052 well-known NAT64 prefix

/**
 * Special-purpose ranges, after the IANA registries defined by RFC 6890 (IPv4 and
 * IPv6 special-purpose address registries) plus RFC 1112/4291 multicast. Only
 * ranges an agent could use to reach something that is not the public internet,
 * or that no public host may legitimately hold, are listed; first match wins.
 */
const RULES: [cidr: string, cls: AddressClass][] = [
  ["255.255.255.255/32", "broadcast"], // RFC 919 limited broadcast; before 240/4
  ["0.0.0.0/8", "unspecified"], // RFC 1122 "this network"; 0.0.0.0 reaches the local host on Linux
  ["10.0.0.0/8", "private"], // RFC 1918
  ["100.64.0.0/10", "cgnat"], // RFC 6598 shared address space
  ["127.0.0.0/8", "loopback"], // RFC 1122
  ["169.254.0.0/16", "link-local"], // RFC 3927; includes 169.254.169.254 cloud metadata
  ["172.16.0.0/12", "private"], // RFC 1918
  ["192.0.0.0/24", "reserved"], // RFC 6890 IETF protocol assignments
  ["192.0.2.0/24", "reserved"], // RFC 5737 TEST-NET-1
  ["192.168.0.0/16", "private"], // RFC 1918
  ["198.18.0.0/15", "reserved"], // RFC 2544 benchmarking
  ["198.51.100.0/24", "reserved"], // RFC 5737 TEST-NET-2
  ["203.0.113.0/24", "reserved"], // RFC 5737 TEST-NET-3
  ["224.0.0.0/4", "multicast"], // RFC 5771
  ["240.0.0.0/4", "reserved"], // RFC 1112 future use
  ["::/128", "unspecified"], // RFC 4291
  ["::1/128", "loopback"], // RFC 4291
  ["::/96", "reserved"], // RFC 4291 deprecated IPv4-compatible addresses
  ["64:ff9b:1::/48", "reserved"], // RFC 8215 local-use NAT64
  ["100::/64", "reserved"], // RFC 6666 discard-only
  ["2001:db8::/32", "reserved"], // RFC 3849 documentation
  ["fc00::/7", "unique-local"], // RFC 4193
  ["fe80::/10", "link-local"], // RFC 4291
  ["fec0::/10", "reserved"], // RFC 3879 deprecated site-local, still routed inside some sites
  ["ff00::/8", "multicast"], // RFC 4291
];

const PREFIXES = RULES.map(([cidr, cls]) => ({ ...parseCidr(cidr), cls }));

export function classifyAddress(ip: string): AddressClass | null {
  let p = canonical(parseIp(ip));
  // The well-known NAT64 prefix is translated to the embedded IPv4 address, so judge that.
  if (p.family === 6 && p.value >> 32n === NAT64 >> 32n) p = { family: 4, value: p.value & 0xffffffffn };
  for (const r of PREFIXES) if (inCidr(p, r)) return r.cls;
  return null;
}

function sameAddress(a: Parsed, b: Parsed): boolean {
  return a.family === b.family && a.value === b.value;
}

/** True when connecting to address:port would land on one of this gateway's own listeners (a request loop). */
function isOwnListener(address: string, cls: AddressClass | null, port: number, opts: GuardOptions): boolean {
  if (!opts.ownPorts.has(port)) return false;
  if (cls === "loopback" || cls === "unspecified") return true;
  const target = canonical(parseIp(address));
  // Read interfaces per check: addresses change (DHCP, VPNs) while the gateway runs.
  return Object.values(networkInterfaces()).some((list) =>
    (list ?? []).some((i) => isIP(i.address) !== 0 && sameAddress(canonical(parseIp(i.address)), target)),
  );
}

const defaultLookup = (host: string) => dnsLookup(host, { all: true });

export function createAddressGuard(opts: GuardOptions): AddressGuard {
  const lookup = opts.lookup ?? defaultLookup;
  return async (rawHost, port) => {
    const host = rawHost.startsWith("[") && rawHost.endsWith("]") ? rawHost.slice(1, -1) : rawHost;
    let answers: { address: string }[];
    if (isIP(host) !== 0) {
      answers = [{ address: host }]; // a literal needs no DNS, and must not be re-resolved
    } else {
      let reason = "no addresses";
      try {
        answers = await lookup(host);
      } catch (err) {
        answers = [];
        reason = (err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err));
      }
      if (answers.length === 0) {
        throw new GatewayError(
          502,
          "upstream_unresolvable",
          `could not resolve ${host}: ${reason}; check the name, or the gateway's DNS`,
        );
      }
    }

    const accepted: ResolvedUpstream[] = [];
    const policy: string[] = [];
    const self: string[] = [];
    for (const { address } of answers) {
      const cls = classifyAddress(address);
      // Checked first and regardless of allowPrivate: a request to ourselves is a loop, never a lab need.
      if (isOwnListener(address, cls, port, opts)) self.push(`${address} port ${port}`);
      else if (cls !== null && !opts.allowPrivate) policy.push(`${address} is ${cls}`);
      else accepted.push({ host, address, family: isIP(address) === 4 ? 4 : 6, port });
    }

    if (accepted.length === 0) {
      const parts: string[] = [];
      if (policy.length > 0) {
        const refused = policy.join(", ");
        parts.push(
          `upstream ${host} refused: ${refused}; set CACHEGATE_ALLOW_PRIVATE_UPSTREAMS=1 only in a lab to allow it`,
        );
      }
      if (self.length > 0) {
        parts.push(
          `upstream ${host} (${self.join(", ")}) is this gateway's own listener; ` +
            "requests through the gateway cannot target the gateway itself",
        );
      }
      throw new GatewayError(403, "upstream_address_refused", parts.join("; "));
    }
    // Array.prototype.sort is stable, so resolver order is kept within each family.
    accepted.sort((a, b) => a.family - b.family);
    return accepted[0]!;
  };
}

/**
 * The guard for an origin reached through an upstream proxy, which resolves
 * the name itself: an origin that is, or resolves here to, a private or
 * loopback address is still refused, but a name this host cannot resolve
 * (common behind a corporate proxy, where only the proxy has DNS) passes,
 * left to the proxy. Resolves with the checked address, or undefined then.
 */
export async function checkBehindProxy(
  guard: AddressGuard,
  host: string,
  port: number,
): Promise<ResolvedUpstream | undefined> {
  try {
    return await guard(host, port);
  } catch (err) {
    if (err instanceof GatewayError && err.code === "upstream_unresolvable") return undefined;
    throw err;
  }
}
