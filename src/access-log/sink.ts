import { closeSync, openSync, write } from "node:fs";

/**
 * Where access log lines go: a file opened with O_APPEND, or stdout. Each
 * write(2) carries whole lines, so lines from several processes (workers
 * writing the same file or the same stdout) never interleave: with
 * O_APPEND the kernel places each write at the end of the file in one
 * piece (POSIX write(2), "file offset shall be set to the end of the file
 * prior to each write"); on a pipe, writes of at most PIPE_BUF bytes are
 * atomic (POSIX write(2), 4096 on Linux), so stdout gets pieces of at most
 * that, cut at line ends.
 *
 * Writes are asynchronous (node:fs `write`, run on a thread of Bun's pool):
 * a stdout whose reader stopped reading (a stalled log shipper, a paused
 * pager) blocks a write(2) on a full pipe until the reader reads again, and
 * a slow disk blocks it for as long as the disk takes; on the event loop
 * either would freeze every agent and the admin API with it.
 */
export interface Sink {
  /** The most a single write may carry. */
  readonly maxWrite: number;
  /**
   * Writes a piece of whole lines in the background, then calls `done` with
   * the bytes written (fewer on a short write) or the error. One at a time:
   * the caller waits for `done` before the next write, `reopen` or `close`.
   */
  write(piece: Uint8Array, done: WriteDone): void;
  /** Opens the path again (after logrotate moved the file); stdout has nothing to reopen. */
  reopen(): void;
  close(): void;
}

/** Linux's PIPE_BUF: the largest write to a pipe that is never split or mixed with another's. */
export const PIPE_BUF = 4096;
/** A file takes larger writes: O_APPEND keeps them whole, and fewer system calls cost less. */
const FILE_WRITE = 64 * 1024;

export type WriteDone = (error: NodeJS.ErrnoException | null, written: number) => void;

/** One write(2) of `piece` on `fd` off the event loop; a throw (a bad descriptor) is reported as a failed write. */
function writeTo(fd: number, piece: Uint8Array, done: WriteDone): void {
  try {
    write(fd, piece, (error, written) => done(error, written ?? 0));
  } catch (error) {
    queueMicrotask(() => done(error as NodeJS.ErrnoException, 0));
  }
}

export function stdoutSink(): Sink {
  return {
    maxWrite: PIPE_BUF,
    write: (piece, done) => writeTo(1, piece, done),
    reopen() {},
    close() {},
  };
}

/** Opens `path` for appending (created 0640: it names agents and what they fetched); throws if it cannot. */
export function fileSink(path: string): Sink {
  const open = () => openSync(path, "a", 0o640);
  let fd = open();
  return {
    maxWrite: FILE_WRITE,
    write: (piece, done) => writeTo(fd, piece, done),
    reopen() {
      // The new file first: if it cannot be opened, lines keep going to the old one rather than nowhere.
      const next = open();
      closeSync(fd);
      fd = next;
    },
    close() {
      closeSync(fd);
    },
  };
}

/** The longest prefix of `bytes` that ends a line and fits in `max`; a single longer line goes alone. */
export function nextPiece(bytes: Uint8Array, max: number): Uint8Array {
  if (bytes.length <= max) return bytes;
  const cut = bytes.lastIndexOf(0x0a, max - 1);
  if (cut >= 0) return bytes.subarray(0, cut + 1);
  const end = bytes.indexOf(0x0a, max);
  return end < 0 ? bytes : bytes.subarray(0, end + 1);
}
