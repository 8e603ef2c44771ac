import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RESERVED_PORTS } from "../../src/config/schema.ts";
import { linesOf, loggedRequests } from "../support/access-log.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { counterOf } from "../support/data-dir.ts";
import { type GatewayProcess, killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { type Origin, startOrigin } from "../support/origin.ts";
import { rawExchange } from "../support/raw-http.ts";
import { waitFor } from "../support/wait.ts";

setDefaultTimeout(60_000);

/**
 * SIGHUP as logrotate sends it (`mv access.log access.log.1`, then
 * `kill -HUP`): the gateway writes its counters, reopens the access log at
 * its path, and keeps running; with workers, the primary has each worker do
 * the same. The gateway runs as its own process, signalled by its pid.
 */
const defer = cleanupAfterEach();
afterAll(() => killAllGatewayProcesses());

function startFileOrigin(): Origin {
  for (;;) {
    const origin = startOrigin(
      () =>
        new Response("x".repeat(100), { headers: { "cache-control": "max-age=3600", "content-type": "text/plain" } }),
    );
    if (!RESERVED_PORTS.has(origin.port)) {
      defer(() => origin.stop());
      return origin;
    }
    void origin.stop();
  }
}

async function setup(env: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-sighup-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "access.log");
  const origin = startFileOrigin();
  const gw = await startGatewayProcess({ env: { CACHEGATE_ACCESS_LOG: path, ...env } });
  defer(() => gw.close());
  return { gw, origin, path };
}

/** One request on a connection of its own (with workers, the kernel spreads connections over them). */
async function get(gw: GatewayProcess, url: string): Promise<void> {
  const host = new URL(url).host;
  const res = await rawExchange(gw.proxyPort, `GET ${url} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  expect(res.status).toBe(200);
}

/**
 * Makes requests until one is not yet in the database's counters (they are written every 5 s), so the
 * counters SIGHUP writes are told apart from the timer's. Returns how many were made.
 */
async function requestsNotYetWritten(gw: GatewayProcess, origin: Origin): Promise<number> {
  for (let made = 1; made <= 5; made++) {
    await get(gw, origin.url(`/before-${made}.txt`));
    if (counterOf(gw.dataDir, "requests") < made) return made;
  }
  throw new Error("every request was already written to the counters: the 5 s flush is not what it was");
}

/** `"access log reopened"` lines in the gateway's own log so far, by process (worker slot, or 0 for one process). */
function reopenedIn(gw: GatewayProcess): number[] {
  return gw
    .output()
    .split("\n")
    .filter((l) => l.includes('"access log reopened"'))
    .map((l) => (JSON.parse(l) as { worker?: number }).worker ?? 0);
}

describe("SIGHUP", () => {
  test("reopens the access log after logrotate moved it, writes the counters, and the gateway keeps serving", async () => {
    const { gw, origin, path } = await setup({ CACHEGATE_WORKERS: "1" });
    const made = await requestsNotYetWritten(gw, origin);
    await loggedRequests(path, "squid", made);
    await rename(path, `${path}.1`);

    process.kill(gw.pid, "SIGHUP");
    await waitFor("the access log to be reopened", () => reopenedIn(gw).length === 1);
    expect(counterOf(gw.dataDir, "requests")).toBe(made); // written at once, not at the next 5 s tick
    expect(existsSync(path)).toBe(true);
    expect(gw.alive()).toBe(true);

    await get(gw, origin.url("/after.txt"));
    const [after] = await loggedRequests(path, "squid", 1);
    expect(after!.url).toBe(origin.url("/after.txt"));
    expect(after!.squidCode).toBe("TCP_MISS");
    const rotated = linesOf(`${path}.1`);
    expect(rotated).toHaveLength(made);
    expect(rotated.every((l) => l.includes("/before-"))).toBe(true);
    expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);
    expect(gw.output()).toContain("SIGHUP");
  });

  test("with workers, reaches every worker through the primary: each reopens its log and writes its counters", async () => {
    const { gw, origin, path } = await setup({ CACHEGATE_WORKERS: "2" });
    const made = await requestsNotYetWritten(gw, origin);
    await loggedRequests(path, "squid", made);
    await rename(path, `${path}.1`);

    process.kill(gw.pid, "SIGHUP");
    // The primary's own log (it serves no agent) and each worker's.
    await waitFor("both workers to reopen the access log", () => reopenedIn(gw).filter((w) => w > 0).length === 2);
    expect(reopenedIn(gw).sort()).toEqual([0, 1, 2]);
    expect(counterOf(gw.dataDir, "requests")).toBe(made);

    // Connections are spread over both workers: had one not reopened, its lines would go to access.log.1.
    const after = 12;
    for (let i = 0; i < after; i++) await get(gw, origin.url(`/after-${i}.txt`));
    const lines = await loggedRequests(path, "squid", after);
    expect(lines).toHaveLength(after);
    expect(linesOf(`${path}.1`)).toHaveLength(made);
    expect(gw.alive()).toBe(true);
  });
});
