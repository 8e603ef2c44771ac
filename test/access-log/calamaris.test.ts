import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loggedRequests } from "../support/access-log.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin, viaProxy } from "../support/origin.ts";
import { rawExchange } from "../support/raw-http.ts";

setDefaultTimeout(30_000);

/**
 * The `squid` format is meant for Squid's log analysers: Debian's calamaris
 * (CI installs it) reads an access log this gateway wrote and must count its
 * requests, hits, misses and refusals as the gateway served them.
 */
const defer = cleanupAfterEach();
const BODY = new Uint8Array(10_240).fill(1);

/** A figure from calamaris's plain-text report: the last number on the first line starting with `label`. */
function figure(report: string, label: RegExp): number {
  const line = report.split("\n").find((l) => label.test(l));
  if (!line) throw new Error(`calamaris printed no line matching ${label}:\n${report}`);
  return Number(line.trim().split(/\s+/).at(-1));
}

/** A row of one of calamaris's tables: its request count (the first number after the label). */
function requests(report: string, section: string, row: string): number {
  const start = report.indexOf(`# ${section}`);
  if (start < 0) throw new Error(`calamaris printed no "${section}" section:\n${report}`);
  const end = report.indexOf("\n# ", start + 1);
  const table = report.slice(start, end < 0 ? undefined : end);
  const line = table.split("\n").find((l) => l.startsWith(`${row} `));
  return line ? Number(line.slice(row.length).trim().split(/\s+/)[0]) : 0;
}

describe("a Squid log analyser (calamaris) reading the squid access log", () => {
  test.skipIf(!Bun.which("calamaris"))("counts its requests, hits, misses and refusals", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cachegate-calamaris-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    const origin = startOrigin(
      () =>
        new Response(BODY, {
          headers: { "cache-control": "max-age=3600", "content-type": "application/octet-stream" },
        }),
    );
    defer(() => origin.stop());
    const path = join(dir, "access.log");
    const gw = await startTestGateway({ accessLog: { path, format: "squid" } });
    defer(() => gw.close());

    const get = async (url: string) => void (await (await viaProxy(gw.proxyUrl, url)).bytes());
    await get(origin.url("/a.bin")); // MISS
    await get(origin.url("/b.bin")); // MISS
    await gw.idle();
    for (const path of ["/a.bin", "/a.bin", "/a.bin", "/b.bin"]) await get(origin.url(path)); // 4 HITs
    await get("http://denied.example/one.exe"); // 403
    await get("http://denied.example/two.exe"); // 403
    const connect = "CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\n\r\n";
    expect((await rawExchange(gw.proxyPort, connect)).status).toBe(403);
    const lines = await loggedRequests(path, "squid", 9);
    expect(lines.map((l) => l.squidCode).sort()).toEqual([
      ...Array(3).fill("TCP_DENIED"),
      ...Array(4).fill("TCP_MEM_HIT"),
      ...Array(2).fill("TCP_MISS"),
    ]);

    const run = Bun.spawnSync(["calamaris", "-a"], { stdin: readFileSync(path) });
    const report = run.stdout.toString();
    expect(run.exitCode).toBe(0);
    console.log(`calamaris -a over ${path}:\n${report.split("\n# Outgoing requests by destination")[0]}`);
    expect(figure(report, /^lines parsed:/)).toBe(9);
    expect(figure(report, /^invalid lines:/)).toBe(0);
    expect(figure(report, /^Total amount:/)).toBe(9);
    expect(figure(report, /^Total amount cached:/)).toBe(4);
    expect(figure(report, /^Request hit rate:/)).toBeCloseTo((100 * 4) / 9, 1);
    expect(figure(report, /^Bandwidth savings:/)).toBe(4 * BODY.length);
    expect(requests(report, "Incoming requests by method", "GET")).toBe(8);
    expect(requests(report, "Incoming requests by method", "CONNECT")).toBe(1);
    expect(requests(report, "Incoming TCP-requests by status", "HIT")).toBe(4);
    expect(requests(report, "Incoming TCP-requests by status", " TCP_MEM_HIT")).toBe(4);
    expect(requests(report, "Incoming TCP-requests by status", "MISS")).toBe(2);
    expect(requests(report, "Incoming TCP-requests by status", "ERROR")).toBe(3);
    expect(requests(report, "Incoming TCP-requests by status", " TCP_DENIED")).toBe(3);
    expect(requests(report, "Outgoing requests by status", " HIER_DIRECT")).toBe(2);
  });
});
