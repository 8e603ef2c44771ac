import { randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { LRUCache } from "lru-cache";

/**
 * Bodies on disk, content-addressed: `blobs/ab/ab12…` named by the sha256 of
 * the bytes. A body is written to `tmp/` while it is hashed, flushed, then
 * renamed into place, so a file under `blobs/` is always complete.
 */
export interface BlobStore {
  readonly dir: string;
  createTemp(): Promise<TempBlob>;
  /** Flushes and renames the temp file into place; returns its sha256. The handle stays open for readers. */
  commit(temp: TempBlob): Promise<string>;
  pathOf(sha256: string): string;
  open(sha256: string): Promise<FileHandle>;
  /** A small blob's bytes from memory (read once from disk, then kept in a bounded LRU); undefined for large ones. */
  small(sha256: string, size: number): Promise<Uint8Array | undefined>;
  remove(sha256: string): Promise<void>;
  /** Start-up sweep: removes interrupted downloads and blobs no index row knows. Only while no other process writes. */
  sweep(isKnown: (sha256: string) => boolean): Promise<{ temps: number; orphans: number }>;
  /** Removes the interrupted downloads of one process that died (a worker); returns how many. */
  sweepTempsOf(pid: number): Promise<number>;
  /** Re-reads a blob and returns the sha256 of what is on disk now. */
  rehash(sha256: string): Promise<string>;
}

/** Write errors that mean the disk, not the download, is at fault. */
const DISK_ERRORS = new Set(["ENOSPC", "EDQUOT", "EIO", "EROFS"]);
export const isDiskError = (err: unknown) => DISK_ERRORS.has((err as NodeJS.ErrnoException)?.code ?? "");

export class TempBlob {
  size = 0;
  private readonly hasher = new Bun.CryptoHasher("sha256");
  constructor(
    readonly path: string,
    readonly handle: FileHandle,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, done, chunk.length - done, this.size + done);
      done += bytesWritten;
    }
    this.hasher.update(chunk);
    this.size += chunk.length;
  }

  digest(): string {
    return this.hasher.digest("hex");
  }
}

export async function createBlobStore(dir: string): Promise<BlobStore> {
  const tmpDir = join(dir, "tmp");
  const blobDir = join(dir, "blobs");
  // Owner-only, like the rest of the data dir: cached bodies may be licensed or private to the site.
  await mkdir(tmpDir, { recursive: true, mode: 0o700 });
  await mkdir(blobDir, { recursive: true, mode: 0o700 });
  const pathOf = (sha256: string) => join(blobDir, sha256.slice(0, 2), sha256);
  const memory = smallBlobs();

  return {
    dir,
    pathOf,

    async createTemp() {
      // Named by the writing process, so one whose process died can be swept while other workers write theirs.
      const path = join(tmpDir, `${process.pid}-${Date.now().toString(36)}-${randomBytes(6).toString("hex")}.part`);
      return new TempBlob(path, await open(path, "w+", 0o600));
    },

    async commit(temp) {
      await temp.handle.sync();
      const sha256 = temp.digest();
      const target = pathOf(sha256);
      if (await exists(target)) {
        // The same bytes are already stored (another URL, or a re-download): keep one copy.
        await unlink(temp.path);
      } else {
        await mkdir(join(blobDir, sha256.slice(0, 2)), { recursive: true, mode: 0o700 });
        await rename(temp.path, target);
      }
      return sha256;
    },

    open: (sha256) => open(pathOf(sha256), "r"),

    async small(sha256, size) {
      if (size > SMALL_OBJECT) return undefined;
      const held = memory.get(sha256);
      if (held) return held;
      const bytes = await Bun.file(pathOf(sha256)).bytes();
      if (bytes.length !== size)
        throw new Error(`blob ${sha256} has ${bytes.length} bytes on disk, the index says ${size}`);
      // Kept in memory, a copy outlives what the verifier (in another process, with workers) finds on
      // disk: so it is proven once, here, at most 256 KiB of hashing per blob.
      if (new Bun.CryptoHasher("sha256").update(bytes).digest("hex") !== sha256)
        throw new Error(`blob ${sha256} on disk does not match its sha256 (damaged)`);
      memory.set(sha256, bytes);
      return bytes;
    },

    async remove(sha256) {
      memory.delete(sha256);
      await rm(pathOf(sha256), { force: true });
    },

    async sweep(isKnown) {
      let temps = 0;
      let orphans = 0;
      for (const name of await readdir(tmpDir)) {
        await rm(join(tmpDir, name), { force: true, recursive: true });
        temps++;
      }
      for (const shard of await readdir(blobDir)) {
        for (const name of await readdir(join(blobDir, shard))) {
          if (isKnown(name)) continue;
          await rm(join(blobDir, shard, name), { force: true });
          orphans++;
        }
      }
      return { temps, orphans };
    },

    async sweepTempsOf(pid) {
      const mine = (await readdir(tmpDir)).filter((name) => name.startsWith(`${pid}-`));
      await Promise.all(mine.map((name) => rm(join(tmpDir, name), { force: true })));
      return mine.length;
    },

    // Read through a file handle: each read yields to the event loop, so agents and the
    // admin API are served while a large cache is verified (a Bun.file stream does not yield).
    async rehash(sha256) {
      const file = await open(pathOf(sha256), "r");
      try {
        const hasher = new Bun.CryptoHasher("sha256");
        const buffer = Buffer.allocUnsafe(REHASH_CHUNK);
        for (let position = 0; ; ) {
          const { bytesRead } = await file.read(buffer, 0, REHASH_CHUNK, position);
          if (bytesRead === 0) return hasher.digest("hex");
          hasher.update(buffer.subarray(0, bytesRead));
          position += bytesRead;
        }
      } finally {
        await file.close();
      }
    },
  };
}

const REHASH_CHUNK = 1024 * 1024;

/** Small hot objects (manifests) are kept in memory up to this size each, and this budget in all. */
const SMALL_OBJECT = 256 * 1024;
const SMALL_BUDGET = 64 * 1024 * 1024;

/**
 * Small hot objects kept in memory, as Varnish keeps its objects: a hit then
 * costs no open/read/close. Bounded in bytes; least recently used go first.
 * Bodies are content-addressed, so a copy is never stale.
 */
const smallBlobs = () =>
  new LRUCache<string, Uint8Array>({ maxSize: SMALL_BUDGET, sizeCalculation: (bytes) => Math.max(1, bytes.length) });

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
