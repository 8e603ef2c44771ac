/**
 * `bun run bench:fleet`: a cold storm through a fleet on loopback (issue 12).
 *
 * 300 distinct objects (64 KiB each, a little more per object), each asked 5
 * times, in shuffled order, by 100 agents at once, all cold. Through:
 *
 *   a. one cachegate alone (its default workers)
 *   b. three cachegate members behind HAProxy, `balance uri` (deploy/haproxy.cfg)
 *   c. the same members behind HAProxy balancing round-robin: what the
 *      members' owner-by-hash does when the balancer does not help (HAProxy
 *      balances CONNECT tunnels by connection anyway)
 *   d. three nginx proxy_cache (proxy_cache_lock on) behind HAProxy, `balance uri`:
 *      the usual recipe
 *   e. the same nginx behind HAProxy round-robin
 *
 * Each member runs with CACHEGATE_WORKERS=1 (three members on a 2-core
 * machine already outnumber the cores); each nginx has 2 worker processes.
 * Reported: upstream fetches (goal 300), wall time, requests/s, errors, and
 * ratios to a and to d. The table goes to stdout and bench/.work/results-fleet.md.
 */
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { startHaproxy } from "../test/support/haproxy.ts";
import { startCachegate } from "./cachegate.ts";
import { agentFetch, drain, type Target } from "./load.ts";
import { startNginx } from "./nginx.ts";
import { startOrigin } from "./origin.ts";
import { freePort, makeTempDir, runBench } from "./procs.ts";
import { fmt, int, markdown, ms } from "./table.ts";

const WORK = join(import.meta.dir, ".work");
const LOGS = join(WORK, "logs-fleet");
const OBJECTS = 300;
const REPEATS = 5;
const CONCURRENCY = 100;
const sizeOf = (i: number) => 64 * 1024 + i * 61;

interface Row {
  name: string;
  fetches: number;
  wallMs: number;
  errors: number;
  firstError?: string;
}

/** Every object REPEATS times, shuffled the same way in every run, CONCURRENCY at a time; each body's length checked. */
async function storm(target: Target, url: (i: number) => string): Promise<Omit<Row, "name" | "fetches">> {
  const order = Array.from({ length: OBJECTS * REPEATS }, (_, k) => k % OBJECTS);
  let seed = 42;
  for (let k = order.length - 1; k > 0; k--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (k + 1);
    [order[k], order[j]] = [order[j]!, order[k]!];
  }
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const agent = async () => {
    while (next < order.length) {
      const i = order[next++]!;
      try {
        const res = await agentFetch(target, url(i));
        const bytes = await drain(res);
        if (res.status !== 200 || bytes !== sizeOf(i)) throw new Error(`status ${res.status}, ${bytes} bytes`);
      } catch (err) {
        errors++;
        firstError ??= String(err);
      }
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, agent));
  return { wallMs: performance.now() - start, errors, firstError };
}

async function main(): Promise<void> {
  await mkdir(LOGS, { recursive: true });
  const files = await makeTempDir("cachegate-bench-fleet-files-");
  for (let i = 0; i < OBJECTS; i++) await writeFile(join(files, `obj-${i}.bin`), Buffer.alloc(sizeOf(i), i % 251));
  await writeFile(join(files, "obj10k.bin"), Buffer.alloc(10 * 1024)); // nginx.ts waits on it
  const origin = await startOrigin(files, LOGS);
  const url = (i: number) => origin.url(`/obj-${i}.bin`);
  const rows: Row[] = [];
  const run = async (name: string, proxy: string) => {
    const before = (await origin.stats()).requests;
    const result = await storm({ name, url: (p) => p, proxy }, url);
    rows.push({ name, fetches: (await origin.stats()).requests - before, ...result });
    console.error(`${name}: ${fmt(result.wallMs)} ms, ${rows.at(-1)!.fetches} fetches, ${result.errors} errors`);
  };

  const alone = await startCachegate(LOGS, { name: "alone" });
  await run("a. one cachegate", `http://127.0.0.1:${alone.proxyPort}`);

  for (const balance of ["uri", "roundrobin"] as const) {
    const ports = [await freePort(), await freePort(), await freePort()];
    const peers = ports.map((p) => `http://127.0.0.1:${p}`).join(",");
    const members = await Promise.all(
      ports.map((proxyPort, k) =>
        startCachegate(LOGS, {
          name: `member-${balance}-${k}`,
          workers: 1,
          proxyPort,
          env: { CACHEGATE_PEERS: peers, CACHEGATE_PEER_SELF: `http://127.0.0.1:${proxyPort}` },
        }),
      ),
    );
    const haproxy = await startHaproxy({ servers: members.map((m) => m.proxyPort), balance, shippedChecks: true });
    await run(`${balance === "uri" ? "b" : "c"}. 3 cachegate + HAProxy ${balance}`, haproxy.url);
    await haproxy.stop();
  }

  for (const balance of ["uri", "roundrobin"] as const) {
    const nginx = [
      await startNginx(files, origin.port),
      await startNginx(files, origin.port),
      await startNginx(files, origin.port),
    ];
    const haproxy = await startHaproxy({
      servers: nginx.map((n) => n.proxyPort),
      balance,
      check: "tcp",
      shippedChecks: true,
    });
    await run(`${balance === "uri" ? "d" : "e"}. 3 nginx + HAProxy ${balance}`, haproxy.url);
    await haproxy.stop();
  }

  const [a, , , d] = rows;
  const table = markdown(
    [
      "setup",
      "upstream fetches (goal 300)",
      "wall time",
      "req/s",
      "errors",
      "time ÷ one cachegate",
      "time ÷ nginx recipe",
    ],
    rows.map((r) => [
      r.name,
      int(r.fetches),
      ms(r.wallMs),
      int((OBJECTS * REPEATS) / (r.wallMs / 1000)),
      `${r.errors}${r.firstError ? ` (${r.firstError.slice(0, 60)})` : ""}`,
      `${(r.wallMs / a!.wallMs).toFixed(2)}×`,
      `${(r.wallMs / d!.wallMs).toFixed(2)}×`,
    ]),
  );
  const header = `## bench:fleet ${new Date().toISOString()} (load average ${loadavg()[0]!.toFixed(2)}): ${OBJECTS} objects × ${REPEATS}, ${CONCURRENCY} agents`;
  console.log(`${header}\n\n${table}\n`);
  await appendFile(join(WORK, "results-fleet.md"), `${header}\n\n${table}\n\n`);
}

await runBench("bench:fleet", main, { watchdogMs: 10 * 60_000 });
