/**
 * `bun run bench:tls`: what TLS interception costs the hot path, on loopback, in one run
 * (issue 4, item 6):
 *
 *   a. plain HTTP hits            keep-alive absolute-form GETs to the gateway
 *   b. intercepted, reused tunnel one CONNECT + TLS handshake per client, then keep-alive GETs inside
 *   c. intercepted, new tunnel    per request: TCP + CONNECT + TLS handshake + one GET + close
 *   d. leaf minting               createLeafMinter in this process: distinct hosts, sequential and
 *                                 concurrent, and one host asked for concurrently (must mint once)
 *
 * a–c: a cached 10 KiB object, C client loops in one separate load-generator
 * process (bench/tls-client.ts) so its CPU is not counted as the gateway's.
 * Tables go to stdout and are appended to bench/.work/results-tls.md; the
 * gateway's logs go to bench/.work/logs-tls/.
 */
import "reflect-metadata"; // @peculiar/x509's dependency injection needs it loaded first
import { randomBytes } from "node:crypto";
import { appendFile, mkdir, rm, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { silentLogger } from "../src/log.ts";
import { EC_P256, loadCa, randomSerial } from "../src/tls/ca.ts";
import { createLeafMinter } from "../src/tls/leaf-minter.ts";
import { cpuMeter, freePort, freshLog, makeTempDir, rssBytes, runBench, spawnChild, waitForHttp } from "./procs.ts";
import { int, markdown, mib, ms, us } from "./table.ts";
import { type LoadResult, type LoadSpec, type Mode, openConn } from "./tls-client.ts";

const REPO = join(import.meta.dir, "..");
const WORK = join(import.meta.dir, ".work");
const LOGS = join(WORK, "logs-tls");
const RESULTS = join(WORK, "results-tls.md");
const PATH = "/obj10k";
const BODY_BYTES = 10 * 1024;
const CONCURRENCY = 32;
const SECONDS = 8;
const WARMUP_SECONDS = 1;
const MINT_N = 300;
/** A run normally takes ~40 s; past this something hangs, and we stop rather than wait. */
const WATCHDOG_MS = 3 * 60_000;

// ── origins ────────────────────────────────────────────────────────────────

/** A throwaway CA standing in for a public one, and a leaf it signs for localhost (as test/support/test-ca.ts). */
async function originCertificates(): Promise<{ caPem: string; cert: string; key: string }> {
  const pkcs8 = async (key: CryptoKey) =>
    x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
  const now = Date.now();
  const caKeys = (await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=cachegate bench origin CA ${randomSerial().slice(0, 8)}, O=cachegate bench`,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    keys: caKeys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
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

// ── the gateway ────────────────────────────────────────────────────────────

interface Gateway {
  pid: number;
  proxyPort: number;
  caPem: string;
  exited(): string | undefined;
}

/**
 * As bench/cachegate.ts starts it (Cache Mode, `localhost` a platform
 * domain, private upstreams allowed), plus NODE_EXTRA_CA_CERTS so it trusts
 * the origin, and a token we keep to configure it.
 */
async function startGateway(originCaFile: string, tlsPort: number): Promise<Gateway> {
  const [proxyPort, adminPort] = [await freePort(), await freePort()];
  const token = randomBytes(16).toString("hex");
  const dataDir = await makeTempDir("cachegate-bench-tls-data-");
  const child = spawnChild([process.execPath, join(REPO, "src/main.ts")], {
    cwd: REPO,
    env: {
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
    },
    stdout: await freshLog(join(LOGS, "cachegate.log")),
    stderr: await freshLog(join(LOGS, "cachegate.err.log")),
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
  };
}

// ── a–c: hot hits ──────────────────────────────────────────────────────────

interface Scenario {
  key: "a" | "b" | "c";
  name: string;
  mode: Mode;
  host: string;
  port: number;
}

interface HotRow {
  load: LoadResult;
  cpuSeconds: number;
  /** The gateway's resident memory right after the run. */
  rss: number;
}

/** One request at a time, on one connection, until the gateway answers HIT (the first should be a MISS). */
async function warm(
  spec: Omit<LoadSpec, "concurrency" | "warmupSeconds" | "seconds" | "expectBytes">,
): Promise<string[]> {
  const seen: string[] = [];
  const conn = await openConn(spec);
  try {
    // A MISS's response can end before its cache entry lands: the next request then joins the landing flight (COALESCED).
    for (let i = 0; i < 20; i++) {
      const res = await conn.request();
      seen.push(`${res.status} ${res.xcache}`);
      if (res.status !== 200 || res.bodyBytes !== BODY_BYTES)
        throw new Error(`warming ${spec.mode}: got ${res.status} with ${res.bodyBytes} bytes`);
      if (res.xcache === "HIT") return seen;
      await Bun.sleep(20);
    }
  } finally {
    conn.close();
  }
  throw new Error(`warming ${spec.mode}: never a HIT (${seen.join(", ")})`);
}

/** Runs the load generator as its own process; the gateway's CPU is metered from its "start" line to its result. */
async function runLoad(spec: LoadSpec, gatewayPid: number): Promise<HotRow> {
  const child = spawnChild([process.execPath, join(import.meta.dir, "tls-client.ts"), JSON.stringify(spec)], {
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
  });
  const stderr = new Response(child.stderr as ReadableStream).text();
  let meter: { stop(): number } | undefined;
  let cpuSeconds = Number.NaN;
  let result: LoadResult | undefined;
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of child.stdout as ReadableStream<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === "") continue;
      const msg = JSON.parse(line) as { event?: string } & LoadResult;
      if (msg.event === "start") meter = cpuMeter([gatewayPid]);
      else {
        if (meter) cpuSeconds = meter.stop();
        result = msg;
      }
    }
  }
  const code = await child.exited;
  if (result === undefined)
    throw new Error(
      `the load generator (${spec.mode}) exited ${code} without a result: ${(await stderr).trim().slice(0, 1000)}`,
    );
  return { load: result, cpuSeconds, rss: rssBytes(gatewayPid) };
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

const labels = (counts: Record<string, number>) =>
  Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${int(n)}`)
    .join(", ");
const load = () =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(", ");
const ratio = (x: number, y: number) =>
  Number.isFinite(x) && Number.isFinite(y) && y !== 0 ? `${(x / y).toFixed(x / y >= 10 ? 1 : 2)}×` : "—";

async function main(): Promise<void> {
  await rm(LOGS, { recursive: true, force: true });
  await mkdir(LOGS, { recursive: true });
  const dir = await makeTempDir("cachegate-bench-tls-");
  const origins = await startOrigins(dir);
  stopOrigins = origins.stop;
  const gateway = await startGateway(origins.caFile, origins.tlsPort);

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
  const base = (s: Scenario) => ({
    mode: s.mode,
    proxyPort: gateway.proxyPort,
    host: s.host,
    port: s.port,
    path: PATH,
    ca: gateway.caPem,
  });
  const warmed = [await warm(base(scenarios[0]!)), await warm(base(scenarios[1]!))];
  const rssAtStart = rssBytes(gateway.pid);
  const upstreamAfterWarm = { ...origins.served };

  const header = [
    `## cachegate TLS interception benchmark, ${new Date().toISOString()}`,
    "",
    `Loopback, ${availableParallelism()} CPUs, Bun ${Bun.version}. A cached ${BODY_BYTES / 1024} KiB object; ` +
      `${CONCURRENCY} client loops in one load-generator process, ${SECONDS} s each after a ${WARMUP_SECONDS} s warm-up; ` +
      "the load generator shares the CPUs with the gateway, so compare rows with each other, not with other machines. " +
      `Load average at start: ${load()}; gateway RSS after warming ${mib(rssAtStart)}. Warming: plain ${warmed[0]!.join(" → ")}; TLS ${warmed[1]!.join(" → ")}.`,
  ].join("\n");
  console.log(`${header}\n`);
  const sections = [header];
  const emit = (text: string) => {
    console.log(`${text}\n`);
    sections.push(text);
  };

  const hot = new Map<string, HotRow>();
  const problems: string[] = [];
  for (const s of scenarios) {
    process.stderr.write(`measuring ${s.name}…\n`);
    const spec: LoadSpec = {
      ...base(s),
      concurrency: CONCURRENCY,
      warmupSeconds: WARMUP_SECONDS,
      seconds: SECONDS,
      expectBytes: BODY_BYTES,
    };
    const row = await runLoad(spec, gateway.pid);
    hot.set(s.key, row);
    const { load: r } = row;
    const non200 = r.requests - (r.statuses["200"] ?? 0);
    const nonHit = r.requests - (r.xcache.HIT ?? 0);
    if (r.errors > 0) problems.push(`${s.name}: ${int(r.errors)} errors (first: ${r.firstError})`);
    if (non200 > 0) problems.push(`${s.name}: ${int(non200)} responses not 200 (${labels(r.statuses)})`);
    if (nonHit > 0) problems.push(`${s.name}: ${int(nonHit)} responses not X-Cache HIT (${labels(r.xcache)})`);
    if (r.badBodies > 0) problems.push(`${s.name}: ${int(r.badBodies)} bodies not ${BODY_BYTES} bytes`);
    const died = gateway.exited();
    if (died) throw new Error(`cachegate ${died} during ${s.name}; see ${LOGS}`);
    await Bun.sleep(500);
  }
  if (origins.served.tls !== upstreamAfterWarm.tls || origins.served.plain !== upstreamAfterWarm.plain) {
    problems.push(
      `the origins served requests during the hot runs (TLS ${origins.served.tls - upstreamAfterWarm.tls}, plain ${origins.served.plain - upstreamAfterWarm.plain}): not all hits`,
    );
  }

  const a = hot.get("a")!;
  const cpuUs = (r: HotRow) => (r.load.requests > 0 ? (r.cpuSeconds / r.load.requests) * 1e6 : Number.NaN);
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
    const r = hot.get(s.key)!;
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
    const r = hot.get(key)!;
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
      `### Hot hits: plain HTTP vs intercepted HTTPS (C=${CONCURRENCY}, ${SECONDS} s each)`,
      "",
      markdown(hotHeader, hotBody),
      "",
      "Latency: per request as the client sees it (for c, TCP connect + CONNECT + TLS handshake + GET). " +
        "Gateway CPU/req: the gateway process's utime+stime over the measured window ÷ requests.",
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
  console.log(`(appended to ${RESULTS}; gateway logs in ${LOGS})`);
  if (problems.length > 0) process.exitCode = 1;
}

/** The origins run in this process: left listening, they would keep it alive after an error. */
let stopOrigins: (() => void) | undefined;

await runBench("bench:tls", main, { watchdogMs: WATCHDOG_MS, onExit: () => stopOrigins?.() });
