import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, freshLog, makeTempDir, processTree, spawnChild, waitForHttp } from "./procs.ts";

export interface Cachegate {
  proxyPort: number;
  adminPort: number;
  /** The process started (the primary, when the gateway runs workers). */
  readonly pid: number;
  /** It and every process under it (forked workers), read afresh: workers may be restarted. */
  pids(): number[];
  /**
   * If the gateway has exited since it was started, says why (the first
   * error line of its stderr) and starts a new one on the same ports with an
   * empty cache, so one crash costs a row, not the whole run.
   */
  revive(): Promise<string | undefined>;
}

const REPO = join(import.meta.dir, "..");

export interface CachegateOptions {
  /** Names its log files (`<name>.log`, `<name>.err.log`); two gateways in one run need two. */
  name?: string;
  /** CACHEGATE_WORKERS; unset (also when the caller's env has it) means the gateway's default, one per core. */
  workers?: number;
  /** The agent port (a fleet's members name each other's before they start); default a free one. */
  proxyPort?: number;
  /** More CACHEGATE_* settings (a fleet's CACHEGATE_PEERS and CACHEGATE_PEER_SELF). */
  env?: Record<string, string>;
}

/**
 * Starts the gateway the way an operator would (`bun src/main.ts`, configured
 * by env) with a fresh data dir, in Cache Mode with `localhost` as the
 * platform domain and private upstreams allowed (the origin is on loopback).
 */
export async function startCachegate(logDir: string, opts: CachegateOptions = {}): Promise<Cachegate> {
  const name = opts.name ?? "cachegate";
  const { CACHEGATE_WORKERS: _, ...env } = process.env;
  const [proxyPort, adminPort] = [opts.proxyPort ?? (await freePort()), await freePort()];
  let starts = 0;
  let errLog = "";
  let outLog = "";

  const start = async (): Promise<Subprocess> => {
    const dataDir = await makeTempDir("cachegate-bench-data-");
    const suffix = starts++ === 0 ? "" : `-${starts}`;
    errLog = join(logDir, `${name}${suffix}.err.log`);
    outLog = join(logDir, `${name}${suffix}.log`);
    const child = spawnChild([process.execPath, join(REPO, "src/main.ts")], {
      cwd: REPO,
      env: {
        ...env,
        ...(opts.workers === undefined ? {} : { CACHEGATE_WORKERS: String(opts.workers) }),
        CACHEGATE_DATA_DIR: dataDir,
        CACHEGATE_HOST: "127.0.0.1",
        CACHEGATE_PORT: String(proxyPort),
        CACHEGATE_ADMIN_HOST: "127.0.0.1",
        CACHEGATE_ADMIN_PORT: String(adminPort),
        CACHEGATE_ADMIN_TOKEN: randomBytes(16).toString("hex"),
        CACHEGATE_CACHE_MODE: "1",
        CACHEGATE_PLATFORM_DOMAINS: "localhost",
        CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1",
        ...opts.env,
      },
      stdout: await freshLog(outLog),
      stderr: await freshLog(errLog),
    });
    await waitForHttp(`http://127.0.0.1:${adminPort}/healthz`, child, "cachegate");
    return child;
  };

  let child = await start();
  return {
    proxyPort,
    adminPort,
    get pid() {
      return child.pid;
    },
    pids: () => processTree(child.pid),
    async revive() {
      if (child.exitCode === null && child.signalCode === null) return undefined;
      const stderr = await Bun.file(errLog)
        .text()
        .catch(() => "");
      const firstError = stderr.split("\n").find((line) => /^\w*error:/i.test(line.trim())) ?? "no error on stderr";
      // A clean exit after a signal the benchmark did not send: someone else on the machine stopped it.
      const stopped = /"msg":"shutting down","signal":"(\w+)"/.exec(
        await Bun.file(outLog)
          .text()
          .catch(() => ""),
      );
      const why = stopped
        ? `was stopped by a ${stopped[1]} from outside the benchmark (it logged "shutting down")`
        : `exited (${child.exitCode ?? child.signalCode}): ${firstError.trim().slice(0, 500)}`;
      child = await start();
      return why;
    },
  };
}
