import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AccessLogSettings } from "../../src/config/env.ts";
import type { ConfigInput } from "../../src/config/schema.ts";
import { type Gateway, type GatewayOptions, startGateway } from "../../src/gateway.ts";
import { silentLogger } from "../../src/log.ts";
import { waitFor } from "./wait.ts";

export interface TestGateway extends Gateway {
  dataDir: string;
  proxyUrl: string;
  adminUrl: string;
  /** Resolves once no download is in flight: each one is committed to the index, or failed and dropped. */
  idle(): Promise<void>;
  /** Stops the gateway; the data dir stays for a restart. */
  restart(): Promise<TestGateway>;
  /** Stops the gateway and removes its data dir. */
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  config?: ConfigInput;
  dataDir?: string;
  allowPrivate?: boolean;
  adminToken?: string;
  metricsToken?: string;
  log?: GatewayOptions["log"];
  now?: () => number;
  /** CACHEGATE_ACCESS_LOG and its format. */
  accessLog?: AccessLogSettings;
}

/**
 * A real gateway on 127.0.0.1 port 0 with its data in a temp dir, in Cache
 * Mode, with `localhost` as the platform domain so test origins are reachable.
 */
export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), "cachegate-test-")));
  const config: ConfigInput = {
    platformDomains: ["localhost"],
    ...opts.config,
    cacheMode: { enabled: true, ...opts.config?.cacheMode },
  };
  const gateway = await startGateway({
    config,
    runtime: {
      dataDir,
      host: "127.0.0.1",
      adminHost: "127.0.0.1",
      adminPort: 0,
      adminToken: opts.adminToken ?? "test-token",
      metricsToken: opts.metricsToken,
      allowPrivateUpstreams: opts.allowPrivate ?? true,
      workers: 1,
      accessLog: opts.accessLog,
    },
    proxyPort: 0,
    adminPort: 0,
    log: opts.log ?? silentLogger,
    now: opts.now,
  });
  return {
    ...gateway,
    get proxyPort() {
      return gateway.proxyPort;
    },
    dataDir,
    get proxyUrl() {
      return `http://127.0.0.1:${gateway.proxyPort}`;
    },
    adminUrl: `http://127.0.0.1:${gateway.adminPort}`,
    idle: () => waitFor("downloads to land", () => gateway.pipeline.inFlight() === 0, 15_000),
    async restart() {
      await gateway.stop();
      return startTestGateway({ ...opts, dataDir });
    },
    async close() {
      await gateway.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
