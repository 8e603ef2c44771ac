import type { FileHandle } from "node:fs/promises";
import type { Refetched } from "./refetch.ts";

/**
 * Where a response body is read from: a complete blob, a small blob kept in
 * memory, or a download that is still being written (download.ts). Readers
 * use positional reads, so any number of agents can read one object at once.
 */
export interface BodySource {
  /** Positional read of up to `length` bytes into `buf`; resolves how many were read. */
  read(buf: Buffer, length: number, position: number): Promise<number>;
  /** The whole body, when it is already in memory (a small hot blob): no copy needed. */
  inMemory?(): Uint8Array;
  /** Up to `length` bytes from `position` without a copy, if memory holds them (a download's recent bytes). */
  view?(position: number, length: number): Uint8Array | undefined;
  /** Bytes that can be read now. */
  available(): number;
  /** The final size, once known (Content-Length, or the download completed). */
  size(): number | undefined;
  /** Resolves when more bytes arrive, or the source completes or fails. */
  changed(): Promise<void>;
  /** For a reader that fell behind what the source still holds: bytes [from, to) from upstream. */
  refetch?: (from: number, to: number | undefined) => Promise<Refetched>;
  /** A source that grows (a download) tracks its readers' positions, and may cut one loose; see download.ts. */
  attach?(reader: { pos: number; cut?: Error }): void;
  detach?(reader: { pos: number; cut?: Error }): void;
  progressed?(): void;
  readonly settled: boolean;
  readonly error: Error | undefined;
  retain(): this;
  release(): void;
}

/** A read at a position the source no longer holds (a spilled download's memory window moved on). */
export class LaggedBehind extends Error {
  override name = "LaggedBehind";
  constructor(position: number, heldFrom: number) {
    super(`byte ${position} is no longer held (the download holds bytes from ${heldFrom})`);
  }
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
    // A close that fails (a dying disk) must not become an unhandled rejection: the pin goes either way.
    if (--this.refs === 0)
      void this.handle
        .close()
        .catch(() => {})
        .then(this.onClose);
  }
}

/** A finished blob held in memory: a hit on it touches no file at all. */
export class MemorySource implements BodySource {
  private refs = 1;
  readonly settled = true;
  readonly error = undefined;
  constructor(
    private readonly bytes: Uint8Array,
    /** Called once when the last reference is released. */
    private readonly onClose?: () => void,
  ) {}
  inMemory = () => this.bytes;
  available = () => this.bytes.length;
  size = () => this.bytes.length;
  changed = () => Promise.resolve();
  read = async (buf: Buffer, length: number, position: number) => {
    const n = Math.min(length, this.bytes.length - position);
    buf.set(this.bytes.subarray(position, position + n));
    return n;
  };
  retain() {
    this.refs++;
    return this;
  }
  release() {
    if (--this.refs === 0) this.onClose?.();
  }
}

const CHUNK = 256 * 1024;

/**
 * The next bytes of [pos, end), at most `max`: a view of bytes the source
 * holds in memory, else read into `scratch()`; waits while a download has
 * not received them yet. Empty when the body is complete; throws if the
 * source fails or ends before `end`, so an agent sees a broken response,
 * never a short one passed off as complete.
 */
async function readNext(
  source: BodySource,
  pos: number,
  end: number | undefined,
  max: number,
  scratch: () => Buffer,
): Promise<Uint8Array> {
  for (;;) {
    const limit = end ?? source.size();
    if (limit !== undefined && pos >= limit) return EMPTY;
    const available = source.available();
    if (pos < available) {
      const want = Math.min(max, available - pos, (limit ?? Infinity) - pos);
      const held = source.view?.(pos, want);
      if (held) return held;
      const buf = scratch();
      const bytesRead = await source.read(buf, Math.min(want, buf.length), pos);
      if (bytesRead === 0) throw new Error("cached body is shorter than its index entry says");
      return buf.subarray(0, bytesRead);
    }
    if (source.error) throw source.error;
    if (source.settled) {
      if (end === undefined) return EMPTY;
      throw new Error(`body ended at ${available} bytes, before byte ${end}`);
    }
    await source.changed();
  }
}

const EMPTY = new Uint8Array(0);

/**
 * One reader's way through bytes [start, end) of a source, owned by whoever
 * reads it: exactly one release. A reader that falls behind what a spilled
 * download still holds continues from upstream with a Range request of its
 * own; its bytes then come from there, checked to end where they should.
 */
export class BodyCursor {
  private released = false;
  /** Set by a download that could not wait for this reader any longer. */
  cut: Error | undefined;
  private upstream: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** Where the bytes from upstream must end (exclusive). */
  private upstreamEnd = 0;
  private pending: Uint8Array | undefined;

  constructor(
    readonly source: BodySource,
    public pos: number,
    readonly end: number | undefined,
  ) {
    source.attach?.(this);
  }

  /** Reads the next bytes into `buf`; 0 at the end of the range. */
  async read(buf: Buffer): Promise<number> {
    const bytes = await this.next(buf.length, () => buf);
    const inBuf = bytes.buffer === buf.buffer && bytes.byteOffset === buf.byteOffset;
    if (!inBuf) buf.set(bytes);
    return bytes.length;
  }

  /**
   * The next bytes, at most `max`: a view of bytes the source holds in
   * memory (never changed afterwards: it may be written as is), else bytes
   * read into `scratch()`. Empty at the end of the range.
   */
  async next(max: number, scratch: () => Buffer): Promise<Uint8Array> {
    if (this.upstream) return this.nextUpstream(max);
    if (this.cut) throw this.cut;
    let bytes: Uint8Array;
    try {
      bytes = await readNext(this.source, this.pos, this.end, max, scratch);
    } catch (err) {
      if (!(err instanceof LaggedBehind) || !this.source.refetch) throw err;
      const rest = await this.source.refetch(this.pos, this.end ?? this.source.size());
      this.upstream = rest.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      this.upstreamEnd = rest.end;
      return this.nextUpstream(max);
    }
    this.pos += bytes.length;
    this.source.progressed?.();
    return bytes;
  }

  /** Upstream's chunks are not reused once read: they are handed on as views. */
  private async nextUpstream(max: number): Promise<Uint8Array> {
    while (!this.pending || this.pending.length === 0) {
      const { done, value } = await this.upstream!.read();
      if (done) {
        if (this.pos !== this.upstreamEnd) throw new Error(`upstream ended the remainder at byte ${this.pos}`);
        return EMPTY;
      }
      if (this.pos + value.length > this.upstreamEnd) throw new Error("upstream sent more of the remainder than asked");
      this.pending = value;
    }
    const bytes = this.pending.subarray(0, max);
    this.pending = this.pending.subarray(bytes.length);
    this.pos += bytes.length;
    return bytes;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    void this.upstream?.cancel().catch(() => {});
    this.source.detach?.(this);
    this.source.release();
  }
}

const cursors = new WeakMap<ReadableStream<Uint8Array>, BodyCursor>();

/**
 * Streams bytes [start, end) of a source. Pull-based, so a slow agent holds
 * at most one chunk in memory, and many agents on one object cost no more.
 * A writer that knows files (the proxy's node:http adapter) can claim the
 * cursor instead with claimCursor and copy it through one reused buffer.
 * Takes ownership of one reference to `source`.
 */
export function streamBody(source: BodySource, start: number, end: number | undefined): ReadableStream<Uint8Array> {
  const cursor = new BodyCursor(source, start, end);
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const buf = Buffer.allocUnsafe(CHUNK);
          const n = await cursor.read(buf);
          if (n === 0) {
            cursor.release();
            return controller.close();
          }
          controller.enqueue(buf.subarray(0, n));
        } catch (err) {
          cursor.release();
          controller.error(err);
        }
      },
      cancel: () => cursor.release(),
    },
    { highWaterMark: 0 },
  );
  cursors.set(stream, cursor);
  return stream;
}

/** Takes over a body made by streamBody that nobody has started reading; the caller must release it. */
export function claimCursor(stream: ReadableStream<Uint8Array>): BodyCursor | undefined {
  const cursor = cursors.get(stream);
  if (!cursor || stream.locked) return undefined;
  cursors.delete(stream);
  void stream.getReader(); // lock it: it must not be read as well
  return cursor;
}

export { CHUNK as FILE_CHUNK };
