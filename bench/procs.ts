import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BunFile, Subprocess } from "bun";

/**
 * Everything the benchmark starts or creates is registered here, so one
 * cleanup (on success, error, or a signal) stops every child and removes
 * every temp dir, and a run never leaves an nginx or gateway behind.
 */
const children = new Set<Subprocess>();
const tempDirs = new Set<string>();

type SpawnOptions = NonNullable<Parameters<typeof Bun.spawn>[1]>;

export function spawnChild(cmd: string[], opts: SpawnOptions = {}): Subprocess {
  const child = Bun.spawn(cmd, { stdin: "ignore", ...opts });
  children.add(child);
  void child.exited.then(() => children.delete(child));
  return child;
}

/** An emptied log file for a child's stdout/stderr (Bun writes from the start but does not truncate). */
export async function freshLog(path: string): Promise<BunFile> {
  await Bun.write(path, "");
  return Bun.file(path);
}

export async function makeTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Stops children (TERM, then KILL after a grace period) and removes temp dirs. Safe to call twice. */
export async function cleanup(): Promise<void> {
  const running = [...children];
  for (const child of running) child.kill("SIGTERM");
  await Promise.race([Promise.all(running.map((c) => c.exited)), Bun.sleep(3000)]);
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await Promise.all(running.map((c) => c.exited));
  children.clear();
  await Promise.all([...tempDirs].map((dir) => rm(dir, { recursive: true, force: true })));
  tempDirs.clear();
}

let cleaningUp = false;
/** True once a signal started the shutdown: failures from then on are its echo, not news. */
export const interrupted = () => cleaningUp;

/** Ctrl-C or a kill stops the children and removes temp dirs before exiting. */
export function cleanupOnSignals(): void {
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      if (cleaningUp) return;
      cleaningUp = true;
      console.error(`\n${signal}: stopping children and removing temp dirs`);
      void cleanup().finally(() => process.exit(130));
    });
  }
}

/** cachegate refuses these ports (see src/config/schema.ts RESERVED_PORTS); never hand them out. */
const RESERVED = new Set([22, 23, 2379, 2380, 4001, 5514, 7001, 48081, 48082, 48083, 48084, 48085, 48086]);

/** A port nothing listens on right now: the kernel picks one, we release it and hand it to a child. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        const p = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => resolve(p));
      });
    });
    if (!RESERVED.has(port)) return port;
  }
}

/** Polls `url` until it answers 2xx, failing early if `child` exits. */
export async function waitForHttp(url: string, child: Subprocess, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what} exited (code ${child.exitCode ?? child.signalCode}) before answering ${url}`);
    try {
      const res = await fetch(url, { proxy: false, signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await Bun.sleep(50);
  }
  throw new Error(`${what} did not answer ${url} within ${timeoutMs / 1000} s`);
}

/** Resident set size of one process in bytes (0 if it is gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** `pid` and its direct children (nginx: the master and its workers, cache manager and loader). */
export function processTree(pid: number): number[] {
  const pids = [pid];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // The command name in field 2 is parenthesised and may hold spaces: parse after the last ')'.
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) pids.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

export interface RssSampler {
  /** Stops sampling; returns the largest summed RSS seen, in bytes. */
  stop(): { peak: number; samples: number };
}

/** Samples the summed RSS of `pids()` every `intervalMs`, keeping the peak. */
export function sampleRss(pids: () => number[], intervalMs = 100): RssSampler {
  let peak = 0;
  let samples = 0;
  const sample = () => {
    const total = pids().reduce((sum, pid) => sum + rssBytes(pid), 0);
    peak = Math.max(peak, total);
    samples++;
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peak, samples };
    },
  };
}

/** Summed RSS after a short quiet spell: the median of a few samples, so one spike does not count. */
export async function idleRss(pids: number[]): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < 5; i++) {
    values.push(pids.reduce((sum, pid) => sum + rssBytes(pid), 0));
    await Bun.sleep(100);
  }
  return values.sort((a, b) => a - b)[2]!;
}

/** Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

/** User + system CPU time a process has used, in seconds (undefined if it is gone). */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/**
 * CPU time `pids` use from now until stop(). Unlike requests/s it barely
 * moves when other work shares the CPUs, so it is the steadier figure for
 * comparing what a request costs each server.
 */
export function cpuMeter(pids: number[]): { stop(): number } {
  const start = new Map(pids.map((pid) => [pid, cpuSeconds(pid)]));
  return {
    stop() {
      let total = 0;
      for (const [pid, before] of start) {
        const after = cpuSeconds(pid);
        if (before !== undefined && after !== undefined) total += after - before;
      }
      return total;
    },
  };
}

/**
 * Runs a benchmark's main function as the entry point of `bun bench/…`:
 * children and temp dirs are cleaned up on success, failure, a signal, or
 * when the watchdog gives up on a run that hangs.
 */
export async function runBench(
  name: string,
  main: () => Promise<void>,
  opts: { watchdogMs: number; onExit?: () => void },
): Promise<void> {
  cleanupOnSignals();
  const watchdog = setTimeout(() => {
    console.error(`${name}: still running after ${opts.watchdogMs / 60_000} min; giving up`);
    void cleanup().finally(() => process.exit(1));
  }, opts.watchdogMs);
  try {
    await main();
  } catch (err) {
    if (!interrupted()) console.error(`${name} failed:`, err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    opts.onExit?.();
    // After a signal, its handler is already cleaning up and exits when done: a second cleanup racing it could exit first.
    if (!interrupted()) {
      await cleanup();
      process.exit(); // with process.exitCode; no stray socket or timer may keep the run alive
    }
  }
}
