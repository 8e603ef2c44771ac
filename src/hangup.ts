import type { Logger } from "./log.ts";

/**
 * SIGHUP (logrotate's postrotate `kill -HUP`) over the life of the process.
 * Caught from the start, since its default is to end the process. One that
 * arrives while the gateway starts is remembered and acted on once it is up:
 * the access log was opened first, so a file logrotate moved meanwhile would
 * otherwise keep getting lines until the next rotation (and with workers,
 * start-up lasts until every worker serves). One during shutdown is ignored:
 * the log and the database are being closed.
 */
export function createHangup(log: Logger) {
  let reopen: (() => void) | undefined;
  let pending = false;
  let closing = false;

  function signal(): void {
    if (closing) {
      log.info("SIGHUP during shutdown: ignored");
    } else if (!reopen) {
      pending = true;
      log.info("SIGHUP before the gateway was up: the access log is reopened once it is");
    } else {
      log.info("SIGHUP: writing the counters and reopening the access log");
      reopen();
    }
  }

  return {
    signal,
    /** The gateway is up: SIGHUP reopens through `gatewayReopen`, now if one came during start-up. */
    up(gatewayReopen: () => void): void {
      reopen = gatewayReopen;
      if (pending) {
        pending = false;
        signal();
      }
    },
    /** Shutdown has begun. */
    closing(): void {
      closing = true;
    },
  };
}
