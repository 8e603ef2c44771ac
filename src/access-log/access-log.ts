import { every } from "../background.ts";
import type { AccessLogSettings } from "../config/env.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Served } from "../stats/collector.ts";
import { LINE_FORMATS } from "./formats.ts";
import { fileSink, nextPiece, type Sink, stdoutSink } from "./sink.ts";

export interface AccessLogOptions extends AccessLogSettings {
  log: Logger;
  now?: () => number;
  /** How often what is buffered is written (1 s). */
  flushMs?: number;
}

/** Written at once when this many responses are waiting, without waiting for the timer. */
const FLUSH_AT = 256;
/** Lines that cannot be written (a full disk) are kept for the next try, up to this; then dropped, and said so. */
const MAX_UNWRITTEN = 8 * 1024 * 1024;

/**
 * The access log: one line per proxied request, in the configured format.
 * The request path only appends the report to an array; lines are built
 * and written in the background, every second, when 256 are waiting, and
 * at stop. A failing write never reaches an agent: it is logged once and
 * retried with the next flush.
 */
export function createAccessLog(opts: AccessLogOptions) {
  const now = opts.now ?? Date.now;
  const format = LINE_FORMATS[opts.format];
  const sink = open(opts);
  let waiting: Served[] = [];
  let times: number[] = [];
  let unwritten: Uint8Array = new Uint8Array(0);
  let stopped = false;

  function flush(): void {
    if (waiting.length > 0) {
      let text = "";
      for (let i = 0; i < waiting.length; i++) text += format(waiting[i]!, times[i]!);
      waiting = [];
      times = [];
      const fresh = Buffer.from(text);
      unwritten = unwritten.length === 0 ? fresh : Buffer.concat([unwritten, fresh]);
    }
    if (unwritten.length > MAX_UNWRITTEN) {
      opts.log.error("access log lines dropped: they could not be written", { bytes: unwritten.length });
      unwritten = new Uint8Array(0);
    }
    while (unwritten.length > 0) {
      const piece = nextPiece(unwritten, sink.maxWrite);
      unwritten = unwritten.subarray(sink.write(piece)); // a throw keeps what is left for the next flush
    }
  }
  const flusher = every(opts.flushMs ?? 1000, flush, opts.log, "writing the access log");

  return {
    /** Called once per response (and CONNECT) the proxy finished. */
    served(s: Served): void {
      if (stopped) return; // a tunnel that closes during shutdown, after the last write
      waiting.push(s);
      times.push(now());
      if (waiting.length >= FLUSH_AT) flusher.now();
    },

    /** Writes what is waiting now. */
    flush: () => void flusher.now(),

    /** logrotate's SIGHUP: what is waiting goes to the old file, then the path is opened again. */
    reopen(): void {
      flusher.now();
      try {
        sink.reopen();
        opts.log.info("access log reopened", { path: opts.path });
      } catch (error) {
        opts.log.error("cannot reopen the access log; still writing to the file open before", {
          path: opts.path,
          error,
        });
      }
    },

    stop(): void {
      if (stopped) return;
      stopped = true;
      flusher.stop();
      flusher.now();
      sink.close();
    },
  };
}

export type AccessLog = ReturnType<typeof createAccessLog>;

function open(opts: AccessLogOptions): Sink {
  if (opts.path === "-") return stdoutSink();
  try {
    return fileSink(opts.path);
  } catch (err) {
    const why = (err as Error).message;
    throw new GatewayError(
      400,
      "invalid_environment",
      `CACHEGATE_ACCESS_LOG: cannot open ${opts.path} for appending (${why}); create its directory and let ` +
        `the gateway's user write there, choose another path, or set CACHEGATE_ACCESS_LOG=- for stdout`,
      { cause: err },
    );
  }
}
