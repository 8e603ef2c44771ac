import { randomBytes } from "node:crypto";
import { chmod } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { createAccessLog } from "./access-log/access-log.ts";
import { activityRoutes } from "./admin/activity-routes.ts";
import { agentRoutes } from "./admin/agent-routes.ts";
import { createAdminApp } from "./admin/app.ts";
import { cacheRoutes } from "./admin/cache-routes.ts";
import { configRoutes } from "./admin/config-routes.ts";
import { statsBody, statsFigures, statsRoutes } from "./admin/stats-routes.ts";
import { tlsRoutes } from "./admin/tls-routes.ts";
import { loadAdminToken } from "./admin/token.ts";
import { versionRoutes } from "./admin/version-routes.ts";
import { createAgentStore } from "./agents/agent-store.ts";
import { createProxyAuth } from "./agents/proxy-auth.ts";
import { allOf, diskWatermarks, sizeLimit } from "./cache/eviction.ts";
import { openCache } from "./cache/open-cache.ts";
import type { Downloads } from "./cluster/messages.ts";
import { assertPortFree } from "./cluster/port-check.ts";
import { createRelayClient, startRelayServer } from "./cluster/relay.ts";
import { LiveConfig } from "./config/live-config.ts";
import type { JsonObject } from "./config/merge-patch.ts";
import type { Config } from "./config/schema.ts";
import { loadOverrides, saveOverrides } from "./config/settings-store.ts";
import { openDb } from "./db/client.ts";
import { GatewayError } from "./errors.ts";
import { fleetStatsPage, gatherFleetFigures } from "./fleet/fleet-stats.ts";
import { createFleet } from "./fleet/members.ts";
import { createPeerFetch } from "./fleet/peer-fetch.ts";
import type { Gateway, GatewayOptions } from "./gateway-types.ts";
import { createLogger, type Logger, silentLogger } from "./log.ts";
import { createAddressGuard } from "./net/address-guard.ts";
import { createClientAddress } from "./net/client-address.ts";
import { createPatchCache } from "./patch/patch-cache.ts";
import { createAgentListener } from "./proxy/agent-listener.ts";
import { createProxyApp, type ProxyBindings } from "./proxy/app.ts";
import { createFastHit } from "./proxy/fast-hit.ts";
import { createInterceptor } from "./proxy/intercept.ts";
import { createPortPages } from "./proxy/port-pages.ts";
import { createProxyServer } from "./proxy/proxy-server.ts";
import { createTunnelHandler } from "./proxy/tunnel.ts";
import { createUpstreamFetch } from "./proxy/upstream.ts";
import { createStats, type Served } from "./stats/collector.ts";
import { cacheDisk } from "./store/disk-usage.ts";
import { ensureWritableDir } from "./store/writable-dir.ts";
import { TLS_VERSIONS } from "./tls/versions.ts";
import { createWorkerTls } from "./tls/worker-tls.ts";
import { createUpstreamProxy } from "./upstream/upstream-proxy.ts";
import { VERSION } from "./version.ts";

export type { Gateway, GatewayOptions };

/**
 * The data dir holds the admin token, the CA key and agent password hashes: 0700, whoever created it. It must be
 * writable by this process's user, or the start stops here with who is who and how to fix it.
 */
async function ownerOnly(dir: string, log: Logger): Promise<void> {
  await ensureWritableDir(dir, { what: "data dir", variable: "CACHEGATE_DATA_DIR" });
  await chmod(dir, 0o700).catch((error) => log.warn("cannot make the data dir owner-only (0700)", { dir, error }));
}

/**
 * The composition root, in dependency order: the main database (settings,
 * stats, agent credentials and the platform cache's index, in the data dir),
 * then the configuration, stats, upstream fetch, the caches, the proxy
 * (listener, tunnels, interception) and the admin API, each built from what
 * came before.
 */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? createLogger();
  const now = opts.now ?? Date.now;
  const { runtime } = opts;
  const primary = opts.cluster?.role === "primary" ? opts.cluster.workers : undefined;
  const worker = opts.cluster?.role === "worker" ? opts.cluster.link : undefined;
  const started = now();
  // Opened first, in every process: a path that cannot be written refuses the start before anything is made.
  // A primary writes no line (its workers serve the agents).
  const accessLog = runtime.accessLog && createAccessLog({ ...runtime.accessLog, log, now });
  await ownerOnly(runtime.dataDir, log);
  // The primary made or read it and said so; a worker only compares the metrics token with it.
  const adminToken = await loadAdminToken(runtime.dataDir, runtime.adminToken, worker ? silentLogger : log);
  if (runtime.metricsToken === adminToken) {
    const message =
      "CACHEGATE_METRICS_TOKEN is the admin token; give Prometheus a token of its own (it reads only /metrics)";
    throw new GatewayError(400, "invalid_environment", message);
  }
  const db = openDb(join(runtime.dataDir, "index.sqlite"));

  const config = new LiveConfig({
    env: opts.config as JsonObject,
    overrides: loadOverrides(db),
    save: (o) => saveOverrides(db, o, now()),
  });
  if (config.ignored.length > 0) {
    const errors = config.ignored.map((e) => e.message);
    log.error("persisted admin settings no longer valid; started from the environment", { errors });
  }
  const current = () => config.current;
  // Its workers will share the agent port with SO_REUSEPORT: first make sure nobody else has it.
  if (primary) assertPortFree(runtime.host, config.current.cacheMode.port);
  const stats = createStats(db, { kinds: () => current().stats.kinds, now, log });
  // One report per response, for the counters and the access log alike.
  const onServed = accessLog
    ? (served: Served) => {
        stats.served(served);
        accessLog.served(served);
      }
    : stats.served;
  const reopenHere = () => {
    stats.flush();
    accessLog?.reopen();
  };

  // The ports this gateway listens on, as the listeners bind them: requests through it must not loop back.
  const ownPorts = new Set<number>();
  if (worker) ownPorts.add(worker.adminPort);
  const guard = createAddressGuard({ allowPrivate: runtime.allowPrivateUpstreams, ownPorts });
  const via = worker?.via ?? `cachegate-${randomBytes(3).toString("hex")}`;
  // A corporate proxy or parent gateway (upstreamProxy) that upstream fetches and piped tunnels go through.
  const upstreamProxy = await createUpstreamProxy(current, log);
  const fetchUpstream = createUpstreamFetch({ guard, via, onBody: stats.upstream, proxyFor: upstreamProxy.hopFor });
  // In a fleet, the caches ask the member that owns a URL before the origin (src/fleet/); the primary serves no agents.
  const fleet = createFleet({ cluster: () => current().cluster, log });
  const fetchForCache = primary ? fetchUpstream : createPeerFetch({ fleet, upstream: fetchUpstream, via, log });
  // A worker sends what it cannot answer from the store to the URL's owner worker.
  const relay = worker && createRelayClient({ self: worker.slot, secret: worker.secret, peers: worker.peers, log });

  const cacheOptions = {
    serveStaleOnError: () => current().cache.serveStaleOnError,
    fetchUpstream: fetchForCache,
    ttlRules: () => current().cache.ttlRules,
    onResume: stats.resumed,
    log,
    now,
    // Workers start while their siblings download: what looks like a leftover may be in progress.
    sweep: !worker,
    shared: opts.cluster !== undefined,
  };
  const main = await openCache(runtime.dataDir, {
    ...cacheOptions,
    owner: relay?.route("platform"),
    db,
    eviction: allOf(
      sizeLimit(() => current().cache.maxSizeBytes),
      diskWatermarks(runtime.dataDir, () => ({
        high: current().cache.highWatermark,
        low: current().cache.lowWatermark,
      })),
    ),
  });
  const patch = createPatchCache({ ...cacheOptions, owner: relay?.route("patch"), config: current });
  await patch.start(config.current);

  const agents = createAgentStore(db, now);
  const agentGate = createProxyAuth(agents, now);
  // The CA lives in the primary (or the one process); a worker asks it for leaves, and never loads X.509 code.
  const ca = worker
    ? undefined
    : await (await import("./tls/tls-state.ts")).createTlsState(runtime.dataDir, config.current, log);
  const tls = ca ?? createWorkerTls(worker!.leaf, now);
  const pipelines = { platform: main.pipeline, patch: patch.pipeline };
  const proxyApp = createProxyApp({
    config: current,
    pipelines,
    fetchUpstream,
    agents: agentGate,
    via,
    log,
  });
  const handlerOptions = {
    fetch: (req: Request, env: ProxyBindings) => proxyApp.fetch(req, env),
    fastHit: createFastHit({ config: current, pipelines, agents: agentGate, via, log }),
    via,
    log,
    onServed,
  };
  const interceptor = createInterceptor({
    ...handlerOptions,
    minter: tls.minter,
    minVersion: () => TLS_VERSIONS[current().tls.minVersion],
  });
  // Behind a trusted front end (trustedProxies), the agent is the one its X-Forwarded-For names.
  const clientAddress = createClientAddress(() => current().trustedProxies);
  const tunnel = createTunnelHandler({
    clientAddress,
    config: current,
    guard,
    log,
    interceptor,
    agents: agentGate,
    proxyFor: upstreamProxy.hopFor,
    via,
    onServed,
  });
  agents.onRevoke((username) => (primary ? primary.revoke(username) : tunnel.closeAgent(username)));
  // Set when graceful shutdown begins: the agent port's /healthz then answers 503.
  let stopping = false;
  const portPages = createPortPages({ config: current, stopping: () => stopping });
  // The other members read this one's figures on its agent port (GET /api/stats?fleet=1 on theirs).
  const fleetPage = fleetStatsPage(fleet, () => figures().then(statsBody));
  const pages = (req: IncomingMessage, res: ServerResponse) => portPages(req, res) || fleetPage(req, res);
  const listener = createAgentListener({
    build: async (c: Config) =>
      createProxyServer({
        ...handlerOptions,
        connect: tunnel,
        pages,
        tls: await tls.agentListenerOptions(c),
        memberAt: fleet.memberAt,
        clientOf: clientAddress,
      }),
    host: runtime.host,
    ownPorts,
    log,
  });

  // What this process downloads, after writing its pending counters; with workers, what all of them do.
  const local = (): Downloads => {
    stats.flush();
    main.index.flush();
    const patchPipeline = patch.cache()?.pipeline;
    const active = [
      ...main.pipeline.downloads().map((d) => ({ ...d, cache: "platform" as const, worker: worker?.slot })),
      ...(patchPipeline?.downloads() ?? []).map((d) => ({ ...d, cache: "patch" as const, worker: worker?.slot })),
    ];
    return { platform: main.pipeline.inFlight(), patch: patchPipeline?.inFlight() ?? 0, active };
  };
  // A worker asked for its member's figures by another member has the primary gather every worker's first.
  const downloads = primary ? primary.report : worker ? worker.report : async () => local();
  const statsDeps = {
    stats,
    index: main.index,
    maxBytes: () => current().cache.maxSizeBytes,
    downloads,
    cacheDisk: () => cacheDisk(runtime.dataDir),
    patchDisk: patch.usage,
  };
  const figures = statsFigures(statsDeps);

  const adminApp = (caPem: () => string) =>
    createAdminApp({
      log,
      token: adminToken,
      metricsToken: runtime.metricsToken,
      health: async () => ({
        cacheMode: current().cacheMode.enabled,
        patchMode: current().patchMode.enabled,
        uptimeSeconds: Math.floor((now() - started) / 1000),
        downloads: (await downloads()).platform,
        ...(fleet.self() ? { fleet: fleet.view() } : {}),
        // With workers, agents are served once all started, and then while at least one runs.
        ...(primary
          ? { workers: primary.workers(), workersConfigured: runtime.workers, status: primary.unavailable() ?? "ok" }
          : {}),
      }),
      routes: [
        configRoutes({ config, log }),
        statsRoutes({ ...statsDeps, fleet: (own) => gatherFleetFigures(fleet, own) }),
        cacheRoutes({ index: main.index, verifier: main.verifier, ttlRules: () => current().cache.ttlRules, now, log }),
        tlsRoutes({ caPem }),
        agentRoutes({ agents, log }),
        activityRoutes({ stats, downloads }),
        versionRoutes(),
      ],
    });
  // One admin listener per gateway: a worker has none (its primary answers).
  const adminPort = opts.adminPort ?? runtime.adminPort;
  const admin = worker
    ? undefined
    : Bun.serve({ hostname: runtime.adminHost, port: adminPort, fetch: adminApp(ca!.caPem).fetch });
  if (admin) ownPorts.add(admin.port!);
  // The primary holds no agent connections: its workers do.
  const proxyPort = primary ? 0 : await listener.start(config.current, opts.proxyPort);
  const relayServer =
    worker &&
    (await startRelayServer({
      secret: worker.secret,
      pipelines: { platform: () => main.pipeline, patch: patch.pipeline },
      via,
      log,
    }));
  if (relayServer) ownPorts.add(relayServer.port);

  // Appliers run before a change is committed; any of them may refuse it.
  config.onApply(tls.reload);
  config.onApply(patch.apply);
  config.onApply(upstreamProxy.apply);
  if (primary) config.onApply(primary.applyConfig);
  else config.onApply(listener.apply);

  worker?.serve(
    { config: (doc) => config.adopt(doc), revoke: tunnel.closeAgent, report: local, reopen: reopenHere },
    { proxyPort, relayPort: relayServer!.port },
  );
  log.info(worker ? "cachegate worker serving" : "cachegate listening", {
    version: VERSION,
    ...(worker ? { worker: worker.slot } : {}),
    proxy: `${runtime.host}:${primary ? current().cacheMode.port : proxyPort}`,
    ...(admin ? { admin: `${runtime.adminHost}:${admin.port}` } : {}),
    cacheMode: config.current.cacheMode.enabled,
    patchMode: config.current.patchMode.enabled,
    dataDir: runtime.dataDir,
    cachedBytes: main.index.totalBytes(),
    settingsFromAdminApi: Object.entries(config.sources())
      .filter(([, s]) => s === "api")
      .map(([p]) => p),
  });

  return {
    get proxyPort() {
      return primary ? current().cacheMode.port : listener.port();
    },
    adminPort: admin?.port ?? 0,
    via,
    adminToken,
    config,
    index: main.index,
    pipeline: main.pipeline,
    patch,
    stats,
    minter: tls.minter,
    async sweepDownloadsOf(pid) {
      await main.store.sweepTempsOf(pid);
      await patch.cache()?.store.sweepTempsOf(pid);
    },
    reopen() {
      reopenHere();
      primary?.reopen();
    },
    async stop() {
      stopping = true; // first: whatever still reaches the agent port's /healthz from here on hears 503
      tunnel.closeAll();
      await listener.stop();
      await admin?.stop(true);
      await relayServer?.stop();
      await Promise.all([main.pipeline.stop(), patch.cache()?.pipeline.stop()]);
      relay?.close();
      fleet.stop();
      if (fetchForCache !== fetchUpstream) fetchForCache.close();
      fetchUpstream.close();
      stats.stop();
      await accessLog?.stop();
      patch.close();
      main.close();
      db.$client.close();
    },
  };
}
