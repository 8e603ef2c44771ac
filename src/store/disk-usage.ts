import { statfsSync } from "node:fs";

export interface DiskUsage {
  path: string;
  totalBytes: number;
  freeBytes: number;
  /** Fraction of the disk in use, 0..1. */
  used: number;
}

/** Size and free space of the file system holding `path` (free = what an unprivileged writer may use). */
export function diskUsage(path: string): DiskUsage {
  const s = statfsSync(path);
  const totalBytes = s.blocks * s.bsize;
  const freeBytes = s.bavail * s.bsize;
  return { path, totalBytes, freeBytes, used: totalBytes === 0 ? 1 : 1 - freeBytes / totalBytes };
}

/** What GET /api/stats says of the cache's disk: its size and free space, or why they cannot be read. */
export function cacheDisk(path: string): { totalBytes: number; freeBytes: number } | { problem: string } {
  try {
    const { totalBytes, freeBytes } = diskUsage(path);
    return { totalBytes, freeBytes };
  } catch (err) {
    return {
      problem: `the cache disk cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    };
  }
}
