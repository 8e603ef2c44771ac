import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { countRows, filesUnder } from "../support/data-dir.ts";
import { startTestGateway } from "../support/gateway.ts";
import { bytesOf, pushedBody, startOrigin, viaProxy } from "../support/origin.ts";
import { waitFor, within } from "../support/wait.ts";

const defer = cleanupAfterEach();
const FRESH = { "cache-control": "max-age=3600" };
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** File descriptors this process holds open on `path` (the gateway runs in it), from /proc/self/fd. */
async function handlesOn(path: string): Promise<number> {
  const fds = await readdir("/proc/self/fd");
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
  return targets.filter((t) => t === path).length;
}

async function setup(handler: (req: Request) => Response) {
  const origin = startOrigin(handler);
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => gw.close());
  return { origin, gw };
}

describe("blob store", () => {
  test("a stored body is named by the sha256 of its bytes and holds exactly them", async () => {
    const body = randomBytes(50_000);
    const { origin, gw } = await setup(() => new Response(body, { headers: FRESH }));
    await (await viaProxy(gw.proxyUrl, origin.url("/a.bin"))).arrayBuffer();
    await gw.idle();

    const sha = sha256(body);
    expect(await filesUnder(join(gw.dataDir, "blobs"))).toEqual([join(sha.slice(0, 2), sha)]);
    expect((await readFile(join(gw.dataDir, "blobs", sha.slice(0, 2), sha))).equals(body)).toBe(true);
  });

  test("one body under two URLs is stored once", async () => {
    const body = randomBytes(50_000);
    const { origin, gw } = await setup(() => new Response(body, { headers: FRESH }));
    for (const path of ["/one/agent.bin", "/two/agent.bin"]) {
      await (await viaProxy(gw.proxyUrl, origin.url(path))).arrayBuffer();
      await gw.idle();
    }

    expect(await filesUnder(join(gw.dataDir, "blobs"))).toHaveLength(1);
    expect(countRows(gw.dataDir, "blobs")).toBe(1);
    expect(countRows(gw.dataDir, "entries")).toBe(2);
    expect(await filesUnder(join(gw.dataDir, "tmp"))).toEqual([]);
    for (const path of ["/one/agent.bin", "/two/agent.bin"]) {
      const hit = await viaProxy(gw.proxyUrl, origin.url(path));
      expect(hit.headers.get("x-cache")).toBe("HIT");
      expect((await bytesOf(hit)).equals(body)).toBe(true);
    }
  });

  test("invalidating one of two URLs that share a body keeps the body for the other", async () => {
    const body = randomBytes(20_000);
    const { origin, gw } = await setup(() => new Response(body, { headers: FRESH }));
    for (const path of ["/one", "/two"]) {
      await (await viaProxy(gw.proxyUrl, origin.url(path))).arrayBuffer();
      await gw.idle();
    }

    const post = await viaProxy(gw.proxyUrl, origin.url("/one"), { method: "POST", body: "x" });
    expect(post.headers.get("x-cache")).toBe("BYPASS");
    await post.arrayBuffer();

    expect(countRows(gw.dataDir, "entries")).toBe(1);
    expect(await filesUnder(join(gw.dataDir, "blobs"))).toHaveLength(1);
    const hit = await viaProxy(gw.proxyUrl, origin.url("/two"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(hit)).equals(body)).toBe(true);
  });

  test("while a body is downloading it lives in tmp, and the index has no row for it", async () => {
    const body = randomBytes(60_000);
    const out = pushedBody();
    const { origin, gw } = await setup(() => new Response(out.stream, { headers: FRESH }));
    out.push(body.subarray(0, 30_000));
    const res = await viaProxy(gw.proxyUrl, origin.url("/partial"));
    await res.body!.getReader().read();

    expect(await filesUnder(join(gw.dataDir, "tmp"))).toHaveLength(1);
    expect(await filesUnder(join(gw.dataDir, "blobs"))).toEqual([]);
    expect(countRows(gw.dataDir, "entries")).toBe(0);

    out.push(body.subarray(30_000));
    out.end();
    await gw.idle();
    expect(await filesUnder(join(gw.dataDir, "tmp"))).toEqual([]);
    expect(countRows(gw.dataDir, "entries")).toBe(1);
  });

  test("an entry whose blob vanished from disk is dropped and fetched again", async () => {
    const body = randomBytes(10_000);
    const { origin, gw } = await setup(() => new Response(body, { headers: FRESH }));
    await (await viaProxy(gw.proxyUrl, origin.url("/gone"))).arrayBuffer();
    await gw.idle();
    await rm(join(gw.dataDir, "blobs"), { recursive: true });

    const res = await viaProxy(gw.proxyUrl, origin.url("/gone"));
    expect(res.headers.get("x-cache")).toBe("MISS");
    expect((await bytesOf(res)).equals(body)).toBe(true);
    expect(origin.count()).toBe(2);
  });
});

describe("start-up sweep", () => {
  test("leftovers of interrupted downloads and orphan blobs are removed at start, and indexed blobs kept", async () => {
    const body = randomBytes(30_000);
    const origin = startOrigin(() => new Response(body, { headers: FRESH }));
    defer(() => origin.stop());
    let gw = await startTestGateway();
    defer(() => gw.close());
    await (await viaProxy(gw.proxyUrl, origin.url("/kept"))).arrayBuffer();
    await gw.idle();

    // What a crash mid-download (or mid-commit) leaves behind.
    await writeFile(join(gw.dataDir, "tmp", "lzx1-0123456789ab.part"), randomBytes(1000));
    await mkdir(join(gw.dataDir, "tmp", "stray-dir"));
    await writeFile(join(gw.dataDir, "tmp", "stray-dir", "x"), "x");
    const orphan = "ab".padEnd(64, "c");
    await mkdir(join(gw.dataDir, "blobs", "ab"), { recursive: true });
    await writeFile(join(gw.dataDir, "blobs", "ab", orphan), randomBytes(1000));
    gw = await gw.restart();

    const kept = sha256(body);
    expect(await filesUnder(join(gw.dataDir, "tmp"))).toEqual([]);
    expect(await filesUnder(join(gw.dataDir, "blobs"))).toEqual([join(kept.slice(0, 2), kept)]);
    const hit = await viaProxy(gw.proxyUrl, origin.url("/kept"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect((await bytesOf(hit)).equals(body)).toBe(true);
  });
});

describe("shutdown", () => {
  test("stopping the gateway while an agent is still reading a cached object ends cleanly", async () => {
    const body = randomBytes(12_000_000); // more than socket buffers absorb: the read is still going on
    const origin = startOrigin(() => new Response(body, { headers: FRESH }));
    defer(() => origin.stop());
    const gw = await startTestGateway();
    let running = true;
    defer(() => running && gw.close());
    await (await viaProxy(gw.proxyUrl, origin.url("/big.bin"))).arrayBuffer();
    await gw.idle();

    const blob = join(gw.dataDir, "blobs", sha256(body).slice(0, 2), sha256(body));
    const agent = connect(gw.proxyPort, "127.0.0.1");
    defer(() => agent.destroy());
    agent.on("error", () => {});
    let received = 0;
    agent.on("data", (d: Buffer) => {
      received += d.length;
    });
    const closed = new Promise<void>((resolve) => agent.on("close", () => resolve()));
    const reading = new Promise<void>((resolve) =>
      agent.once("data", () => {
        agent.pause();
        resolve();
      }),
    );
    agent.write(`GET ${origin.url("/big.bin")} HTTP/1.1\r\nHost: localhost:${origin.port}\r\n\r\n`);
    await reading;
    expect(await handlesOn(blob)).toBe(1); // the gateway is reading the blob for the agent

    running = false;
    await gw.close();
    agent.resume();
    await within(5000, "the agent's connection to close", closed);
    expect(received).toBeLessThan(body.length); // cut off, not sent to the end
    // The gateway lets go of the blob in the background once the agent is gone (an error there
    // would surface as an unhandled rejection): its file handle is closed.
    await waitFor("the gateway to close its handle on the blob", async () => (await handlesOn(blob)) === 0);
  });
});
