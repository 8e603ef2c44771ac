import { Hono } from "hono";
import type { CacheIndex } from "../cache/cache-index.ts";
import type { Downloads } from "../cluster/messages.ts";
import type { Stats, StatsSnapshot } from "../stats/collector.ts";

export interface StatsDeps {
  stats: Stats;
  index: CacheIndex;
  maxBytes: () => number;
  /** Writes every serving process's pending counters, then says what they are downloading. */
  downloads: () => Promise<Downloads>;
  /** The patch disk's size, free space and what the patch cache holds. */
  patchDisk: () => Record<string, unknown>;
}

/** GET /api/stats (JSON) and GET /metrics (Prometheus text): the same figures. */
export function statsRoutes(deps: StatsDeps) {
  const app = new Hono();
  const snapshot = async () => {
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
    c.text(prometheus(await snapshot()), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
  );
  return app;
}

type Full = StatsSnapshot & { cache: { bytes: number; maxBytes: number; downloadsInFlight: number } };

function prometheus(s: Full): string {
  const out: string[] = [];
  const metric = (
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: [labels: string, value: number][],
  ) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${labels} ${value}`);
  };
  metric("cachegate_requests_total", "counter", "Proxied requests by X-Cache outcome.", [
    ['{cache="HIT"}', s.hits],
    ['{cache="MISS"}', s.misses],
    ['{cache="PEER"}', s.peer],
    ['{cache="COALESCED"}', s.coalesced],
    ['{cache="REVALIDATED"}', s.revalidated],
    ['{cache="STALE"}', s.stale],
    ['{cache="UPDATING"}', s.updating],
    ['{cache="BYPASS"}', s.bypass],
  ]);
  metric("cachegate_served_bytes_total", "counter", "Body bytes sent to agents.", [["", s.bytesServed]]);
  metric("cachegate_served_from_cache_bytes_total", "counter", "Body bytes sent to agents from the cache.", [
    ["", s.bytesFromCache],
  ]);
  metric("cachegate_upstream_bytes_total", "counter", "Body bytes fetched from upstream.", [["", s.bytesUpstream]]);
  metric("cachegate_upstream_resumes_total", "counter", "Broken upstream downloads resumed with a Range request.", [
    ["", s.resumes],
  ]);
  metric("cachegate_agents_active", "gauge", "Distinct agents seen in the last 60 minutes.", [["", s.agents.active]]);
  metric("cachegate_agents_total", "gauge", "Distinct agents ever seen.", [["", s.agents.total]]);
  metric("cachegate_cache_entries", "gauge", "Cached responses.", [["", s.entries]]);
  metric("cachegate_cache_bytes", "gauge", "Bytes held by the cache.", [["", s.cache.bytes]]);
  metric("cachegate_cache_max_bytes", "gauge", "Cache size limit.", [["", s.cache.maxBytes]]);
  metric("cachegate_downloads_in_flight", "gauge", "Upstream downloads in progress.", [
    ["", s.cache.downloadsInFlight],
  ]);
  const day = new Date().toISOString().slice(0, 10);
  const today = s.bandwidth.filter((r) => r.day === day);
  metric(
    "cachegate_kind_bytes_without_cache",
    "gauge",
    "Today (UTC): bytes agents received, per kind of file.",
    today.map((r) => [`{kind="${r.kind}"}`, r.bytesWithoutCache]),
  );
  metric(
    "cachegate_kind_bytes_with_cache",
    "gauge",
    "Today (UTC): bytes fetched upstream, per kind of file.",
    today.map((r) => [`{kind="${r.kind}"}`, r.bytesWithCache]),
  );
  metric(
    "cachegate_kind_agents",
    "gauge",
    "Today (UTC): distinct agents, per kind of file.",
    today.map((r) => [`{kind="${r.kind}"}`, r.agents]),
  );
  return `${out.join("\n")}\n`;
}
