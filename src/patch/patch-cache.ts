import { dirname, join } from "node:path";
import { diskWatermarks } from "../cache/eviction.ts";
import { type Cache, type CacheOptions, openCache } from "../cache/open-cache.ts";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import { diskUsage } from "../store/disk-usage.ts";
import { patchDiskProblem } from "./disk.ts";

/**
 * The patch cache: patch objects and their index on the patch disk
 * (`<patchDisk.path>/cachegate/`), opened when Patch Mode is enabled after
 * the seed's checks pass. Eviction follows the disk's watermarks rather
 * than a byte limit, and a download that would not fit is passed through.
 */
export function createPatchCache(opts: Omit<CacheOptions, "eviction"> & { config: () => Config }) {
  let cache: Cache | undefined;

  async function open(path: string): Promise<void> {
    if (cache && cache.dir === join(path, "cachegate")) return;
    const dir = join(path, "cachegate");
    const watermarks = () => ({
      high: opts.config().patchDisk.highWatermark,
      low: opts.config().patchDisk.lowWatermark,
    });
    const next = await openCache(dir, { ...opts, eviction: diskWatermarks(dir, watermarks) });
    const previous = cache;
    cache = next;
    previous?.close();
    opts.log.info("patch cache open", { dir, cachedBytes: next.index.totalBytes() });
  }

  return {
    /** The pipeline for patch downloads, or undefined when they cannot be cached (they are then passed through). */
    pipeline: () => (opts.config().patchMode.enabled ? cache?.pipeline : undefined),
    cache: () => cache,

    /** At start: a persisted Patch Mode whose disk is gone leaves patches uncached, not the gateway down. */
    async start(config: Config): Promise<void> {
      if (!config.patchMode.enabled || !config.patchDisk.path) return;
      const problem = await patchDiskProblem(config.patchDisk.path, config.patchDisk.minFreeBytes);
      if (problem)
        return opts.log.error("Patch Mode is on but the patch disk is not usable; patches pass through uncached", {
          problem,
        });
      await open(config.patchDisk.path);
    },

    /** Config applier: enabling Patch Mode (or moving its disk) runs the seed's checks first. */
    async apply(next: Config, prev: Config): Promise<void> {
      const path = next.patchDisk.path;
      if (!next.patchMode.enabled || !path) return;
      if (prev.patchMode.enabled && prev.patchDisk.path !== path) {
        throw new GatewayError(
          409,
          "patch_disk_in_use",
          "patchDisk.path cannot change while Patch Mode is on (only one patch disk is supported); " +
            "disable Patch Mode, change the path, then enable it again",
        );
      }
      if (prev.patchMode.enabled && cache) return;
      const problem = await patchDiskProblem(path, next.patchDisk.minFreeBytes);
      if (problem) {
        throw new GatewayError(
          409,
          "patch_disk_unusable",
          `Patch Mode cannot be enabled: ${problem}; nothing was changed`,
          {
            details: [{ path: "patchMode.enabled", value: true, rule: "patch-disk", message: problem }],
          },
        );
      }
      await open(path);
    },

    /**
     * What GET /api/stats reports about the patch disk: the one the patch cache is open on (the
     * configured path may have moved while Patch Mode was off). A disk that has gone missing is
     * reported as such, not as a failed stats request.
     */
    usage() {
      const configured = opts.config().patchDisk.path;
      if (!cache) return { path: configured ?? null, open: false };
      const path = dirname(cache.dir);
      const held = { cachedBytes: cache.index.totalBytes(), downloadsInFlight: cache.pipeline.inFlight() };
      try {
        const d = diskUsage(path);
        return { path, open: true, totalBytes: d.totalBytes, freeBytes: d.freeBytes, ...held };
      } catch (err) {
        return {
          path,
          open: true,
          problem: `the patch disk cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
          ...held,
        };
      }
    },

    close: () => cache?.close(),
  };
}

export type PatchCache = ReturnType<typeof createPatchCache>;
