import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "../log.ts";
import { discard } from "../upstream/client.ts";

/** cluster.peers and cluster.self: every member's agent port, the same list everywhere, and which one is this. */
export interface ClusterConfig {
  peers: readonly string[];
  self?: string | undefined;
}

export interface FleetOptions {
  cluster: () => ClusterConfig;
  log: Logger;
  /** How often every other member's agent port is asked `GET /healthz`. */
  checkEveryMs?: number;
  /** How long a member may take to answer a check. */
  checkTimeoutMs?: number;
}

/**
 * Checks a member must fail in a row to be skipped (HAProxy's `fall 2`): one
 * slow answer from a busy member is not a dead member. A refused connection
 * needs no second opinion: nothing listens there.
 */
const FALL = 2;

interface MemberState {
  url: string;
  /** The URL's host, IPv6 brackets stripped: its own address if an IP literal, else resolved in the background. */
  host: string;
  /** The seed of this member's score: rendezvous hashing scores (URL, member) pairs. */
  seed: bigint;
  up: boolean;
  /** Checks failed in a row. */
  failures: number;
  /** Why it was last found down, for the operator. */
  why?: string;
  addresses: readonly string[];
}

export interface MemberView {
  member: string;
  self: boolean;
  up: boolean;
  why?: string;
}

export interface Fleet {
  /** This member's entry of cluster.peers; undefined when there is no fleet. */
  self(): string | undefined;
  /**
   * The members to ask for `key`, best first: the live members that rank
   * above this one. Empty when this member owns the key (or there is no
   * fleet): then it fetches upstream itself.
   */
  ask(key: string): string[];
  /** A member did not answer: it is skipped until a health check finds it serving again. */
  down(member: string, why: string): void;
  /** Whether a member is taken to serve (unknown ones are not). */
  isUp(member: string): boolean;
  /** The member a connection comes from, if its address is one of theirs; peer requests are taken only from them. */
  memberAt(address: string | undefined): string | undefined;
  view(): MemberView[];
  stop(): void;
}

/**
 * The fleet's members as this process sees them. Which member owns a URL is
 * rendezvous (highest random weight) hashing, as CARP does for proxy arrays
 * and as src/cluster/owner.ts does for workers: every member computes the
 * same ranking from the same list, and when a member leaves or comes back
 * only the URLs it owns move. A member that fails a request is skipped at
 * once; every member is checked every couple of seconds on its agent port's
 * `GET /healthz`, so a dead one is usually found before an agent waits on it,
 * and a restarted one is used again.
 */
export function createFleet(opts: FleetOptions): Fleet {
  const checkEveryMs = opts.checkEveryMs ?? 2000;
  const checkTimeoutMs = opts.checkTimeoutMs ?? 1500;
  let listed: readonly string[] | undefined;
  let members: MemberState[] = [];
  let byAddress = new Map<string, string>();

  /** Rebuilt when the admin API changes the list; members still listed keep their state. */
  function current(): MemberState[] {
    const { peers } = opts.cluster();
    if (peers !== listed) {
      listed = peers;
      const old = new Map(members.map((m) => [m.url, m]));
      members = peers.map((url) => old.get(url) ?? newMember(url));
      indexAddresses();
      void resolveAll();
    }
    return members;
  }

  function indexAddresses(): void {
    const map = new Map<string, string>();
    for (const m of members) for (const a of m.addresses) map.set(a, m.url);
    byAddress = map;
  }

  async function resolveAll(): Promise<void> {
    await Promise.all(
      members.map(async (m) => {
        if (isIP(m.host)) return;
        try {
          m.addresses = (await lookup(m.host, { all: true })).map((a) => plain(a.address));
        } catch (error) {
          // Kept as they were: a DNS hiccup must not make a member's requests untrusted.
          opts.log.warn("cannot resolve a fleet member's host name", { member: m.url, error });
        }
      }),
    );
    indexAddresses();
  }

  async function check(m: MemberState): Promise<void> {
    let why: string | undefined;
    let refused = false;
    try {
      // proxy: false: Bun's fetch would send it through an http_proxy of the environment, common on the hosts
      // behind a corporate proxy; members reach each other directly, as they do for objects.
      const res = await fetch(`${m.url}/healthz`, {
        signal: AbortSignal.timeout(checkTimeoutMs),
        proxy: false,
      } as RequestInit);
      discard(res.body);
      // 503: it is stopping (or not yet serving), and says so.
      if (res.status !== 200) [why, refused] = [`GET /healthz answered ${res.status}`, true];
    } catch (err) {
      why = `GET /healthz failed: ${(err as Error).message}`;
      refused = (err as { code?: string }).code === "ECONNREFUSED";
    }
    m.failures = why ? m.failures + 1 : 0;
    if (!why) mark(m, true);
    else if (refused || m.failures >= FALL) mark(m, false, why);
  }

  function mark(m: MemberState, up: boolean, why?: string): void {
    if (m.up === up) return;
    m.up = up;
    m.why = why;
    if (up) opts.log.info("fleet member serving again; its URLs go back to it", { member: m.url });
    else opts.log.warn("fleet member not answering; its URLs go to the next member", { member: m.url, why });
  }

  let checking = false;
  const timer = setInterval(() => {
    const self = opts.cluster().self;
    const others = current().filter((m) => m.url !== self);
    if (checking || others.length === 0) return;
    checking = true;
    void Promise.all([resolveAll(), ...others.map(check)]).finally(() => {
      checking = false;
    });
  }, checkEveryMs);
  timer.unref();
  // Members named by host name are looked up now, so their first peer requests are recognised.
  current();

  return {
    self: () => (opts.cluster().peers.length > 0 ? opts.cluster().self : undefined),
    ask(key) {
      const all = current();
      const self = opts.cluster().self;
      if (all.length < 2 || self === undefined) return [];
      const out: string[] = [];
      for (const m of rankedBy(key, all)) {
        if (m.url === self) break;
        if (m.up) out.push(m.url);
      }
      return out;
    },
    down(member, why) {
      const m = current().find((x) => x.url === member);
      if (m) mark(m, false, why);
    },
    isUp: (member) => current().find((x) => x.url === member)?.up === true,
    memberAt(address) {
      current();
      return address === undefined ? undefined : byAddress.get(plain(address));
    },
    view() {
      const self = opts.cluster().self;
      return current().map((m) => ({
        member: m.url,
        self: m.url === self,
        up: m.up,
        ...(m.why ? { why: m.why } : {}),
      }));
    },
    stop: () => clearInterval(timer),
  };
}

/** Members by their score for `key`, highest first: the first is the owner, the next takes over if it is down. */
function rankedBy<M extends { seed: bigint }>(key: string, members: readonly M[]): M[] {
  return members
    .map((m) => ({ m, score: BigInt.asUintN(64, BigInt(Bun.hash(key, m.seed))) }))
    .sort((a, b) => (b.score > a.score ? 1 : b.score < a.score ? -1 : 0))
    .map(({ m }) => m);
}

/** The member that owns `key` when every member serves (for tools and tests; the fleet skips members down). */
export function ownerOf(key: string, members: readonly string[]): string | undefined {
  return rankedBy(
    key,
    members.map((url) => ({ url, seed: BigInt(Bun.hash(url)) })),
  )[0]?.url;
}

/** A member first listed: taken to serve until checked; an IP literal is its own address, a name is resolved later. */
function newMember(url: string): MemberState {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  const addresses = isIP(host) ? [plain(host)] : [];
  return { url, host, seed: BigInt(Bun.hash(url)), up: true, failures: 0, addresses };
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) is 10.0.0.1. */
function plain(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
