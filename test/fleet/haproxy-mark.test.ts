import { expect, test } from "bun:test";
import { admin, agentGet } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { startHaproxy } from "../support/haproxy.ts";
import { startOrigin } from "../support/origin.ts";

const defer = cleanupAfterEach();

test("the shipped HAProxy drops an agent's X-Cachegate-Peer: from HAProxy on a member's host it would be trusted", async () => {
  const origin = startOrigin(() => new Response("the object", { headers: { "cache-control": "max-age=600" } }));
  defer(() => origin.stop());
  const members: TestGateway[] = [];
  for (let i = 0; i < 2; i++) {
    const gw = await startTestGateway();
    defer(() => gw.close());
    members.push(gw);
  }
  const peers = members.map((m) => m.proxyUrl);
  for (const m of members) expect((await admin(m).patch({ cluster: { peers, self: m.proxyUrl } })).status).toBe(200);
  // HAProxy on loopback, where the members are: its connections come from a member's address.
  const haproxy = await startHaproxy({ servers: members.map((m) => m.proxyPort) });
  defer(() => haproxy.stop());

  const res = await agentGet(haproxy.url, origin.url("/marked.json"), "127.0.0.1", { "x-cachegate-peer": peers[0]! });
  expect(res.status).toBe(200);
  expect(res.body.toString()).toBe("the object");
  // Taken as an agent's request: counted by the member that held it (a member's request would not be).
  for (const m of members) await m.stats.flush();
  const counted = await Promise.all(members.map(async (m) => (await admin(m).json("/api/stats")).requests as number));
  expect(counted.reduce((a, b) => a + b, 0)).toBe(1);
});
