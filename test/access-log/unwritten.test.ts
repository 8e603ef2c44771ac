import { describe, expect, test } from "bun:test";
import { closeSync, constants, openSync, readSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAccessLog } from "../../src/access-log/access-log.ts";
import { createLogger } from "../../src/log.ts";
import type { Served } from "../../src/stats/collector.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { waitFor } from "../support/wait.ts";

/**
 * The access log's bound on what it holds for an output that takes nothing
 * (here a FIFO whose reader does not read): past 8 MiB the lines waiting are
 * dropped and said so, the chunk being written is kept, and a stop says how
 * much was left unwritten, then closes the file once the write in flight returns.
 */
const defer = cleanupAfterEach();

const served = (i: number): Served => ({
  agent: "10.0.0.1",
  client: "10.0.0.1",
  url: `http://dl.example.com/${"p".repeat(8000)}/${i}.bin`,
  label: "HIT",
  bytes: 10,
  method: "GET",
  status: 200,
  elapsedMs: 1,
});

describe("an access log whose output takes nothing", () => {
  test("drops what waits past 8 MiB, and the stop reports the chunk still being written", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cachegate-fifo-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "access.log");
    if (Bun.spawnSync(["mkfifo", path]).exitCode !== 0) throw new Error("mkfifo failed");
    // A reader first, so the log's blocking open for appending finds one; it reads only at the end.
    const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    defer(() => closeSync(reader));
    const logged: { msg: string; bytes?: number }[] = [];
    const log = createLogger((l) => logged.push(JSON.parse(l)));
    const accessLog = createAccessLog({ path, format: "squid", log, flushMs: 60_000 });

    // ~10 MiB of lines, flushed every 256: the pipe takes its 64 KiB, then the write in flight blocks.
    for (let i = 0; i < 1300; i++) accessLog.served(served(i));
    const dropped = logged.find((l) => l.msg === "access log lines dropped: they could not be written");
    expect(dropped?.bytes).toBeGreaterThan(0);

    await accessLog.stop();
    const left = logged.find((l) => l.msg === "access log lines not written at stop: the output did not take them");
    // What was kept: the chunk the blocked write came from (256 lines of ~8 KiB), less what the pipe took.
    expect(left?.bytes).toBeGreaterThan(1024 * 1024);

    // The reader reads: the blocked write returns, and the file is closed (the FIFO then reads as ended).
    const buf = Buffer.alloc(1 << 20);
    let total = 0;
    await waitFor("the FIFO to report its writer gone", () => {
      try {
        const n = readSync(reader, buf);
        total += n;
        return n === 0;
      } catch {
        return false; // EAGAIN: empty for now, writer still open
      }
    });
    expect(total).toBeGreaterThan(0);
  });
});
