/**
 * Every CACHEGATE_* variable an operator may set: its default as shown to
 * people, and what it means in one line. `--help` prints this table and a
 * test checks that the README's configuration table names each row and
 * that no CACHEGATE_* name in src/ is missing from it, so the help, the
 * docs and the code cannot drift apart.
 */
export interface EnvVar {
  name: string;
  default: string;
  meaning: string;
}

export const ENV_VARS: readonly EnvVar[] = [
  { name: "CACHEGATE_DATA_DIR", default: "./data", meaning: "index, blobs, settings, admin token and CA" },
  { name: "CACHEGATE_PORT", default: "8080", meaning: "the agent (cache) port: cacheMode.port" },
  { name: "CACHEGATE_HOST", default: "0.0.0.0", meaning: "the address the agent port binds" },
  { name: "CACHEGATE_ADMIN_PORT", default: "9090", meaning: "the admin API's port" },
  { name: "CACHEGATE_ADMIN_HOST", default: "127.0.0.1", meaning: "the address the admin API binds" },
  {
    name: "CACHEGATE_ADMIN_TOKEN",
    default: "generated into DATA_DIR/admin-token",
    meaning: "bearer token of the admin API",
  },
  {
    name: "CACHEGATE_METRICS_TOKEN",
    default: "none",
    meaning: "a second bearer token, of 16 characters or more, that reads GET /metrics and nothing else",
  },
  { name: "CACHEGATE_CACHE_MODE", default: "off", meaning: "1 starts in Cache Mode: cacheMode.enabled" },
  {
    name: "CACHEGATE_PLATFORM_DOMAINS",
    default: "qualys.com,qualys.eu,qualys.ca,qualys.in",
    meaning: "comma list of the domains agents reach and the gateway caches",
  },
  { name: "CACHEGATE_CACHE_MAX_SIZE", default: "10 GiB", meaning: "bytes the cache may hold: cache.maxSizeBytes" },
  { name: "CACHEGATE_PATCH_MODE", default: "off", meaning: "1 starts in Patch Mode: patchMode.enabled" },
  { name: "CACHEGATE_PATCH_DISK", default: "none", meaning: "the patch disk's mount point: patchDisk.path" },
  {
    name: "CACHEGATE_PATCH_DISK_MIN_FREE",
    default: "150000000000",
    meaning: "bytes the patch disk must have free: patchDisk.minFreeBytes",
  },
  { name: "CACHEGATE_WORKERS", default: "the number of CPU cores", meaning: "processes serving agents; 1 = one" },
  {
    name: "CACHEGATE_ALLOW_PRIVATE_UPSTREAMS",
    default: "off",
    meaning: "1 lets upstreams be on loopback/private addresses (lab and tests only)",
  },
  {
    name: "CACHEGATE_ACCESS_LOG",
    default: "off",
    meaning: "access log: a file path, or - for stdout",
  },
  {
    name: "CACHEGATE_ACCESS_LOG_FORMAT",
    default: "squid",
    meaning: "access log format: squid, combined or json",
  },
  { name: "CACHEGATE_LOG_LEVEL", default: "info", meaning: "the gateway's own log: debug, info, warn or error" },
  {
    name: "CACHEGATE_PEERS",
    default: "none",
    meaning: "fleet members, self included: comma list of http://host:port agent ports",
  },
  { name: "CACHEGATE_PEER_SELF", default: "none", meaning: "which entry of CACHEGATE_PEERS this node is" },
  {
    name: "CACHEGATE_TRUSTED_PROXIES",
    default: "none",
    meaning: "front ends (HAProxy) whose X-Forwarded-For names the agent: comma list of CIDR networks",
  },
  {
    name: "CACHEGATE_UPSTREAM_PROXY",
    default: "none",
    meaning: "corporate or parent proxy for upstream fetches: http://[user:pass@]host:port",
  },
];

/** Set by the primary for its workers, never by an operator: not in the table, not in --help. */
export const INTERNAL_ENV_PREFIX = "CACHEGATE_WORKER_";
