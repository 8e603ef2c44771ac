import { afterAll, expect, test } from "bun:test";
import { agentGet, freePort } from "../support/admin.ts";
import { type GatewayProcess, killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { startHaproxy } from "../support/haproxy.ts";
import { startOrigin } from "../support/origin.ts";
import { waitFor } from "../support/wait.ts";

afterAll(() => killAllGatewayProcesses());

const body = (i: number) => Buffer.alloc(20_000 + i * 997, `object ${i}|`).toString();

/** Three members as their own processes (one with two workers), each told the whole list and which one it is. */
async function startMembers(): Promise<GatewayProcess[]> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const peers = ports.map((p) => `http://127.0.0.1:${p}`).join(",");
  return Promise.all(
    ports.map((proxyPort, i) =>
      startGatewayProcess({
        proxyPort,
        env: {
          CACHEGATE_PEERS: peers,
          CACHEGATE_PEER_SELF: `http://127.0.0.1:${proxyPort}`,
          CACHEGATE_WORKERS: i === 0 ? "2" : "1",
        },
      }),
    ),
  );
}

test("behind HAProxy (round-robin on purpose): 30 objects × 3 requests → 30 origin fetches; a member killed, every later request succeeds", async () => {
  const origin = startOrigin((req) => {
    const i = Number(new URL(req.url).pathname.split("/").pop());
    return new Response(body(i), { headers: { "cache-control": "max-age=600" } });
  });
  const members = await startMembers();
  const haproxy = await startHaproxy({ servers: members.map((m) => m.proxyPort), balance: "roundrobin" });
  try {
    const labels = new Map<string, number>();
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const res = await agentGet(haproxy.url, origin.url(`/object/${i}`));
          expect(res.status).toBe(200);
          expect(res.body.toString()).toBe(body(i));
          const label = String(res.headers["x-cache"]);
          labels.set(label, (labels.get(label) ?? 0) + 1);
        }),
      );
    }
    expect(origin.count()).toBe(30);
    expect(labels.get("PEER") ?? 0).toBeGreaterThan(0);
    // Each agent request counted once in the fleet, by the member (or worker) that held the agent.
    const fleet = (await members[0]!.json("/api/stats?fleet=1")).fleet;
    expect(fleet.total.requests).toBe(90);
    expect(fleet.total.bytesUpstream).toBe(
      Array.from({ length: 30 }, (_, i) => body(i).length).reduce((a, b) => a + b),
    );

    // One member dies (no goodbye): HAProxy retries another member, and the members skip it for its URLs.
    await members[1]!.kill("SIGKILL");
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 45; i++) {
        const res = await agentGet(haproxy.url, origin.url(`/object/${i}`));
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe(body(i));
      }
    }
    // The 15 new objects were fetched once each; an old one again only where its copy died with the member.
    expect(origin.count()).toBeLessThanOrEqual(30 + 15 + 10);
    for (let i = 30; i < 45; i++) expect(origin.count(`/object/${i}`)).toBe(1);
    await waitFor("the members to see the dead one", async () => {
      const health = await members[0]!.json("/healthz");
      return health.fleet?.find((m: { member: string }) => m.member === members[1]!.proxyUrl)?.up === false;
    });
  } finally {
    await haproxy.stop();
    await Promise.all(members.map((m) => m.close()));
    await origin.stop();
  }
}, 60_000);
