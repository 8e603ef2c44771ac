import { existsSync, readdirSync, readFileSync } from "node:fs";
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

/**
 * Stops children (TERM, then KILL after a grace period) and removes temp dirs. Safe to call twice.
 * Their descendants (a gateway's forked workers, varnishd's cache process) are noted first and
 * killed too if they outlive their parent, so no orphan keeps a port or a CPU busy after the run.
 */
export async function cleanup(): Promise<void> {
  const running = [...children];
  const descendants = running.flatMap((child) => processTree(child.pid).slice(1).map(identify));
  for (const child of running) child.kill("SIGTERM");
  await Promise.race([Promise.all(running.map((c) => c.exited)), Bun.sleep(3000)]);
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await Promise.all(running.map((c) => c.exited));
  children.clear();
  const orphans = async () => descendants.filter((d) => d !== undefined && identify(d.pid)?.start === d.start);
  for (let i = 0; i < 20 && (await orphans()).length > 0; i++) await Bun.sleep(100);
  for (const orphan of await orphans()) {
    try {
      process.kill(orphan!.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  await Promise.all([...tempDirs].map((dir) => rm(dir, { recursive: true, force: true })));
  tempDirs.clear();
}

/**
 * A live process and its start time (field 22 of stat), so a pid the kernel
 * reused for something else is never mistaken for it; undefined if it is gone or a zombie.
 */
function identify(pid: number): { pid: number; start: string } | undefined {
  try {
    const fields = statFields(pid);
    return fields[0] === "Z" ? undefined : { pid, start: fields[19]! };
  } catch {
    return undefined;
  }
}

/** The fields of /proc/<pid>/stat after the command name (field 3, the state, is [0]). Throws if the pid is gone. */
function statFields(pid: number): string[] {
  // The command name in field 2 is parenthesised and may hold spaces: parse after the last ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
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

/**
 * `pid` and all its descendants, read afresh on every call: nginx's master and workers, varnishd's
 * manager and cache process, the gateway's primary and the workers it forks (which it may restart).
 * Reads /proc/<pid>/task/<tid>/children (a child is listed under the thread that forked it); where
 * the kernel lacks those files, falls back to matching every process's parent pid.
 */
export function processTree(pid: number): number[] {
  const tree: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    tree.push(next);
    queue.push(...childrenOf(next));
  }
  return tree;
}

/** Whether the kernel offers /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN); checked on our own main thread. */
const CHILDREN_FILES = existsSync(`/proc/${process.pid}/task/${process.pid}/children`);

function childrenOf(pid: number): number[] {
  if (!CHILDREN_FILES) return childrenByParent(pid);
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return []; // gone
  }
  const out: number[] = [];
  for (const tid of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
      if (text !== "") out.push(...text.split(" ").map(Number));
    } catch {
      // the thread ended while we looked
    }
  }
  return out;
}

function childrenByParent(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (Number(statFields(Number(name))[1]) === pid) out.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return out;
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

/** Summed RSS of `pids()` in bytes. */
export const totalRss = (pids: () => number[]): number => pids().reduce((sum, pid) => sum + rssBytes(pid), 0);

/** Summed RSS after a short quiet spell: the median of a few samples, so one spike does not count. */
export async function idleRss(pids: () => number[]): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < 5; i++) {
    values.push(totalRss(pids));
    await Bun.sleep(100);
  }
  return values.sort((a, b) => a - b)[2]!;
}

/** Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

/**
 * User + system CPU time a process has used, in seconds, plus that of its
 * children it has already reaped (cutime, cstime): a worker that exits and
 * is replaced during a measurement keeps counting. Undefined if it is gone.
 */
export function cpuSeconds(pid: number): number | undefined {
  try {
    // Fields 14–17 of stat (utime, stime, cutime, cstime) are 11–14 after the command name.
    const [utime, stime, cutime, cstime] = statFields(pid).slice(11, 15).map(Number);
    return (utime! + stime! + cutime! + cstime!) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/**
 * CPU time the processes use from now until stop(). Unlike requests/s it barely
 * moves when other work shares the CPUs, so it is the steadier figure for
 * comparing what a request costs each server.
 *
 * Given a function (a process tree), it is called again at stop(), so workers
 * forked during the measurement count from their start, and those that exited
 * count through their parent's reaped-children time. A fixed list is measured as is.
 */
export function cpuMeter(pids: number[] | (() => number[])): { stop(): number } {
  const list = typeof pids === "function" ? pids : () => pids;
  const read = () => new Map(list().map((pid) => [pid, cpuSeconds(pid)]));
  const before = read();
  return {
    stop() {
      const after = read();
      let total = 0;
      for (const [pid, now] of after) if (now !== undefined) total += now - (before.get(pid) ?? 0);
      // One that left the tree was reaped by its parent, whose time above now holds its whole life: take
      // off what it had used before the start. (A pid of a fixed list stays listed, gone or not.)
      for (const [pid, then] of before) if (!after.has(pid) && then !== undefined) total -= then;
      return Math.max(0, total);
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
