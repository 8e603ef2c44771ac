import { GatewayError } from "../errors.ts";
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
      const actual = await store.rehash(sha).catch(() => "missing");
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
      if (status.state === "running")
        throw new GatewayError(
          409,
          "verify_running",
          "a verify job is already running; follow it with GET /api/cache/verify",
        );
      const hashes = index.blobHashes();
      status = {
        state: "running",
        startedAt: new Date().toISOString(),
        finishedAt: null,
        blobs: hashes.length,
        checked: 0,
        damaged: [],
      };
      const job = status;
      void run(hashes).then(
        () => Object.assign(job, { state: "done", finishedAt: new Date().toISOString() }),
        (err: Error) =>
          Object.assign(job, { state: "failed", finishedAt: new Date().toISOString(), error: err.message }),
      );
      return status;
    },
  };
}
