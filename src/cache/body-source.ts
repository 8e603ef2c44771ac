import type { FileHandle } from "node:fs/promises";
import type { TempBlob } from "../store/blob-store.ts";

/**
 * Where a response body is read from: a complete blob, or a download that is
 * still being written. Readers use positional reads on one shared handle, so
 * any number of agents can read one object while it grows, and a rename of
 * the file underneath (temp → blob) does not disturb them.
 */
export interface BodySource {
  readonly handle: FileHandle;
  /** Bytes that can be read now. */
  available(): number;
  /** The final size, once known (Content-Length, or the download completed). */
  size(): number | undefined;
  /** Resolves when more bytes arrive, or the source completes or fails. */
  changed(): Promise<void>;
  readonly settled: boolean;
  readonly error: Error | undefined;
  retain(): this;
  release(): void;
}

/** A finished blob: everything is available at once. */
export class BlobSource implements BodySource {
  private refs = 1;
  readonly settled = true;
  readonly error = undefined;
  constructor(
    readonly handle: FileHandle,
    private readonly bytes: number,
    private readonly onClose: () => void,
  ) {}
  available = () => this.bytes;
  size = () => this.bytes;
  changed = () => Promise.resolve();
  retain() {
    this.refs++;
    return this;
  }
  release() {
    if (--this.refs === 0) void this.handle.close().finally(this.onClose);
  }
}

/** A body being downloaded into a temp file; readers follow the writer. */
export class Download implements BodySource {
  private refs = 1; // the writer's own
  private waiters: (() => void)[] = [];
  settled = false;
  error: Error | undefined;

  constructor(
    readonly temp: TempBlob,
    /** From Content-Length; undefined for a chunked or close-delimited body. */
    readonly expectedSize: number | undefined,
  ) {}

  get handle() {
    return this.temp.handle;
  }
  available = () => this.temp.size;
  size = () => (this.settled && !this.error ? this.temp.size : this.expectedSize);

  changed(): Promise<void> {
    if (this.settled) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async append(chunk: Uint8Array): Promise<void> {
    await this.temp.write(chunk);
    this.wake();
  }

  /** The whole body is on disk and verified: readers may finish. The writer keeps its reference until committed. */
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
    if (--this.refs === 0) void this.handle.close().catch(() => {});
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

const CHUNK = 256 * 1024;

/**
 * Streams bytes [start, end) of a source. Pull-based, so a slow agent holds
 * at most one chunk in memory, and many agents on one object cost no more.
 * A source that fails, or ends before `end`, errors the stream: the agent
 * sees a broken response, never a short one passed off as complete.
 * Takes ownership of one reference to `source`.
 */
export function streamBody(source: BodySource, start: number, end: number | undefined): ReadableStream<Uint8Array> {
  let pos = start;
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      source.release();
    }
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const limit = end ?? source.size();
            if (limit !== undefined && pos >= limit) {
              release();
              return controller.close();
            }
            const available = source.available();
            if (pos < available) {
              const want = Math.min(CHUNK, available - pos, (limit ?? Infinity) - pos);
              const buf = Buffer.allocUnsafe(want);
              const { bytesRead } = await source.handle.read(buf, 0, want, pos);
              if (bytesRead === 0) throw new Error("cached body is shorter than its index entry says");
              pos += bytesRead;
              return controller.enqueue(bytesRead === want ? buf : buf.subarray(0, bytesRead));
            }
            if (source.error) throw source.error;
            if (source.settled) {
              if (end === undefined) {
                release();
                return controller.close();
              }
              throw new Error(`body ended at ${available} bytes, before byte ${end}`);
            }
            await source.changed();
          }
        } catch (err) {
          release();
          controller.error(err);
        }
      },
      cancel: release,
    },
    { highWaterMark: 0 },
  );
}
