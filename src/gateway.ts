import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { mkdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { createAdminApp } from "./admin/app.ts";
import { createCacheIndex, type CacheIndex } from "./cache/cache-index.ts";
import { createCachePipeline, type CachePipeline } from "./cache/pipeline.ts";
import type { RuntimeSettings } from "./config/env.ts";
import type { Config } from "./config/schema.ts";
import { openDb } from "./db/client.ts";
import { createLogger, type Logger } from "./log.ts";
import { createAddressGuard } from "./proxy/address-guard.ts";
import { createProxyApp } from "./proxy/app.ts";
import { createProxyServer } from "./proxy/listener.ts";
import { createTunnelHandler } from "./proxy/tunnel.ts";
import { createUpstreamFetch } from "./proxy/upstream.ts";
import { createBlobStore } from "./store/blob-store.ts";

export interface GatewayOptions {
  config: Config;
  runtime: RuntimeSettings;
  log?: Logger;
  now?: () => number;
  /** Overrides cacheMode.port (tests listen on port 0). */
  proxyPort?: number;
  /** Overrides runtime.adminPort (tests listen on port 0). */
  adminPort?: number;
}

export interface Gateway {
  proxyPort: number;
  adminPort: number;
  config: { current: Config };
  index: CacheIndex;
  pipeline: CachePipeline;
  stop(): Promise<void>;
}

/** Opens the store, sweeps what a crash left behind, and binds both listeners. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? createLogger();
  const now = opts.now ?? Date.now;
  const { runtime } = opts;
  const config = { current: opts.config };
  const started = now();

  await mkdir(runtime.dataDir, { recursive: true });
  const db = openDb(join(runtime.dataDir, "index.sqlite"));
  const store = await createBlobStore(runtime.dataDir);
  const index = createCacheIndex(db, store, now);
  const swept = await store.sweep(index.knowsBlob);
  if (swept.temps + swept.orphans > 0) log.info("swept leftovers of interrupted downloads", swept);

  const listeners: { port: number }[] = [];
  const guard = createAddressGuard({ allowPrivate: runtime.allowPrivateUpstreams, ownListeners: () => listeners });
  const via = `cachegate-${randomBytes(3).toString("hex")}`;
  const fetchUpstream = createUpstreamFetch({ guard, via });
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
  const proxy = createProxyServer({
    fetch: (req, env) => proxyApp.fetch(req, env),
    connect: createTunnelHandler({ config: () => config.current, guard, log }),
    log,
  });

  const adminApp = createAdminApp({
    log,
    health: () => ({ cacheMode: config.current.cacheMode.enabled, uptimeSeconds: Math.floor((now() - started) / 1000), downloads: pipeline.inFlight() }),
  });
  const admin = Bun.serve({ hostname: runtime.adminHost, port: opts.adminPort ?? runtime.adminPort, fetch: adminApp.fetch });
  const proxyPort = await listen(proxy, opts.proxyPort ?? config.current.cacheMode.port, runtime.host);
  listeners.push({ port: proxyPort }, { port: admin.port! });
  log.info("cachegate listening", {
    proxy: `${runtime.host}:${proxyPort}`,
    admin: `${runtime.adminHost}:${admin.port}`,
    cacheMode: config.current.cacheMode.enabled,
    dataDir: runtime.dataDir,
    cachedBytes: index.totalBytes(),
  });

  return {
    proxyPort,
    adminPort: admin.port!,
    config,
    index,
    pipeline,
    async stop() {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await admin.stop(true);
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
