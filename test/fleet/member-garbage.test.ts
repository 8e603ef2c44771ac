import { expect, test } from "bun:test";
import { createServer } from "node:net";
import { ownerOf } from "../../src/fleet/members.ts";
import { admin, agentGet } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin } from "../support/origin.ts";

const defer = cleanupAfterEach();

/**
 * A "member" that passes its health checks but answers proxied requests
 * with something no proxy may relay: the agent gets the object from the
 * origin, never that answer.
 */
test.each([
  ["a status outside 1xx–5xx", "HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nhi"],
  ["101 Switching Protocols to a plain GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nhi"],
  ["no HTTP at all", "garbage\r\n\r\n"],
  // The body fails in the same packet as the head: dropping it must not become an unhandled rejection.
  [
    "a status outside 1xx–5xx and a broken chunked body",
    "HTTP/1.1 999 Weird\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  ],
])("a member that answers %s is skipped: the agent gets the object from the origin", async (_, answer) => {
  const origin = startOrigin(() => new Response("the object", { headers: { "cache-control": "max-age=600" } }));
  defer(() => origin.stop());
  const member = createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", (d) => {
      if (d.toString().startsWith("GET /healthz ")) socket.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      else socket.end(answer);
    });
  });
  await new Promise<void>((resolve) => member.listen(0, "127.0.0.1", resolve));
  defer(() => new Promise<void>((resolve) => member.close(() => resolve())));
  const gw = await startTestGateway();
  defer(() => gw.close());
  const other = `http://127.0.0.1:${(member.address() as { port: number }).port}`;
  const peers = [gw.proxyUrl, other];
  expect((await admin(gw).patch({ cluster: { peers, self: gw.proxyUrl } })).status).toBe(200);
  let path = "/owned-by-the-other/0";
  for (let i = 1; ownerOf(origin.url(path), peers) !== other; i++) path = `/owned-by-the-other/${i}`;

  const res = await agentGet(gw.proxyUrl, origin.url(path));
  expect(res.status).toBe(200);
  expect(res.body.toString()).toBe("the object");
  expect(res.headers["x-cache"]).toBe("MISS");
  expect(origin.count()).toBe(1);
});
