/**
 * `bun bench/join.ts [--rate=MiB/s] [--chunk=KiB] [--agents=N] [--busy=N]
 * [--profile | --perf | --syscalls]`: the big-file join of issue 11 on its
 * own, for working on the fill. A 256 MiB object comes from an origin paced
 * to 32 MiB/s (8 s) in 256 KiB chunks; 20 agents join through the gateway
 * 150 ms apart. Prints when the origin had sent it all, the first and last
 * agent's time against the origin's, the CPU seconds of the gateway and of
 * the agents (this process), and the gateway's RSS.
 *
 * `--busy=N` runs N busy loops beside it (a loaded machine). `--profile` has
 * the gateway write a .cpuprofile to bench/.work/prof/ when it stops (sum it
 * up with bench/profile.ts); `--perf` records it with `perf record -g` into
 * bench/.work/perf.data while agents read; `--syscalls` counts its system
 * calls and context switches (`perf stat`).
 */
import { mkdir } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { startCachegate } from "./cachegate.ts";
import { FILES, generateFiles } from "./files.ts";
import { joinDownload } from "./load.ts";
import {
  cpuMeter,
  freePort,
  freshLog,
  idleRss,
  makeTempDir,
  runBench,
  sampleRss,
  spawnChild,
  waitForHttp,
} from "./procs.ts";

const flag = (name: string, fallback: number) => {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
};
const RATE = flag("rate", 32) * 1024 ** 2;
const AGENTS = flag("agents", 20);
const BUSY = flag("busy", 0);
const CHUNK = flag("chunk", 256) * 1024;
const SPACING_MS = 150;
const PROFILE = process.argv.includes("--profile");
const PERF = process.argv.includes("--perf");
const SYSCALLS = process.argv.includes("--syscalls");
const SYSCALL_EVENTS = ["sendmsg", "sendto", "write", "pwrite64", "pread64", "read", "recvfrom", "epoll_wait", "futex"]
  .map((name) => `syscalls:sys_enter_${name}`)
  .concat(["context-switches"])
  .join(",");
const WORK = join(import.meta.dir, ".work");

async function main(): Promise<void> {
  const logs = join(WORK, "logs");
  await mkdir(logs, { recursive: true });
  const files = await makeTempDir("cachegate-join-files-");
  await generateFiles(files);

  const port = await freePort();
  const originArgs = [join(import.meta.dir, "origin-server.ts"), files, String(port), String(RATE), String(CHUNK)];
  const origin = spawnChild([process.execPath, ...originArgs], { stdout: await freshLog(join(logs, "origin.log")) });
  await waitForHttp(`http://127.0.0.1:${port}/stats`, origin, "origin");

  if (PROFILE) {
    await mkdir(join(WORK, "prof"), { recursive: true });
    process.env.BUN_OPTIONS = `--cpu-prof --cpu-prof-dir=${join(WORK, "prof")}`;
  }
  const gw = await startCachegate(logs);
  delete process.env.BUN_OPTIONS;
  for (let i = 0; i < BUSY; i++) spawnChild([process.execPath, "-e", "for (;;) {}"]);

  const idle = await idleRss(gw.pids);
  const rss = sampleRss(gw.pids);
  const cpu = cpuMeter(gw.pids);
  const agentsCpu = cpuMeter([process.pid]);
  const perf = watchWithPerf(gw.pid);
  const target = { name: "cachegate", proxy: `http://127.0.0.1:${gw.proxyPort}`, url: (p: string) => p };
  const url = `http://localhost:${port}${FILES.big.path}?join=${Date.now()}`;
  const upstreamDone = whenOriginSent(port, FILES.big.size);
  const agents = await joinDownload(target, url, FILES.big.size, AGENTS, SPACING_MS);
  const cpuSeconds = cpu.stop();
  const agentsCpuSeconds = agentsCpu.stop();
  perf?.kill("SIGINT");
  await perf?.exited;
  const peak = rss.stop().peak;

  const originS = FILES.big.size / RATE;
  const doneS = agents.map((a) => a.doneAtMs / 1000);
  const first = doneS[0]!;
  const last = Math.max(...doneS);
  const errors = agents.filter((a) => a.error);
  const mib = (n: number) => `${(n / 1024 ** 2).toFixed(0)} MiB`;
  const s = (seconds: number) => `${seconds.toFixed(2)} s`;
  console.log(
    [
      `origin ${s(originS)}, all sent at ${s((await upstreamDone) / 1000)}`,
      `first agent ${s(first)} (${(first / originS).toFixed(2)}×)`,
      `last agent ${s(last)}`,
      `gateway CPU ${s(cpuSeconds)} (agents' ${s(agentsCpuSeconds)})`,
      `RSS idle ${mib(idle)}, peak ${mib(peak)}`,
      `${AGENTS - errors.length}/${AGENTS} whole`,
      `busy loops ${BUSY}, load ${loadavg()[0]!.toFixed(2)}`,
    ].join(" | "),
  );
  for (const a of errors) console.error(`agent error: ${a.error}`);
}

/** `perf record` or `perf stat` attached to the gateway, if asked for; stopped with SIGINT. */
function watchWithPerf(pid: number) {
  if (PERF) {
    const out = join(WORK, "perf.data");
    return spawnChild(["perf", "record", "-q", "-F", "499", "-g", "-p", String(pid), "-o", out], { stderr: "ignore" });
  }
  if (SYSCALLS) return spawnChild(["perf", "stat", "-e", SYSCALL_EVENTS, "-p", String(pid)], { stderr: "inherit" });
  return undefined;
}

/** Resolves the ms from now until the origin has sent `bytes` (it paces itself, so the gateway's reading shows). */
async function whenOriginSent(port: number, bytes: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const stats = (await (await fetch(`http://127.0.0.1:${port}/stats`, { proxy: false })).json()) as { bytes: number };
    if (stats.bytes >= bytes) return performance.now() - t0;
    await Bun.sleep(50);
  }
}

await runBench("bench/join", main, { watchdogMs: 3 * 60_000 });
