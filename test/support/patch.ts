import { randomBytes } from "node:crypto";
import { statfsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drained } from "../../src/proxy/node-adapter.ts";
import { admin } from "./admin.ts";
import { countRows, filesUnder } from "./data-dir.ts";
import { startTestGateway, type TestGateway, type TestGatewayOptions } from "./gateway.ts";
import { listenOnLoopback } from "./listen.ts";
import { waitFor } from "./wait.ts";

/**
 * Patch Mode in tests: a patch disk (a temp dir, or a tmpfs mounted for the
 * test), a gateway with Patch Mode enabled through the admin API as an
 * operator would, and agent credentials issued by POST /api/agents.
 */

export interface AgentCredentials {
  id: number;
  name: string;
  username: string;
  password: string;
}

export interface PatchGateway extends TestGateway {
  patchDir: string;
  /** Where the patch cache keeps blobs and index: `<patchDir>/cachegate`. */
  patchCacheDir: string;
  /** Issues agent credentials through the admin API. */
  issueAgent(name?: string): Promise<AgentCredentials>;
  /** The proxy URL with an agent's credentials in it, as agents configure it (`http://user:pass@gateway:port`). */
  proxyFor(creds: AgentCredentials): string;
  /** Resolves once no patch download is in flight (each committed to the patch index, or failed and dropped). */
  patchIdle(timeoutMs?: number): Promise<void>;
}

export interface PatchGatewayOptions extends TestGatewayOptions {
  /** The patch disk; a fresh temp dir (removed on close) when omitted. */
  patchDir?: string;
  /** Extra patchDisk settings sent with the enabling PATCH (watermarks). */
  patchDisk?: Record<string, unknown>;
  clientNetworks?: string[];
}

/** A gateway in Cache Mode with Patch Mode switched on through PATCH /api/config, minFreeBytes set small. */
export async function startPatchGateway(opts: PatchGatewayOptions = {}): Promise<PatchGateway> {
  const ownDir = opts.patchDir === undefined;
  const patchDir = opts.patchDir ?? (await mkdtemp(join(tmpdir(), "cachegate-patch-")));
  const gw = await startTestGateway(opts);
  const res = await admin(gw).patch({
    patchDisk: { path: patchDir, minFreeBytes: 1024, ...opts.patchDisk },
    patchMode: { enabled: true, ...(opts.clientNetworks ? { clientNetworks: opts.clientNetworks } : {}) },
  });
  if (res.status !== 200) {
    await gw.close();
    if (ownDir) await rm(patchDir, { recursive: true, force: true });
    throw new Error(`enabling Patch Mode answered ${res.status}: ${await res.text()}`);
  }
  const patchIdle = (timeoutMs = 15_000) =>
    waitFor("patch downloads to land", () => (gw.patch.cache()?.pipeline.inFlight() ?? 0) === 0, timeoutMs);
  // The test gateway is the prototype, so its live getters (proxyPort, proxyUrl) keep working.
  return Object.assign(Object.create(gw) as PatchGateway, {
    patchDir,
    patchCacheDir: join(patchDir, "cachegate"),
    async issueAgent(name = "test-agents") {
      const r = await admin(gw).send("POST", "/api/agents", {
        body: JSON.stringify({ name }),
        headers: { "content-type": "application/json" },
      });
      if (r.status !== 201) throw new Error(`POST /api/agents answered ${r.status}: ${await r.text()}`);
      return (await r.json()) as AgentCredentials;
    },
    proxyFor: (creds: AgentCredentials) =>
      `http://${encodeURIComponent(creds.username)}:${encodeURIComponent(creds.password)}@127.0.0.1:${gw.proxyPort}`,
    patchIdle,
    async close() {
      await patchIdle().catch(() => {});
      await gw.idle().catch(() => {});
      await gw.close();
      if (ownDir) await rm(patchDir, { recursive: true, force: true });
    },
  });
}

/** The URL of an origin path as a patch host: 127.0.0.1 is not the test platform domain (localhost), so it takes the patch path. */
export function patchUrl(origin: { port: number }, path: string): string {
  return `http://127.0.0.1:${origin.port}${path}`;
}

/** Entries in the patch disk's index, and the files under its blobs/ and tmp/. */
export async function patchDiskContents(
  patchCacheDir: string,
): Promise<{ entries: number; blobs: string[]; temps: string[] }> {
  return {
    entries: countRows(patchCacheDir, "entries"),
    blobs: await filesUnder(join(patchCacheDir, "blobs")),
    temps: await filesUnder(join(patchCacheDir, "tmp")),
  };
}

/** A Basic Proxy-Authorization value. */
export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

export interface TmpfsMount {
  dir: string;
  /** Unmounts (lazily if busy) and removes the mount point; safe to call twice. */
  unmount(): Promise<void>;
}

/**
 * Mounts a tmpfs of `sizeBytes` (read-only with `readOnly`) on a fresh temp
 * dir; returns null, with the reason, when this machine does not let the
 * test mount (not root, no CAP_SYS_ADMIN in a container).
 */
export async function mountTmpfs(
  sizeBytes: number,
  opts: { readOnly?: boolean } = {},
): Promise<TmpfsMount | { error: string }> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-tmpfs-"));
  const options = [`size=${sizeBytes}`, ...(opts.readOnly ? ["ro"] : [])].join(",");
  const child = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", options, "tmpfs", dir], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (child.exitCode !== 0) {
    await rm(dir, { recursive: true, force: true });
    return { error: `mount -t tmpfs failed (${child.exitCode}): ${child.stderr.toString().trim()}` };
  }
  let mounted = true;
  return {
    dir,
    async unmount() {
      if (mounted) {
        const res = Bun.spawnSync(["umount", dir], { stdout: "pipe", stderr: "pipe" });
        if (res.exitCode !== 0) Bun.spawnSync(["umount", "-l", dir]);
        mounted = false;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Free bytes on the file system holding `path` (what an unprivileged writer may use). */
export function freeBytesAt(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

/** Fraction of the file system holding `path` in use, as the patch cache computes it. */
export function usedFractionAt(path: string): number {
  const s = statfsSync(path);
  return 1 - s.bavail / s.blocks;
}

export async function ensureDir(path: string): Promise<string> {
  await mkdir(path, { recursive: true });
  return path;
}

/**
 * A large body made on the fly, never held whole in memory: blocks of a
 * random base, each stamped with its block number in its first 8 bytes, so
 * a byte at the wrong offset (even a whole block off) is noticed. Any range
 * of it can be produced again to check what an agent received.
 */
export class PatternBody {
  private readonly base: Buffer;
  constructor(
    readonly size: number,
    readonly block = 1024 * 1024,
  ) {
    this.base = randomBytes(block);
  }

  /** Bytes [start, end) as they must arrive. */
  slice(start: number, end: number): Buffer {
    const out = Buffer.allocUnsafe(end - start);
    const stamp = Buffer.alloc(8);
    for (let p = start; p < end; ) {
      const k = Math.floor(p / this.block);
      const off = p - k * this.block;
      const n = Math.min(this.block - off, end - p);
      this.base.copy(out, p - start, off, off + n);
      if (off < 8) {
        stamp.writeBigUInt64LE(BigInt(k));
        stamp.copy(out, p - start, off, Math.min(8, off + n));
      }
      p += n;
    }
    return out;
  }

  /** Bytes [start, end) as a stream of block-sized chunks; `onPull` sees each chunk's end offset before it is sent. */
  stream(start = 0, end = this.size, onPull?: (sent: number) => void | Promise<void>): ReadableStream<Uint8Array> {
    let pos = start;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          if (pos >= end) return controller.close();
          const next = Math.min(end, (Math.floor(pos / this.block) + 1) * this.block);
          await onPull?.(next);
          controller.enqueue(this.slice(pos, next));
          pos = next;
        },
      },
      { highWaterMark: 0 },
    );
  }
}

export interface ReadCheck {
  /** Bytes received. */
  bytes: number;
  /** True when every byte received matched the pattern at its offset. */
  intact: boolean;
  /** Set when reading the body failed (the agent saw a broken transfer). */
  error?: Error;
}

/** Reads a response body to its end, checking each chunk against `pattern` from offset `start`, holding one chunk at a time. */
export async function readAgainst(
  body: ReadableStream<Uint8Array> | null,
  pattern: PatternBody,
  start = 0,
  stopAfter?: number,
): Promise<ReadCheck> {
  const check: ReadCheck = { bytes: 0, intact: true };
  if (!body) return check;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const at = start + check.bytes;
      if (check.intact && !pattern.slice(at, at + value.length).equals(value)) check.intact = false;
      check.bytes += value.length;
      if (stopAfter !== undefined && check.bytes >= stopAfter) {
        await reader.cancel();
        break;
      }
    }
  } catch (err) {
    check.error = err as Error;
  }
  return check;
}

export interface PatternRoute {
  body: PatternBody;
  /** Send without Content-Length (chunked), so the gateway learns the size only at the end. */
  chunked?: boolean;
  /** Awaited before each block is sent, with the offset the block ends at: slows or holds the origin. */
  pace?: (upTo: number) => void | Promise<void>;
  /** Awaited before the response head is sent: holds the answer itself, so requests that join it wait for its head. */
  beforeHead?: () => void | Promise<void>;
}

export interface PatternOrigin {
  port: number;
  /** The URL of a path as a patch host (127.0.0.1, not the test platform domain). */
  url(path: string): string;
  count(path?: string): number;
  /** Bytes of `path` written by its latest request so far. */
  sent(path: string): number;
  /** Paths whose response the gateway stopped reading before the end. */
  abandoned: Set<string>;
  stop(): Promise<void>;
}

/**
 * An origin for pattern bodies on node:http, which keeps a Content-Length
 * on a streamed body (Bun.serve turns a long streamed body into chunked),
 * writing block by block with backpressure: a multi-GB body costs a block of memory.
 */
export async function startPatternOrigin(routes: Record<string, PatternRoute>): Promise<PatternOrigin> {
  const counts = new Map<string, number>();
  const sent = new Map<string, number>();
  const abandoned = new Set<string>();
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://origin").pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const route = routes[path];
    if (!route) return void res.writeHead(404, { "content-type": "text/plain" }).end("no such patch\n");
    const { body } = route;
    await route.beforeHead?.();
    if (res.destroyed) return;
    res.writeHead(200, {
      "cache-control": "max-age=86400",
      "content-type": "application/octet-stream",
      ...(route.chunked ? {} : { "content-length": String(body.size) }),
    });
    let finished = false;
    res.once("close", () => {
      if (!finished) abandoned.add(path);
    });
    sent.set(path, 0);
    for (let pos = 0; pos < body.size; ) {
      const next = Math.min(body.size, (Math.floor(pos / body.block) + 1) * body.block);
      await route.pace?.(next);
      if (res.destroyed) return;
      if (!res.write(body.slice(pos, next))) await drained(res);
      pos = next;
      sent.set(path, pos);
    }
    finished = true;
    res.end();
  });
  const { port, stop } = await listenOnLoopback(server);
  return {
    port,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    count: (path) => (path === undefined ? [...counts.values()].reduce((a, b) => a + b, 0) : (counts.get(path) ?? 0)),
    sent: (path) => sent.get(path) ?? 0,
    abandoned,
    stop,
  };
}

/**
 * Watches the requests that reach the patch cache's pipeline (a pass-through
 * hook, nothing else changes), so a test can act once the gateway has a
 * request in hand: a response head goes out only with its first body byte,
 * so the agent's side cannot tell. `restore` takes the hook off.
 */
export function watchPatchRequests(gw: PatchGateway): { seen: Request[]; restore(): void } {
  const pipeline = gw.patch.cache();
  if (!pipeline) throw new Error("the patch cache is not open");
  const handle = pipeline.pipeline.handle;
  const seen: Request[] = [];
  pipeline.pipeline.handle = (req) => {
    seen.push(req);
    return handle(req);
  };
  return {
    seen,
    restore: () => {
      pipeline.pipeline.handle = handle;
    },
  };
}
