import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "./admin.ts";
import { outputOf } from "./child-output.ts";

/**
 * The gateway as its own process (`bun src/main.ts`), for tests that need
 * it to trust a test CA: Bun reads NODE_EXTRA_CA_CERTS only at process
 * start, so an in-process gateway cannot be taught a new root.
 */
export interface GatewayProcess {
  /** The process id (the primary's, with workers): for signals such as SIGHUP. */
  pid: number;
  /** Whether the process is still running. */
  alive(): boolean;
  dataDir: string;
  proxyPort: number;
  adminPort: number;
  proxyUrl: string;
  adminUrl: string;
  token: string;
  /** What the process has written to stdout and stderr so far (its JSON log). */
  output(): string;
  /** PATCH /api/config; throws unless it answers 200. */
  configure(patch: unknown): Promise<any>;
  /** GET on the admin port with the token; the parsed JSON body of a 200. */
  json<T = any>(path: string): Promise<T>;
  /** Resolves once /healthz reports no download in flight: each one committed to the cache, or failed (5 s at most). */
  idle(): Promise<void>;
  /** Sends a signal (SIGKILL: a member dying); resolves once the process is gone for one that ends it. */
  kill(signal: "SIGKILL" | "SIGSTOP" | "SIGCONT"): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs` (5 s). The data dir stays. */
  stop(graceMs?: number): Promise<void>;
  /** Stops it and starts a new process on the same data dir (new ports). */
  restart(): Promise<GatewayProcess>;
  /** Stops it and removes the data dir. */
  close(): Promise<void>;
}

export interface GatewayProcessOptions {
  /** A PEM file of extra roots the gateway trusts for upstreams. */
  extraCaFile?: string;
  dataDir?: string;
  /** Ports tunnels may reach besides 443 (set with PATCH once it is up). */
  connectPorts?: number[];
  env?: Record<string, string>;
  token?: string;
  /** The agent port (a fleet's members name each other's before they start); default a free one. */
  proxyPort?: number;
}

const running = new Set<Subprocess>();

// A test run that dies or forgets must not leave gateways behind.
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Kills every gateway process still running (for afterAll, also after a failure). */
export async function killAllGatewayProcesses(): Promise<void> {
  await Promise.all(
    [...running].map(async (child) => {
      child.kill("SIGKILL");
      await child.exited;
    }),
  );
}

export async function startGatewayProcess(opts: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), "cachegate-proc-")));
  const token = opts.token ?? "test-token";
  const proxyPort = opts.proxyPort ?? (await freePort());
  let adminPort = await freePort();
  while (adminPort === proxyPort) adminPort = await freePort();
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    CACHEGATE_DATA_DIR: dataDir,
    CACHEGATE_PORT: String(proxyPort),
    CACHEGATE_HOST: "127.0.0.1",
    CACHEGATE_ADMIN_PORT: String(adminPort),
    CACHEGATE_ADMIN_HOST: "127.0.0.1",
    CACHEGATE_ADMIN_TOKEN: token,
    CACHEGATE_CACHE_MODE: "1",
    CACHEGATE_PLATFORM_DOMAINS: "localhost",
    CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1",
    ...opts.env,
  };
  if (opts.extraCaFile) env.NODE_EXTRA_CA_CERTS = opts.extraCaFile;
  else delete env.NODE_EXTRA_CA_CERTS;

  const child = Bun.spawn(["bun", "src/main.ts"], {
    cwd: join(import.meta.dir, "../.."),
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  running.add(child);
  void child.exited.then(() => running.delete(child));
  const output = outputOf(child);

  const auth = { authorization: `Bearer ${token}` };
  const stop = async (graceMs = 5000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await child.exited;
    clearTimeout(timer);
  };

  const gw: GatewayProcess = {
    pid: child.pid,
    alive: () => child.exitCode === null && child.signalCode === null,
    dataDir,
    proxyPort,
    adminPort,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    adminUrl,
    token,
    output,
    async configure(patch) {
      const res = await fetch(`${adminUrl}/api/config`, {
        method: "PATCH",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify(patch),
      });
      const text = await res.text();
      if (res.status !== 200)
        throw new Error(`PATCH /api/config ${JSON.stringify(patch)} answered ${res.status}: ${text}`);
      return JSON.parse(text);
    },
    async json(path) {
      const res = await fetch(`${adminUrl}${path}`, { headers: auth });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${text}`);
      return JSON.parse(text);
    },
    async idle() {
      const deadline = Date.now() + 5000;
      for (;;) {
        const health = (await (await fetch(`${adminUrl}/healthz`)).json()) as { downloads?: number };
        if (health.downloads === 0) return;
        if (Date.now() > deadline) throw new Error(`downloads still in flight after 5 s: ${JSON.stringify(health)}`);
        await Bun.sleep(10);
      }
    },
    async kill(signal) {
      child.kill(signal);
      if (signal === "SIGKILL") await child.exited;
    },
    stop: (graceMs) => stop(graceMs),
    async restart() {
      await stop();
      return startGatewayProcess({ ...opts, dataDir, connectPorts: undefined });
    },
    async close() {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };

  // Ready when /healthz answers; bounded, and fails fast if the process died.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      running.delete(child);
      throw new Error(`the gateway exited with ${child.exitCode} before it was ready:\n${output()}`);
    }
    const ok = await fetch(`${adminUrl}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the gateway did not answer /healthz within 10 s:\n${output()}`);
    }
    await Bun.sleep(25);
  }
  if (opts.connectPorts?.length) await gw.configure({ connect: { ports: [443, ...opts.connectPorts] } });
  return gw;
}
