import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { admin, closeWhenIdle, freePort } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { type PushedBody, pushedBody, startOrigin, viaProxy } from "../support/origin.ts";
import { waitFor, within } from "../support/wait.ts";

const defer = cleanupAfterEach();
const CHUNK = 64 * 1024;
const CHUNKS = 8;
const chunk = (i: number) => new Uint8Array(CHUNK).fill(i + 1);
const expected = Buffer.concat(Array.from({ length: CHUNKS }, (_, i) => chunk(i)));

/** Resolves "refused" if nothing listens on the port any more, "accepted" if something does. */
function probe(port: number): Promise<"accepted" | "refused"> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("accepted");
    });
    socket.once("error", () => resolve("refused"));
  });
}

async function setup() {
  const bodies = new Map<string, PushedBody>();
  const origin = startOrigin((req) => {
    const path = new URL(req.url).pathname;
    const body = bodies.get(path);
    if (body)
      return new Response(body.stream, {
        headers: { "content-length": String(CHUNK * CHUNKS), "cache-control": "max-age=3600" },
      });
    return new Response(`small ${path}`, { headers: { "cache-control": "max-age=3600" } });
  });
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => closeWhenIdle(gw));
  return { origin, gw, bodies };
}

/** Starts a download through `proxyUrl` and returns once its first chunk has arrived. */
async function startDownload(proxyUrl: string, url: string, body: PushedBody) {
  body.push(chunk(0));
  const res = await viaProxy(proxyUrl, url);
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const got: Uint8Array[] = [];
  let size = 0;
  while (size < CHUNK) {
    const { done, value } = await reader.read();
    if (done) throw new Error("the download ended early");
    got.push(value);
    size += value.length;
  }
  return {
    async finish(): Promise<Buffer> {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return Buffer.concat(got);
        got.push(value);
      }
    },
  };
}

describe("changing cacheMode.port rebinds live", () => {
  test("the new port answers proxy requests, the old one stops accepting, and a download in flight on the old one completes intact", async () => {
    const { origin, gw, bodies } = await setup();
    const body = pushedBody();
    bodies.set("/big.bin", body);
    const oldPort = gw.proxyPort;
    const download = await startDownload(gw.proxyUrl, origin.url("/big.bin"), body);

    const newPort = await freePort();
    const res = await admin(gw).patch({ cacheMode: { port: newPort } });
    expect(res.status).toBe(200);
    expect(gw.proxyPort).toBe(newPort);

    const viaNew = await viaProxy(`http://127.0.0.1:${newPort}`, origin.url("/small.txt"));
    expect(viaNew.status).toBe(200);
    expect(await viaNew.text()).toBe("small /small.txt");

    await waitFor("the old port to stop accepting connections", async () => (await probe(oldPort)) === "refused");

    for (let i = 1; i < CHUNKS; i++) body.push(chunk(i));
    body.end();
    const received = await within(5000, "the in-flight download to finish", download.finish());
    expect(received.length).toBe(expected.length);
    expect(received.equals(expected)).toBe(true);
  });

  test("the new port listens before the PATCH answers", async () => {
    const { gw } = await setup();
    const newPort = await freePort();
    expect((await admin(gw).patch({ cacheMode: { port: newPort } })).status).toBe(200);
    expect(await probe(newPort)).toBe("accepted");
  });

  test("the port can be moved twice in a row, and only the last one listens", async () => {
    const { origin, gw } = await setup();
    const first = gw.proxyPort;
    const second = await freePort();
    expect((await admin(gw).patch({ cacheMode: { port: second } })).status).toBe(200);
    const third = await freePort();
    expect((await admin(gw).patch({ cacheMode: { port: third } })).status).toBe(200);
    expect(await (await viaProxy(`http://127.0.0.1:${third}`, origin.url("/a.txt"))).text()).toBe("small /a.txt");
    await waitFor(
      "the first two ports to close",
      async () => (await probe(first)) === "refused" && (await probe(second)) === "refused",
    );
  });

  test("a cached object stays cached across the move: the new port serves it as a HIT", async () => {
    const { origin, gw } = await setup();
    expect((await viaProxy(gw.proxyUrl, origin.url("/m.json"))).headers.get("x-cache")).toBe("MISS");
    await gw.idle();
    const newPort = await freePort();
    await admin(gw).patch({ cacheMode: { port: newPort } });
    const res = await viaProxy(`http://127.0.0.1:${newPort}`, origin.url("/m.json"));
    expect(res.headers.get("x-cache")).toBe("HIT");
    expect(origin.count("/m.json")).toBe(1);
  });
});
