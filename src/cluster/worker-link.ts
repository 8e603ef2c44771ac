import { asGatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Leaf } from "../tls/leaf-cache.ts";
import { type Downloads, type FromWorker, isToWorker } from "./messages.ts";

/** What a worker does when the primary asks. */
export interface WorkerDuties {
  /** Applies a configuration change (throws to refuse it). */
  config(doc: unknown): Promise<void>;
  revoke(username: string): void;
  /** Writes pending counters; says what is downloading. */
  report(): Downloads;
  /** Writes pending counters and reopens the access log (the primary's SIGHUP). */
  reopen(): void;
}

/** The worker's side of the cluster: who it is, what the primary shared, and the channel to it. */
export interface WorkerLink {
  slot: number;
  /** Shared by all workers so only they can use each other's relay. */
  secret: string;
  /** The gateway's Via pseudonym: one for all workers, so a loop through any of them is seen. */
  via: string;
  /** The primary's admin port: upstream requests to it are loops too. */
  adminPort: number;
  /** Relay ports of the running workers, by slot; a new map whenever it changes. */
  peers(): ReadonlyMap<number, number>;
  /** Starts answering the primary, and tells it this worker serves. */
  serve(duties: WorkerDuties, ports: { proxyPort: number; relayPort: number }): void;
  /** A leaf certificate from the primary's minter. */
  leaf(names: readonly string[]): Promise<Leaf>;
  /** Has every worker (this one too) write its pending counters; the downloads in progress of all of them. */
  report(): Promise<Downloads>;
}

/** The primary signs or gathers in a few milliseconds; past this it is not answering. */
const ANSWER_MS = 10_000;

/** Environment the primary gives each worker (src/cluster/supervisor.ts). */
export const WORKER_ENV = {
  slot: "CACHEGATE_WORKER_SLOT",
  secret: "CACHEGATE_WORKER_SECRET",
  via: "CACHEGATE_WORKER_VIA",
  adminPort: "CACHEGATE_WORKER_ADMIN_PORT",
  /** The relay ports of the workers already serving, as JSON [slot, port] pairs. */
  peers: "CACHEGATE_WORKER_PEERS",
} as const;

export function linkToPrimary(env: Record<string, string | undefined>, log: Logger): WorkerLink {
  const read = (name: string) => {
    const value = env[name];
    if (!value) throw new Error(`${name} is not set: workers are started by the primary process, not by hand`);
    return value;
  };
  const slot = Number(read(WORKER_ENV.slot));
  let peers: ReadonlyMap<number, number> = new Map(JSON.parse(env[WORKER_ENV.peers] || "[]") as [number, number][]);
  const asked = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  // Answers are listened for from the start: leaves are asked for before the worker serves (a TLS agent port).
  process.on("message", (message: unknown) => {
    if (!isToWorker(message) || message.t !== "answer") return;
    const pending = asked.get(message.id);
    asked.delete(message.id);
    if (message.error === undefined) pending?.resolve(message.value);
    else pending?.reject(new Error(message.error));
  });
  // The primary may be gone (it is shutting down, or died): then there is nobody to tell.
  const tell = (message: FromWorker) => {
    if (process.connected) process.send?.(message, undefined, undefined, () => {});
  };
  /** A question to the primary; `what` names it in the errors. */
  const ask = <T>(question: (id: number) => FromWorker, what: string) => {
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        asked.delete(id);
        reject(new Error(`the primary did not send ${what} within ${ANSWER_MS / 1000} s`));
      }, ANSWER_MS);
      asked.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(new Error(`the primary could not send ${what}: ${err.message}`));
        },
      });
      tell(question(id));
    });
  };

  return {
    slot,
    secret: read(WORKER_ENV.secret),
    via: read(WORKER_ENV.via),
    adminPort: Number(read(WORKER_ENV.adminPort)),
    peers: () => peers,
    leaf: (names) => ask<Leaf>((id) => ({ t: "leaf", id, names: [...names] }), "a certificate"),
    report: () => ask<Downloads>((id) => ({ t: "flush", id }), "the counters of every worker"),
    serve(duties, ports) {
      process.on("message", (message: unknown) => {
        if (!isToWorker(message)) return;
        switch (message.t) {
          case "peers":
            peers = new Map(message.ports);
            return;
          case "revoke":
            return duties.revoke(message.username);
          case "reopen":
            return duties.reopen();
          case "report":
            try {
              return tell({ t: "reply", id: message.id, value: duties.report() });
            } catch (err) {
              log.error("reporting to the primary failed", { error: err });
              const why = { status: 500, code: "internal", message: (err as Error).message };
              return tell({ t: "reply", id: message.id, error: why });
            }
          case "config":
            duties.config(message.config).then(
              () => tell({ t: "reply", id: message.id }),
              (err) => {
                const e = asGatewayError(err);
                log.error("configuration change refused in this worker", { error: err });
                tell({ t: "reply", id: message.id, error: { status: e.status, code: e.code, message: e.message } });
              },
            );
        }
      });
      tell({ t: "ready", slot, ...ports });
    },
  };
}
