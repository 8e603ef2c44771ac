import { isDiskError, type TempBlob } from "../store/blob-store.ts";
import { type BodySource, LaggedBehind } from "./body-source.ts";
import type { Refetched } from "./refetch.ts";

/** A reader following a download (a BodyCursor): where it is, and why it was cut loose, if it was. */
export interface DownloadReader {
  pos: number;
  cut?: Error;
}

/** Bytes a download keeps in memory once its disk failed, for the readers following it. */
const WINDOW_BYTES = 8 * 1024 * 1024;

/**
 * A body being downloaded into a temp file; readers follow the writer with
 * positional reads on its handle, so any number of agents read one object
 * while it grows, and the rename temp → blob does not disturb them.
 *
 * If the disk fails mid-download (full, or failing), the download spills:
 * it is no longer stored, no new reader joins it, and the rest of the body
 * is relayed to its readers from a bounded window in memory. When the
 * response can be asked for again by range (`refetch`), a reader that fell
 * behind that window asks upstream for its remainder itself; otherwise the
 * download waits for its slowest reader, so nobody falls behind.
 */
export class Download implements BodySource {
  private refs = 1; // the writer's own
  private waiters: (() => void)[] = [];
  private received = 0;
  /** Bytes readable from the temp file (all of them until the disk fails). */
  private fileBytes = 0;
  private window: Uint8Array[] = [];
  private windowStart = 0;
  private windowBytes = 0;
  settled = false;
  error: Error | undefined;
  /** Why the body stopped being stored, if the disk failed mid-download. */
  spilled: Error | undefined;
  /** Fetches bytes [from, to) of this response from upstream again (set when it has a strong validator). */
  refetch?: (from: number, to: number | undefined) => Promise<Refetched>;
  /** Called once when the download spills (the flight lands: later requests do not join it). */
  onSpill?: () => void;
  /** How long a spilled download waits for a reader that does not move before it leaves that reader behind. */
  patienceMs = 60_000;
  private readonly readers = new Set<DownloadReader>();
  private writerWaiting: (() => void) | undefined;

  constructor(
    /** Where the body goes; whatever it already holds counts as received (it is normally empty). */
    readonly temp: TempBlob,
    /** From Content-Length; undefined for a chunked or close-delimited body. */
    readonly expectedSize: number | undefined,
  ) {
    this.received = temp.size;
    this.fileBytes = temp.size;
  }

  async read(buf: Buffer, length: number, position: number): Promise<number> {
    if (position < this.fileBytes) {
      const want = Math.min(length, this.fileBytes - position);
      return (await this.temp.handle.read(buf, 0, want, position)).bytesRead;
    }
    if (position < this.windowStart) throw new LaggedBehind(position, this.windowStart);
    let at = this.windowStart;
    for (const chunk of this.window) {
      if (position < at + chunk.length) {
        const from = position - at;
        const n = Math.min(length, chunk.length - from);
        buf.set(chunk.subarray(from, from + n));
        return n;
      }
      at += chunk.length;
    }
    return 0;
  }

  available = () => this.received;
  size = () => (this.settled && !this.error ? this.received : this.expectedSize);

  changed(): Promise<void> {
    if (this.settled) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** A reader follows the download from its position (BodyCursor), until it lets go. */
  attach(reader: DownloadReader): void {
    this.readers.add(reader);
  }

  detach(reader: DownloadReader): void {
    this.readers.delete(reader);
    this.progressed();
  }

  /** A reader moved on: a writer held back by the slowest reader may go on. */
  progressed(): void {
    const writer = this.writerWaiting;
    this.writerWaiting = undefined;
    writer?.();
  }

  async append(chunk: Uint8Array): Promise<void> {
    if (this.spilled && !this.refetch) await this.slowestWithin(WINDOW_BYTES - chunk.length);
    if (!this.spilled) {
      try {
        await this.temp.write(chunk);
        this.fileBytes = this.temp.size;
      } catch (err) {
        if (!isDiskError(err)) throw err;
        this.spill(err as Error);
      }
    }
    if (this.spilled) this.remember(chunk);
    this.received += chunk.length;
    this.wake();
  }

  /** The whole body arrived and is verified: readers may finish. The writer keeps its reference until committed. */
  complete(): void {
    this.settled = true;
    this.wake();
  }

  /** Upstream failed or cut the body off: every reader's stream errors. */
  fail(error: Error): void {
    if (this.settled) return; // the body already reached agents whole; only storing it failed
    this.error = error;
    this.settled = true;
    this.wake();
  }

  /** Resolves once the download is complete or failed. */
  async whenSettled(): Promise<void> {
    while (!this.settled) await this.changed();
  }

  retain() {
    this.refs++;
    return this;
  }

  release() {
    if (--this.refs === 0) void this.temp.handle.close().catch(() => {});
  }

  private spill(error: Error): void {
    this.spilled = error;
    this.windowStart = this.fileBytes; // a partial write past it is never read
    this.onSpill?.();
  }

  /**
   * Waits until every reader is within `bytes` of what was received, so none
   * falls out of the window. A reader that does not move for `patienceMs`
   * (an agent that stopped reading but keeps its connection) is cut loose:
   * its transfer breaks, and the others go on.
   */
  private async slowestWithin(bytes: number): Promise<void> {
    for (;;) {
      const behind = [...this.readers].filter((reader) => this.received - reader.pos > Math.max(0, bytes));
      if (behind.length === 0) return;
      const moved = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), this.patienceMs);
        this.writerWaiting = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      if (moved) continue;
      this.writerWaiting = undefined;
      for (const reader of behind) {
        reader.cut = new Error("this agent stopped reading a download the cache disk could not hold; retry it");
        this.readers.delete(reader);
      }
    }
  }

  private remember(chunk: Uint8Array): void {
    this.window.push(chunk);
    this.windowBytes += chunk.length;
    while (this.windowBytes - (this.window[0]?.length ?? 0) >= WINDOW_BYTES) {
      const oldest = this.window.shift()!;
      this.windowBytes -= oldest.length;
      this.windowStart += oldest.length;
    }
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
