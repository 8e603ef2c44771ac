import { isIP } from "node:net";
import { LRUCache } from "lru-cache";
import { canonical, inCidr, parseCidr, parseIp } from "../net/ip.ts";
import type { AgentStore } from "./agent-store.ts";

export type AuthResult = { ok: true; agent: string } | { ok: false; delayMs: number };

/** Failures per client address before answers slow down, and the ceiling of the delay. */
const FREE_FAILURES = 5;
const MAX_DELAY_MS = 8000;
const FAILURE_WINDOW_MS = 10 * 60_000;

/**
 * What the proxy asks of Patch Mode's "agents only" rule. It knows nothing
 * of HTTP: the proxy turns a refusal into its 407.
 */
export interface AgentGate {
  /** Checks a request's Proxy-Authorization (or its client address against the admitted networks). */
  authorize(header: string | undefined | null, client: string, networks: readonly string[]): Promise<AuthResult>;
  /**
   * For requests inside a tunnel authorized at its CONNECT: is what admitted it (`agent`, an
   * agent's user name or an admitted client address) still admitted? A revocation, or a client
   * network taken off the list, then applies to open tunnels at once too.
   */
  stillAdmitted(agent: string, networks: readonly string[]): boolean;
}

/**
 * Patch Mode's "agents only" rule: a request needs valid Basic
 * Proxy-Authorization, or must come from an admitted client network.
 * Repeated failures from one address are answered ever more slowly, and a
 * refusal never says whether the user name exists.
 */
export function createProxyAuth(agents: AgentStore, now: () => number = Date.now): AgentGate {
  // Bounded, so a flood of addresses cannot grow it without limit; the least recently failing go first.
  const failures = new LRUCache<string, { count: number; since: number }>({ max: 100_000 });
  const hashing = new Map<string, number>(); // client address → password checks in flight

  function failed(client: string): number {
    const t = now();
    let f = failures.get(client);
    if (!f || t - f.since > FAILURE_WINDOW_MS) {
      f = { count: 0, since: t };
      failures.set(client, f);
    }
    f.count++;
    return f.count <= FREE_FAILURES ? 0 : Math.min(MAX_DELAY_MS, 250 * 2 ** (f.count - FREE_FAILURES - 1));
  }

  async function authorize(
    header: string | undefined | null,
    client: string,
    networks: readonly string[],
  ): Promise<AuthResult> {
    if (networks.length > 0 && inNetworks(client, networks)) return { ok: true, agent: client };
    const creds = parseBasic(header);
    if (!creds) return { ok: false, delayMs: failed(client) };
    // An address already being slowed down gets one slow hash at a time: parallel guesses
    // from it are refused without spending a hash each.
    if ((failures.get(client)?.count ?? 0) >= FREE_FAILURES && hashing.has(client))
      return { ok: false, delayMs: failed(client) };
    hashing.set(client, (hashing.get(client) ?? 0) + 1);
    let agent: string | null;
    try {
      agent = await agents.verify(creds.username, creds.password);
    } finally {
      const n = (hashing.get(client) ?? 1) - 1;
      if (n > 0) hashing.set(client, n);
      else hashing.delete(client);
    }
    if (agent) {
      failures.delete(client);
      return { ok: true, agent };
    }
    return { ok: false, delayMs: failed(client) };
  }
  return {
    authorize,
    stillAdmitted: (agent, networks) => (isIP(agent) !== 0 ? inNetworks(agent, networks) : agents.exists(agent)),
  };
}

function parseBasic(header: string | undefined | null): { username: string; password: string } | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? null : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function inNetworks(client: string, networks: readonly string[]): boolean {
  try {
    const ip = canonical(parseIp(client));
    return networks.some((n) => inCidr(ip, parseCidr(n)));
  } catch {
    return false;
  }
}
