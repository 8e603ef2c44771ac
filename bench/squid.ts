import "reflect-metadata"; // @peculiar/x509's dependency injection needs it loaded first
import { existsSync, readdirSync, rmSync } from "node:fs";
import { chmod, chown, copyFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { createSelfSignedCa, randomSerial } from "../src/tls/ca.ts";
import { freePort, freshLog, makeTempDir, spawnChild } from "./procs.ts";
import { stopTree } from "./proctree.ts";

/**
 * Squid 5 with ssl_bump, the reference for bench:tls. Debian's
 * `squid-openssl` (the build with ssl_bump) conflicts with the `squid`
 * package, so it is not installed: its .deb and those of the libraries it
 * needs that the machine lacks are downloaded (`apt-get download`) and
 * unpacked (`dpkg -x`) under bench/.work/squid-pkg/, and the binary runs
 * from there through a wrapper that points LD_LIBRARY_PATH at the unpacked
 * libraries (see ensureWrapper). Run as root, its kids and helpers switch to
 * the `proxy` user: what they write is given to it. BENCH_SQUID_DEBUG="ALL,1
 * 17,3" adds debug_options to the generated squid.conf.
 */

const PKG = join(import.meta.dir, ".work", "squid-pkg");
const ROOT = join(PKG, "root");
const LIB_DIR = join(ROOT, "usr/lib/x86_64-linux-gnu");
const SQUID_BIN = join(ROOT, "usr/sbin/squid");
/** What we run: see ensureWrapper. */
const SQUID = join(PKG, "squid.sh");
const CERTGEN = join(ROOT, "usr/lib/squid/security_file_certgen");
const SQUID_PACKAGES = ["squid-openssl", "squid-common", "squid-langpack"];
/** Libraries squid-openssl links that a machine without Squid may lack, by soname → Debian package. */
const LIB_PACKAGES: Record<string, string> = {
  "libecap.so.3": "libecap3",
  "libnetfilter_conntrack.so.3": "libnetfilter-conntrack3",
  "libnfnetlink.so.0": "libnfnetlink0",
  "libmnl.so.0": "libmnl0",
  "libltdl.so.7": "libltdl7",
};
/** The User-Agent of the warm-up requests, the only ones Squid logs to access.log. */
export const WARM_USER_AGENT = "cachegate-bench-warm";
/** Squid refuses to run as root; its kids and helpers switch to this user (Debian's build default). */
const SQUID_USER = "proxy";

const env = () => ({ ...process.env, LD_LIBRARY_PATH: LIB_DIR });

async function run(cmd: string[], cwd?: string): Promise<string> {
  const child = Bun.spawn(cmd, { cwd, env: env(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${(err || out).trim().slice(0, 1000)}`);
  return out;
}

/** Sonames `ldd` cannot find for `binary` with the unpacked libraries on LD_LIBRARY_PATH. */
async function missingLibs(binary: string): Promise<string[]> {
  const out = await run(["ldd", binary]);
  return [...out.matchAll(/^\s*(\S+) => not found/gm)].map((m) => m[1]!);
}

/** `apt-get download` into debs/ and `dpkg -x` into root/; `apt-get update` first if the lists lack a package. */
async function unpack(packages: string[]): Promise<void> {
  const debs = join(PKG, "debs");
  await mkdir(debs, { recursive: true });
  await chmod(debs, 0o777); // apt downloads as _apt when it can write the target dir (else it warns)
  const download = () => run(["apt-get", "download", ...packages], debs);
  try {
    await download();
  } catch {
    console.error("apt-get download failed; running apt-get update first…");
    await run(["apt-get", "update"]);
    await download();
  }
  for (const name of readdirSync(debs).filter((f) => packages.some((p) => f.startsWith(`${p}_`)))) {
    await run(["dpkg", "-x", join(debs, name), ROOT]);
  }
}

/** Makes sure bench/.work/squid-pkg/ holds a runnable squid-openssl; returns its version line. */
export async function ensureSquid(): Promise<string> {
  if (!existsSync(SQUID_BIN) || !existsSync(CERTGEN)) {
    console.error(`unpacking ${SQUID_PACKAGES.join(", ")} into ${ROOT}…`);
    await unpack(SQUID_PACKAGES);
  }
  for (const binary of [SQUID_BIN, CERTGEN]) {
    // ldd names a library's own dependencies only once it finds the library: a few rounds.
    for (let round = 0; ; round++) {
      const missing = await missingLibs(binary);
      if (missing.length === 0) break;
      const unknown = missing.filter((lib) => !(lib in LIB_PACKAGES));
      if (unknown.length > 0 || round === 3)
        throw new Error(`${binary} needs ${missing.join(", ")}, not found on the machine nor in ${LIB_DIR}`);
      console.error(`unpacking ${missing.map((lib) => LIB_PACKAGES[lib]).join(", ")} for ${binary}…`);
      await unpack(missing.map((lib) => LIB_PACKAGES[lib]!));
    }
  }
  await ensureWrapper();
  const v = await run([SQUID, "-v"]);
  return `${v.split("\n")[0]!.trim()}, ${/uses (OpenSSL [^ ]+)/.exec(v)?.[1] ?? "OpenSSL ?"}`;
}

/**
 * Squid's master starts each kid by executing its own argv[0] again (with
 * `--kid squid-1`), after it switched its effective uid to the Squid user:
 * the loader runs that exec in secure-execution mode and ignores
 * LD_LIBRARY_PATH, so the kid cannot find the unpacked libraries. The master
 * therefore runs as this script (argv[0] kept by `exec -a`): bash resets the
 * effective uid to the real one, and sets the library path again, for the
 * master and for every kid.
 */
async function ensureWrapper(): Promise<void> {
  const script = [
    "#!/bin/bash",
    "# Generated by bench/squid.ts: runs the unpacked squid with its libraries (kids come back through here).",
    `export LD_LIBRARY_PATH=${LIB_DIR}`,
    `exec -a "$0" ${SQUID_BIN} "$@"`,
    "",
  ].join("\n");
  if (existsSync(SQUID) && (await readFile(SQUID, "utf8")) === script) return;
  await writeFile(SQUID, script, { mode: 0o755 });
}

/** A CA for Squid to sign its leaves with, EC P-256 as cachegate's (Squid gives its leaves the CA's key). */
async function squidCa(): Promise<{ certPem: string; keyPem: string }> {
  return createSelfSignedCa(`CN=cachegate bench Squid CA ${randomSerial().slice(0, 8)}, O=cachegate bench`, 86400_000);
}

const leftovers = new Set<() => void>();
process.on("exit", () => {
  for (const remove of leftovers) remove();
});

export interface Squid {
  pid: number;
  proxyPort: number;
  /** PEM of the CA Squid signs its bumped leaves with: the agents trust it. */
  caPem: string;
  accessLog: string;
  exited(): string | undefined;
  /**
   * SIGTERM, then SIGKILL for whatever of the tree is left (returns their names); removes its shared
   * memory segments and IPC sockets.
   */
  stop(): Promise<string[]>;
}

let uid: number | undefined;
let gid: number | undefined;
async function squidIds(): Promise<{ uid: number; gid: number }> {
  if (uid === undefined || gid === undefined) {
    const line = (await readFile("/etc/passwd", "utf8")).split("\n").find((l) => l.startsWith(`${SQUID_USER}:`));
    if (!line) throw new Error(`no user ${SQUID_USER} for Squid's kids to run as`);
    const f = line.split(":");
    uid = Number(f[2]);
    gid = Number(f[3]);
  }
  return { uid, gid };
}

/** Makes `path` the Squid user's (its kids and helpers write there after dropping root). */
async function give(path: string): Promise<void> {
  const { uid, gid } = await squidIds();
  await chown(path, uid, gid);
  if ((await stat(path)).isDirectory()) for (const name of readdirSync(path)) await give(join(path, name));
}

/** Resolves once something accepts TCP connections on the port; rejects if `child` exits first. */
async function waitForPort(port: number, child: Subprocess, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what} exited (code ${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host: "127.0.0.1" });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await Bun.sleep(50);
  }
  throw new Error(`${what} did not listen on ${port} within ${timeoutMs / 1000} s`);
}

/**
 * One Squid in the foreground (`--foreground`: the master stays our child
 * and forks the kids; `-N` would run a single process and no SMP) with a
 * generated squid.conf; pid, certificate db, core dumps in a temp dir; its
 * cache.log and access.log in `logDir` as squid-<label>-*.log.
 */
export async function startSquid(opts: {
  workers: number;
  originCaFile: string;
  logDir: string;
  label: string;
}): Promise<Squid> {
  const prefix = await makeTempDir("cachegate-bench-squid-");
  await chmod(prefix, 0o755); // mkdtemp makes it 0700: the kids (user proxy) must reach what is inside
  const ca = await squidCa();
  const caFile = join(prefix, "squid-ca.pem");
  await writeFile(caFile, `${ca.certPem}\n${ca.keyPem}\n`, { mode: 0o600 });
  const originCa = join(prefix, "origin-ca.pem");
  await copyFile(opts.originCaFile, originCa);
  await chmod(originCa, 0o644);
  const sslDb = join(prefix, "ssl_db");
  await run([CERTGEN, "-c", "-s", sslDb, "-M", "4MB"]);
  for (const dir of ["run", "core"]) await mkdir(join(prefix, dir));
  const cacheLog = join(opts.logDir, `squid-${opts.label}-cache.log`);
  const accessLog = join(opts.logDir, `squid-${opts.label}-access.log`);
  await freshLog(cacheLog);
  await freshLog(accessLog);
  for (const path of [caFile, originCa, sslDb, join(prefix, "run"), join(prefix, "core"), cacheLog, accessLog])
    await give(path);
  // SMP kids talk over UNIX sockets in the compiled-in state dir (/run/squid); -n names them and the shm segments.
  const createdRunDir = opts.workers > 1 && !existsSync("/run/squid");
  if (createdRunDir) {
    await mkdir("/run/squid");
    await give("/run/squid");
  }
  const service = `cgbench${process.pid}${opts.label.replace(/[^a-z0-9]/gi, "")}`;

  const proxyPort = await freePort();
  const conf = join(prefix, "squid.conf");
  await writeFile(
    conf,
    squidConf({ ...opts, prefix, proxyPort, caFile, originCa, sslDb, cacheLog, accessLog, root: ROOT }),
  );
  await run([SQUID, "-k", "parse", "-f", conf, "-n", service]).catch((err: Error) => {
    throw new Error(`squid rejected the generated config: ${err.message}`);
  });
  const child = spawnChild([SQUID, "--foreground", "-f", conf, "-n", service], {
    env: env(),
    stdout: "ignore",
    stderr: await freshLog(join(opts.logDir, `squid-${opts.label}.stderr.log`)),
  });
  const exited = () =>
    child.exitCode !== null || child.signalCode !== null ? `exited (${child.exitCode ?? child.signalCode})` : undefined;
  /** What Squid leaves outside the temp dir: in SMP its IPC sockets (even when it stops cleanly), shm if killed. */
  const removeLeftovers = () => {
    for (const dir of ["/dev/shm", "/run/squid"]) {
      if (!existsSync(dir)) continue;
      for (const name of readdirSync(dir)) if (name.startsWith(`${service}-`)) rmSync(join(dir, name), { force: true });
    }
    if (createdRunDir && existsSync("/run/squid") && readdirSync("/run/squid").length === 0)
      rmSync("/run/squid", { recursive: true });
    leftovers.delete(removeLeftovers);
  };
  // A signal or the watchdog ends the run through process.exit after stopping the children: clean up then too.
  leftovers.add(removeLeftovers);
  try {
    await waitForPort(proxyPort, child, `squid ${opts.label}`);
  } catch (err) {
    const log = await readFile(cacheLog, "utf8").catch(() => "");
    const fatal = log.split("\n").filter((l) => /FATAL|ERROR/.test(l));
    await stopTree(child);
    removeLeftovers();
    throw new Error(`${(err as Error).message}; ${fatal.slice(0, 5).join(" | ") || `see ${cacheLog}`}`);
  }
  return {
    pid: child.pid,
    proxyPort,
    caPem: ca.certPem,
    accessLog,
    exited,
    async stop() {
      const killed = await stopTree(child);
      removeLeftovers();
      return killed;
    },
  };
}

interface ConfParams {
  workers: number;
  prefix: string;
  proxyPort: number;
  caFile: string;
  originCa: string;
  sslDb: string;
  cacheLog: string;
  accessLog: string;
  root: string;
}

function squidConf(p: ConfParams): string {
  const httpPort = [
    `http_port 127.0.0.1:${p.proxyPort} ssl-bump tls-cert=${p.caFile}`,
    "generate-host-certificates=on dynamic_cert_mem_cache_size=16MB",
    // Without it the workers share one listening queue, and one of them can accept every connection of a burst.
    ...(p.workers > 1 ? ["worker-queues"] : []),
  ].join(" ");
  return `# Generated by bench/squid.ts
workers ${p.workers}
${httpPort}
sslcrtd_program ${CERTGEN} -s ${p.sslDb} -M 4MB
sslcrtd_children 4 startup=1 idle=1
# Bump at step 1 (client-first): the leaf is minted from the CONNECT authority, and a HIT needs no origin connection.
ssl_bump bump all
tls_outgoing_options cafile=${p.originCa}

http_access allow all

cache_mem 64 MB
maximum_object_size_in_memory 1 MB
${p.workers > 1 ? "memory_cache_shared on" : "# one worker: memory cache is local"}
# No cache_dir: a memory-only cache. The origin sends Cache-Control: max-age=3600.
refresh_pattern . 0 20% 4320

visible_hostname cachegate-bench-squid
# Loopback only: "localhost" comes from /etc/hosts, and no query leaves the machine.
dns_nameservers 127.0.0.1
cache_effective_user ${SQUID_USER}
pid_filename ${p.prefix}/run/squid.pid
coredump_dir ${p.prefix}/core
cache_log ${p.cacheLog}
# Only the warm-up requests (their User-Agent) are logged: enough to see the MISS and the HIT in access.log
# before measuring, without a write per measured request (cachegate writes none either).
acl bench_warm browser ^${WARM_USER_AGENT}$
access_log stdio:${p.accessLog} squid bench_warm
cache_store_log none
logfile_rotate 0
pinger_enable off
netdb_filename none
shutdown_lifetime 1 seconds
# The unpacked package is not at /usr: every compiled-in path it would use points into it.
unlinkd_program ${p.root}/usr/lib/squid/unlinkd
logfile_daemon ${p.root}/usr/lib/squid/log_file_daemon
error_directory ${p.root}/usr/share/squid-langpack/en
${process.env.BENCH_SQUID_DEBUG ? `debug_options ${process.env.BENCH_SQUID_DEBUG}` : ""}
icon_directory ${p.root}/usr/share/squid/icons
mime_table ${p.root}/usr/share/squid/mime.conf
err_page_stylesheet ${p.root}/etc/squid/errorpage.css
`;
}

/** Result codes of the GETs in a Squid access.log ("TCP_MISS/200" → count), in the order first seen. */
export async function accessLogResults(path: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const line of (await readFile(path, "utf8").catch(() => "")).split("\n")) {
    // squid format: time elapsed client code/status bytes method URL …
    const f = line.trim().split(/\s+/);
    if (f[5] === "GET" && f[3]) counts[f[3]] = (counts[f[3]] ?? 0) + 1;
  }
  return counts;
}
