import { desc, gte, sql } from "drizzle-orm";
import { every } from "../background.ts";
import type { KindRuleConfig } from "../config/schema.ts";
import type { Db } from "../db/client.ts";
import { clients, counters, dailyAgents, dailyStats, entries } from "../db/schema.ts";
import { type Logger, silentLogger } from "../log.ts";
import { kindOf } from "./kinds.ts";
import { createObjectSavings } from "./object-savings.ts";

/**
 * One response the proxy finished sending to an agent (or a CONNECT it
 * answered): what the stats count and the access log writes.
 */
export interface Served {
  /** The agent's user name once it authenticated (Patch Mode), else its address. */
  agent: string;
  /** The request target: an absolute URL, or `host:port` for CONNECT. */
  url: string;
  /**
   * The response's X-Cache value; null for gateway-made errors. A CONNECT
   * that was answered 200 says what became of it: TUNNEL (bytes piped) or
   * INTERCEPTED (TLS terminated; its requests are reported one by one).
   */
  label: string | null;
  /** Body bytes sent to the agent (a tunnel: the bytes piped to it). */
  bytes: number;
  method: string;
  status: number;
  /** From the request's arrival to the end of its response (a tunnel: to its close). */
  elapsedMs: number;
  /** The agent's address. */
  client: string;
  /** The Patch Mode user name, when the agent authenticated. */
  user?: string;
  contentType?: string | null;
  /** Answered from memory by the fast path (Squid's TCP_MEM_HIT). */
  fromMemory?: boolean;
  httpVersion?: string;
  referer?: string;
  userAgent?: string;
  /** Asked by this fleet member (src/fleet/) for its agent: counted there, where the agent is. */
  peer?: string;
}

/** X-Cache values with a counter of their own, and its name (also the snapshot's field of that name). */
export const OUTCOMES = [
  ["HIT", "hits"],
  ["MISS", "misses"],
  ["PEER", "peer"],
  ["COALESCED", "coalesced"],
  ["REVALIDATED", "revalidated"],
  ["STALE", "stale"],
  ["UPDATING", "updating"],
  ["BYPASS", "bypass"],
] as const;
const LABEL_COUNTER = new Map<string, string>(OUTCOMES);
const FROM_CACHE = new Set(["HIT", "COALESCED", "REVALIDATED", "STALE", "UPDATING"]);
const COUNTERS = [
  "requests",
  "refused",
  "hits",
  "misses",
  "peer",
  "coalesced",
  "revalidated",
  "stale",
  "updating",
  "bypass",
  "bytes_served",
  "bytes_from_cache",
  "bytes_upstream",
  "resumes",
] as const;

const ACTIVE_WINDOW_MS = 60 * 60 * 1000;
const FLUSH_MS = 5000;

export interface StatsOptions {
  kinds: () => readonly KindRuleConfig[];
  now?: () => number;
  /** Where a failing flush (a full disk) is reported, once per episode. */
  log?: Logger;
}

/**
 * Bandwidth accounting. Requests are counted in memory and written to
 * SQLite in one transaction every few seconds (and at shutdown), so the hot
 * path never waits on the disk and the counters survive restarts.
 */
export function createStats(db: Db, opts: StatsOptions) {
  const now = opts.now ?? Date.now;
  const pendingCounters = new Map<string, number>();
  const pendingDaily = new Map<string, { requests: number; served: number; upstream: number }>();
  const pendingAgents = new Set<string>(); // day \t kind \t agent
  const pendingClients = new Map<string, number>(); // agent → last seen
  const savings = createObjectSavings(db);

  const add = (name: string, n: number) => pendingCounters.set(name, (pendingCounters.get(name) ?? 0) + n);
  // The UTC day, recomputed at most once a second: this runs on every request.
  let dayValue = "";
  let dayUntil = 0;
  const day = () => {
    const t = now();
    if (t >= dayUntil) {
      dayValue = new Date(t).toISOString().slice(0, 10);
      dayUntil = Math.min(t + 1000, Math.ceil((t + 1) / 86_400_000) * 86_400_000);
    }
    return dayValue;
  };
  const daily = (kind: string, today = day()) => {
    const key = `${today}\t${kind}`;
    let row = pendingDaily.get(key);
    if (!row) {
      row = { requests: 0, served: 0, upstream: 0 };
      pendingDaily.set(key, row);
    }
    return row;
  };

  function flush(): void {
    const pending = pendingCounters.size + pendingDaily.size + pendingAgents.size + pendingClients.size;
    if (pending + savings.pending() === 0) return;
    db.transaction((tx) => {
      for (const [name, n] of pendingCounters) {
        tx.insert(counters)
          .values({ name, value: n })
          .onConflictDoUpdate({ target: counters.name, set: { value: sql`${counters.value} + ${n}` } })
          .run();
      }
      for (const [key, d] of pendingDaily) {
        const [dayKey = "", kind = ""] = key.split("\t");
        tx.insert(dailyStats)
          .values({ day: dayKey, kind, requests: d.requests, bytesServed: d.served, bytesUpstream: d.upstream })
          .onConflictDoUpdate({
            target: [dailyStats.day, dailyStats.kind],
            set: {
              requests: sql`${dailyStats.requests} + ${d.requests}`,
              bytesServed: sql`${dailyStats.bytesServed} + ${d.served}`,
              bytesUpstream: sql`${dailyStats.bytesUpstream} + ${d.upstream}`,
            },
          })
          .run();
      }
      for (const key of pendingAgents) {
        const [dayKey = "", kind = "", agent = ""] = key.split("\t");
        tx.insert(dailyAgents).values({ day: dayKey, kind, agent }).onConflictDoNothing().run();
      }
      for (const [agent, seen] of pendingClients) {
        tx.insert(clients)
          .values({ agent, firstSeen: seen, lastSeen: seen })
          .onConflictDoUpdate({ target: clients.agent, set: { lastSeen: seen } })
          .run();
      }
      savings.write(now());
    });
    savings.written();
    pendingCounters.clear();
    pendingDaily.clear();
    pendingAgents.clear();
    pendingClients.clear();
  }
  // A flush that fails (disk full) keeps what is pending for the next one; requests are never affected.
  const flusher = every(FLUSH_MS, flush, opts.log ?? silentLogger, "writing the stats to the index database");

  return {
    /** Called once per response the proxy finished sending. */
    served(s: Served): void {
      // Tunnels are the access log's: their bytes are not the cache's to account for.
      if (s.method === "CONNECT") return;
      if (s.peer) return; // the fleet's figures add up members' figures: each agent request is counted once
      // Refusals the gateway made itself (403, 407, 400…) carry no X-Cache: not agent traffic.
      if (s.label === null) return void add("refused", 1);
      add("requests", 1);
      pendingClients.set(s.agent, now());
      add("bytes_served", s.bytes);
      const counter = LABEL_COUNTER.get(s.label);
      if (counter) add(counter, 1);
      if (FROM_CACHE.has(s.label)) {
        add("bytes_from_cache", s.bytes);
        savings.record(s.url, s.bytes);
      }
      const kind = kindOf(s.url, opts.kinds());
      const today = day();
      const row = daily(kind, today);
      row.requests++;
      row.served += s.bytes;
      pendingAgents.add(`${today}\t${kind}\t${s.agent}`);
    },

    /** Called once per upstream response body, with the bytes that crossed the internet. */
    upstream(url: string, bytes: number): void {
      add("bytes_upstream", bytes);
      daily(kindOf(url, opts.kinds())).upstream += bytes;
    },

    /** Called when a broken upstream download was resumed with a Range request. */
    resumed(): void {
      add("resumes", 1);
    },

    /** Writes what is pending now; never throws (a failure is logged once and retried, as the timer's). */
    flush: () => void flusher.now(),

    /** Everything GET /api/stats reports (cache figures are the caller's). */
    snapshot(days = 30) {
      flusher.now(); // if it cannot be written now, the figures on disk are still the truth so far
      const totals = Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<(typeof COUNTERS)[number], number>;
      for (const row of db.select().from(counters).all())
        if (row.name in totals) totals[row.name as keyof typeof totals] = row.value;
      const active =
        db
          .select({ n: sql<number>`count(*)` })
          .from(clients)
          .where(gte(clients.lastSeen, now() - ACTIVE_WINDOW_MS))
          .get()?.n ?? 0;
      const total = db.select({ n: sql<number>`count(*)` }).from(clients).get()?.n ?? 0;
      const agentsPerDay = db
        .select({ day: dailyAgents.day, kind: dailyAgents.kind, n: sql<number>`count(*)` })
        .from(dailyAgents)
        .groupBy(dailyAgents.day, dailyAgents.kind)
        .all();
      const agentCount = new Map(agentsPerDay.map((r) => [`${r.day}\t${r.kind}`, r.n]));
      const bandwidth = db
        .select()
        .from(dailyStats)
        .orderBy(desc(dailyStats.day), dailyStats.kind)
        .limit(days * 8)
        .all()
        .map((r) => ({
          day: r.day,
          kind: r.kind,
          agents: agentCount.get(`${r.day}\t${r.kind}`) ?? 0,
          requests: r.requests,
          bytesWithoutCache: r.bytesServed,
          bytesWithCache: r.bytesUpstream,
          bytesSaved: Math.max(0, r.bytesServed - r.bytesUpstream),
        }));
      const entryCount = db.select({ n: sql<number>`count(*)` }).from(entries).get()?.n ?? 0;
      return {
        requests: totals.requests,
        refused: totals.refused,
        hits: totals.hits,
        misses: totals.misses,
        peer: totals.peer,
        coalesced: totals.coalesced,
        revalidated: totals.revalidated,
        stale: totals.stale,
        updating: totals.updating,
        bypass: totals.bypass,
        bytesServed: totals.bytes_served,
        bytesFromCache: totals.bytes_from_cache,
        bytesUpstream: totals.bytes_upstream,
        bandwidthSaved: Math.max(0, totals.bytes_served - totals.bytes_upstream),
        resumes: totals.resumes,
        agents: { active, total },
        entries: entryCount,
        bandwidth,
      };
    },

    /** The objects that saved the most bytes (after writing what is pending). */
    topObjects(limit: number) {
      flusher.now();
      return savings.top(limit);
    },

    stop(): void {
      flusher.stop();
      flusher.now();
    },
  };
}

export type Stats = ReturnType<typeof createStats>;
export type StatsSnapshot = ReturnType<Stats["snapshot"]>;
