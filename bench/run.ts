/**
 * `bun run bench`: cachegate against nginx proxy_cache and against the
 * ceiling (nginx serving the files from disk), on loopback, in one run:
 *
 *   a. cold storm     500 requests, 100 at a time, for one 2 MiB manifest nobody has cached
 *   b. hot hits       wrk -t2 -c50 -d10s on a cached 10 KiB and a cached 2 MiB object
 *   c. big-file join  a 256 MiB file from an origin paced to 64 MiB/s, 20 agents joining 150 ms apart
 *
 * Tables go to stdout and to bench/.work/results.md; child logs to bench/.work/logs/.
 */
import { mkdir, rm } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import { startCachegate } from "./cachegate.ts";
import { BIG_RATE_BYTES_PER_S, FILES, generateFiles } from "./files.ts";
import {
  type AgentResult,
  agentFetch,
  coldStorm,
  drain,
  joinDownload,
  runWrk,
  type StormResult,
  type Target,
  type WrkResult,
} from "./load.ts";
import { ensureTools, startNginx } from "./nginx.ts";
import { type Origin, startOrigin } from "./origin.ts";
import { cpuMeter, idleRss, makeTempDir, runBench, sampleRss } from "./procs.ts";
import { type Column, int, mib, ms, type Row, scenarioTable, us } from "./table.ts";

const WORK = join(import.meta.dir, ".work");
const LOGS = join(WORK, "logs");
const WRK_SECONDS = 10;
const STORM = { requests: 500, concurrency: 100 };
const JOIN = { agents: 20, spacingMs: 150 };
/** The whole run normally takes ~3 minutes; past this something hangs, and we stop rather than wait. */
const WATCHDOG_MS = 8 * 60_000;

const ORIGIN = "origin direct";
const CEILING = "nginx direct file (ceiling)";
const NGINX = "nginx proxy_cache";
const CACHEGATE = "cachegate";
const RATIOS = { of: CACHEGATE, to: [NGINX, CEILING] };

interface BenchTarget extends Target {
  /** Whether it is a cache in front of the origin (warm it; count what it asks upstream). */
  caching: boolean;
  /** The processes doing the serving (not the origin behind a proxy): their CPU time is measured. */
  pids: () => number[];
  /** Whether their memory is reported (not for the origin, which holds every file in memory by design). */
  rss: boolean;
  /** Restarts the target if it died, saying why (cachegate only). */
  revive?: () => Promise<string | undefined>;
}

/** Crashes seen during the run, printed under the table of the scenario they happened in. */
let notes: string[] = [];
/** Each target's last measurement: a crash noticed later most likely comes from it (a GC finding a leak, say). */
const lastStep = new Map<string, string>();

/**
 * Runs one measurement of one target. A target that died since its last
 * measurement (or during this one) is restarted and the crash noted, so the
 * report shows it instead of a run that stops halfway.
 */
async function measure<R>(target: BenchTarget, step: string, run: () => Promise<R>): Promise<R> {
  const check = async (when: string) => {
    const why = await target.revive?.();
    if (why !== undefined) notes.push(`**${target.name} ${why}** — ${when}; restarted with an empty cache.`);
  };
  await check(`noticed before ${step}; its previous load was ${lastStep.get(target.name) ?? "none"}`);
  const result = await run();
  await Bun.sleep(300);
  lastStep.set(target.name, step);
  await check(`during or right after ${step}`);
  return result;
}

/** The scenario's notes, if any, to print under its table. */
function takeNotes(): string[] {
  const out = notes.length === 0 ? [] : ["", ...notes.map((n) => `- ${n}`)];
  notes = [];
  return out;
}

async function main(): Promise<void> {
  await ensureTools();
  await rm(LOGS, { recursive: true, force: true }); // no stale logs of an earlier run's restarts
  await mkdir(LOGS, { recursive: true });
  const filesDir = await makeTempDir("cachegate-bench-files-");
  await generateFiles(filesDir);
  const origin = await startOrigin(filesDir, LOGS);
  const nginx = await startNginx(filesDir, origin.port);
  const gateway = await startCachegate(LOGS);
  const workDir = await makeTempDir("cachegate-bench-work-");

  const targets: BenchTarget[] = [
    {
      name: ORIGIN,
      caching: false,
      rss: false,
      url: (p) => `http://127.0.0.1:${origin.port}${p}`,
      pids: () => [origin.pid],
    },
    {
      name: CEILING,
      caching: false,
      rss: true,
      url: (p) => `http://127.0.0.1:${nginx.filesPort}${p}`,
      pids: nginx.pids,
    },
    {
      name: NGINX,
      caching: true,
      rss: true,
      url: origin.url,
      proxy: `http://127.0.0.1:${nginx.proxyPort}`,
      pids: nginx.pids,
    },
    {
      name: CACHEGATE,
      caching: true,
      rss: true,
      url: origin.url,
      proxy: `http://127.0.0.1:${gateway.proxyPort}`,
      pids: () => [gateway.pid],
      revive: gateway.revive,
    },
  ];

  const header = [
    `## cachegate benchmark, ${new Date().toISOString()}`,
    "",
    `Loopback, ${availableParallelism()} CPUs, Bun ${Bun.version}, ${firstLine(["nginx", "-v"])}, ${firstLine(["wrk", "-v"]).split(" [")[0]}. ` +
      "Load generators run on the same CPUs as the servers; compare rows with each other, not with other machines. " +
      `Load average at start: ${load()} (anything else running skews requests/s and times; CPU per request much less).`,
  ].join("\n");
  console.log(`${header}\n`);
  const sections = [header];
  const emit = (text: string) => {
    console.log(`${text}\n`);
    sections.push(text);
  };

  emit(await coldStormScenario(targets, origin));
  emit(await hotHitsScenario(targets, origin, workDir));
  emit(await bigFileScenario(targets, origin));

  emit(`Load average at end: ${load()}.`);
  await nginx.saveLog(LOGS);
  await Bun.write(join(WORK, "results.md"), `${sections.join("\n\n")}\n`);
  console.log(`(written to ${join(WORK, "results.md")}; child logs in ${LOGS})`);
}

// ── a. cold storm ──────────────────────────────────────────────────────────

interface StormRow extends StormResult {
  upstreamRequests: number;
  upstreamBytes: number;
  cpuSeconds: number;
}

async function coldStormScenario(targets: BenchTarget[], origin: Origin): Promise<string> {
  const rows: Row<StormRow>[] = [];
  for (const target of targets) {
    // A URL no cache has seen: every target starts cold.
    const url = target.url(`${FILES.manifest.path}?storm=${slug(target)}-${Date.now()}`);
    const result = await measure(target, "the cold storm", async (): Promise<StormRow> => {
      const before = await origin.stats();
      const cpu = cpuMeter(target.pids());
      const result = await coldStorm(target, url, FILES.manifest.size, STORM.requests, STORM.concurrency);
      const cpuSeconds = cpu.stop();
      const after = await origin.stats();
      return {
        ...result,
        cpuSeconds,
        upstreamRequests: after.requests - before.requests,
        upstreamBytes: after.bytes - before.bytes,
      };
    });
    rows.push({ name: target.name, result });
    if (result.firstError) console.error(`  ${target.name}: ${result.errors} errors, first: ${result.firstError}`);
    await Bun.sleep(500);
  }
  const columns: Column<StormRow>[] = [
    { title: "wall time", value: (r) => r.wallMs, format: ms },
    { title: "requests/s", value: (r) => (STORM.requests / r.wallMs) * 1000, format: int },
    { title: "server CPU", value: (r) => r.cpuSeconds * 1000, format: ms },
    { title: "upstream requests", value: (r) => r.upstreamRequests, format: int },
    { title: "upstream bytes", value: (r) => r.upstreamBytes, format: mib },
    { title: "errors", value: (r) => r.errors, format: int, ratio: false },
    { title: "X-Cache", value: (r) => labels(r.labels), ratio: false },
  ];
  return [
    scenarioTable(
      `a. Cold storm: ${STORM.requests} requests, ${STORM.concurrency} concurrent, one uncached 2 MiB manifest`,
      columns,
      rows,
      RATIOS,
    ),
    "",
    "Server CPU: user+system time of the serving processes (not the origin behind a proxy, nor the load generator). " +
      "Upstream requests/bytes: what the origin served during the storm (the origin row is the origin itself; the ceiling never asks it).",
    ...takeNotes(),
  ].join("\n");
}

// ── b. hot hits ────────────────────────────────────────────────────────────

interface HotRun extends WrkResult {
  cpuSeconds: number;
}

interface HotRow {
  small: HotRun;
  large: HotRun;
  upstreamRequests: number;
}

async function hotHitsScenario(targets: BenchTarget[], origin: Origin, workDir: string): Promise<string> {
  const rows: Row<HotRow>[] = [];
  for (const target of targets) {
    const results: HotRun[] = [];
    let upstreamRequests = 0;
    for (const file of [FILES.obj10k, FILES.obj2m]) {
      const url = target.url(file.path);
      await measure(target, `hot hits on ${file.path}`, async () => {
        if (target.caching) await warm(target, url, file.size);
        const before = await origin.stats();
        const cpu = cpuMeter(target.pids());
        const result = await runWrk(target, url, workDir, WRK_SECONDS);
        results.push({ ...result, cpuSeconds: cpu.stop() });
        upstreamRequests += (await origin.stats()).requests - before.requests;
      });
      await Bun.sleep(500);
    }
    // The origin's own requests are not upstream requests, and the ceiling never asks the origin.
    rows.push({
      name: target.name,
      result: {
        small: results[0]!,
        large: results[1]!,
        upstreamRequests: target.caching ? upstreamRequests : Number.NaN,
      },
    });
  }
  const payload = (size: number) => (w: WrkResult) => (w.requestsPerSec * size) / 1024 / 1024;
  const columns: Column<HotRow>[] = [
    { title: "10 KiB req/s", value: (r) => r.small.requestsPerSec, format: int },
    { title: "10 KiB MiB/s", value: (r) => payload(FILES.obj10k.size)(r.small), format: int },
    { title: "10 KiB p99", value: (r) => r.small.p99Ms, format: ms },
    { title: "10 KiB CPU/req", value: (r) => cpuPerRequest(r.small), format: us },
    { title: "2 MiB req/s", value: (r) => r.large.requestsPerSec, format: int },
    { title: "2 MiB MiB/s", value: (r) => payload(FILES.obj2m.size)(r.large), format: int },
    { title: "2 MiB p99", value: (r) => r.large.p99Ms, format: ms },
    { title: "2 MiB CPU/req", value: (r) => cpuPerRequest(r.large), format: us },
    { title: "errors", value: (r) => r.small.errors + r.large.errors, format: int, ratio: false },
    { title: "upstream requests", value: (r) => r.upstreamRequests, format: int, ratio: false },
  ];
  return [
    scenarioTable(`b. Hot hits: wrk -t2 -c50 -d${WRK_SECONDS}s on a cached object`, columns, rows, RATIOS),
    "",
    "MiB/s is body bytes (requests/s × object size). CPU/req: the serving processes' user+system time per response. " +
      "Upstream requests: what the caches asked the origin during the wrk runs (should be 0).",
    ...takeNotes(),
  ].join("\n");
}

/** Fetches until the cache answers HIT, checking the body's length on the way. */
async function warm(target: Target, url: string, size: number): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const res = await agentFetch(target, url);
    const bytes = await drain(res);
    if (res.status !== 200 || bytes !== size)
      throw new Error(`${target.name}: warming ${url} got status ${res.status}, ${bytes} of ${size} bytes`);
    if (res.headers.get("x-cache") === "HIT") return;
    await Bun.sleep(100);
  }
  throw new Error(`${target.name}: ${url} never became a HIT`);
}

// ── c. big-file join ───────────────────────────────────────────────────────

interface JoinRow {
  agents: AgentResult[];
  upstreamBytes: number;
  cpuSeconds: number;
  idleRss?: number;
  peakRss?: number;
}

async function bigFileScenario(targets: BenchTarget[], origin: Origin): Promise<string> {
  const rows: Row<JoinRow>[] = [];
  const details: string[] = [];
  for (const target of targets) {
    const result = await measure(target, "the big-file join", async (): Promise<JoinRow> => {
      const pids = target.pids();
      const idle = target.rss ? await idleRss(pids) : undefined;
      const sampler = sampleRss(() => pids);
      const cpu = cpuMeter(pids);
      const before = await origin.stats();
      const agents = await joinDownload(
        target,
        target.url(`${FILES.big.path}?join=${slug(target)}-${Date.now()}`),
        FILES.big.size,
        JOIN.agents,
        JOIN.spacingMs,
      );
      const peak = sampler.stop().peak;
      const cpuSeconds = cpu.stop();
      const after = await origin.stats();
      return {
        agents,
        cpuSeconds,
        upstreamBytes: after.bytes - before.bytes,
        idleRss: idle,
        peakRss: target.rss ? peak : undefined,
      };
    });
    rows.push({ name: target.name, result });
    const { agents } = result;
    details.push(
      `- ${target.name}: TTFB per agent (ms, in join order): ${agents.map((a) => (Number.isNaN(a.ttfbMs) ? "—" : Math.round(a.ttfbMs))).join(", ")}`,
    );
    for (const a of agents.filter((a) => a.error)) console.error(`  ${target.name}: agent error: ${a.error}`);
    await Bun.sleep(1000);
  }
  const ttfb = (r: JoinRow) =>
    r.agents
      .map((a) => a.ttfbMs)
      .filter((t) => !Number.isNaN(t))
      .sort((a, b) => a - b);
  const columns: Column<JoinRow>[] = [
    { title: "upstream bytes", value: (r) => r.upstreamBytes, format: mib },
    { title: "TTFB min", value: (r) => ttfb(r)[0], format: ms },
    { title: "TTFB median", value: (r) => median(ttfb(r)), format: ms },
    { title: "TTFB max", value: (r) => ttfb(r).at(-1), format: ms },
    { title: "total time", value: (r) => Math.max(...r.agents.map((a) => a.doneAtMs)), format: ms },
    { title: "server CPU", value: (r) => r.cpuSeconds * 1000, format: ms },
    {
      title: "agents with 256 MiB",
      value: (r) => `${r.agents.filter((a) => !a.error).length}/${r.agents.length}`,
      ratio: false,
    },
    { title: "idle RSS", value: (r) => r.idleRss, format: mib },
    { title: "peak RSS", value: (r) => r.peakRss, format: mib },
    // No ratio: nginx's growth is ~0, so any ratio to it would be noise.
    {
      title: "peak − idle",
      value: (r) => (r.peakRss !== undefined && r.idleRss !== undefined ? r.peakRss - r.idleRss : undefined),
      format: mib,
      ratio: false,
    },
    { title: "X-Cache", value: (r) => labels(count(r.agents.map((a) => a.label))), ratio: false },
  ];
  return [
    scenarioTable(
      `c. Big-file join: 256 MiB at ${BIG_RATE_BYTES_PER_S / 1024 / 1024} MiB/s from the origin, ${JOIN.agents} agents joining ${JOIN.spacingMs} ms apart`,
      columns,
      rows,
      RATIOS,
    ),
    "",
    "TTFB: from an agent's request to its first body byte. Total time: first agent's start to last agent's last byte. " +
      "RSS: cachegate's process; nginx's master, workers and cache processes summed (one nginx serves both nginx rows), sampled every 100 ms. " +
      `The origin paces each connection, so 'origin direct' is ${JOIN.agents} separate paced downloads.`,
    "",
    ...details,
    ...takeNotes(),
  ].join("\n");
}

// ── helpers ────────────────────────────────────────────────────────────────

const slug = (t: Target) => t.name.split(" ")[0]!.toLowerCase() + (t.proxy ? "-proxy" : "");
const load = () =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(", ");
const cpuPerRequest = (run: HotRun) => (run.requests > 0 ? (run.cpuSeconds / run.requests) * 1e6 : Number.NaN);
const median = (sorted: number[]) => (sorted.length === 0 ? undefined : sorted[Math.floor((sorted.length - 1) / 2)]);
const count = (values: string[]) =>
  values.reduce<Record<string, number>>((acc, v) => {
    acc[v] = (acc[v] ?? 0) + 1;
    return acc;
  }, {});
const labels = (counts: Record<string, number>) =>
  Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");

function firstLine(cmd: string[]): string {
  const out = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return `${out.stdout.toString()}${out.stderr.toString()}`
    .trim()
    .split("\n")[0]!
    .replace(/^nginx version: /, "");
}

await runBench("bench", main, { watchdogMs: WATCHDOG_MS });
