import { diskUsage } from "../store/disk-usage.ts";
import type { CacheIndex } from "./cache-index.ts";

/**
 * Eviction, apart from the index and the blob store (as Varnish keeps
 * storage_lru.c apart from its storage backends): a policy says when a cache
 * is too full and how far to shrink it; `evict` removes least recently used
 * entries until it gets there, never a blob an agent of this process is
 * reading (a reader in another worker holds the file open: unlinking it
 * leaves that reader its bytes, POSIX unlink semantics).
 */
export interface EvictionPolicy {
  /** The bytes the cache should shrink to now, or undefined while it is within its limits. */
  target(heldBytes: number): number | undefined;
  /** False when the disk has no room for `bytes` more: a body that does not fit is passed through uncached. */
  roomFor(bytes: number): boolean;
  /** The bytes the cache would have to shrink to for `bytes` more to fit, if evicting can help at all. */
  roomTarget?(heldBytes: number, bytes: number): number | undefined;
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

/**
 * Room a body must leave free on a cache's disk: what keeps the disk under
 * its high watermark, and at least a margin for the index database and other
 * writers (64 MiB, or 5% of a small disk).
 */
const reserveOf = (disk: { totalBytes: number }, high: number) =>
  Math.max(Math.min(64 * 1024 * 1024, Math.floor(disk.totalBytes * 0.05)), Math.ceil((1 - high) * disk.totalBytes));

/**
 * A disk's watermarks (the patch disk's, and the data disk's so that the
 * size limit never exceeds what the disk can hold): once the disk is fuller
 * than the high watermark, entries go until it would be below the low one
 * (the bytes to free are the disk's, the entries that go are the cache's),
 * and a body is stored only if it fits with a margin to spare.
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
    // A body fits if, once written, the disk is still under the high watermark (else it would be evicted at once).
    roomFor(bytes) {
      const disk = diskUsage(dir);
      return disk.freeBytes > bytes + reserveOf(disk, watermarks().high);
    },
    // Making room evicts down to the low watermark, as eviction after a store does (so that not every
    // new body evicts again); if that much cannot go, down to what keeps the body under the high one.
    roomTarget(held, bytes) {
      const disk = diskUsage(dir);
      const { high, low } = watermarks();
      for (const level of [low, high]) {
        const missing = bytes + reserveOf(disk, level) - disk.freeBytes;
        if (missing <= 0) return undefined;
        if (missing <= held) return held - missing;
      }
      return undefined;
    },
  };
}

/** Several limits at once: the strictest target wins, and a body must fit all of them. */
export function allOf(...policies: EvictionPolicy[]): EvictionPolicy {
  const defined = (values: (number | undefined)[]) => values.filter((v) => v !== undefined);
  return {
    target(held) {
      const targets = defined(policies.map((p) => p.target(held)));
      return targets.length === 0 ? undefined : Math.min(...targets);
    },
    roomFor: (bytes) => policies.every((p) => p.roomFor(bytes)),
    roomTarget(held, bytes) {
      const targets = defined(policies.map((p) => p.roomTarget?.(held, bytes)));
      return targets.length === 0 ? undefined : Math.min(...targets);
    },
  };
}

const BATCH = 64;

/** Evicts least recently used entries until the index holds no more than the policy's target; returns how many went. */
export async function evict(index: CacheIndex, policy: EvictionPolicy): Promise<number> {
  const target = policy.target(index.totalBytes());
  return target === undefined ? 0 : evictTo(index, target);
}

/** Evicts so that `bytes` more fit, if the policy says evicting can make that room; true if they fit now. */
export async function makeRoom(index: CacheIndex, policy: EvictionPolicy, bytes: number): Promise<boolean> {
  const target = policy.roomTarget?.(index.totalBytes(), bytes);
  if (target === undefined) return false;
  await evictTo(index, target);
  return policy.roomFor(bytes);
}

async function evictTo(index: CacheIndex, target: number): Promise<number> {
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
