import cluster from "node:cluster";
import { randomBytes } from "node:crypto";
import { parseCommandLine } from "./cli.ts";
import { createSupervisor } from "./cluster/supervisor.ts";
import { linkToPrimary, WORKER_ENV } from "./cluster/worker-link.ts";
import { configFromEnv, configInputFromEnv, logLevelFromEnv, runtimeFromEnv } from "./config/env.ts";
import { GatewayError } from "./errors.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import { createHangup } from "./hangup.ts";
import { createLogger } from "./log.ts";

// --version and --help answer and exit before anything is created (no data dir, no token, no CA).
const command = parseCommandLine(process.argv.slice(2));
if (!command.run) {
  (command.exitCode === 0 ? process.stdout : process.stderr).write(command.out);
  process.exit(command.exitCode);
}

const slot = process.env[WORKER_ENV.slot];
// A bad CACHEGATE_LOG_LEVEL is reported at `info`, with the other bad values, by runtimeFromEnv below.
const level = (() => {
  try {
    return logLevelFromEnv(process.env);
  } catch {
    return "info";
  }
})();
// Workers inherit the environment, and with it the level.
const log = createLogger(undefined, cluster.isWorker ? { worker: Number(slot) } : undefined, level);

/**
 * SIGHUP (logrotate's postrotate `kill -HUP`) reopens the access log and
 * writes the pending counters; it never stops the process, whose default
 * on SIGHUP is to exit. Caught from the start, before the gateway is up.
 */
const hangup = createHangup(log);
process.on("SIGHUP", hangup.signal);

/**
 * One process (`CACHEGATE_WORKERS=1`), or a primary that holds the admin API
 * and starts that many workers sharing the agent port, the data dir and one
 * download per URL (src/cluster/). node:cluster runs this same file in each
 * worker.
 */
async function start(): Promise<{ stop(): Promise<void>; reopen(): void }> {
  configFromEnv(process.env); // reports bad CACHEGATE_* values by their variable names
  const runtime = runtimeFromEnv(process.env);
  const base = { config: configInputFromEnv(process.env), runtime, log };
  if (cluster.isWorker) {
    const link = linkToPrimary(process.env, log);
    return startGateway({ ...base, cluster: { role: "worker", link } });
  }
  if (runtime.workers === 1) return startGateway(base);

  let gateway: Gateway | undefined;
  const secret = randomBytes(24).toString("hex");
  const workers = createSupervisor({
    count: runtime.workers,
    host: runtime.host,
    env: () => ({
      [WORKER_ENV.secret]: secret,
      [WORKER_ENV.via]: gateway!.via,
      [WORKER_ENV.adminPort]: String(gateway!.adminPort),
    }),
    log,
    config: () => gateway!.config.current,
    onDeath: (pid) => gateway!.sweepDownloadsOf(pid),
    // One host's leaf is cached and shared by every worker; the TLS agent port's own (several names) is not.
    leaf: (names) => (names.length === 1 ? gateway!.minter.leafFor(names[0]!) : gateway!.minter.leafForNames(names)),
  });
  // The primary first: it brings the database up to date, sweeps, and makes the CA, before any worker opens them.
  gateway = await startGateway({ ...base, cluster: { role: "primary", workers } });
  try {
    await workers.start();
  } catch (err) {
    await workers.stop();
    await gateway.stop();
    throw err;
  }
  log.info("cachegate workers serving", { workers: runtime.workers });
  return {
    reopen: () => gateway!.reopen(),
    async stop() {
      await workers.stop();
      await gateway!.stop();
    },
  };
}

try {
  const gateway = await start();
  hangup.up(() => gateway.reopen());
  const shutdown = async (signal: string) => {
    hangup.closing();
    log.info("shutting down", { signal });
    await gateway.stop();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
  // A worker whose primary is gone (killed) would hold the agent port with nobody to run it: it leaves too.
  if (cluster.isWorker) process.once("disconnect", () => void shutdown("primary gone"));
} catch (err) {
  if (err instanceof GatewayError && err.details) {
    log.error("cachegate cannot start: fix these settings", { errors: err.details.map((e) => e.message) });
  } else {
    log.error("cachegate cannot start", { error: err });
  }
  process.exit(1);
}
