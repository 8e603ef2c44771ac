import { collectDefaultMetrics, type Metric, Registry } from "prom-client";

/**
 * The process metrics of prom-client's default set that tell the truth on
 * Bun. Left out: the event-loop lag family (Bun's monitorEventLoopDelay
 * records nothing: min 9.2e9 s, mean NaN), active handles/requests/resources
 * (always 0, and their `_total` gauges fail promtool), the V8 heap spaces
 * (JavaScriptCore has none: all 0), GC durations (never observed),
 * process_heap_bytes (VmData: the gigabytes of address space Bun reserves, not its heap) and
 * nodejs_version_info (Bun's Node.js compatibility level, not Bun:
 * cachegate_build_info says which Bun runs).
 */
const PROCESS_METRICS = [
  "process_cpu_user_seconds_total",
  "process_cpu_system_seconds_total",
  "process_cpu_seconds_total",
  "process_start_time_seconds",
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_open_fds",
  "process_max_fds",
  "nodejs_heap_size_total_bytes",
  "nodejs_heap_size_used_bytes",
  "nodejs_external_memory_bytes",
] as const;

let kept: Metric[] | undefined;

/**
 * The process's metrics, made once per process: each gateway's registry
 * registers the same objects (a process has one CPU time and one RSS), and
 * prom-client's collectors, which install observers, are set up only once.
 */
export function processMetrics(): readonly Metric[] {
  if (!kept) {
    const scratch = new Registry();
    collectDefaultMetrics({ register: scratch });
    kept = PROCESS_METRICS.flatMap((name) => scratch.getSingleMetric(name) ?? []);
  }
  return kept;
}
