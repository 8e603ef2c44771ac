/**
 * `bun run bench:tls`: what TLS interception costs the hot path, on loopback, in one run
 * (issue 4, item 6), and how it compares with Squid's ssl_bump (issue 11):
 *
 *   a. plain HTTP hits            keep-alive absolute-form GETs to the gateway
 *   b. intercepted, reused tunnel one CONNECT + TLS handshake per client, then keep-alive GETs inside
 *   c. intercepted, new tunnel    per request: TCP + CONNECT + TLS handshake + one GET + close
 *   d. leaf minting               createLeafMinter in this process: distinct hosts, sequential and
 *                                 concurrent, and one host asked for concurrently (must mint once)
 *
 * b and c run against four servers, one at a time, each stopped before the
 * next starts: cachegate with its default workers (CACHEGATE_WORKERS unset:
 * one per core), cachegate with CACHEGATE_WORKERS=1, and Squid 5 with
 * ssl_bump (bench/squid.ts) with `workers 1` and `workers 2`; a runs against
 * the first. The pairs compared (default vs Squid workers 2, 1 worker vs
 * Squid workers 1) run back to back. CPU and RSS are those of the whole
 * process tree under the pid started (workers, kids, helpers).
 *
 * a–c: a cached 10 KiB object, C client loops in one separate load-generator
 * process (bench/tls-client.ts) so its CPU is not counted as the server's.
 * Tables go to stdout and are appended to bench/.work/results-tls.md; the
 * servers' logs go to bench/.work/logs-tls/.
 *
 * BENCH_TLS_SECONDS=2 shortens every measured run (default 8 s) for a quick try.
 */
import "reflect-metadata"; // @peculiar/x509's dependency injection needs it loaded first
import { randomBytes } from "node:crypto";
import { appendFile, mkdir, rm, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { silentLogger } from "../src/log.ts";
import { createSelfSignedCa, EC_P256, loadCa, randomSerial } from "../src/tls/ca.ts";
import { createLeafMinter } from "../src/tls/leaf-minter.ts";
import { freePort, freshLog, interrupted, makeTempDir, runBench, spawnChild, waitForHttp } from "./procs.ts";
import { stopTree, treeCpuMeter, treeNames, treeRss } from "./proctree.ts";
import { accessLogResults, ensureSquid, startSquid, WARM_USER_AGENT } from "./squid.ts";
import { int, markdown, mib, ms, us } from "./table.ts";
import { type LoadResult, type LoadSpec, type Mode, openConn } from "./tls-client.ts";

const REPO = join(import.meta.dir, "..");
const WORK = join(import.meta.dir, ".work");
const LOGS = join(WORK, "logs-tls");
const RESULTS = join(WORK, "results-tls.md");
const PATH = "/obj10k";
const BODY_BYTES = 10 * 1024;
const CONCURRENCY = 32;
const SECONDS = Number(process.env.BENCH_TLS_SECONDS) > 0 ? Number(process.env.BENCH_TLS_SECONDS) : 8;
const WARMUP_SECONDS = Math.min(1, SECONDS / 4);
const MINT_N = 300;
/** Nine measured runs of SECONDS + warm-up, four server starts: ~2.5 min at 8 s. Past this something hangs. */
const WATCHDOG_MS = (4 + (9 * (SECONDS + WARMUP_SECONDS)) / 60) * 60_000;

// ── origins ────────────────────────────────────────────────────────────────

/** A throwaway CA standing in for a public one, and a leaf it signs for localhost (as test/support/test-ca.ts). */
async function originCertificates(): Promise<{ caPem: string; cert: string; key: string }> {
  const pkcs8 = async (key: CryptoKey) =>
    x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
  const now = Date.now();
  const { cert: ca, keys: caKeys } = await createSelfSignedCa(
    `CN=cachegate bench origin CA ${randomSerial().slice(0, 8)}, O=cachegate bench`,
    86400_000,
  );
  const leafKeys = (await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: "CN=localhost",
    issuer: ca.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    signingKey: caKeys.privateKey,
    publicKey: leafKeys.publicKey,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
      ]),
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  return { caPem: ca.toString("pem"), cert: leaf.toString("pem"), key: await pkcs8(leafKeys.privateKey) };
}

interface Origins {
  tlsPort: number;
  plainPort: number;
  caFile: string;
  /** Requests each origin served: after warming, hits must not add any. */
  served: { tls: number; plain: number };
  stop(): void;
}

/**
 * The TLS origin and the plain one, in this process: once warm, every
 * measured request is a cache hit, so they sit idle while the load runs.
 */
async function startOrigins(dir: string): Promise<Origins> {
  const { caPem, cert, key } = await originCertificates();
  const caFile = join(dir, "origin-ca.pem");
  await writeFile(caFile, caPem);
  const body = new Uint8Array(randomBytes(BODY_BYTES));
  const served = { tls: 0, plain: 0 };
  const handler = (which: "tls" | "plain") => (req: Request) => {
    if (new URL(req.url).pathname !== PATH) return new Response("not found\n", { status: 404 });
    served[which]++;
    return new Response(body, {
      headers: { "content-type": "application/octet-stream", "cache-control": "max-age=3600" },
    });
  };
  const [tlsPort, plainPort] = [await freePort(), await freePort()];
  const tls = Bun.serve({
    hostname: "127.0.0.1",
    port: tlsPort,
    idleTimeout: 0,
    tls: { cert, key },
    fetch: handler("tls"),
  });
  const plain = Bun.serve({ hostname: "127.0.0.1", port: plainPort, idleTimeout: 0, fetch: handler("plain") });
  return {
    tlsPort,
    plainPort,
    caFile,
    served,
    stop() {
      void tls.stop(true);
      void plain.stop(true);
    },
  };
}

// ── the servers ────────────────────────────────────────────────────────────

/** A proxy under test: cachegate or Squid, started as our child; measured over its process tree. */
interface Server {
  pid: number;
  proxyPort: number;
  /** PEM of the CA it signs its leaves with: the agents trust it. */
  caPem: string;
  exited(): string | undefined;
  /** Stops the whole tree; returns the names of processes that needed a SIGKILL. */
  stop(): Promise<string[]>;
  /** Squid's: the warm-up's MISS and HIT must show there. */
  accessLog?: string;
}

/**
 * As bench/cachegate.ts starts it (Cache Mode, `localhost` a platform
 * domain, private upstreams allowed), plus NODE_EXTRA_CA_CERTS so it trusts
 * the origin, a token we keep to configure it, and CACHEGATE_WORKERS as
 * given (undefined: unset, the gateway's default).
 */
async function startGateway(originCaFile: string, tlsPort: number, workers: string | undefined): Promise<Server> {
  const [proxyPort, adminPort] = [await freePort(), await freePort()];
  const token = randomBytes(16).toString("hex");
  const dataDir = await makeTempDir("cachegate-bench-tls-data-");
  const env: Record<string, string | undefined> = {
    ...process.env,
    NODE_EXTRA_CA_CERTS: originCaFile,
    CACHEGATE_DATA_DIR: dataDir,
    CACHEGATE_HOST: "127.0.0.1",
    CACHEGATE_PORT: String(proxyPort),
    CACHEGATE_ADMIN_HOST: "127.0.0.1",
    CACHEGATE_ADMIN_PORT: String(adminPort),
    CACHEGATE_ADMIN_TOKEN: token,
    CACHEGATE_CACHE_MODE: "1",
    CACHEGATE_PLATFORM_DOMAINS: "localhost",
    CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1",
  };
  if (workers === undefined) delete env.CACHEGATE_WORKERS;
  else env.CACHEGATE_WORKERS = workers;
  const log = `cachegate-workers-${workers ?? "default"}`;
  const child = spawnChild([process.execPath, join(REPO, "src/main.ts")], {
    cwd: REPO,
    env,
    stdout: await freshLog(join(LOGS, `${log}.log`)),
    stderr: await freshLog(join(LOGS, `${log}.err.log`)),
  });
  await waitForHttp(`http://127.0.0.1:${adminPort}/healthz`, child, "cachegate");

  const admin = async (method: string, path: string, body?: unknown): Promise<Response> => {
    const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
      method,
      proxy: false,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return res;
  };
  await (await admin("PATCH", "/api/config", { connect: { ports: [443, tlsPort] } })).arrayBuffer();
  const caPem = await (await admin("GET", "/api/ca.pem")).text();
  if (!caPem.includes("BEGIN CERTIFICATE"))
    throw new Error(`GET /api/ca.pem returned no certificate: ${caPem.slice(0, 200)}`);
  return {
    pid: child.pid,
    proxyPort,
    caPem,
    exited: () =>
      child.exitCode !== null || child.signalCode !== null
        ? `exited (${child.exitCode ?? child.signalCode})`
        : undefined,
    stop: () => stopTree(child),
  };
}

// ── a–c: hot hits ──────────────────────────────────────────────────────────

type ScenarioKey = "a" | "b" | "c";

interface Scenario {
  key: ScenarioKey;
  name: string;
  mode: Mode;
  host: string;
  port: number;
}

interface HotRow {
  load: LoadResult;
  /** CPU of the server's whole process tree over the measured window. */
  cpuSeconds: number;
  /** How that CPU split between the tree's processes. */
  cpuSplit: string;
  /** Summed resident memory of the server's process tree right after the run. */
  rss: number;
  /** The processes of the tree right after the run. */
  procs: string;
}

/** One request at a time, on one connection, until the server answers HIT (the first should be a MISS). */
async function warm(
  spec: Omit<LoadSpec, "concurrency" | "warmupSeconds" | "seconds" | "expectBytes">,
): Promise<{ seen: string[]; tls?: string }> {
  const seen: string[] = [];
  const conn = await openConn({ ...spec, userAgent: WARM_USER_AGENT });
  try {
    // A MISS's response can end before its cache entry lands: the next request then joins the landing
    // flight (COALESCED).
    for (let i = 0; i < 20; i++) {
      const res = await conn.request();
      seen.push(`${res.status} ${res.xcache}`);
      if (res.status !== 200 || res.bodyBytes !== BODY_BYTES)
        throw new Error(`warming ${spec.mode}: got ${res.status} with ${res.bodyBytes} bytes`);
      if (res.xcache === "HIT") return { seen, tls: conn.tls };
      await Bun.sleep(20);
    }
  } finally {
    conn.close();
  }
  throw new Error(`warming ${spec.mode}: never a HIT (${seen.join(", ")})`);
}

/** Runs the load generator as its own process; the server's tree CPU is metered from its "start" line to its result. */
async function runLoad(spec: LoadSpec, serverPid: number): Promise<HotRow> {
  const child = spawnChild([process.execPath, join(import.meta.dir, "tls-client.ts"), JSON.stringify(spec)], {
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
  });
  const stderr = new Response(child.stderr as ReadableStream).text();
  let meter: ReturnType<typeof treeCpuMeter> | undefined;
  let cpu = { total: Number.NaN, split: "" };
  let result: LoadResult | undefined;
  let procs = "";
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of child.stdout as ReadableStream<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === "") continue;
      const msg = JSON.parse(line) as { event?: string } & LoadResult;
      if (msg.event === "start") meter = treeCpuMeter(serverPid);
      else {
        if (meter) cpu = meter.stop();
        procs = treeNames(serverPid);
        result = msg;
      }
    }
  }
  const code = await child.exited;
  if (result === undefined)
    throw new Error(
      `the load generator (${spec.mode}) exited ${code} without a result: ${(await stderr).trim().slice(0, 1000)}`,
    );
  return { load: result, cpuSeconds: cpu.total, cpuSplit: cpu.split, rss: treeRss(serverPid), procs };
}

interface TargetDef {
  key: "cg" | "cg1" | "sq1" | "sq2";
  name: string;
  start(): Promise<Server>;
  scenarios: ScenarioKey[];
}

interface TargetResult {
  rows: Map<ScenarioKey, HotRow>;
  /** Warm-up answers, per scenario warmed. */
  warmed: string[];
  tls?: string;
  rssAtStart: number;
  procsAtStart: string;
  /** Squid: the warm-up requests' result codes in its access.log. */
  accessLog?: Record<string, number>;
}

const labels = (counts: Record<string, number>) =>
  Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${int(n)}`)
    .join(", ");

/** Polls a Squid access.log until a GET there was a hit (TCP_HIT, TCP_MEM_HIT…). */
async function hitInAccessLog(path: string): Promise<Record<string, number>> {
  let results: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    results = await accessLogResults(path);
    if (Object.keys(results).some((code) => /^TCP_\w*HIT\/200$/.test(code))) return results;
    await Bun.sleep(50);
  }
  throw new Error(`no HIT in ${path} after warming (${labels(results) || "no GET logged"})`);
}

/**
 * Starts one server, warms the object into its cache (checked by X-Cache
 * and, for Squid, by its access.log), measures its scenarios, and stops it.
 */
async function measureTarget(
  def: TargetDef,
  scenarios: Scenario[],
  origins: Origins,
  problems: string[],
): Promise<TargetResult> {
  const server = await def.start();
  try {
    const base = (s: Scenario) => ({
      mode: s.mode,
      proxyPort: server.proxyPort,
      host: s.host,
      port: s.port,
      path: PATH,
      ca: server.caPem,
    });
    const mine = scenarios.filter((s) => def.scenarios.includes(s.key));
    const warmed: string[] = [];
    let tls: string | undefined;
    for (const s of mine.filter((s) => s.mode !== "fresh")) {
      const w = await warm(base(s));
      warmed.push(`${s.mode === "plain" ? "plain" : "TLS"} ${w.seen.join(" → ")}`);
      tls ??= w.tls;
    }
    const accessLog = server.accessLog ? await hitInAccessLog(server.accessLog) : undefined;
    const result: TargetResult = {
      rows: new Map(),
      warmed,
      tls,
      rssAtStart: treeRss(server.pid),
      procsAtStart: treeNames(server.pid),
      accessLog,
    };
    const servedAfterWarm = { ...origins.served };
    for (const s of mine) {
      process.stderr.write(`${def.name}: measuring ${s.name}…\n`);
      const spec: LoadSpec = {
        ...base(s),
        concurrency: CONCURRENCY,
        warmupSeconds: WARMUP_SECONDS,
        seconds: SECONDS,
        expectBytes: BODY_BYTES,
      };
      const row = await runLoad(spec, server.pid);
      result.rows.set(s.key, row);
      const { load: r } = row;
      const what = `${def.name}, ${s.name}`;
      const non200 = r.requests - (r.statuses["200"] ?? 0);
      const nonHit = r.requests - (r.xcache.HIT ?? 0);
      if (r.errors > 0) problems.push(`${what}: ${int(r.errors)} errors (first: ${r.firstError})`);
      if (non200 > 0) problems.push(`${what}: ${int(non200)} responses not 200 (${labels(r.statuses)})`);
      if (nonHit > 0) problems.push(`${what}: ${int(nonHit)} responses not X-Cache HIT (${labels(r.xcache)})`);
      if (r.badBodies > 0) problems.push(`${what}: ${int(r.badBodies)} bodies not ${BODY_BYTES} bytes`);
      const died = server.exited();
      if (died) throw new Error(`${def.name} ${died} during ${s.name}; see ${LOGS}`);
      await Bun.sleep(500);
    }
    const extra = {
      tls: origins.served.tls - servedAfterWarm.tls,
      plain: origins.served.plain - servedAfterWarm.plain,
    };
    if (extra.tls !== 0 || extra.plain !== 0)
      problems.push(
        `${def.name}: the origins served requests during the hot runs ` +
          `(TLS ${extra.tls}, plain ${extra.plain}): not all hits`,
      );
    return result;
  } finally {
    const killed = await server.stop();
    if (killed.length > 0) problems.push(`${def.name}: had to SIGKILL ${killed.join(", ")} when stopping`);
  }
}

// ── d: minting ─────────────────────────────────────────────────────────────

interface MintRow {
  name: string;
  certs: number;
  ms: number;
  distinct: number;
}

async function mintingScenario(dir: string): Promise<MintRow[]> {
  const minter = createLeafMinter(await loadCa(dir, {}, silentLogger));
  await minter.leafFor("warm-up.bench.invalid"); // the shared leaf key pair is generated on first use
  const rows: MintRow[] = [];
  const time = async (name: string, certs: number, run: () => Promise<{ cert: string }[]>) => {
    const t0 = performance.now();
    const leaves = await run();
    rows.push({ name, certs, ms: performance.now() - t0, distinct: new Set(leaves.map((l) => l.cert)).size });
  };
  await time(`${MINT_N} distinct hosts, sequential`, MINT_N, async () => {
    const out = [];
    for (let i = 0; i < MINT_N; i++) out.push(await minter.leafFor(`seq-${i}.bench.invalid`));
    return out;
  });
  await time(`${MINT_N} distinct hosts, concurrent`, MINT_N, () =>
    Promise.all(Array.from({ length: MINT_N }, (_, i) => minter.leafFor(`par-${i}.bench.invalid`))),
  );
  await time(`one host × ${MINT_N}, concurrent`, MINT_N, () =>
    Promise.all(Array.from({ length: MINT_N }, () => minter.leafFor("same.bench.invalid"))),
  );
  return rows;
}

// ── main ───────────────────────────────────────────────────────────────────

const load = () =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(", ");
const ratio = (x: number | undefined, y: number | undefined) =>
  x !== undefined && y !== undefined && Number.isFinite(x) && Number.isFinite(y) && y !== 0
    ? `${(x / y).toFixed(x / y >= 10 ? 1 : 2)}×`
    : "—";
const cpuUs = (r: HotRow | undefined) =>
  r !== undefined && r.load.requests > 0 ? (r.cpuSeconds / r.load.requests) * 1e6 : Number.NaN;
const num = (v: number | undefined, format: (v: number) => string) =>
  v === undefined || !Number.isFinite(v) ? "—" : format(v);

async function main(): Promise<void> {
  await rm(LOGS, { recursive: true, force: true });
  await mkdir(LOGS, { recursive: true });
  const dir = await makeTempDir("cachegate-bench-tls-");
  const origins = await startOrigins(dir);
  stopOrigins = origins.stop;
  const problems: string[] = [];

  let squidVersion: string | undefined;
  try {
    squidVersion = await ensureSquid();
  } catch (err) {
    problems.push(`Squid unavailable, its rows are empty: ${err instanceof Error ? err.message : err}`);
  }

  const scenarios: Scenario[] = [
    { key: "a", name: "a. plain HTTP hits (keep-alive)", mode: "plain", host: "localhost", port: origins.plainPort },
    { key: "b", name: "b. intercepted hits, reused tunnel", mode: "reuse", host: "localhost", port: origins.tlsPort },
    {
      key: "c",
      name: "c. intercepted hits, new tunnel per request",
      mode: "fresh",
      host: "localhost",
      port: origins.tlsPort,
    },
  ];
  const squid = (workers: number) => async (): Promise<Server> => {
    if (squidVersion === undefined) throw new Error("Squid is unavailable");
    return startSquid({ workers, originCaFile: origins.caFile, logDir: LOGS, label: `workers-${workers}` });
  };
  const cores = availableParallelism();
  // In the order they run: each pair compared in the table runs back to back.
  const targets: TargetDef[] = [
    {
      key: "cg",
      name: `cachegate (workers default, ${cores} cores)`,
      start: () => startGateway(origins.caFile, origins.tlsPort, undefined),
      scenarios: ["a", "b", "c"],
    },
    { key: "sq2", name: "Squid workers 2", start: squid(2), scenarios: ["b", "c"] },
    {
      key: "cg1",
      name: "cachegate (CACHEGATE_WORKERS=1)",
      start: () => startGateway(origins.caFile, origins.tlsPort, "1"),
      scenarios: ["b", "c"],
    },
    { key: "sq1", name: "Squid workers 1", start: squid(1), scenarios: ["b", "c"] },
  ];
  const loadAtStart = load();
  const results = new Map<TargetDef["key"], TargetResult>();
  for (const t of targets) {
    // After a signal the children and temp dirs are being removed: starting the next server would outlive them.
    if (interrupted()) throw new Error("interrupted");
    try {
      results.set(t.key, await measureTarget(t, scenarios, origins, problems));
    } catch (err) {
      if (t.key === "cg" || interrupted()) throw err; // without cachegate there is nothing to compare
      problems.push(`${t.name}: ${err instanceof Error ? err.message : err}`);
    }
  }
  const byName = new Map(targets.map((t) => [t.key, t.name]));

  const sections: string[] = [];
  const emit = (text: string) => {
    console.log(`${text}\n`);
    sections.push(text);
  };
  const cg = results.get("cg")!;
  emit(
    [
      `## cachegate TLS interception benchmark, ${new Date().toISOString()}`,
      "",
      `Loopback, ${cores} CPUs, Bun ${Bun.version}${squidVersion ? `, ${squidVersion}` : ""}. ` +
        `A cached ${BODY_BYTES / 1024} KiB object; ${CONCURRENCY} client loops in one load-generator process, ` +
        `${SECONDS} s each after a ${WARMUP_SECONDS} s warm-up; the load generator shares the CPUs with the server, ` +
        "so compare rows with each other, not with other machines. " +
        `Load average at start: ${loadAtStart}. ` +
        targets
          .filter((t) => results.has(t.key))
          .map((t) => {
            const r = results.get(t.key)!;
            return (
              `${t.name}: RSS after warming ${mib(r.rssAtStart)} (${r.procsAtStart}); ` +
              `warming ${r.warmed.join("; ")}` +
              (r.accessLog ? `; access.log ${labels(r.accessLog)}` : "") +
              `; TLS ${r.tls ?? "?"}.`
            );
          })
          .join(" "),
    ].join("\n"),
  );

  // The original table: plain vs intercepted, cachegate with its default workers.
  const a = cg.rows.get("a")!;
  const hotHeader = [
    "scenario",
    "req/s",
    "p50",
    "p99",
    "gateway CPU/req",
    "gateway RSS after",
    "requests",
    "errors",
    "status",
    "X-Cache",
  ];
  const hotBody = scenarios.map((s) => {
    const r = cg.rows.get(s.key)!;
    return [
      s.name,
      int(r.load.rps),
      ms(r.load.p50Ms),
      ms(r.load.p99Ms),
      us(cpuUs(r)),
      mib(r.rss),
      int(r.load.requests),
      int(r.load.errors),
      labels(r.load.statuses),
      labels(r.load.xcache),
    ];
  });
  for (const key of ["b", "c"] as const) {
    const r = cg.rows.get(key)!;
    hotBody.push([
      `*${key} ÷ a*`,
      ratio(r.load.rps, a.load.rps),
      ratio(r.load.p50Ms, a.load.p50Ms),
      ratio(r.load.p99Ms, a.load.p99Ms),
      ratio(cpuUs(r), cpuUs(a)),
      "—",
      "—",
      "—",
      "—",
      "—",
    ]);
  }
  emit(
    [
      `### Hot hits: plain HTTP vs intercepted HTTPS, ${byName.get("cg")} (C=${CONCURRENCY}, ${SECONDS} s each)`,
      "",
      markdown(hotHeader, hotBody),
      "",
      "Latency: per request as the client sees it (for c, TCP connect + CONNECT + TLS handshake + GET). " +
        "Gateway CPU/req: utime+stime of the gateway's process tree over the measured window ÷ requests.",
    ].join("\n"),
  );

  // cachegate vs Squid.
  const row = (key: TargetDef["key"], s: ScenarioKey) => results.get(key)?.rows.get(s);
  const figures = (key: TargetDef["key"]) => ({
    hitsPerS: row(key, "b")?.load.rps,
    cpuPerHit: cpuUs(row(key, "b")),
    tunnelsPerS: row(key, "c")?.load.rps,
    cpuPerTunnel: cpuUs(row(key, "c")),
  });
  const order: TargetDef["key"][] = ["cg", "cg1", "sq1", "sq2"];
  const cmpHeader = [
    "target",
    "intercepted hits/s (reused tunnel)",
    "CPU/hit",
    "new tunnels/s",
    "CPU/tunnel",
    "RSS after (tree)",
    "processes (tree, under load)",
  ];
  const cmpBody = order.map((key) => {
    const f = figures(key);
    const c = row(key, "c");
    return [
      byName.get(key)!,
      num(f.hitsPerS, int),
      num(f.cpuPerHit, us),
      num(f.tunnelsPerS, int),
      num(f.cpuPerTunnel, us),
      num(c?.rss, mib),
      c?.procs ?? "—",
    ];
  });
  const pairs: [TargetDef["key"], TargetDef["key"]][] = [
    ["cg1", "sq1"],
    ["cg", "sq2"],
  ];
  for (const [x, y] of pairs) {
    const fx = figures(x);
    const fy = figures(y);
    cmpBody.push([
      `*${byName.get(x)} ÷ ${byName.get(y)}*`,
      ratio(fx.hitsPerS, fy.hitsPerS),
      ratio(fx.cpuPerHit, fy.cpuPerHit),
      ratio(fx.tunnelsPerS, fy.tunnelsPerS),
      ratio(fx.cpuPerTunnel, fy.cpuPerTunnel),
      ratio(row(x, "c")?.rss, row(y, "c")?.rss),
      "—",
    ]);
  }
  const verdict = (what: string, x: number | undefined, y: number | undefined, better: "lower" | "higher") => {
    if (x === undefined || y === undefined || !Number.isFinite(x) || !Number.isFinite(y)) return `${what}: —`;
    const met = better === "lower" ? x <= y : x >= y;
    return `${what}: ${met ? "met" : "**not met**"} (${ratio(x, y)})`;
  };
  const [cg1, sq1, cgd, sq2] = [figures("cg1"), figures("sq1"), figures("cg"), figures("sq2")];
  const details = order.flatMap((key) =>
    (["b", "c"] as const).flatMap((s) => {
      const r = row(key, s);
      if (!r) return [];
      return [
        [
          `${byName.get(key)}, ${s}`,
          int(r.load.rps),
          ms(r.load.p50Ms),
          ms(r.load.p99Ms),
          us(cpuUs(r)),
          int(r.load.requests),
          int(r.load.errors),
          labels(r.load.xcache),
          r.cpuSplit,
        ],
      ];
    }),
  );
  emit(
    [
      `### Intercepted hits: cachegate vs Squid ssl_bump (C=${CONCURRENCY}, ${SECONDS} s each)`,
      "",
      markdown(cmpHeader, cmpBody),
      "",
      "Targets (issue 11):",
      "",
      `- ${verdict("CPU per intercepted hit ≤ Squid's, 1 worker vs workers 1", cg1.cpuPerHit, sq1.cpuPerHit, "lower")}`,
      `- ${verdict("CPU per intercepted hit ≤ Squid's, default vs workers 2", cgd.cpuPerHit, sq2.cpuPerHit, "lower")}`,
      `- ${verdict("intercepted hits/s, default ≥ Squid workers 2", cgd.hitsPerS, sq2.hitsPerS, "higher")}`,
      `- ${verdict("new tunnels/s, default ≥ Squid workers 2", cgd.tunnelsPerS, sq2.tunnelsPerS, "higher")}`,
      "",
      markdown(
        ["target, scenario", "req/s", "p50", "p99", "CPU/req", "requests", "errors", "X-Cache", "CPU split (≥ 2 %)"],
        details,
      ),
      "",
      "CPU: utime+stime (plus that of reaped children) of every process under the pid started, summed over the " +
        "measured window, ÷ requests; the tree is read from /proc/<pid>/task/*/children when the window opens " +
        "and closes. For Squid it holds the master, the workers (and the coordinator with workers 2) and the " +
        "security_file_certgen helpers the workers started; with every tunnel to one host, the helpers mint one " +
        "leaf per worker during warming and then idle (the worker's dynamic_cert_mem_cache serves the rest). " +
        "RSS: summed over the tree after the new-tunnel run (pages shared between forked processes count once " +
        "per process). Squid: bumps at step 1 (the leaf comes from the CONNECT authority, a HIT opens no " +
        "origin connection), memory-only cache, leaves carry the CA's EC P-256 key as cachegate's carry one " +
        "shared P-256 key, access.log only for the warm-up requests.",
      ...(problems.length === 0 ? [] : ["", ...problems.map((p) => `- **${p}**`)]),
    ].join("\n"),
  );

  process.stderr.write("measuring leaf minting…\n");
  const mint = await mintingScenario(join(dir, "minter"));
  emit(
    [
      "### Leaf-certificate minting (createLeafMinter, in the bench process)",
      "",
      markdown(
        ["run", "certificates asked", "time", "certs/s", "distinct certificates returned"],
        mint.map((m) => [
          m.name,
          int(m.certs),
          ms(m.ms),
          m.distinct === 1 ? "—" : int(m.certs / (m.ms / 1000)),
          int(m.distinct),
        ]),
      ),
      "",
      "One host asked for concurrently should be minted once and shared: distinct certificates returned should be 1.",
    ].join("\n"),
  );

  emit(`Load average at end: ${load()}.`);
  await mkdir(WORK, { recursive: true });
  await appendFile(RESULTS, `${sections.join("\n\n")}\n\n`);
  console.log(`(appended to ${RESULTS}; server logs in ${LOGS})`);
  if (problems.length > 0) process.exitCode = 1;
}

/** The origins run in this process: left listening, they would keep it alive after an error. */
let stopOrigins: (() => void) | undefined;

await runBench("bench:tls", main, { watchdogMs: WATCHDOG_MS, onExit: () => stopOrigins?.() });
