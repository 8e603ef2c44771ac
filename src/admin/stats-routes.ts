import { Hono } from "hono";
import type { CacheIndex } from "../cache/cache-index.ts";
import type { Downloads } from "../cluster/messages.ts";
import { GatewayError } from "../errors.ts";
import type { Stats, StatsSnapshot } from "../stats/collector.ts";
import { createMetrics } from "./prometheus.ts";

export interface StatsDeps {
  stats: Stats;
  index: CacheIndex;
  maxBytes: () => number;
  /** Writes every serving process's pending counters, then says what they are downloading. */
  downloads: () => Promise<Downloads>;
  /** The size and free space of the disk the cache (the data dir) is on. */
  cacheDisk: () => Record<string, unknown>;
  /** The patch disk's size, free space and what the patch cache holds. */
  patchDisk: () => Record<string, unknown>;
  /** In a fleet: the other members' figures beside these, and their sum (`?fleet=1`, src/fleet/fleet-stats.ts). */
  fleet?: (own: Record<string, unknown>) => Promise<unknown>;
}

/** Everything GET /api/stats and GET /metrics report, read at one moment. */
export type StatsFigures = StatsSnapshot & {
  cache: { entries: number; bytes: number; maxBytes: number; downloadsInFlight: number; disk: Record<string, unknown> };
  patchDisk: Record<string, unknown>;
};

export const NOT_IN_A_FLEET =
  "this gateway is not in a fleet: set CACHEGATE_PEERS and CACHEGATE_PEER_SELF (cluster.peers, cluster.self)";

/** The figures of GET /api/stats, read at one moment: after every serving process wrote its counters. */
export function statsFigures(deps: StatsDeps): () => Promise<StatsFigures> {
  return async () => {
    const downloads = await deps.downloads(); // first: the counters it flushes are part of the snapshot
    const s = deps.stats.snapshot();
    return {
      ...s,
      cache: {
        entries: s.entries,
        bytes: deps.index.totalBytes(),
        maxBytes: deps.maxBytes(),
        downloadsInFlight: downloads.platform,
        disk: deps.cacheDisk(),
      },
      patchDisk: { ...deps.patchDisk(), ...(downloads.patch > 0 ? { downloadsInFlight: downloads.patch } : {}) },
    };
  };
}

/** The body of GET /api/stats: the figures without the index's row count, which `cache.entries` carries. */
export const statsBody = ({ entries: _, ...rest }: StatsFigures) => rest;

/** GET /api/stats (JSON; `?fleet=1` adds every fleet member's) and GET /metrics (Prometheus text): the same figures. */
export function statsRoutes(deps: StatsDeps) {
  const app = new Hono();
  const metrics = createMetrics();
  const snapshot = statsFigures(deps);

  app.get("/api/stats", async (c) => {
    const own = statsBody(await snapshot());
    const fleet = c.req.query("fleet");
    if (fleet === undefined || fleet === "0") return c.json(own);
    if (fleet !== "1")
      throw new GatewayError(400, "invalid_request", `fleet=${fleet}: use ?fleet=1 for every member's figures`);
    if (!deps.fleet) throw new GatewayError(409, "not_in_a_fleet", NOT_IN_A_FLEET);
    return c.json({ ...own, fleet: await deps.fleet(own) });
  });

  app.get("/metrics", async (c) =>
    c.text(await metrics.render(await snapshot()), 200, { "content-type": metrics.contentType }),
  );
  return app;
}
