import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./admin.ts";
import { outputOf } from "./child-output.ts";

export interface Haproxy {
  port: number;
  url: string;
  output(): string;
  stop(): Promise<void>;
}

export interface HaproxyOptions {
  /** The members' agent ports on 127.0.0.1. */
  servers: number[];
  /** Overrides the shipped `balance uri` of plain HTTP requests (tests balance round-robin on purpose). */
  balance?: string;
  /** `tcp`: servers that have no /healthz (nginx in the benchmark) are checked by connecting. */
  check?: "healthz" | "tcp";
  /** Health checks as shipped (every 2 s), not every 200 ms as tests want them. */
  shippedChecks?: boolean;
}

const SHIPPED = join(import.meta.dir, "../../deploy/haproxy.cfg");

/**
 * Debian's HAProxy with the configuration cachegate ships
 * (deploy/haproxy.cfg), pointed at members on loopback: the same frontend,
 * backends, health checks and timeouts, with only the addresses (and, when
 * asked, the balance algorithm) changed, health checks every 200 ms, and
 * fewer connections.
 */
export async function startHaproxy(opts: HaproxyOptions): Promise<Haproxy> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-haproxy-"));
  const port = await freePort();
  const servers = opts.servers.map((p, i) => `    server gw${i + 1} 127.0.0.1:${p}`).join("\n");
  let cfg = (await readFile(SHIPPED, "utf8"))
    .replace(/^ {4}server gw\d .*\n/gm, "")
    .replace(/^( {4}default-server .*)$/gm, `$1\n${servers}`)
    .replace(/inter 2s/g, opts.shippedChecks ? "inter 2s" : "inter 200ms")
    // The shipped limit needs about 100k file descriptors, more than a test process may have.
    .replace(/maxconn \d+/, "maxconn 4000")
    .replace("bind :8080", `bind 127.0.0.1:${port}`);
  if (opts.balance) cfg = cfg.replace("balance uri", `balance ${opts.balance}`);
  if (opts.check === "tcp") cfg = cfg.replace(/^ {4}(option httpchk|http-check) .*\n/gm, "");
  const file = join(dir, "haproxy.cfg");
  await writeFile(file, cfg);

  const child = Bun.spawn(["haproxy", "-db", "-f", file], { stdout: "pipe", stderr: "pipe" });
  const output = outputOf(child);
  const stop = async () => {
    child.kill("SIGKILL");
    await child.exited;
    await rm(dir, { recursive: true, force: true });
  };

  // Listening (its servers start as up; the first health checks follow within 200 ms).
  const deadline = Date.now() + 10_000;
  while (
    !(await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    ))
  ) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy did not start:\n${output()}`);
    }
    await Bun.sleep(20);
  }
  return { port, url: `http://127.0.0.1:${port}`, output, stop };
}
