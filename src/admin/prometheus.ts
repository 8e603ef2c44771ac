import { Counter, Gauge, Registry } from "prom-client";
import { OUTCOMES } from "../stats/collector.ts";
import { VERSION } from "../version.ts";
import { processMetrics } from "./process-metrics.ts";
import type { StatsFigures } from "./stats-routes.ts";

const num = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : undefined);

/**
 * GET /metrics on prom-client, in its own Registry (never the global one, so
 * two gateways in one test process do not share metrics). Every cachegate
 * figure is read at scrape time from the snapshot GET /api/stats uses (with
 * workers: after each worker wrote its counters), so the two never
 * disagree; the process metrics are the serving process's own (with
 * workers, the primary's). Names follow the Prometheus conventions promtool
 * checks: base units in the name (`_bytes`, `_seconds`), `_total` only on
 * counters.
 */
export function createMetrics() {
  const registry = new Registry();
  for (const metric of processMetrics()) registry.registerMetric(metric);

  // Set just before each scrape renders. Each collect() below is synchronous and prom-client calls them all
  // before its first await, so one scrape reads one snapshot even when scrapes overlap.
  let s: StatsFigures | undefined;
  let today = ""; // its UTC day, e.g. 2026-11-30
  const registers = [registry];
  const counter = (name: string, help: string, value: (s: StatsFigures) => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        if (s) this.inc(value(s));
      },
    });
  const gauge = (name: string, help: string, value: (s: StatsFigures) => number | undefined) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const v = s && value(s);
        this.set(v ?? 0);
      },
    });
  /** A gauge with one sample per label value; samples that do not apply now are absent, not 0. */
  const labelled = (
    name: string,
    help: string,
    label: string,
    samples: (s: StatsFigures) => [string, number | undefined][],
  ) =>
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        if (!s) return;
        for (const [key, v] of samples(s)) if (v !== undefined) this.set({ [label]: key }, v);
      },
    });

  new Gauge({
    name: "cachegate_build_info",
    help: "Always 1; its labels say which cachegate and Bun run.",
    labelNames: ["version", "bun"],
    registers,
  }).set({ version: VERSION, bun: Bun.version }, 1);

  new Counter({
    name: "cachegate_requests_total",
    help: "Proxied requests answered, by X-Cache outcome.",
    labelNames: ["cache"],
    registers,
    collect() {
      this.reset();
      if (s) for (const [label, field] of OUTCOMES) this.inc({ cache: label }, s[field]);
    },
  });
  counter(
    "cachegate_refused_requests_total",
    "Agent requests the gateway refused itself (400, 403, 407, 508...).",
    (s) => s.refused,
  );
  counter("cachegate_served_bytes_total", "Body bytes sent to agents.", (s) => s.bytesServed);
  counter(
    "cachegate_served_from_cache_bytes_total",
    "Body bytes sent to agents from the cache.",
    (s) => s.bytesFromCache,
  );
  counter("cachegate_upstream_bytes_total", "Body bytes fetched from upstream.", (s) => s.bytesUpstream);
  counter(
    "cachegate_upstream_resumes_total",
    "Broken upstream downloads resumed with a Range request.",
    (s) => s.resumes,
  );
  gauge("cachegate_saved_bytes", "Bytes served to agents that did not cross the internet.", (s) => s.bandwidthSaved);
  gauge("cachegate_agents_active", "Distinct agents seen in the last 60 minutes.", (s) => s.agents.active);
  gauge("cachegate_agents_seen", "Distinct agents ever seen.", (s) => s.agents.total);

  gauge("cachegate_cache_entries", "Responses in the platform cache.", (s) => s.cache.entries);
  gauge("cachegate_cache_bytes", "Bytes the platform cache holds.", (s) => s.cache.bytes);
  gauge(
    "cachegate_cache_max_bytes",
    "Bytes the platform cache may hold (cache.maxSizeBytes).",
    (s) => s.cache.maxBytes,
  );
  gauge("cachegate_downloads_in_flight", "Platform downloads in progress.", (s) => s.cache.downloadsInFlight);

  gauge("cachegate_patch_disk_open", "1 while the patch cache is open on the patch disk.", (s) =>
    s.patchDisk.open === true ? 1 : 0,
  );
  const patchDisk = (field: string) => (s: StatsFigures) => {
    const path = s.patchDisk.path;
    return typeof path === "string" && s.patchDisk.open === true
      ? ([[path, num(s.patchDisk[field])]] as [string, number | undefined][])
      : [];
  };
  for (const [name, help, field] of [
    ["cachegate_patch_disk_size_bytes", "Size of the patch disk.", "totalBytes"],
    ["cachegate_patch_disk_free_bytes", "Free space on the patch disk.", "freeBytes"],
    ["cachegate_patch_cache_bytes", "Bytes the patch cache holds on the patch disk.", "cachedBytes"],
    ["cachegate_patch_downloads_in_flight", "Patch downloads in progress.", "downloadsInFlight"],
  ] as const)
    labelled(name, help, "path", patchDisk(field));

  // The seed's table, today's row per kind of file (UTC day); /api/stats has the last 30 days.
  for (const [name, help, field] of [
    ["cachegate_kind_agents_today", "Today (UTC): distinct agents, per kind of file.", "agents"],
    ["cachegate_kind_requests_today", "Today (UTC): requests, per kind of file.", "requests"],
    [
      "cachegate_kind_without_cache_today_bytes",
      "Today (UTC): bytes agents received (what would cross the internet without the cache), per kind of file.",
      "bytesWithoutCache",
    ],
    [
      "cachegate_kind_with_cache_today_bytes",
      "Today (UTC): bytes fetched upstream, per kind of file.",
      "bytesWithCache",
    ],
    ["cachegate_kind_saved_today_bytes", "Today (UTC): bytes saved, per kind of file.", "bytesSaved"],
  ] as const)
    labelled(name, help, "kind", (s) =>
      s.bandwidth.filter((r) => r.day === today).map((r) => [r.kind, r[field]] as [string, number]),
    );

  return {
    contentType: registry.contentType,
    /** The Prometheus text for this snapshot. */
    render(figures: StatsFigures): Promise<string> {
      s = figures;
      today = new Date().toISOString().slice(0, 10);
      return registry.metrics();
    },
  };
}
