import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { mkdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { HTTPException } from "hono/http-exception";
import { createAdminApp } from "./admin/app.ts";
import { cacheRoutes } from "./admin/cache-routes.ts";
import { configRoutes } from "./admin/config-routes.ts";
import { statsRoutes } from "./admin/stats-routes.ts";
import { loadAdminToken } from "./admin/token.ts";
import { createCacheIndex, type CacheIndex } from "./cache/cache-index.ts";
import { createCachePipeline, type CachePipeline } from "./cache/pipeline.ts";
import { createVerifier } from "./cache/verify.ts";
import type { RuntimeSettings } from "./config/env.ts";
import { LiveConfig } from "./config/live-config.ts";
import type { JsonObject } from "./config/merge-patch.ts";
import type { ConfigInput } from "./config/schema.ts";
import { loadOverrides, saveOverrides } from "./config/settings-store.ts";
import { openDb } from "./db/client.ts";
import { createLogger, type Logger } from "./log.ts";
import { createAddressGuard } from "./proxy/address-guard.ts";
import { createProxyApp, type ProxyBindings } from "./proxy/app.ts";
import { createProxyServer } from "./proxy/listener.ts";
import { createTunnelHandler } from "./proxy/tunnel.ts";
import { createUpstreamFetch } from "./proxy/upstream.ts";
import { createStats, type Stats } from "./stats/collector.ts";
import { tlsRoutes } from "./admin/tls-routes.ts";
import { createInterceptor } from "./proxy/intercept.ts";
import { createTlsState } from "./tls/tls-state.ts";
import { TLS_VERSIONS } from "./tls/versions.ts";
import type { Config } from "./config/schema.ts";
import { createBlobStore } from "./store/blob-store.ts";

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
}

export interface Gateway {
  readonly proxyPort: number;
  adminPort: number;
  adminToken: string;
  config: LiveConfig;
  index: CacheIndex;
  pipeline: CachePipeline;
  stats: Stats;
  stop(): Promise<void>;
}

/** Opens the store, sweeps what a crash left behind, and binds both listeners. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? createLogger();
  const now = opts.now ?? Date.now;
  const { runtime } = opts;
  const started = now();

  await mkdir(runtime.dataDir, { recursive: true });
  const db = openDb(join(runtime.dataDir, "index.sqlite"));
  const config = new LiveConfig({ env: opts.config as JsonObject, overrides: loadOverrides(db), save: (o) => saveOverrides(db, o, now()) });
  if (config.ignored.length > 0) log.error("persisted admin settings no longer valid; started from the environment", { errors: config.ignored.map((e) => e.message) });
  const adminToken = await loadAdminToken(runtime.dataDir, runtime.adminToken, log);

  const store = await createBlobStore(runtime.dataDir);
  const index = createCacheIndex(db, store, now);
  const swept = await store.sweep(index.knowsBlob);
  if (swept.temps + swept.orphans > 0) log.info("swept leftovers of interrupted downloads", swept);
  const stats = createStats(db, { kinds: () => config.current.stats.kinds, now });

  const listeners: { port: number }[] = [];
  const guard = createAddressGuard({ allowPrivate: runtime.allowPrivateUpstreams, ownListeners: () => listeners });
  const via = `cachegate-${randomBytes(3).toString("hex")}`;
  const fetchUpstream = createUpstreamFetch({ guard, via, onBody: stats.upstream });
  const pipeline = createCachePipeline({
    index,
    store,
    fetchUpstream,
    ttlRules: () => config.current.cache.ttlRules,
    maxBytes: () => config.current.cache.maxSizeBytes,
    log,
    now,
  });
  const proxyApp = createProxyApp({ config: () => config.current, pipeline, fetchUpstream, via, log });
  const tls = await createTlsState(runtime.dataDir, config.current, log);
  const handlerOptions = { fetch: (req: Request, env: ProxyBindings) => proxyApp.fetch(req, env), log, onServed: stats.served };
  const interceptor = createInterceptor({ ...handlerOptions, minter: tls.minter, minVersion: () => TLS_VERSIONS[config.current.tls.minVersion] });
  const tunnel = createTunnelHandler({ config: () => config.current, guard, log, interceptor: () => interceptor });
  const newProxyServer = async (c: Config) => createProxyServer({ ...handlerOptions, connect: tunnel, tls: await tls.agentListenerOptions(c) });

  const verifier = createVerifier(index, store, log);
  const adminApp = createAdminApp({
    log,
    token: adminToken,
    health: () => ({ cacheMode: config.current.cacheMode.enabled, uptimeSeconds: Math.floor((now() - started) / 1000), downloads: pipeline.inFlight() }),
    routes: [
      configRoutes({ config, log }),
      statsRoutes({ stats, index, maxBytes: () => config.current.cache.maxSizeBytes, inFlight: pipeline.inFlight }),
      cacheRoutes({ index, verifier, ttlRules: () => config.current.cache.ttlRules, now, log }),
      tlsRoutes({ caPem: tls.caPem }),
    ],
  });
  const admin = Bun.serve({ hostname: runtime.adminHost, port: opts.adminPort ?? runtime.adminPort, fetch: adminApp.fetch });

  let proxy = await newProxyServer(config.current);
  let proxyPort = await listen(proxy, opts.proxyPort ?? config.current.cacheMode.port, runtime.host);
  listeners.push({ port: proxyPort }, { port: admin.port! });

  config.onApply(tls.reload);
  // A new listener (other port, or TLS settings of the agent port) binds before the old one
  // closes; requests in flight on the old one finish.
  config.onApply(async (next, prev) => {
    const listenerTls = (c: Config) => JSON.stringify([c.tls.agentListener, c.tls.agentListener.enabled && c.tls.minVersion]);
    if (next.cacheMode.port === prev.cacheMode.port && listenerTls(next) === listenerTls(prev)) return;
    let replacement: Server;
    try {
      replacement = await newProxyServer(next);
    } catch (err) {
      throw new HTTPException(400, { message: `tls.agentListener: cannot set up TLS (${(err as Error).message}); check certFile/keyFile; nothing was changed` });
    }
    const samePort = next.cacheMode.port === prev.cacheMode.port;
    // Same port (only TLS settings change): the old listener must let go first, a brief gap.
    if (samePort) await new Promise<void>((resolve) => proxy.close(() => resolve()));
    let port: number;
    try {
      port = await listen(replacement, samePort ? proxyPort : next.cacheMode.port, runtime.host);
    } catch (err) {
      if (samePort) await listen(proxy, proxyPort, runtime.host);
      throw new HTTPException(409, { message: `cannot listen on port ${next.cacheMode.port} (${(err as Error).message}); choose a free port; nothing was changed` });
    }
    const old = proxy;
    proxy = replacement;
    proxyPort = port;
    listeners[0] = { port };
    if (old.listening) old.close();
    old.closeIdleConnections();
    log.info("agent listener rebound", { port, tls: next.tls.agentListener.enabled });
  });

  log.info("cachegate listening", {
    proxy: `${runtime.host}:${proxyPort}`,
    admin: `${runtime.adminHost}:${admin.port}`,
    cacheMode: config.current.cacheMode.enabled,
    dataDir: runtime.dataDir,
    cachedBytes: index.totalBytes(),
    settingsFromAdminApi: Object.entries(config.sources()).filter(([, s]) => s === "api").map(([p]) => p),
  });

  return {
    get proxyPort() {
      return proxyPort;
    },
    adminPort: admin.port!,
    adminToken,
    config,
    index,
    pipeline,
    stats,
    async stop() {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await admin.stop(true);
      stats.stop();
      index.flush();
      db.$client.close();
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
