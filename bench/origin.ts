import { join } from "node:path";
import { BIG_RATE_BYTES_PER_S } from "./files.ts";
import { freePort, freshLog, spawnChild, waitForHttp } from "./procs.ts";

/** What the origin has served since it started; scenarios take deltas. */
export interface OriginStats {
  requests: number;
  bytes: number;
}

export interface Origin {
  port: number;
  pid: number;
  /** The URL agents ask for (host `localhost`, the platform domain cachegate is configured with). */
  url(path: string): string;
  stats(): Promise<OriginStats>;
}

/** Starts bench/origin-server.ts as its own process, serving the files in `filesDir`. */
export async function startOrigin(filesDir: string, logDir: string): Promise<Origin> {
  const port = await freePort();
  const child = spawnChild(
    [process.execPath, join(import.meta.dir, "origin-server.ts"), filesDir, String(port), String(BIG_RATE_BYTES_PER_S)],
    {
      stdout: await freshLog(join(logDir, "origin.log")),
      stderr: await freshLog(join(logDir, "origin.err.log")),
    },
  );
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/stats`, child, "origin");
  return {
    port,
    pid: child.pid,
    url: (path) => `http://localhost:${port}${path}`,
    async stats() {
      const res = await fetch(`${base}/stats`, { proxy: false });
      return (await res.json()) as OriginStats;
    },
  };
}
