import { afterAll, expect, test } from "bun:test";
import { ownerOf } from "../../src/fleet/members.ts";
import { agentGet, freePort } from "../support/admin.ts";
import { type GatewayProcess, killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { startOrigin } from "../support/origin.ts";
import { waitFor } from "../support/wait.ts";

afterAll(() => killAllGatewayProcesses());

test("a member that hangs (SIGSTOP) is skipped within seconds, and used again once it serves", async () => {
  const origin = startOrigin(
    (req) => new Response(`body of ${new URL(req.url).pathname}`, { headers: { "cache-control": "max-age=600" } }),
  );
  const ports = [await freePort(), await freePort()];
  const peers = ports.map((p) => `http://127.0.0.1:${p}`);
  const [a, b] = (await Promise.all(
    ports.map((proxyPort, i) =>
      startGatewayProcess({
        proxyPort,
        env: { CACHEGATE_PEERS: peers.join(","), CACHEGATE_PEER_SELF: peers[i]!, CACHEGATE_WORKERS: "1" },
      }),
    ),
  )) as [GatewayProcess, GatewayProcess];
  // URLs the second member owns, so the first asks it for them.
  const ownedByB = (prefix: string) =>
    Array.from({ length: 40 }, (_, i) => origin.url(`/${prefix}/${i}`))
      .filter((url) => ownerOf(url, peers) === peers[1])
      .slice(0, 3);
  try {
    const [warm] = ownedByB("warm");
    expect((await agentGet(a.proxyUrl, warm!)).headers["x-cache"]).toBe("PEER");

    // Frozen: its port still accepts connections (the kernel does that), but nothing answers.
    await b.kill("SIGSTOP");
    for (const url of ownedByB("frozen")) {
      const started = Date.now();
      const res = await agentGet(a.proxyUrl, url);
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`body of ${new URL(url).pathname}`);
      expect(res.headers["x-cache"]).toBe("MISS"); // fetched by the first member itself
      // Two health checks in a row must fail (every 2 s, each allowed 1.5 s); once found down, no wait at all.
      expect(Date.now() - started).toBeLessThan(7000);
    }

    await b.kill("SIGCONT");
    await waitFor(
      "the first member to see the second serve again",
      async () => (await a.json("/healthz")).fleet?.every((m: { up: boolean }) => m.up) === true,
      10_000,
    );
    const [again] = ownedByB("again");
    expect((await agentGet(a.proxyUrl, again!)).headers["x-cache"]).toBe("PEER");
  } finally {
    await b.kill("SIGCONT");
    await Promise.all([a.close(), b.close()]);
    await origin.stop();
  }
}, 60_000);
