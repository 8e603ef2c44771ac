import { expect, test } from "bun:test";
import { ownerOf } from "../../src/fleet/members.ts";
import { admin, agentGet } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin } from "../support/origin.ts";

const defer = cleanupAfterEach();

test("a member that does not take this one's peer requests (not its address) is skipped: the agent gets the object from the origin", async () => {
  const origin = startOrigin(() => new Response("the object", { headers: { "cache-control": "max-age=600" } }));
  defer(() => origin.stop());
  const [a, b] = [await startTestGateway(), await startTestGateway()];
  defer(() => a.close());
  defer(() => b.close());
  // a lists both members as they are; b lists a at an address a's connections do not come from (a multi-homed
  // host, or a name b has not resolved yet), so b refuses a's peer requests. (b's own entry is moved off
  // 127.0.0.1 too: a member trusts its own address.)
  const peersOfA = [a.proxyUrl, b.proxyUrl];
  const peersOfB = [a.proxyUrl.replace("127.0.0.1", "[::1]"), b.proxyUrl.replace("127.0.0.1", "127.0.0.2")];
  expect((await admin(a).patch({ cluster: { peers: peersOfA, self: a.proxyUrl } })).status).toBe(200);
  expect((await admin(b).patch({ cluster: { peers: peersOfB, self: peersOfB[1] } })).status).toBe(200);
  let path = "/owned-by-b/0";
  for (let i = 1; ownerOf(origin.url(path), peersOfA) !== b.proxyUrl; i++) path = `/owned-by-b/${i}`;

  const res = await agentGet(a.proxyUrl, origin.url(path));
  expect(res.status).toBe(200);
  expect(res.body.toString()).toBe("the object");
  expect(res.headers["x-cache"]).toBe("MISS");
  expect(origin.count()).toBe(1);
  // b is still taken to serve: it refused one kind of request, it is not down.
  const view = (await admin(a).json("/healthz")).fleet as { member: string; up: boolean }[];
  expect(view.find((m) => m.member === b.proxyUrl)?.up).toBe(true);
});
