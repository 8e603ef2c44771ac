/**
 * What the primary and its workers tell each other over the cluster's IPC
 * channel. Both ends are this program, but a message is still checked for
 * its kind before it is acted on (`isToWorker`, `isFromWorker`).
 */

import type { DownloadProgress } from "../cache/fill.ts";
import type { Leaf } from "../tls/leaf-cache.ts";

/** One download in progress: which cache runs it, and in which worker (none in a gateway of one process). */
export interface ActiveDownload extends DownloadProgress {
  cache: "platform" | "patch";
  worker?: number;
}

/** Downloads in progress in one worker (or, summed by the primary, in all): how many per cache, and each one. */
export interface Downloads {
  platform: number;
  patch: number;
  active: ActiveDownload[];
}

export type ToWorker =
  /** The relay ports of the workers running now, by slot. */
  | { t: "peers"; ports: [slot: number, port: number][] }
  /** A configuration change the primary validated: apply it, then reply. */
  | { t: "config"; id: number; config: unknown }
  /** An agent's credentials were revoked: close its tunnels now. */
  | { t: "revoke"; username: string }
  /** Write pending counters to the database, then reply with the downloads in progress. */
  | { t: "report"; id: number }
  /** The primary got SIGHUP: write pending counters and reopen the access log (logrotate moved it). */
  | { t: "reopen" }
  /** The answer to a worker's question (`ask`): a leaf, or the downloads after a flush. */
  | { t: "answer"; id: number; value?: Leaf | Downloads; error?: string };

export type FromWorker =
  /** Serving: the agent port it listens on, and its relay port. */
  | { t: "ready"; slot: number; proxyPort: number; relayPort: number }
  | { t: "reply"; id: number; error?: { status: number; code: string; message: string }; value?: unknown }
  /** A certificate for these names, signed by the gateway CA (the primary holds it). */
  | { t: "leaf"; id: number; names: string[] }
  /** Have every worker write its counters (a fleet member asked this one for its figures), then answer. */
  | { t: "flush"; id: number };

const TO_WORKER = new Set<string>([
  "peers",
  "config",
  "revoke",
  "report",
  "reopen",
  "answer",
] satisfies ToWorker["t"][]);
const FROM_WORKER = new Set<string>(["ready", "reply", "leaf", "flush"] satisfies FromWorker["t"][]);

const kind = (m: unknown) => (typeof m === "object" && m !== null ? String((m as { t?: unknown }).t) : "");
export const isToWorker = (m: unknown): m is ToWorker => TO_WORKER.has(kind(m));
export const isFromWorker = (m: unknown): m is FromWorker => FROM_WORKER.has(kind(m));
