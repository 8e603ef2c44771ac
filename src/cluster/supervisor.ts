import cluster, { type Worker } from "node:cluster";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Leaf } from "../tls/leaf-cache.ts";
import { type Downloads, isFromWorker, type ToWorker } from "./messages.ts";
import { assertPortFree } from "./port-check.ts";
import { WORKER_ENV } from "./worker-link.ts";

export interface SupervisorOptions {
  count: number;
  /** Where workers bind the agent port. */
  host: string;
  /** Added to every worker's environment: what all of them must share (Via pseudonym, relay secret…). */
  env: () => Record<string, string>;
  log: Logger;
  /** A worker died: its interrupted downloads are swept (by its pid) before a replacement starts. */
  onDeath: (pid: number) => Promise<void>;
  /** The configuration now: a worker that was starting while it changed is brought up to date once it serves. */
  config: () => Config;
  /** Mints a leaf certificate a worker asks for (one host: cached, shared by all workers). */
  leaf: (names: readonly string[]) => Promise<Leaf>;
}

/** How long a worker may take to start serving; past this the start (or restart) has failed. */
const START_MS = 30_000;
/** A reply to the primary's question; a worker that does not answer in time is left out, and says so in the log. */
const REPLY_MS = 5_000;
/** Shutdown: workers finish what they serve; past this they are killed. */
const STOP_MS = 15_000;
/** A worker that dies within this of its start is in a crash loop: its restarts are spaced out, up to a ceiling. */
const STABLE_MS = 10_000;
const MAX_BACKOFF_MS = 30_000;

interface Slot {
  worker?: Worker;
  relayPort?: number;
  startedAt: number;
  quickDeaths: number;
}

/**
 * The primary process of a gateway with workers (`CACHEGATE_WORKERS` > 1):
 * it holds the admin API and no agent connections. It starts one worker per
 * slot, restarts one that dies (slot and URL ownership unchanged), keeps
 * every worker told of the others' relay ports, and carries what the admin
 * API changes to all of them: configuration, revocations, and the question
 * "flush your counters and say what is downloading".
 */
export function createSupervisor(opts: SupervisorOptions) {
  const { log } = opts;
  const slots = new Map<number, Slot>();
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  let stopping = false;
  let started = false;
  /** A configuration change being applied: a worker that starts serving meanwhile gets it, not the old one. */
  let applying: Config | undefined;

  const running = () => [...slots.values()].filter((s) => s.worker && s.relayPort !== undefined);

  const peerPorts = () => {
    const ports: [number, number][] = [];
    for (const [slot, s] of slots) if (s.relayPort !== undefined) ports.push([slot, s.relayPort]);
    return ports;
  };

  function broadcastPeers(): void {
    const ports = peerPorts();
    for (const s of running()) send(s.worker!, { t: "peers", ports });
  }

  function send(worker: Worker, message: ToWorker): void {
    try {
      worker.send(message);
    } catch (error) {
      log.warn("a worker could not be told something (it is exiting)", { worker: worker.process.pid, error });
    }
  }

  /**
   * Sends a question to every running worker; resolves with their answers. A
   * worker that refuses fails the question; one that does not answer in time
   * is skipped with a warning, unless `strict` (then its silence is a refusal).
   */
  async function ask(make: (id: number) => ToWorker, what: string, strict = false): Promise<unknown[]> {
    const answers = running().map((s) => {
      const id = nextId++;
      let timer: Timer | undefined;
      const reply = new Promise<unknown>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        const silent = `worker ${s.worker?.process.pid} did not answer within ${REPLY_MS / 1000} s (${what})`;
        const error = strict ? new GatewayError(503, "worker_unresponsive", `${silent}; try again`) : new Error(silent);
        timer = setTimeout(() => reject(error), REPLY_MS);
      }).finally(() => {
        clearTimeout(timer);
        waiting.delete(id);
      });
      send(s.worker!, make(id));
      return reply;
    });
    const settled = await Promise.allSettled(answers);
    for (const r of settled)
      if (r.status === "rejected" && !(r.reason instanceof GatewayError)) log.warn((r.reason as Error).message);
    const refused = settled.find((r) => r.status === "rejected" && r.reason instanceof GatewayError);
    if (refused) throw (refused as PromiseRejectedResult).reason;
    return settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  }

  /** Every worker writes its pending counters; the sum of their downloads in progress, and the list of them. */
  async function report(): Promise<Downloads> {
    const answers = (await ask((id) => ({ t: "report", id }), "report")) as Downloads[];
    return answers.reduce(
      (a, b) => ({ platform: a.platform + b.platform, patch: a.patch + b.patch, active: a.active.concat(b.active) }),
      { platform: 0, patch: 0, active: [] as Downloads["active"] },
    );
  }

  function onMessage(slot: number, message: unknown, started: () => void): void {
    if (!isFromWorker(message)) return;
    if (message.t === "ready") {
      slots.get(slot)!.relayPort = message.relayPort;
      const worker = slots.get(slot)!.worker!;
      log.info("worker serving", { slot, pid: worker.process.pid, port: message.proxyPort });
      send(worker, { t: "config", id: 0, config: applying ?? opts.config() });
      broadcastPeers();
      started();
    } else if (message.t === "leaf") {
      const worker = slots.get(slot)?.worker;
      const { id, names } = message;
      opts.leaf(names).then(
        (value) => worker && send(worker, { t: "answer", id, value }),
        (err) => worker && send(worker, { t: "answer", id, error: (err as Error).message }),
      );
    } else if (message.t === "flush") {
      const worker = slots.get(slot)?.worker;
      const { id } = message;
      report().then(
        (value) => worker && send(worker, { t: "answer", id, value }),
        (err) => worker && send(worker, { t: "answer", id, error: (err as Error).message }),
      );
    } else if (message.t === "reply") {
      const pending = waiting.get(message.id);
      if (!pending) return;
      if (message.error) {
        const { status, code, message: text } = message.error;
        pending.reject(new GatewayError(status, code as never, text));
      } else pending.resolve(message.value);
    }
  }

  /** Starts the worker of a slot; resolves once it serves, rejects if it exits first or takes too long. */
  function fork(slot: number): Promise<void> {
    const s = slots.get(slot) ?? { startedAt: 0, quickDeaths: 0 };
    slots.set(slot, s);
    s.startedAt = Date.now();
    s.relayPort = undefined;
    // It learns its peers before it serves: until then it would take itself for the owner of every URL.
    const worker = cluster.fork({
      ...opts.env(),
      [WORKER_ENV.slot]: String(slot),
      [WORKER_ENV.peers]: JSON.stringify(peerPorts()),
    });
    s.worker = worker;
    // A send to a worker that is exiting fails with an error event; its exit is handled below.
    worker.on("error", (error) => log.warn("worker channel error", { slot, error }));
    return new Promise<void>((resolve, reject) => {
      // A worker that hangs while starting is killed: its exit then starts a replacement, as for any death.
      const timer = setTimeout(() => {
        reject(new Error(`worker ${slot} did not start within ${START_MS / 1000} s; killed`));
        worker.process.kill("SIGKILL");
      }, START_MS);
      const started = () => {
        clearTimeout(timer);
        resolve();
      };
      worker.on("message", (m) => onMessage(slot, m, started));
      worker.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`worker ${slot} exited (${signal ?? `code ${code}`}) before it was serving; see its log`));
        void died(slot, worker, code, signal);
      });
    });
  }

  async function died(slot: number, worker: Worker, code: number | null, signal: string | null): Promise<void> {
    const s = slots.get(slot)!;
    if (s.worker !== worker) return;
    s.worker = undefined;
    s.relayPort = undefined;
    if (stopping) return;
    broadcastPeers();
    const pid = worker.process.pid ?? 0;
    const lived = Date.now() - s.startedAt;
    s.quickDeaths = lived < STABLE_MS ? s.quickDeaths + 1 : 0;
    const delay = s.quickDeaths === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 500 * 2 ** (s.quickDeaths - 1));
    log.error("worker died; starting a replacement", { slot, pid, code, signal, livedMs: lived, restartInMs: delay });
    await opts.onDeath(pid).catch((error) => log.warn("sweeping a dead worker's downloads failed", { pid, error }));
    await Bun.sleep(delay);
    if (stopping) return;
    fork(slot).catch((error) => log.error("replacement worker failed to start", { slot, error }));
  }

  return {
    /** Starts every worker; resolves once all serve. A worker that cannot start fails the start. */
    async start(): Promise<void> {
      await Promise.all(Array.from({ length: opts.count }, (_, i) => fork(i + 1)));
      started = true;
    },

    /** Config applier: every worker applies the change; one refusing it refuses it (the others go back). */
    async applyConfig(next: Config, prev: Config): Promise<void> {
      if (next.cacheMode.port !== prev.cacheMode.port) assertPortFree(opts.host, next.cacheMode.port);
      applying = next;
      try {
        await ask((id) => ({ t: "config", id, config: next }), "configuration change", true);
      } catch (err) {
        applying = prev;
        await ask((id) => ({ t: "config", id, config: prev }), "configuration rollback").catch(() => {});
        throw err;
      } finally {
        applying = undefined;
      }
    },

    revoke(username: string): void {
      for (const s of running()) send(s.worker!, { t: "revoke", username });
    },

    /** SIGHUP reaches the primary (logrotate signals its pid): every worker writes its counters and reopens its log. */
    reopen(): void {
      for (const s of running()) send(s.worker!, { t: "reopen" });
    },

    report,

    workers: () => running().length,
    /** Why agents cannot be served now, if they cannot: still starting, or no worker left running. */
    unavailable: () => (!started ? "starting" : running().length === 0 ? "no worker serving" : undefined),

    /** Graceful: each worker finishes (or aborts) what it serves and exits; stragglers are killed. */
    async stop(): Promise<void> {
      stopping = true;
      const exits = [...slots.values()].flatMap((s) => {
        const w = s.worker;
        if (!w || w.isDead()) return [];
        const exited = new Promise<void>((resolve) => w.once("exit", () => resolve()));
        w.process.kill("SIGTERM");
        return [exited];
      });
      const all = Promise.all(exits);
      const late = await Promise.race([all.then(() => false), Bun.sleep(STOP_MS).then(() => true)]);
      if (late) for (const s of slots.values()) if (s.worker && !s.worker.isDead()) s.worker.process.kill("SIGKILL");
      await all;
    },
  };
}

export type Supervisor = ReturnType<typeof createSupervisor>;
