/**
 * `bun run bench`: cachegate, twice (its default workers, one per core, and
 * CACHEGATE_WORKERS=1), against its peers nginx proxy_cache and Varnish, and
 * against the ceiling (nginx serving the files from disk), on loopback, in one run:
 *
 *   a. cold storm     500 requests, 100 at a time, for one 2 MiB manifest nobody has cached
 *   b. hot hits       wrk -t2 -c50 -d10s on a cached 10 KiB and a cached 2 MiB object
 *   c. cached ranges  wrk -t2 -c50 -d10s, 64 KiB Range requests (4 ranges in turn) on the cached 2 MiB object
 *   d. big-file join  a 256 MiB file from an origin paced to 32 MiB/s (8 s), 20 agents joining 150 ms apart
 *
 * Every figure of both cachegates is also given divided by nginx's, Varnish's
 * and the ceiling's from the same run. Takes ~5 minutes. For development,
 * BENCH_QUICK=1 runs wrk for 3 s instead of 10, and BENCH_ONLY=a,d runs only
 * the scenarios named.
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
import { startNginx } from "./nginx.ts";
import { type Origin, startOrigin } from "./origin.ts";
import { cpuMeter, idleRss, makeTempDir, runBench, sampleRss } from "./procs.ts";
import { type Column, int, mib, ms, type Row, scenarioTable, us } from "./table.ts";
import { ensureTools, toolPath } from "./tools.ts";
import { startVarnish } from "./varnish.ts";

const WORK = join(import.meta.dir, ".work");
const LOGS = join(WORK, "logs");
const QUICK = process.env.BENCH_QUICK === "1";
const ONLY = process.env.BENCH_ONLY?.toLowerCase().split(",");
const WRK_SECONDS = QUICK ? 3 : 10;
const STORM = { requests: 500, concurrency: 100 };
const JOIN = { agents: 20, spacingMs: 150 };
/** Four different 64 KiB ranges of the 2 MiB object: its start, an aligned middle, an unaligned one, a suffix. */
const RANGES = ["bytes=0-65535", "bytes=1048576-1114111", "bytes=1234567-1300102", "bytes=-65536"] as const;
const RANGE_BYTES = 65_536;
/** How long the origin takes to send the big file to one agent: 8 s. */
const ORIGIN_BIG_MS = (FILES.big.size / BIG_RATE_BYTES_PER_S) * 1000;
/** The whole run normally takes ~5 minutes; past this something hangs, and we stop rather than wait. */
const WATCHDOG_MS = 9 * 60_000;

const ORIGIN = "origin direct";
const CEILING = "nginx direct file (ceiling)";
const NGINX = "nginx proxy_cache";
const VARNISH = "varnish";
const CACHEGATE = "cachegate";
const CACHEGATE_1 = "cachegate 1 worker";
const RATIOS = { of: [CACHEGATE, CACHEGATE_1], to: [NGINX, VARNISH, CEILING] };

interface BenchTarget extends Target {
  /** Whether it is a cache in front of the origin (warm it; count what it asks upstream). */
  caching: boolean;
  /**
   * The processes doing the serving (not the origin behind a proxy): their CPU time and memory are
   * measured. The whole tree, read again at each use: a gateway's workers may be restarted.
   */
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
  // A gateway's worker that dies is replaced by its primary: the run goes on, but the report should say so.
  const workers = target.revive === undefined ? [] : target.pids().slice(1);
  const result = await run();
  await Bun.sleep(300);
  lastStep.set(target.name, step);
  const now = new Set(target.pids());
  const gone = workers.filter((pid) => !now.has(pid));
  if (gone.length > 0)
    notes.push(
      `**${target.name}: worker pid ${gone.join(", ")} exited during or right after ${step}** ` +
        `(${now.size - 1} worker process${now.size === 2 ? "" : "es"} now).`,
    );
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
  const varnish = await startVarnish(origin.port, LOGS);
  const gateway = await startCachegate(LOGS);
  const gateway1 = await startCachegate(LOGS, { name: "cachegate-1-worker", workers: 1 });
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
      name: VARNISH,
      caching: true,
      rss: true,
      url: origin.url,
      proxy: `http://127.0.0.1:${varnish.port}`,
      pids: varnish.pids,
    },
    ...[
      { name: CACHEGATE, gw: gateway },
      { name: CACHEGATE_1, gw: gateway1 },
    ].map(({ name, gw }) => ({
      name,
      caching: true,
      rss: true,
      url: origin.url,
      proxy: `http://127.0.0.1:${gw.proxyPort}`,
      pids: gw.pids,
      revive: gw.revive,
    })),
  ];

  const tool = (cmd: string[], pattern: RegExp) => pattern.exec(output(cmd))?.[1] ?? "?";
  const header = [
    `## cachegate benchmark, ${new Date().toISOString()}${QUICK ? " (BENCH_QUICK: short wrk runs)" : ""}`,
    "",
    `Loopback, ${availableParallelism()} CPUs, Bun ${Bun.version}, ` +
      `nginx ${tool([toolPath("nginx"), "-v"], /nginx\/(\S+)/)}, ` +
      `Varnish ${tool([toolPath("varnishd"), "-V"], /varnish-(\S+)/)}, wrk ${tool(["wrk", "-v"], /wrk (\S+)/)}. ` +
      `'${CACHEGATE}' runs with CACHEGATE_WORKERS unset (the default: one worker per core), ` +
      `'${CACHEGATE_1}' with CACHEGATE_WORKERS=1. ` +
      "Load generators run on the same CPUs as the servers; compare rows with each other, not with other machines. " +
      `Load average at start: ${load()} (anything else running skews requests/s and times; CPU per request much less).`,
  ].join("\n");
  console.log(`${header}\n`);
  const sections = [header];
  const emit = (text: string) => {
    console.log(`${text}\n`);
    sections.push(text);
  };

  const scenarios: [string, () => Promise<string>][] = [
    ["a", () => coldStormScenario(targets, origin)],
    ["b", () => hotHitsScenario(targets, origin, workDir)],
    ["c", () => rangeScenario(targets, origin, workDir)],
    ["d", () => bigFileScenario(targets, origin)],
  ];
  for (const [letter, scenario] of scenarios) if (ONLY === undefined || ONLY.includes(letter)) emit(await scenario());

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
  idleRss?: number;
  peakRss?: number;
}

async function coldStormScenario(targets: BenchTarget[], origin: Origin): Promise<string> {
  const rows: Row<StormRow>[] = [];
  for (const target of targets) {
    // A URL no cache has seen: every target starts cold.
    const url = target.url(`${FILES.manifest.path}?storm=${slug(target)}-${Date.now()}`);
    const result = await measure(target, "the cold storm", async (): Promise<StormRow> => {
      const idle = target.rss ? await idleRss(target.pids) : undefined;
      const before = await origin.stats();
      const sampler = sampleRss(target.pids);
      const cpu = cpuMeter(target.pids);
      const result = await coldStorm(target, url, FILES.manifest.size, STORM.requests, STORM.concurrency);
      const cpuSeconds = cpu.stop();
      const peak = sampler.stop().peak;
      const after = await origin.stats();
      return {
        ...result,
        cpuSeconds,
        upstreamRequests: after.requests - before.requests,
        upstreamBytes: after.bytes - before.bytes,
        idleRss: idle,
        peakRss: target.rss ? peak : undefined,
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
    { title: "idle RSS", value: (r) => r.idleRss, format: mib },
    { title: "peak RSS", value: (r) => r.peakRss, format: mib },
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
      "Upstream requests/bytes: what the origin served during the storm " +
      "(the origin row is the origin itself; the ceiling never asks it). " +
      `Idle RSS: before the storm; peak RSS: during it, sampled every 100 ms. ${RSS_NOTE}`,
    ...takeNotes(),
  ].join("\n");
}

/** Whose memory the RSS columns sum. */
const RSS_NOTE =
  "RSS sums each server's whole process tree: cachegate's primary and its workers; nginx's master, workers " +
  "and cache processes (one nginx serves both nginx rows); varnishd's manager and cache process, " +
  "whose malloc storage holds the cached objects.";

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
        const cpu = cpuMeter(target.pids);
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

// ── c. cached ranges ───────────────────────────────────────────────────────

interface RangeRow {
  /** Why the target was not measured: it does not answer these ranges with 206 and 64 KiB. */
  skipped?: string;
  run?: HotRun;
  upstreamRequests: number;
}

async function rangeScenario(targets: BenchTarget[], origin: Origin, workDir: string): Promise<string> {
  const rows: Row<RangeRow>[] = [];
  const skipped: string[] = [];
  for (const target of targets) {
    const url = target.url(FILES.obj2m.path);
    const result = await measure(target, `Range requests on ${FILES.obj2m.path}`, async (): Promise<RangeRow> => {
      if (target.caching) await warm(target, url, FILES.obj2m.size);
      const why = await checkRanges(target, url);
      if (why !== undefined) return { skipped: why, upstreamRequests: Number.NaN };
      const before = await origin.stats();
      const cpu = cpuMeter(target.pids);
      const run = await runWrk(target, url, workDir, WRK_SECONDS, RANGES);
      const cpuSeconds = cpu.stop();
      const upstreamRequests = (await origin.stats()).requests - before.requests;
      return { run: { ...run, cpuSeconds }, upstreamRequests: target.caching ? upstreamRequests : Number.NaN };
    });
    rows.push({ name: target.name, result });
    if (result.skipped) skipped.push(`- ${target.name}: not measured, ${result.skipped}.`);
    await Bun.sleep(500);
  }
  const columns: Column<RangeRow>[] = [
    { title: "req/s", value: (r) => r.run?.requestsPerSec, format: int },
    { title: "MiB/s", value: (r) => r.run && (r.run.requestsPerSec * RANGE_BYTES) / 1024 / 1024, format: int },
    { title: "p99", value: (r) => r.run?.p99Ms, format: ms },
    { title: "CPU/req", value: (r) => r.run && cpuPerRequest(r.run), format: us },
    { title: "errors", value: (r) => r.run?.errors, format: int, ratio: false },
    { title: "upstream requests", value: (r) => r.upstreamRequests, format: int, ratio: false },
  ];
  return [
    scenarioTable(
      `c. Cached ranges: wrk -t2 -c50 -d${WRK_SECONDS}s, 64 KiB Range requests on a cached 2 MiB object`,
      columns,
      rows,
      RATIOS,
    ),
    "",
    `Each request asks for the next of ${RANGES.map((r) => `\`${r}\``).join(", ")} (all 64 KiB), in turn; ` +
      "before the run each target must answer each of them with 206 and 64 KiB. " +
      "MiB/s is body bytes; CPU/req as in b; upstream requests should be 0.",
    ...(skipped.length > 0 ? ["", ...skipped] : []),
    ...takeNotes(),
  ].join("\n");
}

/** Asks for each range once; why the target fails them (status, length), or undefined if it answers each right. */
async function checkRanges(target: Target, url: string): Promise<string | undefined> {
  for (const range of RANGES) {
    const res = await agentFetch(target, url, { range });
    const bytes = await drain(res);
    const label = res.headers.get("x-cache") ?? "-";
    if (res.status !== 206 || bytes !== RANGE_BYTES)
      return `it answers \`Range: ${range}\` with ${res.status} and ${bytes} bytes (X-Cache ${label})`;
  }
  return undefined;
}

// ── d. big-file join ───────────────────────────────────────────────────────

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
      const idle = target.rss ? await idleRss(target.pids) : undefined;
      const sampler = sampleRss(target.pids);
      const cpu = cpuMeter(target.pids);
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
    const ttfbs = agents.map((a) => (Number.isNaN(a.ttfbMs) ? "—" : Math.round(a.ttfbMs)));
    details.push(`- ${target.name}: TTFB per agent (ms, in join order): ${ttfbs.join(", ")}`);
    for (const a of agents.filter((a) => a.error)) console.error(`  ${target.name}: agent error: ${a.error}`);
    await Bun.sleep(1000);
  }
  const ttfb = (r: JoinRow) =>
    r.agents
      .map((a) => a.ttfbMs)
      .filter((t) => !Number.isNaN(t))
      .sort((a, b) => a - b);
  // The first agent starts the download alone (the others join while it runs): its time is the origin's plus the cost
  // of the proxy in between.
  const first = (r: JoinRow) => (r.agents[0]?.error ? Number.NaN : r.agents[0]?.doneAtMs);
  const columns: Column<JoinRow>[] = [
    { title: "first agent", value: first, format: ms },
    {
      title: `first ÷ origin ${ORIGIN_BIG_MS / 1000} s`,
      value: (r) => (first(r) ?? Number.NaN) / ORIGIN_BIG_MS,
      format: ratio,
      ratio: false,
    },
    { title: "last agent done", value: (r) => Math.max(...r.agents.map((a) => a.doneAtMs)), format: ms },
    { title: "upstream bytes", value: (r) => r.upstreamBytes, format: mib },
    { title: "TTFB median", value: (r) => median(ttfb(r)), format: ms },
    { title: "TTFB max", value: (r) => ttfb(r).at(-1), format: ms },
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
  const rate = BIG_RATE_BYTES_PER_S / 1024 / 1024;
  return [
    scenarioTable(
      `d. Big-file join: 256 MiB at ${rate} MiB/s from the origin (${ORIGIN_BIG_MS / 1000} s), ` +
        `${JOIN.agents} agents joining ${JOIN.spacingMs} ms apart`,
      columns,
      rows,
      RATIOS,
    ),
    "",
    "First agent: the time the first agent (who starts the download) takes to get the whole file; " +
      `÷ origin: that time over the origin's ${ORIGIN_BIG_MS / 1000} s (1.00 = no cost). ` +
      "Last agent done: from the first agent's start to the last agent's last byte " +
      `(the last agent joins ${((JOIN.agents - 1) * JOIN.spacingMs) / 1000} s in). ` +
      "TTFB: from an agent's request to its first body byte. " +
      `RSS: idle before, peak during, sampled every 100 ms. ${RSS_NOTE} ` +
      `The origin paces each connection, so 'origin direct' is ${JOIN.agents} separate paced downloads. ` +
      "nginx's proxy_cache_lock_timeout (5 s by default) is shorter than the origin's time: an agent that waited " +
      "that long for the first one's copy fetches the file from the origin itself, uncached.",
    "",
    ...details,
    ...takeNotes(),
  ].join("\n");
}

// ── helpers ────────────────────────────────────────────────────────────────

const slug = (t: Target) => t.name.toLowerCase().replace(/[^a-z0-9]+/g, "-");
const load = () =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(", ");
const ratio = (v: number) => `${v.toFixed(2)}×`;
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

/** What a command prints, stdout and stderr together (`nginx -v` and `varnishd -V` print to stderr). */
function output(cmd: string[]): string {
  const out = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return `${out.stdout.toString()}${out.stderr.toString()}`;
}

await runBench("bench", main, { watchdogMs: WATCHDOG_MS });
