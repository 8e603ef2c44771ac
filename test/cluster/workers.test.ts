import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { freePort } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { pushedBody, startOrigin } from "../support/origin.ts";
import { gate, waitFor, within } from "../support/wait.ts";

/**
 * The gateway with two worker processes (CACHEGATE_WORKERS=2), as operators
 * run it. Every agent here opens its own connection, so the kernel spreads
 * them over both workers (SO_REUSEPORT hashes each connection).
 */
const defer = cleanupAfterEach();
afterAll(killAllGatewayProcesses);

const WORKERS = { CACHEGATE_WORKERS: "2" };
const MiB = 1024 * 1024;

/** Bytes 0..250 repeating, offset by `seed`: a wrong or shifted byte anywhere shows. */
const pattern = (size: number, seed = 0) => {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i + seed) % 251;
  return out;
};

interface AgentResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Resolves with the whole body, or rejects if the response was cut off. */
  body: Promise<Buffer>;
  /** Bytes received so far. */
  received(): number;
}

/** One agent: a new connection, an absolute-form GET, the response as it streams (held until `hold`, if given). */
function agentGet(proxyPort: number, url: string, hold?: Promise<void>): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: proxyPort, path: url, agent: false }, (res) => {
      if (hold) {
        res.pause();
        void hold.then(() => res.resume());
      }
      const chunks: Buffer[] = [];
      let received = 0;
      const body = new Promise<Buffer>((done, fail) => {
        res.on("data", (c: Buffer) => {
          chunks.push(c);
          received += c.length;
        });
        res.on("end", () => (res.complete ? done(Buffer.concat(chunks)) : fail(new Error("cut off"))));
        res.on("error", fail);
        res.on("close", () => !res.complete && fail(new Error("cut off")));
      });
      body.catch(() => {});
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body, received: () => received });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Worker pids as the primary logged them when each started serving. */
const workerPids = (output: string) =>
  [...output.matchAll(/"msg":"worker serving","slot":(\d+),"pid":(\d+)/g)].map((m) => Number(m[2]));

const blobFiles = async (dataDir: string) =>
  (await readdir(join(dataDir, "blobs"), { recursive: true })).filter((f) => f.length > 64);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** A cacheable origin that answers "ok", and a gateway with two workers in front of it. */
async function okBehindWorkers() {
  const origin = startOrigin(() => new Response("ok", { headers: { "cache-control": "max-age=600" } }));
  defer(() => origin.stop());
  const gw = await startGatewayProcess({ env: WORKERS });
  defer(() => gw.close());
  return { origin, gw };
}

describe("worker processes on one cache", () => {
  test("100 agents at once over both workers cause one upstream fetch, and every body is intact", async () => {
    const body = pattern(2 * MiB);
    const release = gate();
    const origin = startOrigin(async () => {
      await release.opened; // every agent is in before the origin answers
      return new Response(body, { headers: { "cache-control": "max-age=600" } });
    });
    defer(() => origin.stop());
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());

    const agents = Array.from({ length: 100 }, () => agentGet(gw.proxyPort, origin.url("/storm.bin")));
    await waitFor("the origin to be asked", () => origin.count() > 0);
    release.open();
    const responses = await Promise.all(agents);
    for (const res of responses) {
      expect(res.status).toBe(200);
      expect(Buffer.compare(await res.body, Buffer.from(body))).toBe(0);
    }
    expect(origin.count("/storm.bin")).toBe(1);
    const labels = responses.map((r) => r.headers["x-cache"]);
    expect(labels.filter((l) => l === "MISS")).toHaveLength(1);

    // Counted once each: by the worker that held the agent, not again by the owner that relayed.
    const stats = await gw.json("/api/stats");
    expect(stats.requests).toBe(100);
    expect(stats.misses).toBe(1);
    expect(stats.bytesServed).toBe(100 * body.length);
    expect(stats.bytesUpstream).toBe(body.length);
    expect(stats.bandwidth[0]).toMatchObject({ requests: 100, bytesWithoutCache: 100 * body.length });
  }, 30_000);

  test("late joiners on any worker get the bytes already downloaded at once, before the origin sends more", async () => {
    const half = MiB;
    const body = pattern(2 * half, 7);
    const pushed = pushedBody();
    const origin = startOrigin(
      () =>
        new Response(pushed.stream, {
          headers: { "cache-control": "max-age=600", "content-length": String(body.length) },
        }),
    );
    defer(() => origin.stop());
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());

    const first = await (async () => {
      const pending = agentGet(gw.proxyPort, origin.url("/join.bin"));
      await waitFor("the origin to be asked", () => origin.count() > 0);
      pushed.push(body.subarray(0, half));
      return pending;
    })();
    await waitFor("the first half to reach the first agent", () => first.received() === half);
    // The origin holds the rest: whatever a joiner gets now came from the gateway's copy.
    const joiners = await Promise.all(
      Array.from({ length: 12 }, () => agentGet(gw.proxyPort, origin.url("/join.bin"))),
    );
    await within(
      10_000,
      "every joiner to get the first half",
      waitFor("the joiners' first halves", () => joiners.every((j) => j.received() === half), 10_000),
    );
    pushed.push(body.subarray(half));
    pushed.end();
    for (const res of [first, ...joiners]) expect(Buffer.compare(await res.body, Buffer.from(body))).toBe(0);
    expect(origin.count("/join.bin")).toBe(1);
  }, 30_000);

  test("a worker killed mid-download leaves nothing half-stored and is replaced; the object is fetched whole again", async () => {
    const body = pattern(2 * MiB, 3);
    let call = 0;
    const first = pushedBody();
    const origin = startOrigin(() => {
      call++;
      const headers = { "cache-control": "max-age=600", "content-length": String(body.length) };
      return new Response(call === 1 ? first.stream : body, { headers });
    });
    defer(() => origin.stop());
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());
    const before = workerPids(gw.output());
    expect(before).toHaveLength(2);

    const agent = await (async () => {
      const pending = agentGet(gw.proxyPort, origin.url("/killed.bin"));
      await waitFor("the origin to be asked", () => origin.count() > 0);
      first.push(body.subarray(0, 512 * 1024));
      return pending;
    })();
    await waitFor("bytes to reach the agent", () => agent.received() > 0);
    // The download's temp file is named by the pid of the worker writing it: that one dies.
    const tmp = join(gw.dataDir, "tmp");
    const [part] = await readdir(tmp);
    const downloader = Number(part!.split("-")[0]);
    expect(before).toContain(downloader);
    process.kill(downloader, "SIGKILL");

    await expect(agent.body).rejects.toThrow(/cut off|aborted/);
    await waitFor("a replacement worker", () => workerPids(gw.output()).length === 3, 15_000);
    await waitFor("the dead worker's download to be swept", async () => (await readdir(tmp)).length === 0);
    expect((await gw.json("/api/cache/entries?limit=10")).entries).toHaveLength(0);
    expect(await (await fetch(`${gw.adminUrl}/healthz`)).json()).toMatchObject({ workers: 2, workersConfigured: 2 });

    const again = await agentGet(gw.proxyPort, origin.url("/killed.bin"));
    expect(Buffer.compare(await again.body, Buffer.from(body))).toBe(0);
    expect(again.headers["x-cache"]).toBe("MISS");
    await gw.idle();
    const hits = await Promise.all(Array.from({ length: 10 }, () => agentGet(gw.proxyPort, origin.url("/killed.bin"))));
    for (const hit of hits) expect(Buffer.compare(await hit.body, Buffer.from(body))).toBe(0);
    expect(origin.count("/killed.bin")).toBe(2);
  }, 40_000);

  test("a configuration change reaches every worker before the admin API answers", async () => {
    const { origin, gw } = await okBehindWorkers();

    const statuses = async () =>
      (await Promise.all(Array.from({ length: 20 }, () => agentGet(gw.proxyPort, origin.url("/policy"))))).map(
        (r) => r.status,
      );
    expect(new Set(await statuses())).toEqual(new Set([200]));
    await gw.configure({ platformDomains: ["example.org"] });
    expect(new Set(await statuses())).toEqual(new Set([403]));
    await gw.configure({ platformDomains: ["localhost"] });
    expect(new Set(await statuses())).toEqual(new Set([200]));
  }, 30_000);

  test("a purge acts on every worker: the next request on any of them goes to the origin once", async () => {
    let version = 0;
    const origin = startOrigin(() => {
      version++;
      return new Response(`version ${version}`, { headers: { "cache-control": "max-age=600" } });
    });
    defer(() => origin.stop());
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());

    const bodies = async () =>
      Promise.all(
        Array.from({ length: 20 }, async () =>
          (await (await agentGet(gw.proxyPort, origin.url("/purged.json"))).body).toString(),
        ),
      );
    await agentGet(gw.proxyPort, origin.url("/purged.json")).then((r) => r.body);
    await gw.idle();
    expect(new Set(await bodies())).toEqual(new Set(["version 1"]));

    const res = await fetch(`${gw.adminUrl}/api/cache/entries?url=${encodeURIComponent(origin.url("/purged.json"))}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${gw.token}` },
    });
    expect(res.status).toBe(200);
    await agentGet(gw.proxyPort, origin.url("/purged.json")).then((r) => r.body);
    await gw.idle();
    expect(new Set(await bodies())).toEqual(new Set(["version 2"]));
    expect(origin.count()).toBe(2);
  }, 30_000);

  test("a purge while an agent on a worker is reading the object leaves that agent's bytes whole", async () => {
    const body = pattern(16 * MiB, 11);
    const origin = startOrigin(() => new Response(body, { headers: { "cache-control": "max-age=600" } }));
    defer(() => origin.stop());
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());
    await agentGet(gw.proxyPort, origin.url("/read-during-purge.bin")).then((r) => r.body);
    await gw.idle();

    const reading = gate();
    const reader = await agentGet(gw.proxyPort, origin.url("/read-during-purge.bin"), reading.opened);
    expect(reader.headers["x-cache"]).toBe("HIT");
    const purge = await fetch(
      `${gw.adminUrl}/api/cache/entries?url=${encodeURIComponent(origin.url("/read-during-purge.bin"))}`,
      { method: "DELETE", headers: { authorization: `Bearer ${gw.token}` } },
    );
    expect(await purge.json()).toEqual({ purged: 1 });
    // The blob file is gone from disk (the primary purged it), but the worker had it open: the agent reads on.
    expect(await blobFiles(gw.dataDir)).toEqual([]);
    expect(reader.received()).toBeLessThan(body.length);
    reading.open();
    expect(Buffer.compare(await reader.body, Buffer.from(body))).toBe(0);
    const after = await agentGet(gw.proxyPort, origin.url("/read-during-purge.bin"));
    expect(after.headers["x-cache"]).toBe("MISS");
    expect(Buffer.compare(await after.body, Buffer.from(body))).toBe(0);
  }, 30_000);

  test("a second gateway on the same agent port is refused at start, not given half the agents", async () => {
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());
    const second = startGatewayProcess({ env: { ...WORKERS, CACHEGATE_PORT: String(gw.proxyPort) } });
    await expect(second).rejects.toThrow(`cannot listen on port ${gw.proxyPort}`);
    // Moving the agent port onto a port someone holds is refused too, and changes nothing.
    const held = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    defer(() => held.stop(true));
    const res = await fetch(`${gw.adminUrl}/api/config`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${gw.token}`, "content-type": "application/json" },
      body: JSON.stringify({ cacheMode: { port: held.port } }),
    });
    expect(res.status).toBe(409);
    expect((await gw.json("/api/config")).config.cacheMode.port).toBe(gw.proxyPort);
  }, 30_000);

  test("moving the agent port moves every worker", async () => {
    const { origin, gw } = await okBehindWorkers();
    const port = await freePort();
    await gw.configure({ cacheMode: { port } });
    const answers = await Promise.all(Array.from({ length: 20 }, () => agentGet(port, origin.url("/moved"))));
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([200]));
    await expect(agentGet(gw.proxyPort, origin.url("/moved"))).rejects.toThrow();
  }, 30_000);

  test("workers whose primary was killed stop too, and free the agent port", async () => {
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());
    const pids = workerPids(gw.output());
    const primary = Number(readFileSync(`/proc/${pids[0]}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
    process.kill(primary, "SIGKILL"); // the primary cannot tell anyone
    await waitFor("the orphaned workers to exit", () => pids.every((pid) => !alive(pid)), 10_000);
    const again = await startGatewayProcess({ env: { ...WORKERS, CACHEGATE_PORT: String(gw.proxyPort) } });
    defer(() => again.close());
  }, 30_000);

  test("SIGTERM stops the primary and every worker; none is restarted", async () => {
    const gw = await startGatewayProcess({ env: WORKERS });
    defer(() => gw.close());
    const pids = workerPids(gw.output());
    expect(pids).toHaveLength(2);
    await gw.stop(10_000);
    expect(pids.filter(alive)).toEqual([]);
    expect(gw.output()).not.toContain("starting a replacement");
  }, 30_000);
});
