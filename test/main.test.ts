import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupAfterEach } from "./support/cleanup.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "./support/gateway-process.ts";
import { startOrigin } from "./support/origin.ts";
import { rawExchange } from "./support/raw-http.ts";

setDefaultTimeout(60_000);

/** `bun src/main.ts` as operators start it: the log level and the access log variables, read at start. */
const defer = cleanupAfterEach();
afterAll(() => killAllGatewayProcesses());

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-main-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("the gateway process", () => {
  test.each([
    ["CACHEGATE_LOG_LEVEL", "loud", "CACHEGATE_LOG_LEVEL must be one of debug, info, warn, error"],
    ["CACHEGATE_ACCESS_LOG_FORMAT", "apache", "CACHEGATE_ACCESS_LOG_FORMAT must be one of squid, combined, json"],
    ["CACHEGATE_ACCESS_LOG", "/nonexistent-dir/cachegate/access.log", "CACHEGATE_ACCESS_LOG: cannot open"],
  ])("refuses to start with %s=%p, says what to set, and makes no data dir", async (name, value, message) => {
    const dataDir = join(await tempDir(), "data");
    const env = { CACHEGATE_ACCESS_LOG: join(await tempDir(), "access.log"), CACHEGATE_WORKERS: "1", [name]: value };
    const start = startGatewayProcess({ dataDir, env });
    await expect(start).rejects.toThrow(message);
    expect(existsSync(dataDir)).toBe(false);
  });

  test("at CACHEGATE_LOG_LEVEL=warn writes no info line, in the primary and in its workers", async () => {
    const origin = startOrigin(() => new Response("ok", { headers: { "cache-control": "max-age=60" } }));
    defer(() => origin.stop());
    const gw = await startGatewayProcess({ env: { CACHEGATE_LOG_LEVEL: "warn", CACHEGATE_WORKERS: "2" } });
    defer(() => gw.close());
    const url = origin.url("/manifest.json");
    const res = await rawExchange(gw.proxyPort, `GET ${url} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    expect(res.status).toBe(200);
    expect((await gw.json("/healthz")).workers).toBe(2);
    await gw.stop();
    const levels = gw
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => (JSON.parse(l) as { level: string }).level);
    expect(levels.filter((l) => l === "info" || l === "debug")).toEqual([]);
  });
});
