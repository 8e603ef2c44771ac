import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { parseLine } from "../support/access-log.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { startOrigin } from "../support/origin.ts";
import { rawExchange } from "../support/raw-http.ts";
import { waitFor } from "../support/wait.ts";

setDefaultTimeout(60_000);

/**
 * CACHEGATE_ACCESS_LOG=- writes to stdout, which the primary and its
 * workers share with the gateway's own JSON log: each write carries whole
 * lines and at most PIPE_BUF bytes, so no line is ever cut by another's.
 */
const defer = cleanupAfterEach();
afterAll(() => killAllGatewayProcesses());

describe("the access log on stdout", () => {
  test("keeps every line whole while two workers and the gateway's own log share the pipe", async () => {
    const origin = startOrigin(() => new Response("x".repeat(50)));
    defer(() => origin.stop());
    const gw = await startGatewayProcess({
      env: { CACHEGATE_ACCESS_LOG: "-", CACHEGATE_WORKERS: "2", CACHEGATE_LOG_LEVEL: "debug" },
    });
    defer(() => gw.close());
    const n = 200;
    // A long path makes the lines of a second's worth of requests span several PIPE_BUF writes.
    const urls = Array.from({ length: n }, (_, i) => origin.url(`/${"p".repeat(200)}/${i}.txt`));
    await Promise.all(
      urls.map(async (url) => {
        const res = await rawExchange(gw.proxyPort, `GET ${url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        expect(res.status).toBe(200);
      }),
    );
    const accessLines = () =>
      gw
        .output()
        .split("\n")
        .filter((l) => /^\d{10}\./.test(l));
    await waitFor(`${n} access log lines on stdout`, () => accessLines().length >= n);
    const logged = accessLines().map((l) => parseLine("squid", l));
    expect(logged.map((l) => l.url).sort()).toEqual(urls.sort());
    // Every other line is one whole JSON object of the gateway's own log.
    for (const line of gw.output().split("\n")) {
      if (line === "" || /^\d{10}\./.test(line)) continue;
      expect(() => JSON.parse(line)).not.toThrow();
    }
  });
});
