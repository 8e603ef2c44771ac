import type { Logger } from "./log.ts";

/**
 * Background work (flushing counters and index touches to SQLite) must never
 * take the gateway down: when the disk is full or failing, the work is kept
 * and retried on the next tick, and the failure is logged once per episode,
 * not once per tick, with its recovery.
 */
function guarded(log: Logger, what: string) {
  let failing = false;
  return function attempt(task: () => void): boolean {
    try {
      task();
    } catch (error) {
      if (!failing) log.error(`${what} failed; the gateway keeps serving and retries`, { error });
      failing = true;
      return false;
    }
    if (failing) log.info(`${what} works again`);
    failing = false;
    return true;
  };
}

/**
 * Runs `task` every `ms` (guarded, unref'd so it never holds the process
 * open). `now()` runs it at once under the same guard (one episode, whoever
 * runs it); `stop()` ends the timer.
 */
export function every(ms: number, task: () => void, log: Logger, what: string): { now(): boolean; stop(): void } {
  const attempt = guarded(log, what);
  const timer = setInterval(() => attempt(task), ms);
  timer.unref();
  return { now: () => attempt(task), stop: () => clearInterval(timer) };
}
