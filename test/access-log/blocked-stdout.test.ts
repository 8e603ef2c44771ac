import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { closeSync, constants, openSync, readSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { parseLine } from "../support/access-log.ts";
import { freePort } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startOrigin } from "../support/origin.ts";
import { rawExchange } from "../support/raw-http.ts";
import { waitFor, within } from "../support/wait.ts";

setDefaultTimeout(60_000);

/**
 * CACHEGATE_ACCESS_LOG=- under a reader that stops reading (a stalled log
 * shipper, a paused `| less`, journald under pressure): once the pipe's
 * 64 KiB are full, a write(2) on a blocking stdout waits for the reader. Done
 * on the event loop, that wait would freeze the whole gateway: agents, the
 * admin API and its /healthz. The gateway must keep serving, and once the
 * reader reads again, every line must arrive whole.
 */
const defer = cleanupAfterEach();
const children = new Set<Subprocess>();
afterAll(() => {
  for (const child of children) child.kill("SIGKILL");
});

/** A FIFO whose read end the test holds without reading: the child's stdout fills and blocks. */
async function stalledPipe() {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-fifo-"));
  const path = join(dir, "stdout");
  const made = Bun.spawnSync(["mkfifo", path]);
  if (made.exitCode !== 0) throw new Error(`mkfifo failed: ${made.stderr.toString()}`);
  // O_RDWR: opening a FIFO so never waits for the other end (Linux fifo(7)). The child's stdout is this
  // blocking description; the test reads through a second, non-blocking one, so the child's stays blocking.
  const fd = openSync(path, "r+");
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  let text = "";
  return {
    fd,
    /** Reads what is in the pipe now (the gateway's own log and access log lines), without blocking. */
    drain(): string {
      const buf = Buffer.alloc(65_536);
      for (;;) {
        let n = 0;
        try {
          n = readSync(reader, buf);
        } catch {
          break; // EAGAIN: empty for now
        }
        if (n <= 0) break;
        text += buf.subarray(0, n).toString();
        if (n < buf.length) break;
      }
      return text;
    },
    async close() {
      closeSync(reader);
      closeSync(fd);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A one-process gateway writing its access log to `stdout` (a file
 * descriptor). At `error` its own log is quiet and stdout stays a blocking
 * pipe; at `info` its log lines share the pipe, and Bun's process.stdout
 * makes the pipe non-blocking (a full pipe then answers EAGAIN).
 */
async function startGateway(stdout: number, level: "error" | "info" = "error") {
  const dataDir = await mkdtemp(join(tmpdir(), "cachegate-proc-"));
  defer(() => rm(dataDir, { recursive: true, force: true }));
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const child = Bun.spawn(["bun", "src/main.ts"], {
    cwd: join(import.meta.dir, "../.."),
    env: {
      ...(process.env as Record<string, string>),
      CACHEGATE_DATA_DIR: dataDir,
      CACHEGATE_PORT: String(proxyPort),
      CACHEGATE_HOST: "127.0.0.1",
      CACHEGATE_ADMIN_PORT: String(adminPort),
      CACHEGATE_ADMIN_HOST: "127.0.0.1",
      CACHEGATE_ADMIN_TOKEN: "test-token",
      CACHEGATE_PLATFORM_DOMAINS: "localhost",
      CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1",
      CACHEGATE_WORKERS: "1",
      CACHEGATE_ACCESS_LOG: "-",
      CACHEGATE_LOG_LEVEL: level,
    },
    stdout,
    stderr: "ignore",
  });
  children.add(child);
  defer(async () => {
    child.kill("SIGKILL");
    await child.exited;
  });
  const healthz = () =>
    fetch(`http://127.0.0.1:${adminPort}/healthz`, { signal: AbortSignal.timeout(3000) }).then(
      (r) => r.status,
      () => 0,
    );
  await waitFor("the gateway's /healthz", async () => (await healthz()) === 200, 10_000);
  const ask = (url: string) =>
    rawExchange(proxyPort, `GET ${url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`).then((r) => r.status);
  return { child, healthz, ask };
}

/** ~1 KiB access log lines, `n` of them, sent 50 at a time; each batch must be answered within 5 s. */
async function fill(gw: Awaited<ReturnType<typeof startGateway>>, origin: { url(path: string): string }, n: number) {
  const urls = Array.from({ length: n }, (_, i) => origin.url(`/${"p".repeat(1000)}/${i}.txt`));
  for (let i = 0; i < urls.length; i += 50) {
    const statuses = await within(5000, "50 agent requests", Promise.all(urls.slice(i, i + 50).map(gw.ask)));
    expect(statuses.every((s) => s === 200)).toBe(true);
  }
  return urls;
}

describe("the access log on a stdout nobody reads", () => {
  test.each([
    ["error", "a blocking pipe"],
    ["info", "a non-blocking pipe"],
  ] as const)(
    "at log level %s (%s), the gateway keeps answering agents and /healthz; the lines arrive whole once the reader reads",
    async (level) => {
      const origin = startOrigin(() => new Response("x".repeat(20)));
      defer(() => origin.stop());
      const pipe = await stalledPipe();
      defer(() => pipe.close());
      const gw = await startGateway(pipe.fd, level);

      // ~600 KiB of lines: ten times what the pipe holds.
      const urls = await fill(gw, origin, 600);
      // The pipe has been full for hundreds of lines (a write every 256 and every second): still answering.
      for (let i = 0; i < 3; i++) {
        expect(await gw.healthz()).toBe(200);
        expect(await within(3000, "a request after the pipe filled", gw.ask(origin.url("/after.txt")))).toBe(200);
      }

      // The reader reads again: every line arrives, whole, and soon (a full non-blocking pipe is tried again
      // within milliseconds; once a second, its 64 KiB at a time, ~600 KiB would take ten seconds).
      const accessLines = () =>
        pipe
          .drain()
          .split("\n")
          .filter((l) => /^\d{10}\./.test(l));
      await waitFor("every access log line through the pipe", () => accessLines().length >= urls.length + 3, 5000);
      const logged = accessLines().map((l) => parseLine("squid", l).url);
      for (const url of urls) expect(logged).toContain(url);
    },
  );

  test("SIGTERM still stops it, within a bound, while the pipe stays full", async () => {
    const origin = startOrigin(() => new Response("x".repeat(20)));
    defer(() => origin.stop());
    const pipe = await stalledPipe();
    defer(() => pipe.close());
    const gw = await startGateway(pipe.fd);
    await fill(gw, origin, 300);
    gw.child.kill("SIGTERM");
    expect(await within(8000, "the gateway's exit after SIGTERM", gw.child.exited)).toBe(0);
  });
});
