import { readFileSync } from "node:fs";
import type { Subprocess } from "bun";
import { processTree, rssBytes } from "./procs.ts";

/**
 * A server that forks (cachegate's workers, Squid's kids and their helpers)
 * is measured as the whole tree under the pid we started, read from /proc
 * at the moment of measuring.
 */

/** `pid` and all its descendants, parents first (procs.ts reads them). */
export const treePids = processTree;

const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

/**
 * CPU seconds a process used plus those of its children it has reaped
 * (utime + stime + cutime + cstime), undefined if it is gone.
 */
function cpuWithReaped(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14–17 of stat (utime, stime, cutime, cstime) are 11–14 after the command name.
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "?";
  }
}

export interface TreeCpu {
  /** CPU seconds of the whole tree over the window. */
  total: number;
  /** How it split between the processes that used at least 2 % of it: "squid 51%, squid 47%". */
  split: string;
}

/**
 * CPU time the tree under `root` uses from now until stop(). Both ends sum
 * the tree as it is then, own time plus reaped children's, so a process
 * that starts during the window counts whole, and one that ends during it
 * (a helper restarted, say) still counts through its parent's cutime.
 */
export function treeCpuMeter(root: number): { stop(): TreeCpu } {
  const snapshot = () => new Map(treePids(root).map((pid) => [pid, cpuWithReaped(pid) ?? 0]));
  const start = snapshot();
  return {
    stop() {
      const end = snapshot();
      let total = 0;
      for (const v of end.values()) total += v;
      for (const v of start.values()) total -= v;
      const split = [...end]
        .map(([pid, v]) => ({ pid, used: v - (start.get(pid) ?? 0) }))
        .filter((p) => total > 0 && p.used / total >= 0.02)
        .map((p) => `${comm(p.pid)} ${Math.round((p.used / total) * 100)}%`)
        .join(", ");
      return { total, split };
    },
  };
}

/** Process names in the tree (from /proc/<pid>/comm), counted: "squid ×3, security_file_c ×2". */
export function treeNames(root: number): string {
  const counts = new Map<string, number>();
  for (const pid of treePids(root)) counts.set(comm(pid), (counts.get(comm(pid)) ?? 0) + 1);
  return [...counts].map(([name, n]) => (n === 1 ? name : `${name} ×${n}`)).join(", ");
}

/** Summed resident memory of the tree (pages shared between forked processes count once per process). */
export const treeRss = (root: number): number => treePids(root).reduce((sum, pid) => sum + rssBytes(pid), 0);

/**
 * A live process's start time (field 22 of stat, in clock ticks since boot): with the pid, it names one
 * process. Undefined once it is gone or a zombie.
 */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return f[0] === "Z" ? undefined : f[19];
  } catch {
    return undefined;
  }
}

/**
 * Stops a child we started and everything under it: SIGTERM to the child
 * (a master stops its kids, kids their helpers), then, after `graceMs`,
 * SIGKILL to each process of the tree as it was when we asked that is still
 * the same process (same pid and start time). Returns the names of those
 * that had to be killed.
 */
export async function stopTree(child: Subprocess, graceMs = 5000): Promise<string[]> {
  const tree = treePids(child.pid).map((pid) => ({ pid, start: startTime(pid) }));
  if (child.exitCode !== null || child.signalCode !== null) return [];
  child.kill("SIGTERM");
  await Promise.race([child.exited, Bun.sleep(graceMs)]);
  // Kids reaped by an exiting master may still be on their way out: give them a moment.
  for (let i = 0; i < 20 && tree.some((p) => startTime(p.pid) === p.start); i++) await Bun.sleep(50);
  const killed: string[] = [];
  for (const { pid, start } of tree) {
    if (start === undefined || startTime(pid) !== start) continue;
    const name = `${comm(pid)} (${pid})`;
    try {
      process.kill(pid, "SIGKILL");
      killed.push(name);
    } catch {
      // gone meanwhile
    }
  }
  await child.exited;
  return killed;
}
