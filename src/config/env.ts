import { availableParallelism } from "node:os";
import * as v from "valibot";
import { type FieldError, GatewayError } from "../errors.ts";
import { LOG_LEVELS, type LogLevel } from "../log.ts";
import { toFieldErrors } from "./issues.ts";
import { maskProxyUrl } from "./proxy-url.ts";
import { type Config, type ConfigInput, ConfigSchema, Port } from "./schema.ts";

/** Settings fixed at start: where things live and lab switches the admin API must never flip. */
export interface RuntimeSettings {
  dataDir: string;
  host: string;
  adminHost: string;
  adminPort: number;
  adminToken: string | undefined;
  /** CACHEGATE_METRICS_TOKEN: reads GET /metrics and nothing else (a Prometheus server never holds the admin token). */
  metricsToken?: string;
  /** Lab and tests only: let upstreams resolve to loopback/private addresses. */
  allowPrivateUpstreams: boolean;
  /** Processes serving agents on the one agent port (CACHEGATE_WORKERS); 1 keeps everything in one process. */
  workers: number;
  /** One line per proxied request (CACHEGATE_ACCESS_LOG, CACHEGATE_ACCESS_LOG_FORMAT); unset: no access log. */
  accessLog?: AccessLogSettings;
  /** The quietest level of the gateway's own log (CACHEGATE_LOG_LEVEL); `info` when unset. */
  logLevel?: LogLevel;
}

export const ACCESS_LOG_FORMATS = ["squid", "combined", "json"] as const;
export type AccessLogFormat = (typeof ACCESS_LOG_FORMATS)[number];
export interface AccessLogSettings {
  /** A file (opened for appending), or `-` for stdout. */
  path: string;
  format: AccessLogFormat;
}

/** More workers than this buys nothing but memory on any appliance we know. */
export const MAX_WORKERS = 64;

type Env = Record<string, string | undefined>;

/** Bad CACHEGATE_* values, each named by its variable: the gateway does not start. */
function envError(errors: FieldError[]): GatewayError {
  const lines = errors.map((e) => `  ${e.message} (got ${JSON.stringify(e.value)})`);
  return new GatewayError(400, "invalid_environment", `invalid environment:\n${lines.join("\n")}`, { details: errors });
}

const flag = (value: string | undefined) => value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());

/** Parses an integer env value; anything else is passed through so the schema names the error. */
const int = (value: string) => (/^\s*-?\d+\s*$/.test(value) ? Number(value) : value);

const list = (value: string) =>
  value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

/** The configuration document as the environment seeds it (before persisted admin changes). */
export function configInputFromEnv(env: Env): ConfigInput {
  const doc: Record<string, Record<string, unknown> | unknown> = {};
  const section = (name: string) => {
    doc[name] ??= {};
    return doc[name] as Record<string, unknown>;
  };
  if (env.CACHEGATE_CACHE_MODE !== undefined) section("cacheMode").enabled = flag(env.CACHEGATE_CACHE_MODE);
  if (env.CACHEGATE_PORT !== undefined) section("cacheMode").port = int(env.CACHEGATE_PORT);
  if (env.CACHEGATE_PLATFORM_DOMAINS !== undefined) doc.platformDomains = list(env.CACHEGATE_PLATFORM_DOMAINS);
  if (env.CACHEGATE_TRUSTED_PROXIES !== undefined) doc.trustedProxies = list(env.CACHEGATE_TRUSTED_PROXIES);
  if (env.CACHEGATE_PATCH_MODE !== undefined) section("patchMode").enabled = flag(env.CACHEGATE_PATCH_MODE);
  if (env.CACHEGATE_PATCH_DISK !== undefined) section("patchDisk").path = env.CACHEGATE_PATCH_DISK;
  if (env.CACHEGATE_PATCH_DISK_MIN_FREE !== undefined)
    section("patchDisk").minFreeBytes = int(env.CACHEGATE_PATCH_DISK_MIN_FREE);
  if (env.CACHEGATE_CACHE_MAX_SIZE !== undefined) section("cache").maxSizeBytes = int(env.CACHEGATE_CACHE_MAX_SIZE);
  // An empty value means no upstream proxy, as an unset one (http_proxy= does the same for curl).
  if (env.CACHEGATE_UPSTREAM_PROXY?.trim()) section("upstreamProxy").url = env.CACHEGATE_UPSTREAM_PROXY;
  if (env.CACHEGATE_PEERS !== undefined) section("cluster").peers = list(env.CACHEGATE_PEERS);
  if (env.CACHEGATE_PEER_SELF !== undefined) section("cluster").self = env.CACHEGATE_PEER_SELF.trim();
  return doc as ConfigInput;
}

export function configFromEnv(env: Env): Config {
  const result = v.safeParse(ConfigSchema, configInputFromEnv(env));
  if (!result.success) throw envError(envNames(toFieldErrors(result.issues)));
  return result.output;
}

const ENV_OF_PATH: Record<string, string> = {
  "cacheMode.port": "CACHEGATE_PORT",
  "cacheMode.enabled": "CACHEGATE_CACHE_MODE",
  "cache.maxSizeBytes": "CACHEGATE_CACHE_MAX_SIZE",
  "patchMode.enabled": "CACHEGATE_PATCH_MODE",
  "patchDisk.path": "CACHEGATE_PATCH_DISK",
  "patchDisk.minFreeBytes": "CACHEGATE_PATCH_DISK_MIN_FREE",
  "upstreamProxy.url": "CACHEGATE_UPSTREAM_PROXY",
  "cluster.self": "CACHEGATE_PEER_SELF",
};

const ENV_OF_LIST: [prefix: string, name: string][] = [
  ["platformDomains", "CACHEGATE_PLATFORM_DOMAINS"],
  ["trustedProxies", "CACHEGATE_TRUSTED_PROXIES"],
  ["cluster.peers", "CACHEGATE_PEERS"],
];

/** Errors in env values are reported under the variable's name, which is what the operator typed. */
function envNames(errors: FieldError[]): FieldError[] {
  return errors.map((e) => {
    const name = ENV_OF_PATH[e.path] ?? ENV_OF_LIST.find(([prefix]) => e.path.startsWith(prefix))?.[1] ?? e.path;
    // The proxy's password must not reach the start-up log.
    const value = e.path === "upstreamProxy.url" && typeof e.value === "string" ? maskProxyUrl(e.value) : e.value;
    return { ...e, path: name, value, message: e.message.replace(e.path, name) };
  });
}

const Workers = v.pipe(
  v.number("must be a whole number"),
  v.integer("must be a whole number"),
  v.minValue(1, "must be at least 1 (1 runs everything in one process)"),
  v.maxValue(MAX_WORKERS, `must be at most ${MAX_WORKERS}`),
);

/** A start-up-only number: its default when unset, else parsed or reported under its variable's name. */
function startupNumber(env: Env, name: string, schema: typeof Port | typeof Workers, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const parsed = v.safeParse(schema, int(raw));
  if (parsed.success) return parsed.output;
  throw envError([{ path: name, value: raw, rule: "range", message: `${name} ${parsed.issues[0]?.message}` }]);
}

/** Shortest metrics token accepted: 16 characters of a random token are already beyond guessing over HTTP. */
export const MIN_METRICS_TOKEN_LENGTH = 16;

const MetricsToken = v.pipe(
  v.string(),
  v.minLength(
    MIN_METRICS_TOKEN_LENGTH,
    `must be at least ${MIN_METRICS_TOKEN_LENGTH} characters; make one with: openssl rand -hex 24`,
  ),
  // RFC 6750 §2.1: what a Bearer credential may contain, so Prometheus can send it as it is.
  v.regex(/^[A-Za-z0-9\-._~+/]+=*$/, "may contain only letters, digits and -._~+/ (then = padding), no spaces"),
);

/** CACHEGATE_METRICS_TOKEN, checked; unset or empty means none. */
function metricsTokenOf(env: Env): string | undefined {
  const raw = env.CACHEGATE_METRICS_TOKEN;
  if (raw === undefined || raw === "") return undefined;
  const name = "CACHEGATE_METRICS_TOKEN";
  const parsed = v.safeParse(MetricsToken, raw);
  // The value is a secret: errors say what is wrong with it, never what it is.
  const refuse = (message: string) =>
    envError([{ path: name, value: `(${raw.length} characters)`, rule: "token", message: `${name} ${message}` }]);
  if (!parsed.success) throw refuse(parsed.issues[0]?.message ?? "is not a valid token");
  if (raw === env.CACHEGATE_ADMIN_TOKEN)
    throw refuse("must differ from CACHEGATE_ADMIN_TOKEN (it can only read /metrics)");
  return raw;
}

/** A start-up-only choice among fixed words: its default when unset, else one of them (any case) or an error naming them. */
function startupChoice<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const parsed = v.safeParse(v.picklist(allowed), raw.trim().toLowerCase());
  if (parsed.success) return parsed.output;
  const message = `${name} must be one of ${allowed.join(", ")} (default ${fallback})`;
  throw envError([{ path: name, value: raw, rule: "picklist", message }]);
}

/** The gateway's own log level alone: main.ts needs it before anything else, to report the rest. */
export const logLevelFromEnv = (env: Env): LogLevel => startupChoice(env, "CACHEGATE_LOG_LEVEL", LOG_LEVELS, "info");

function accessLogFromEnv(env: Env): AccessLogSettings | undefined {
  const format = startupChoice(env, "CACHEGATE_ACCESS_LOG_FORMAT", ACCESS_LOG_FORMATS, "squid");
  const path = env.CACHEGATE_ACCESS_LOG?.trim();
  return path ? { path, format } : undefined;
}

export function runtimeFromEnv(env: Env): RuntimeSettings {
  const adminPort = startupNumber(env, "CACHEGATE_ADMIN_PORT", Port, 9090);
  const workers = startupNumber(env, "CACHEGATE_WORKERS", Workers, availableParallelism());
  const accessLog = accessLogFromEnv(env);
  const logLevel = logLevelFromEnv(env);
  return {
    dataDir: env.CACHEGATE_DATA_DIR || "./data",
    host: env.CACHEGATE_HOST || "0.0.0.0",
    adminHost: env.CACHEGATE_ADMIN_HOST || "127.0.0.1",
    adminPort,
    adminToken: env.CACHEGATE_ADMIN_TOKEN || undefined,
    metricsToken: metricsTokenOf(env),
    allowPrivateUpstreams: flag(env.CACHEGATE_ALLOW_PRIVATE_UPSTREAMS),
    workers: Math.min(workers, MAX_WORKERS),
    accessLog,
    logLevel,
  };
}
