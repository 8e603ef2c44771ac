import type { CacheIndex } from "./cache/cache-index.ts";
import type { CachePipeline } from "./cache/pipeline.ts";
import type { Supervisor } from "./cluster/supervisor.ts";
import type { WorkerLink } from "./cluster/worker-link.ts";
import type { RuntimeSettings } from "./config/env.ts";
import type { LiveConfig } from "./config/live-config.ts";
import type { ConfigInput } from "./config/schema.ts";
import type { Logger } from "./log.ts";
import type { PatchCache } from "./patch/patch-cache.ts";
import type { Stats } from "./stats/collector.ts";
import type { LeafMinter } from "./tls/leaf-cache.ts";

export interface GatewayOptions {
  /** The configuration as the environment sets it; admin API changes are layered over it. */
  config: ConfigInput;
  runtime: RuntimeSettings;
  log?: Logger;
  now?: () => number;
  /** Overrides cacheMode.port for the first bind (tests listen on port 0). */
  proxyPort?: number;
  /** Overrides runtime.adminPort (tests listen on port 0). */
  adminPort?: number;
  /**
   * One part of a gateway run as several processes (src/cluster/): the
   * primary holds the admin API and no agents; a worker serves agents and no
   * admin API. Without it, one process is the whole gateway.
   */
  cluster?: { role: "primary"; workers: Supervisor } | { role: "worker"; link: WorkerLink };
}

export interface Gateway {
  readonly proxyPort: number;
  adminPort: number;
  via: string;
  adminToken: string;
  config: LiveConfig;
  index: CacheIndex;
  pipeline: CachePipeline;
  patch: PatchCache;
  stats: Stats;
  /** The leaf certificates of intercepted tunnels (a primary mints them for its workers). */
  minter: LeafMinter;
  /** Removes what a process that died (a worker) was downloading into the caches' temp dirs. */
  sweepDownloadsOf(pid: number): Promise<void>;
  /** SIGHUP: writes the pending counters and reopens the access log (logrotate); with workers, in each of them. */
  reopen(): void;
  stop(): Promise<void>;
}
