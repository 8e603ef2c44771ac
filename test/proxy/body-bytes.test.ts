import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { slowBody, startOrigin } from "../support/origin.ts";

const defer = cleanupAfterEach();
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** curl through the gateway, reading at a limited rate so the gateway meets backpressure. */
async function slowCurl(proxy: string, url: string, file: string): Promise<{ body: Buffer; xcache: string }> {
  const proc = Bun.spawn(["curl", "-s", "--limit-rate", "4M", "-o", file, "-w", "%header{x-cache}", "-x", proxy, url], {
    stdout: "pipe",
  });
  const [xcache] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { body: Buffer.from(await Bun.file(file).arrayBuffer()), xcache };
}

// The proxy copies cached bodies to agents through one reused buffer per agent
// (src/proxy/node-adapter.ts); random bytes and slow readers prove no chunk is
// overwritten before it is sent.
describe("bytes served from disk", () => {
  test("agents reading slowly while the download is written, and from the finished blob, all get the exact bytes", async () => {
    const payload = randomBytes(6 * 1024 * 1024 + 123);
    const chunks = Array.from({ length: 24 }, (_, i) =>
      payload.subarray(Math.floor((i * payload.length) / 24), Math.floor(((i + 1) * payload.length) / 24)),
    );
    const origin = startOrigin(
      () =>
        new Response(slowBody(chunks, 20), {
          headers: { "cache-control": "max-age=600", "content-length": String(payload.length) },
        }),
    );
    defer(() => origin.stop());
    const gw = await startTestGateway();
    defer(() => gw.close());

    const dir = await mkdtemp(join(tmpdir(), "cachegate-bytes-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    const during = await Promise.all(
      Array.from({ length: 4 }, (_, i) => slowCurl(gw.proxyUrl, origin.url("/big.bin"), join(dir, `during-${i}`))),
    );
    await gw.idle();
    const after = await slowCurl(gw.proxyUrl, origin.url("/big.bin"), join(dir, "after"));

    expect(origin.count("/big.bin")).toBe(1);
    for (const r of [...during, after]) expect(sha(r.body)).toBe(sha(payload));
    expect(after.xcache).toBe("HIT");
  }, 60_000);
});
