import { afterAll, expect, test } from "bun:test";
import { createServer } from "node:http";
import { ownerOf } from "../../src/fleet/members.ts";
import { type AgentResponse, agentGet, agentRequest, freePort } from "../support/admin.ts";
import { type GatewayProcess, killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { listenOnLoopback } from "../support/listen.ts";
import { waitFor } from "../support/wait.ts";

afterAll(() => killAllGatewayProcesses());

/**
 * The member that owns a URL dies (SIGKILL) while another member is
 * fetching the object through it. The other member resumes with a Range
 * request carrying If-Range, which now goes to the origin: the same version
 * completes the agent's body and is stored whole; a changed version is
 * never joined to the bytes already sent.
 */
const SIZE = 1024 * 1024;
const HALF = SIZE / 2;
const version = (v: number) => Buffer.alloc(SIZE, v === 1 ? "first version " : "second version ");

async function fleetOfTwo() {
  const ports = [await freePort(), await freePort()];
  const peers = ports.map((p) => `http://127.0.0.1:${p}`);
  const members = (await Promise.all(
    ports.map((proxyPort, i) =>
      startGatewayProcess({
        proxyPort,
        env: { CACHEGATE_PEERS: peers.join(","), CACHEGATE_PEER_SELF: peers[i]!, CACHEGATE_WORKERS: "1" },
      }),
    ),
  )) as [GatewayProcess, GatewayProcess];
  return { peers, members };
}

/**
 * An origin (node:http, so a streamed body keeps its Content-Length) that holds its first full answer after
 * HALF bytes, and answers Range with If-Range as RFC 9110 §13.1.5 says.
 */
async function versionedOrigin() {
  let current = 1;
  let held = false;
  const ranges: { range: string | undefined; ifRange: string }[] = [];
  const server = createServer((req, res) => {
    const etag = `"v${current}"`;
    const body = version(current);
    const headers = { etag, "cache-control": "max-age=600", "content-type": "application/octet-stream" };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (range) ranges.push({ range: req.headers.range, ifRange: String(req.headers["if-range"]) });
    if (range && req.headers["if-range"] === etag) {
      const [from, to] = [Number(range[1]), range[2] ? Number(range[2]) : SIZE - 1];
      const partial = { "content-range": `bytes ${from}-${to}/${SIZE}`, "content-length": to + 1 - from };
      return void res.writeHead(206, { ...headers, ...partial }).end(body.subarray(from, to + 1));
    }
    res.writeHead(200, { ...headers, "content-length": SIZE });
    if (held) return void res.end(body);
    held = true;
    res.write(body.subarray(0, HALF)); // and the rest never: the owner dies first
  });
  const { port, stop } = await listenOnLoopback(server);
  return {
    url: (path: string) => `http://localhost:${port}${path}`,
    ranges,
    change: () => void current++,
    stop,
  };
}

async function ownedBy(owner: string, peers: string[], url: (path: string) => string): Promise<string> {
  for (let i = 0; ; i++) if (ownerOf(url(`/big/${i}`), peers) === owner) return url(`/big/${i}`);
}

/** Waits until the member has received at least HALF bytes of the download, through the owner. */
async function halfThrough(member: GatewayProcess): Promise<void> {
  await waitFor(
    "half the object at the asking member",
    async () =>
      ((await member.json("/api/downloads")).downloads as { receivedBytes: number }[]).some(
        (d) => d.receivedBytes >= HALF,
      ),
    10_000,
  );
}

/** The origin and a fleet of two, `url` owned by the second member (b), the one that dies; all stop after `run`. */
async function ownerOfUrlDies(
  run: (fleet: { origin: Origin; a: GatewayProcess; b: GatewayProcess; url: string }) => Promise<void>,
): Promise<void> {
  const origin = await versionedOrigin();
  const { peers, members } = await fleetOfTwo();
  const [a, b] = members;
  try {
    await run({ origin, a, b, url: await ownedBy(peers[1]!, peers, origin.url) });
  } finally {
    await Promise.all([a.close(), b.close()]);
    await origin.stop();
  }
}

type Origin = Awaited<ReturnType<typeof versionedOrigin>>;

/** Once the member is done with the download: the same URL asked again, as the next agent sees it. */
async function askedAgain(member: GatewayProcess, url: string): Promise<AgentResponse> {
  await member.idle();
  return agentGet(member.proxyUrl, url);
}

test(
  "same version: the agent's body is completed from the origin with If-Range, and the copy stored is whole",
  () =>
    ownerOfUrlDies(async ({ origin, a, b, url }) => {
      const res = await agentRequest(a.proxyUrl, url);
      expect(res.headers["x-cache"]).toBe("PEER");
      await halfThrough(a);
      await b.kill("SIGKILL");
      const body = await res.body;
      expect(body.length).toBe(SIZE);
      expect(body.equals(version(1))).toBe(true);
      expect(origin.ranges).toEqual([{ range: `bytes=${HALF}-${SIZE - 1}`, ifRange: '"v1"' }]);

      const again = await askedAgain(a, url);
      expect(again.headers["x-cache"]).toBe("HIT");
      expect(again.body.equals(version(1))).toBe(true);
    }),
  60_000,
);

test(
  "changed version: the agent's body is cut, never joined to the new bytes, and nothing of it is stored",
  () =>
    ownerOfUrlDies(async ({ origin, a, b, url }) => {
      const res = await agentRequest(a.proxyUrl, url);
      await halfThrough(a);
      origin.change();
      await b.kill("SIGKILL");
      await expect(res.body).rejects.toThrow("cut off");
      expect(origin.ranges).toEqual([{ range: `bytes=${HALF}-${SIZE - 1}`, ifRange: '"v1"' }]);

      const again = await askedAgain(a, url);
      expect(again.headers["x-cache"]).toBe("MISS");
      expect(again.body.equals(version(2))).toBe(true);
    }),
  60_000,
);
