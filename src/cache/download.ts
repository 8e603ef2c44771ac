import { isDiskError, type TempBlob } from "../store/blob-store.ts";
import { type BodySource, LaggedBehind } from "./body-source.ts";
import { BLOCK_BYTES, HeldBytes } from "./held-bytes.ts";
import type { Refetched } from "./refetch.ts";

/** A reader following a download (a BodyCursor): where it is, and why it was cut loose, if it was. */
export interface DownloadReader {
  pos: number;
  cut?: Error;
}

/** Written bytes kept in memory while a reader is still behind them; readers further back read the file. */
const HEAD_BYTES = 2 * 1024 * 1024;
/** Bytes received but not yet written that make the writer wait for the disk (and upstream for the writer). */
const UNWRITTEN_BYTES = 1024 * 1024;
/**
 * Readers waiting at the head are told of new bytes once this many have
 * arrived, or when upstream pauses (nothing more for WAKE_MS): upstream's
 * small chunks (16 KiB TLS records, say) then cost each agent one write per
 * batch, not one per chunk. A reader that is not waiting reads whatever has
 * arrived. A pause also writes out a block still being gathered, so a slow
 * upstream's bytes do not wait in memory for the block to fill.
 */
const WAKE_BYTES = 64 * 1024;
const WAKE_MS = 2;
/** The first block of a body, before its size (or its pace) says a larger one is worth it. */
const FIRST_BLOCK_BYTES = 16 * 1024;
/** Bytes a download keeps in memory once its disk failed, for the readers following it. */
const WINDOW_BYTES = 8 * 1024 * 1024;

/**
 * A body being downloaded into a temp file while any number of agents read
 * it. What arrives is held in memory, waiting readers are told of it (see
 * WAKE_BYTES), and the file is written behind them in order, a piece at a
 * time (hashed as written), so neither upstream nor the agents wait for the
 * disk (unless it falls UNWRITTEN_BYTES behind). Readers near the head
 * are handed views of what memory holds: no read, no copy, no buffer of
 * their own, so many agents on one download cost one copy of its bytes. A
 * reader further back (a late joiner) reads the file by position until it
 * catches up. A piece leaves memory only once it is written and no reader
 * within HEAD_BYTES of the head is still behind its end, so every byte
 * received is in memory or in the file. The rename temp → blob does not
 * disturb readers of the open handle.
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
  /** What memory holds of the body: the latest bytes, and older ones while a reader near the head needs them. */
  private readonly held: HeldBytes;
  /** Bytes readable from the temp file (all written, until the disk fails). */
  private fileBytes = 0;
  /** Where the bytes handed to the file writer end. */
  private queuedTo = 0;
  /** The file writes, one after another; never rejects (a failure is kept in `spilled` or `writeError`). */
  private writing = Promise.resolve();
  /** A write that failed for another reason than the disk: the download fails with it. */
  private writeError: Error | undefined;
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
  /** What readers waiting were last told had arrived; and the timer that will tell them of more. */
  private announced = 0;
  private wakeTimer: Timer | undefined;

  constructor(
    /** Where the body goes; whatever it already holds counts as received (it is normally empty). */
    readonly temp: TempBlob,
    /** From Content-Length; undefined for a chunked or close-delimited body. */
    readonly expectedSize: number | undefined,
  ) {
    // Blocks grow with the body (16 KiB, then as large as what came so far, up to BLOCK_BYTES): a small
    // chunked response does not hold a 256 KiB block for as long as its readers stay.
    const start = temp.size;
    const blockSize = (at: number) =>
      Math.min(BLOCK_BYTES, (expectedSize ?? Number.POSITIVE_INFINITY) - at, Math.max(FIRST_BLOCK_BYTES, at - start));
    this.held = new HeldBytes(temp.size, blockSize);
    this.announced = temp.size;
    this.fileBytes = temp.size;
    this.queuedTo = temp.size;
  }

  /** Bytes received so far (held in memory, written to the file, or both). */
  private get received(): number {
    return this.held.end;
  }

  /** Up to `length` bytes from `position` without a copy, if memory holds them. */
  view(position: number, length: number): Uint8Array | undefined {
    return this.held.view(position, length);
  }

  async read(buf: Buffer, length: number, position: number): Promise<number> {
    const held = this.view(position, length);
    if (held) {
      buf.set(held);
      return held.length;
    }
    if (position < this.fileBytes) {
      const want = Math.min(length, this.fileBytes - position);
      return (await this.temp.handle.read(buf, 0, want, position)).bytesRead;
    }
    if (position < this.held.start) throw new LaggedBehind(position, this.held.start);
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

  /**
   * A reader moved on: a writer held back by the slowest reader may go on.
   * Once the body is complete nothing else drops what readers have passed.
   */
  progressed(): void {
    const writer = this.writerWaiting;
    this.writerWaiting = undefined;
    writer?.();
    if (this.settled) this.trim();
  }

  /** Takes the next bytes of the body, which must not change afterwards; resolves when more may come. */
  async append(chunk: Uint8Array): Promise<void> {
    if (this.spilled && !this.refetch) await this.slowestWithin(WINDOW_BYTES - chunk.length);
    this.held.add(chunk);
    if (!this.spilled && !this.held.filling) this.writeBehind(this.received);
    this.trim();
    this.announce();
    // The disk's pace, when it is slower than upstream: the writer waits rather than memory growing.
    if (!this.spilled && this.queuedTo - this.fileBytes > UNWRITTEN_BYTES) await this.writing;
    if (this.writeError) throw this.writeError;
  }

  /** Writes what only memory holds; resolves once the file has every byte received (unless the disk failed). */
  async flush(): Promise<void> {
    if (!this.spilled) this.writeBehind(this.received);
    await this.writing;
    if (this.writeError) throw this.writeError;
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
    if (--this.refs > 0) return;
    clearTimeout(this.wakeTimer);
    this.held.clear();
    void this.writing.then(() => this.temp.handle.close()).catch(() => {});
  }

  /** Hands the file writer the bytes up to `end` it does not have yet, one piece per write. */
  private writeBehind(end: number): void {
    while (this.queuedTo < end) {
      const bytes = this.view(this.queuedTo, end - this.queuedTo)!;
      this.queuedTo += bytes.length;
      this.writing = this.writing.then(() => this.writeOut(bytes));
    }
  }

  private async writeOut(bytes: Uint8Array): Promise<void> {
    if (this.spilled || this.writeError || this.error) return; // nothing more is stored
    try {
      await this.temp.write(bytes);
      this.fileBytes = this.temp.size; // a partial write past it (a failing disk) is never read
      this.trim();
    } catch (err) {
      if (isDiskError(err)) this.spill(err as Error);
      else this.writeError = err as Error;
    }
  }

  /**
   * Drops the oldest pieces memory no longer needs to hold. Normally a
   * piece goes once it is written and no reader within HEAD_BYTES of the
   * head is behind its end; once spilled, memory is all there is, and
   * pieces go only as the window moves on.
   */
  private trim(): void {
    this.held.dropWhile((end) =>
      this.spilled
        ? this.received - end >= WINDOW_BYTES
        : end <= this.fileBytes && (this.received - end >= HEAD_BYTES || !this.someReaderBefore(end)),
    );
  }

  private someReaderBefore(position: number): boolean {
    for (const reader of this.readers) if (reader.pos < position) return true;
    return false;
  }

  private spill(error: Error): void {
    this.spilled = error;
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

  /** Wakes the waiting readers now if enough arrived since they were last told, else when upstream pauses. */
  private announce(): void {
    if (this.received - this.announced >= WAKE_BYTES) this.wake();
    else this.wakeTimer ??= setTimeout(() => this.paused(), WAKE_MS);
  }

  private paused(): void {
    if (!this.spilled && !this.settled) this.writeBehind(this.received);
    this.wake();
  }

  private wake() {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.announced = this.received;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
