import { diskUsage } from "../store/disk-usage.ts";
import type { CacheIndex } from "./cache-index.ts";

/**
 * Eviction, apart from the index and the blob store (as Varnish keeps
 * storage_lru.c apart from its storage backends): a policy says when a cache
 * is too full and how far to shrink it; `evict` removes least recently used
 * entries until it gets there, never a blob an agent is reading.
 */
export interface EvictionPolicy {
  /** The bytes the cache should shrink to now, or undefined while it is within its limits. */
  target(heldBytes: number): number | undefined;
  /** False when the disk has no room for a body of this size (unknown: undefined): it is passed through uncached. */
  roomFor(bytes: number | undefined): boolean;
}

/** Once over the limit the cache shrinks to this fraction of it, so a busy cache does not evict on every insert. */
const SHRINK_TO = 0.9;

/** The data dir's cache: at most `maxBytes` (cache.maxSizeBytes) of blobs. */
export function sizeLimit(maxBytes: () => number): EvictionPolicy {
  return {
    target(held) {
      const max = maxBytes();
      return held > max ? Math.floor(max * SHRINK_TO) : undefined;
    },
    roomFor: () => true,
  };
}

/** Room kept free on the patch disk for the index and other writers. */
const DISK_MARGIN = 64 * 1024 * 1024;

/**
 * The patch disk: no byte limit, but once the disk is fuller than the high
 * watermark, entries go until it would be below the low one (the bytes to
 * free are the disk's, the entries that go are the cache's).
 */
export function diskWatermarks(dir: string, watermarks: () => { high: number; low: number }): EvictionPolicy {
  return {
    target(held) {
      const disk = diskUsage(dir);
      const { high, low } = watermarks();
      if (disk.used <= high) return undefined;
      const excess = (disk.used - low) * disk.totalBytes;
      return Math.max(0, held - excess);
    },
    roomFor: (bytes) => diskUsage(dir).freeBytes > (bytes ?? 0) + DISK_MARGIN,
  };
}

const BATCH = 64;

/** Evicts least recently used entries until the index holds no more than the policy's target; returns how many went. */
export async function evict(index: CacheIndex, policy: EvictionPolicy): Promise<number> {
  const target = policy.target(index.totalBytes());
  if (target === undefined) return 0;
  index.flush(); // last-access times batched in memory decide the order too
  let evicted = 0;
  let skipped = 0;
  while (index.totalBytes() > target) {
    const batch = index.leastRecentlyUsed(BATCH, skipped);
    if (batch.length === 0) break;
    // One entry at a time: only as many go as it takes to reach the target.
    for (const entry of batch) {
      if (index.totalBytes() <= target) break;
      if (index.isPinned(entry.sha256)) {
        skipped++; // being read: it stays, and the next batch starts after it
        continue;
      }
      await index.remove(entry);
      evicted++;
    }
  }
  return evicted;
}
