import { afterEach, expect, test } from "bun:test";
import { createServer } from "node:net";
import { createFleet, type Fleet } from "../../src/fleet/members.ts";
import { silentLogger } from "../../src/log.ts";
import { waitFor } from "../support/wait.ts";

let fleet: Fleet | undefined;
let server: ReturnType<typeof Bun.serve> | undefined;
const savedProxy = process.env.http_proxy;

afterEach(() => {
  fleet?.stop();
  void server?.stop(true);
  if (savedProxy === undefined) delete process.env.http_proxy;
  else process.env.http_proxy = savedProxy;
});

test("health checks go straight to the member, not through the http_proxy of the gateway's environment", async () => {
  let checks = 0;
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      if (new URL(req.url).pathname === "/healthz") checks++;
      return new Response("ok");
    },
  });
  // A corporate host often sets http_proxy for everything; here it points at a port where nothing listens.
  process.env.http_proxy = "http://127.0.0.1:1";
  const self = "http://127.0.0.1:1111";
  const member = `http://127.0.0.1:${server.port}`;
  fleet = createFleet({ cluster: () => ({ peers: [self, member], self }), log: silentLogger, checkEveryMs: 20 });
  await waitFor("two health checks of the member, or the member taken down", () => checks >= 2 || !fleet!.isUp(member));
  expect(fleet.view().find((m) => m.member === member)).toEqual({ member, self: false, up: true });
  expect(checks).toBeGreaterThanOrEqual(2);
});

test("a member whose health check answer is cut after its head (a reset) is checked on, the gateway unharmed", async () => {
  let checks = 0;
  const member = createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => {
      checks++;
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", () => socket.resetAndDestroy());
    });
  });
  await new Promise<void>((resolve) => member.listen(0, "127.0.0.1", resolve));
  const self = "http://127.0.0.1:1111";
  const other = `http://127.0.0.1:${(member.address() as { port: number }).port}`;
  fleet = createFleet({ cluster: () => ({ peers: [self, other], self }), log: silentLogger, checkEveryMs: 20 });
  try {
    // Dropping the unread body of each answer rejected (the body had failed): unhandled, it ends the process.
    await waitFor("five health checks", () => checks >= 5);
    expect(fleet.isUp(other)).toBe(true);
  } finally {
    await new Promise<void>((resolve) => member.close(() => resolve()));
  }
});
