import { randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";

const KiB = 1024;
const MiB = 1024 * KiB;

/** The generated files: the origin serves them from memory, nginx (the ceiling) from disk. */
export const FILES = {
  manifest: { path: "/manifest.json", size: 2 * MiB },
  obj10k: { path: "/obj10k.bin", size: 10 * KiB },
  obj2m: { path: "/obj2m.bin", size: 2 * MiB },
  big: { path: "/big.bin", size: 256 * MiB },
} as const;

export type FileName = keyof typeof FILES;

/** The big file comes from the origin at this rate per connection, so its download takes 8 s (issue 11's setting). */
export const BIG_RATE_BYTES_PER_S = 32 * MiB;

/**
 * Writes every file into `dir`. Contents are random (so nothing compresses or
 * deduplicates by accident); the big file repeats a 4 MiB random block with
 * each block's index stamped in, which is as good and much faster to make.
 */
export async function generateFiles(dir: string): Promise<void> {
  for (const { path, size } of Object.values(FILES)) {
    const handle = await open(join(dir, path), "w");
    try {
      const block = randomBytes(Math.min(size, 4 * MiB));
      for (let offset = 0, i = 0; offset < size; offset += block.length, i++) {
        if (size > block.length) block.writeUInt32BE(i, 0);
        await handle.write(block, 0, Math.min(block.length, size - offset), offset);
      }
    } finally {
      await handle.close();
    }
  }
}
