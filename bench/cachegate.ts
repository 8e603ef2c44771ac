import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, freshLog, makeTempDir, spawnChild, waitForHttp } from "./procs.ts";

export interface Cachegate {
  proxyPort: number;
  adminPort: number;
  readonly pid: number;
  /**
   * If the gateway has exited since it was started, says why (the first
   * error line of its stderr) and starts a new one on the same ports with an
   * empty cache, so one crash costs a row, not the whole run.
   */
  revive(): Promise<string | undefined>;
}

const REPO = join(import.meta.dir, "..");

/**
 * Starts the gateway the way an operator would (`bun src/main.ts`, configured
 * by env) with a fresh data dir, in Cache Mode with `localhost` as the
 * platform domain and private upstreams allowed (the origin is on loopback).
 */
export async function startCachegate(logDir: string): Promise<Cachegate> {
  const [proxyPort, adminPort] = [await freePort(), await freePort()];
  let starts = 0;
  let errLog = "";

  const start = async (): Promise<Subprocess> => {
    const dataDir = await makeTempDir("cachegate-bench-data-");
    const suffix = starts++ === 0 ? "" : `-${starts}`;
    errLog = join(logDir, `cachegate${suffix}.err.log`);
    const child = spawnChild([process.execPath, join(REPO, "src/main.ts")], {
      cwd: REPO,
      env: {
        ...process.env,
        CACHEGATE_DATA_DIR: dataDir,
        CACHEGATE_HOST: "127.0.0.1",
        CACHEGATE_PORT: String(proxyPort),
        CACHEGATE_ADMIN_HOST: "127.0.0.1",
        CACHEGATE_ADMIN_PORT: String(adminPort),
        CACHEGATE_ADMIN_TOKEN: randomBytes(16).toString("hex"),
        CACHEGATE_CACHE_MODE: "1",
        CACHEGATE_PLATFORM_DOMAINS: "localhost",
        CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1",
      },
      stdout: await freshLog(join(logDir, `cachegate${suffix}.log`)),
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
    async revive() {
      if (child.exitCode === null && child.signalCode === null) return undefined;
      const stderr = await Bun.file(errLog)
        .text()
        .catch(() => "");
      const firstError = stderr.split("\n").find((line) => /^\w*error:/i.test(line.trim())) ?? "no error on stderr";
      const why = `exited (${child.exitCode ?? child.signalCode}): ${firstError.trim().slice(0, 500)}`;
      child = await start();
      return why;
    },
  };
}
