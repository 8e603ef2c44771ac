import { HTTPException } from "hono/http-exception";
import type { Logger } from "../log.ts";
import type { BlobStore } from "../store/blob-store.ts";
import type { CacheIndex } from "./cache-index.ts";

export interface VerifyState {
  state: "idle" | "running" | "done" | "failed";
  startedAt: string | null;
  finishedAt: string | null;
  blobs: number;
  checked: number;
  /** Blobs whose bytes no longer hash to their name, or that are missing; they and their entries were dropped. */
  damaged: string[];
  error?: string;
}

const READ_SIZE = 1024 * 1024;

/**
 * The sha256 of a blob as it is on disk now, read through a file handle: each
 * read yields to the event loop, so agents and the admin API are served while
 * a large cache is verified (hashing a Bun.file stream runs without yielding).
 */
async function hashOnDisk(store: BlobStore, sha256: string): Promise<string> {
  const file = await store.open(sha256);
  try {
    const hasher = new Bun.CryptoHasher("sha256");
    const buffer = Buffer.allocUnsafe(READ_SIZE);
    for (let position = 0; ; ) {
      const { bytesRead } = await file.read(buffer, 0, READ_SIZE, position);
      if (bytesRead === 0) return hasher.digest("hex");
      hasher.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    await file.close();
  }
}

/**
 * Re-hashes every stored blob and drops any whose bytes no longer match
 * their sha256 name (a disk fault, a stray edit), with the entries that
 * point at it. One job at a time; it runs in the background.
 */
export function createVerifier(index: CacheIndex, store: BlobStore, log: Logger) {
  let status: VerifyState = { state: "idle", startedAt: null, finishedAt: null, blobs: 0, checked: 0, damaged: [] };

  async function run(hashes: string[]) {
    for (const sha of hashes) {
      if (!index.knowsBlob(sha)) continue; // evicted meanwhile
      const actual = await hashOnDisk(store, sha).catch(() => "missing");
      if (actual !== sha) {
        status.damaged.push(sha);
        const dropped = await index.dropBlob(sha);
        log.warn("verify: damaged blob dropped", { sha256: sha, actual, entries: dropped });
      }
      status.checked++;
    }
  }

  return {
    status: () => status,
    start(): VerifyState {
      if (status.state === "running") throw new HTTPException(409, { message: "a verify job is already running; follow it with GET /api/cache/verify" });
      const hashes = index.blobHashes();
      status = { state: "running", startedAt: new Date().toISOString(), finishedAt: null, blobs: hashes.length, checked: 0, damaged: [] };
      const job = status;
      void run(hashes).then(
        () => Object.assign(job, { state: "done", finishedAt: new Date().toISOString() }),
        (err: Error) => Object.assign(job, { state: "failed", finishedAt: new Date().toISOString(), error: err.message }),
      );
      return status;
    },
  };
}
