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
/** Lines that cannot be written (a full disk, a stdout nobody reads) are kept for the next try, up to this; then dropped, and said so. */
const MAX_UNWRITTEN = 8 * 1024 * 1024;
/** How long a stop waits for the last lines to be written (an output that takes none must not hold the shutdown). */
const STOP_WAIT_MS = 2000;
/** A full non-blocking pipe (EAGAIN) is tried again this soon, not a second later: the reader is only behind. */
const RETRY_MS = 10;

/**
 * The access log: one line per proxied request, in the configured format.
 * The request path only appends the report to an array; lines are built
 * in the background, every second, when 256 are waiting, and at stop, and
 * written by one asynchronous write at a time (sink.ts: a blocked output
 * never blocks the event loop). A failing write never reaches an agent: it
 * is logged once per episode and retried with the next flush. Held bytes
 * are bounded (MAX_UNWRITTEN).
 */
export function createAccessLog(opts: AccessLogOptions) {
  const now = opts.now ?? Date.now;
  const format = LINE_FORMATS[opts.format];
  const sink = open(opts);
  let waiting: Served[] = [];
  let times: number[] = [];
  /** Formatted lines not yet handed to the sink, oldest first (one chunk per flush: never copied into one). */
  let queue: Uint8Array[] = [];
  let queued = 0;
  /** The chunk being written from (its in-flight piece is its start); kept apart, so a drop never cuts it. */
  let head: Uint8Array | undefined;
  let writing = false;
  let failing = false;
  /** The last write met a full non-blocking pipe; a retry is due. */
  let full = false;
  let retry: Timer | undefined;
  let reopenWanted = false;
  let stopped = false;
  /** Stopped while a write was still in flight: that write's return closes the sink. */
  let abandoned = false;
  const idle: (() => void)[] = [];

  function flush(): void {
    if (waiting.length > 0) {
      let text = "";
      for (let i = 0; i < waiting.length; i++) text += format(waiting[i]!, times[i]!);
      waiting = [];
      times = [];
      const chunk = Buffer.from(text);
      queue.push(chunk);
      queued += chunk.length;
    }
    if (queued > MAX_UNWRITTEN) {
      // The chunk being written stays (a write may hold it); what waits behind it goes.
      const kept = head?.length ?? 0;
      opts.log.error("access log lines dropped: they could not be written", { bytes: queued - kept });
      queue = [];
      queued = kept;
    }
    pump();
  }

  /** Starts the next write unless one is in flight; when nothing is left, does what waited for that. */
  function pump(): void {
    if (writing) return;
    head ??= queue.shift();
    if (!head) {
      settled();
      return;
    }
    const piece = nextPiece(head, sink.maxWrite);
    writing = true;
    sink.write(piece, (error, written) => {
      writing = false;
      if (abandoned) {
        sink.close(); // the stop gave up waiting for this write: nothing more is written
        return;
      }
      if (error) {
        failed(error);
        return;
      }
      if (failing) opts.log.info("writing the access log works again");
      failing = false;
      full = false;
      queued -= written;
      head = written < head!.length ? head!.subarray(written) : undefined;
      pump();
    });
  }

  /**
   * A write failed: what is left waits for the next flush (a timer tick, or
   * 256 more lines). EAGAIN is no fault: a non-blocking stdout (Bun's
   * process.stdout makes the pipe so) whose reader is behind; tried again
   * in RETRY_MS.
   */
  function failed(error: NodeJS.ErrnoException): void {
    full = error.code === "EAGAIN";
    if (full) {
      retry ??= setTimeout(() => {
        retry = undefined;
        pump();
      }, RETRY_MS);
      retry.unref();
    } else if (!failing) {
      opts.log.error("writing the access log failed; the gateway keeps serving and retries", { error });
      failing = true;
    }
    settled();
  }

  /** No write in flight: a wanted reopen happens now (never under a write), and whoever waited hears it. */
  function settled(): void {
    if (reopenWanted && !stopped) {
      reopenWanted = false;
      try {
        sink.reopen();
        opts.log.info("access log reopened", { path: opts.path });
      } catch (error) {
        opts.log.error("cannot reopen the access log; still writing to the file open before", {
          path: opts.path,
          error,
        });
      }
    }
    for (const resolve of idle.splice(0)) resolve();
  }

  /** Resolves once no write is in flight (everything written, or a write failed). */
  const whenIdle = () => new Promise<void>((resolve) => (writing ? idle.push(resolve) : resolve()));
  const flusher = every(opts.flushMs ?? 1000, flush, opts.log, "writing the access log");

  return {
    /** Called once per response (and CONNECT) the proxy finished. */
    served(s: Served): void {
      if (stopped) return; // a tunnel that closes during shutdown, after the last write
      waiting.push(s);
      times.push(now());
      if (waiting.length >= FLUSH_AT) flusher.now();
    },

    /** Starts writing what is waiting now. */
    flush: () => void flusher.now(),

    /**
     * logrotate's SIGHUP: what is waiting goes to the old file, then the
     * path is opened again, once no write is in flight (a descriptor is
     * never closed under a write).
     */
    reopen(): void {
      if (stopped) return; // SIGHUP during shutdown: the file is being closed
      reopenWanted = true;
      flusher.now();
      if (!writing) settled();
    },

    /** Writes what is buffered (waiting at most STOP_WAIT_MS for the output to take it), then closes. Once. */
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      flusher.stop();
      flusher.now();
      const deadline = Date.now() + STOP_WAIT_MS;
      // Until written, or the output takes nothing more: a write in flight, or a full pipe being retried.
      while ((writing || (full && queued > 0)) && Date.now() < deadline) {
        let timer: Timer | undefined;
        const pause = new Promise((r) => (timer = setTimeout(r, Math.min(100, deadline - Date.now()))));
        await Promise.race(writing ? [whenIdle(), pause] : [pause]);
        clearTimeout(timer);
      }
      clearTimeout(retry);
      const left = queued;
      if (left > 0)
        opts.log.error("access log lines not written at stop: the output did not take them", { bytes: left });
      // A write still in flight holds the descriptor: closing it under the write could hand its number to
      // another file. It is closed when that write returns, and nothing is written after it.
      if (writing) abandoned = true;
      else sink.close();
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
