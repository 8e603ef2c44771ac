/** Bytes [start, end) of a body: the start of `bytes` (a block being filled has room after them). */
interface Piece {
  bytes: Uint8Array;
  start: number;
  end: number;
}

/**
 * Chunks under this size are copied together into blocks of BLOCK_BYTES, so
 * that neither the file nor the agents' sockets get a stream of tiny writes.
 */
const OWN_PIECE_BYTES = 64 * 1024;
export const BLOCK_BYTES = 256 * 1024;

/**
 * The part of a body a download holds in memory, bytes [start, end), in
 * order. Upstream's chunks are kept as they came (a socket's chunk is never
 * reused, and nothing here changes one), small ones gathered into blocks.
 * Bytes once added never change, so views of them may be handed to any
 * number of readers and written to sockets as they are.
 */
export class HeldBytes {
  private pieces: Piece[] = [];
  /** The last piece, while small chunks are still gathered into it. */
  private gathering: Piece | undefined;
  end: number;

  constructor(
    /** Where the held bytes start; moves on as the oldest are dropped. */
    public start: number,
    /** How large a new block for the bytes from `at` is (a body of known size needs no more than its rest). */
    private readonly blockSize: (at: number) => number,
  ) {
    this.end = start;
  }

  /** True while the last bytes are in a block not yet full: more small chunks may join them. */
  get filling(): boolean {
    return this.gathering !== undefined;
  }

  /** What the held pieces cost in memory: their allocations, used or not (the bounds count held bytes). */
  get allocatedBytes(): number {
    let total = 0;
    for (const piece of this.pieces) total += piece.bytes.byteLength;
    return total;
  }

  /** Adds `chunk` at the end: as a piece of its own, or gathered with other small chunks into a block. */
  add(chunk: Uint8Array): void {
    for (let at = 0; at < chunk.length; ) {
      const rest = chunk.length - at;
      let block = this.gathering;
      const room = block ? block.bytes.length - (block.end - block.start) : 0;
      if (rest > room && rest >= OWN_PIECE_BYTES) {
        // The open block is filled first: closed early, its unused room would be held for nothing.
        if (block && room > 0) {
          block.bytes.set(chunk.subarray(at, at + room), block.end - block.start);
          block.end += room;
          this.end += room;
          at += room;
        }
        this.gathering = undefined;
        const own = chunk.length - at;
        this.pieces.push({ bytes: chunk.subarray(at), start: this.end, end: this.end + own });
        this.end += own;
        return;
      }
      if (block === undefined || room === 0) {
        // Not from Buffer's shared pool: a block is handed out as views, and must hold nothing else.
        block = {
          bytes: Buffer.allocUnsafeSlow(Math.max(1, this.blockSize(this.end))),
          start: this.end,
          end: this.end,
        };
        this.gathering = block;
        this.pieces.push(block);
      }
      const n = Math.min(rest, block.bytes.length - (block.end - block.start));
      block.bytes.set(chunk.subarray(at, at + n), block.end - block.start);
      block.end += n;
      this.end += n;
      at += n;
      if (block.end - block.start === block.bytes.length) this.gathering = undefined;
    }
  }

  /** Up to `length` bytes from `position`, as a view of the piece holding them; undefined if not held. */
  view(position: number, length: number): Uint8Array | undefined {
    if (position < this.start || position >= this.end) return undefined;
    const piece = this.pieceAt(position);
    return piece.bytes.subarray(position - piece.start, Math.min(piece.end, position + length) - piece.start);
  }

  /** Drops the oldest pieces (never one still being filled) for as long as `drop(itsEnd)` says so. */
  dropWhile(drop: (end: number) => boolean): void {
    for (let first = this.pieces[0]; first && first !== this.gathering && drop(first.end); first = this.pieces[0]) {
      this.pieces.shift();
      this.start = first.end;
    }
  }

  clear(): void {
    this.pieces = [];
    this.gathering = undefined;
    this.start = this.end;
  }

  /** The piece holding `position`, which is held. */
  private pieceAt(position: number): Piece {
    let low = 0;
    let high = this.pieces.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.pieces[mid]!.start <= position) low = mid;
      else high = mid - 1;
    }
    return this.pieces[low]!;
  }
}
