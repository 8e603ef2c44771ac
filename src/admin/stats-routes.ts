import { Hono } from "hono";
import type { CacheIndex } from "../cache/cache-index.ts";
import type { Downloads } from "../cluster/messages.ts";
import type { Stats, StatsSnapshot } from "../stats/collector.ts";
import { createMetrics } from "./prometheus.ts";

export interface StatsDeps {
  stats: Stats;
  index: CacheIndex;
  maxBytes: () => number;
  /** Writes every serving process's pending counters, then says what they are downloading. */
  downloads: () => Promise<Downloads>;
  /** The patch disk's size, free space and what the patch cache holds. */
  patchDisk: () => Record<string, unknown>;
}

/** Everything GET /api/stats and GET /metrics report, read at one moment. */
export type StatsFigures = StatsSnapshot & {
  cache: { entries: number; bytes: number; maxBytes: number; downloadsInFlight: number };
  patchDisk: Record<string, unknown>;
};

/** GET /api/stats (JSON) and GET /metrics (Prometheus text): the same figures. */
export function statsRoutes(deps: StatsDeps) {
  const app = new Hono();
  const metrics = createMetrics();
  const snapshot = async (): Promise<StatsFigures> => {
    const downloads = await deps.downloads(); // first: the counters it flushes are part of the snapshot
    const s = deps.stats.snapshot();
    return {
      ...s,
      cache: {
        entries: s.entries,
        bytes: deps.index.totalBytes(),
        maxBytes: deps.maxBytes(),
        downloadsInFlight: downloads.platform,
      },
      patchDisk: { ...deps.patchDisk(), ...(downloads.patch > 0 ? { downloadsInFlight: downloads.patch } : {}) },
    };
  };

  app.get("/api/stats", async (c) => {
    const { entries: _, ...rest } = await snapshot();
    return c.json(rest);
  });

  app.get("/metrics", async (c) =>
    c.text(await metrics.render(await snapshot()), 200, { "content-type": metrics.contentType }),
  );
  return app;
}
