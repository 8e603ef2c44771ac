import { stat } from "node:fs/promises";
import { diskUsage } from "../store/disk-usage.ts";
import { ownershipHint, writeProbe } from "../store/writable-dir.ts";

const GB = 1_000_000_000;
const gb = (bytes: number) => `${(bytes / GB).toFixed(1)} GB`;

/**
 * The checks the seed makes before Patch Mode may be enabled: the patch disk
 * is there, is a directory, can be written, and has the minimum free space.
 * Returns what failed, in words an operator can act on, or null.
 */
export async function patchDiskProblem(path: string, minFreeBytes: number): Promise<string | null> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => err);
  if (info instanceof Error) {
    return info.code === "ENOENT"
      ? `the patch disk path ${path} does not exist; attach the extra disk, mount it there, then enable Patch Mode`
      : `the patch disk path ${path} cannot be read (${info.code ?? info.message})`;
  }
  if (!info.isDirectory()) return `the patch disk path ${path} is not a directory; give the disk's mount point`;
  const err = await writeProbe(path);
  if (err) {
    const why = err.code ?? err.message;
    const fix = why === "EROFS" ? "mount it read-write." : ownershipHint(path);
    return `the patch disk at ${path} is not writable by the gateway (${why}); ${fix}`;
  }
  const { freeBytes } = diskUsage(path);
  if (freeBytes < minFreeBytes) {
    return (
      `the patch disk at ${path} has ${gb(freeBytes)} free; Patch Mode needs at least ${gb(minFreeBytes)} ` +
      "(patchDisk.minFreeBytes, CACHEGATE_PATCH_DISK_MIN_FREE); use a larger disk or free space"
    );
  }
  return null;
}
