import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { BLOCK_BYTES, HeldBytes } from "../../src/cache/held-bytes.ts";

const KiB = 1024;

/** Everything held, read back through views, in order. */
const readBack = (held: HeldBytes) => {
  const out: Uint8Array[] = [];
  for (let at = held.start; at < held.end; ) {
    const view = held.view(at, held.end - at)!;
    out.push(view);
    at += view.length;
  }
  return Buffer.concat(out);
};

describe("bytes a download holds in memory", () => {
  test("small chunks gather into blocks and large ones stay as they came; the bytes read back in order", () => {
    const held = new HeldBytes(0, () => BLOCK_BYTES);
    const chunks = [1, 1000, 70 * KiB, 3, 300 * KiB, 5].map((n) => randomBytes(n));
    for (const c of chunks) held.add(c);
    expect(readBack(held).equals(Buffer.concat(chunks))).toBe(true);
  });

  test("a large chunk first fills the block still open: memory stays what is held, not twice it", () => {
    const held = new HeldBytes(0, () => BLOCK_BYTES);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < 32; i++) chunks.push(randomBytes(1), randomBytes(256 * KiB));
    for (const c of chunks) held.add(c);
    expect(readBack(held).equals(Buffer.concat(chunks))).toBe(true);
    // Before, each 1-byte chunk opened a 256 KiB block that the next chunk closed unused: about 2× held.
    expect(held.allocatedBytes).toBeLessThanOrEqual(held.end - held.start + BLOCK_BYTES);
  });
});
