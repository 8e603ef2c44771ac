import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { join } from "node:path";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { countRows, filesUnder } from "../support/data-dir.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { bytesOf, viaProxy } from "../support/origin.ts";
import { type RawOrigin, responseHead, startRawOrigin } from "../support/raw-http.ts";
import { gate, waitFor } from "../support/wait.ts";

/**
 * "A cached byte is never wrong": an upstream that dies mid-body must leave
 * nothing in the cache, and no agent may take the short body for the whole.
 */
const defer = cleanupAfterEach();
const body = randomBytes(100_000);
const CACHEABLE: [string, string][] = [
  ["Cache-Control", "max-age=3600"],
  ["Connection", "close"],
];

async function setup(
  respond: (attempt: number, socket: Socket) => void | Promise<void>,
): Promise<{ origin: RawOrigin; gw: TestGateway }> {
  let attempts = 0;
  const origin = await startRawOrigin((_req, socket) => respond(++attempts, socket));
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => gw.close());
  return { origin, gw };
}

/** Sends the whole body, properly framed by Content-Length. */
function sendWhole(socket: Socket) {
  socket.end(
    Buffer.concat([Buffer.from(responseHead("200 OK", [["Content-Length", String(body.length)], ...CACHEABLE])), body]),
  );
}

/** Sends a Content-Length for the whole body, then only the first `sent` bytes, then closes the connection. */
function cutContentLength(socket: Socket, sent: number) {
  socket.write(responseHead("200 OK", [["Content-Length", String(body.length)], ...CACHEABLE]));
  socket.end(body.subarray(0, sent));
}

/** Sends a chunked body without its last chunk, then closes the connection. */
function cutChunked(socket: Socket, sent: number) {
  socket.write(responseHead("200 OK", [["Transfer-Encoding", "chunked"], ...CACHEABLE]));
  if (sent === 0) return void socket.end();
  socket.end(Buffer.concat([Buffer.from(`${sent.toString(16)}\r\n`), body.subarray(0, sent), Buffer.from("\r\n")]));
}

/** Nothing of the failed download is left: no index rows, no blob, no temp file. */
async function expectNothingCached(gw: TestGateway) {
  await gw.idle();
  await waitFor("the temp file to be removed", async () => (await filesUnder(join(gw.dataDir, "tmp"))).length === 0);
  expect(countRows(gw.dataDir, "entries")).toBe(0);
  expect(countRows(gw.dataDir, "blobs")).toBe(0);
  expect(await filesUnder(join(gw.dataDir, "blobs"))).toEqual([]);
}

describe("an upstream that cuts the body off", () => {
  test.each<[string, (socket: Socket, sent: number) => void, number]>([
    ["a Content-Length body cut off mid-way", cutContentLength, 40_000],
    ["a chunked body cut off mid-way", cutChunked, 40_000],
    ["a Content-Length body cut off before its first byte", cutContentLength, 0],
    ["a chunked body cut off before its first chunk", cutChunked, 0],
  ])("%s leaves nothing cached, and the agent's read fails", async (_name, cut, sent) => {
    const { origin, gw } = await setup((attempt, socket) => (attempt === 1 ? cut(socket, sent) : sendWhole(socket)));

    // Whether the head got out first or not, the agent never gets a response that looks whole.
    await expect(viaProxy(gw.proxyUrl, origin.url("/agent.msi")).then(bytesOf)).rejects.toThrow();
    await expectNothingCached(gw);

    // The next request goes upstream again, and a whole body is cached as usual.
    const again = await viaProxy(gw.proxyUrl, origin.url("/agent.msi"));
    expect(again.headers.get("x-cache")).toBe("MISS");
    expect((await bytesOf(again)).equals(body)).toBe(true);
    expect(origin.count()).toBe(2);
    await gw.idle();
    expect(countRows(gw.dataDir, "entries")).toBe(1);
  });

  test("every agent that joined the download sees an error, not a short body", async () => {
    const cut = gate();
    const { origin, gw } = await setup(async (_attempt, socket) => {
      socket.write(responseHead("200 OK", [["Content-Length", String(body.length)], ...CACHEABLE]));
      socket.write(body.subarray(0, 30_000));
      await cut.opened;
      socket.destroy();
    });

    const agents = await Promise.all(Array.from({ length: 3 }, () => viaProxy(gw.proxyUrl, origin.url("/agent.msi"))));
    expect(agents.map((a) => a.headers.get("x-cache")).sort()).toEqual(["COALESCED", "COALESCED", "MISS"]);
    const reads = agents.map((a) =>
      bytesOf(a).then(
        () => "complete",
        () => "error",
      ),
    );
    cut.open();
    expect(await Promise.all(reads)).toEqual(["error", "error", "error"]);
    expect(origin.count()).toBe(1);
    await expectNothingCached(gw);
  });

  test("an agent that asked for a Range of a cut-off download sees an error too", async () => {
    const { origin, gw } = await setup((_attempt, socket) => cutContentLength(socket, 40_000));
    const ranged = viaProxy(gw.proxyUrl, origin.url("/agent.msi"), { headers: { range: "bytes=30000-59999" } });
    await expect(ranged.then(bytesOf)).rejects.toThrow();
    await expectNothingCached(gw);
  });

  test("an upstream that closes before sending a response head gets the agent a 502 and caches nothing", async () => {
    const { origin, gw } = await setup((_attempt, socket) => void socket.destroy());
    const res = await viaProxy(gw.proxyUrl, origin.url("/agent.msi"));
    expect(res.status).toBe(502);
    expect(await res.text()).toContain("cachegate:");
    await expectNothingCached(gw);
  });
});
