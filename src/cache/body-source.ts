import type { FileHandle } from "node:fs/promises";
import type { TempBlob } from "../store/blob-store.ts";

/**
 * Where a response body is read from: a complete blob, or a download that is
 * still being written (or a small blob kept in memory). Readers use positional reads on one shared handle, so
 * any number of agents can read one object while it grows, and a rename of
 * the file underneath (temp → blob) does not disturb them.
 */
export interface BodySource {
  /** Positional read of up to `length` bytes into `buf`; resolves how many were read. */
  read(buf: Buffer, length: number, position: number): Promise<number>;
  /** The whole body, when it is already in memory (a small hot blob): no copy needed. */
  inMemory?(): Uint8Array;
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
  read = async (buf: Buffer, length: number, position: number) =>
    (await this.handle.read(buf, 0, length, position)).bytesRead;
  retain() {
    this.refs++;
    return this;
  }
  release() {
    if (--this.refs === 0) void this.handle.close().finally(this.onClose);
  }
}

/** A small finished blob held in memory: a hit on it touches no file at all. */
export class MemorySource implements BodySource {
  readonly settled = true;
  readonly error = undefined;
  constructor(private readonly bytes: Uint8Array) {}
  inMemory = () => this.bytes;
  available = () => this.bytes.length;
  size = () => this.bytes.length;
  changed = () => Promise.resolve();
  read = async (buf: Buffer, length: number, position: number) => {
    const n = Math.min(length, this.bytes.length - position);
    buf.set(this.bytes.subarray(position, position + n));
    return n;
  };
  retain = () => this;
  release() {}
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

  read = async (buf: Buffer, length: number, position: number) =>
    (await this.temp.handle.read(buf, 0, length, position)).bytesRead;
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
    if (--this.refs === 0) void this.temp.handle.close().catch(() => {});
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

const CHUNK = 256 * 1024;

/**
 * Reads the next bytes of [pos, end) into `buf`, waiting while a download
 * has not written them yet. Resolves 0 when the body is complete; throws if
 * the source fails or ends before `end`, so an agent sees a broken
 * response, never a short one passed off as complete.
 */
export async function readNext(source: BodySource, pos: number, end: number | undefined, buf: Buffer): Promise<number> {
  for (;;) {
    const limit = end ?? source.size();
    if (limit !== undefined && pos >= limit) return 0;
    const available = source.available();
    if (pos < available) {
      const want = Math.min(buf.length, available - pos, (limit ?? Infinity) - pos);
      const bytesRead = await source.read(buf, want, pos);
      if (bytesRead === 0) throw new Error("cached body is shorter than its index entry says");
      return bytesRead;
    }
    if (source.error) throw source.error;
    if (source.settled) {
      if (end === undefined) return 0;
      throw new Error(`body ended at ${available} bytes, before byte ${end}`);
    }
    await source.changed();
  }
}

/** Bytes [start, end) of a source, owned by whoever reads them: exactly one release. */
export class FileBody {
  private released = false;
  constructor(
    readonly source: BodySource,
    readonly start: number,
    readonly end: number | undefined,
  ) {}
  release(): void {
    if (!this.released) {
      this.released = true;
      this.source.release();
    }
  }
}

const fileBodies = new WeakMap<ReadableStream<Uint8Array>, FileBody>();

/**
 * Streams bytes [start, end) of a source. Pull-based, so a slow agent holds
 * at most one chunk in memory, and many agents on one object cost no more.
 * A writer that knows files (the proxy's node:http adapter) can claim the
 * body instead with claimFileBody and copy it through one reused buffer.
 * Takes ownership of one reference to `source`.
 */
export function streamBody(source: BodySource, start: number, end: number | undefined): ReadableStream<Uint8Array> {
  const body = new FileBody(source, start, end);
  let pos = start;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const buf = Buffer.allocUnsafe(CHUNK);
          const n = await readNext(source, pos, end, buf);
          if (n === 0) {
            body.release();
            return controller.close();
          }
          pos += n;
          controller.enqueue(buf.subarray(0, n));
        } catch (err) {
          body.release();
          controller.error(err);
        }
      },
      cancel: () => body.release(),
    },
    { highWaterMark: 0 },
  );
  fileBodies.set(stream, body);
  return stream;
}

/** Takes over a body made by streamBody that nobody has started reading; the caller must release it. */
export function claimFileBody(stream: ReadableStream<Uint8Array>): FileBody | undefined {
  const body = fileBodies.get(stream);
  if (!body || stream.locked) return undefined;
  fileBodies.delete(stream);
  void stream.getReader(); // lock it: it must not be read as well
  return body;
}

export { CHUNK as FILE_CHUNK };
