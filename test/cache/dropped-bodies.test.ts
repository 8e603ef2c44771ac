import { expect, test } from "bun:test";
import { agentGet } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startRawOrigin } from "../support/raw-http.ts";

const defer = cleanupAfterEach();

test("a resume answered with a 200 whose body breaks in the packet of its head: the agent's body is cut, and the gateway serves on", async () => {
  const origin = await startRawOrigin((req, socket) => {
    if (req.headers.has("range")) {
      // Not the 206 asked for, and a broken chunk right behind the head: the resume is refused, this body dropped.
      socket.end('HTTP/1.1 200 OK\r\nETag: "v2"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
      return;
    }
    const head = 'HTTP/1.1 200 OK\r\nETag: "v1"\r\nCache-Control: max-age=600\r\nContent-Length: 1000\r\n\r\n';
    socket.end(head + "x".repeat(500)); // and then the connection ends, 500 bytes short
  });
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => gw.close());

  // Dropping the refused resume's body rejected (it had failed already): unhandled, that ends the process.
  await expect(agentGet(gw.proxyUrl, origin.url("/cut.bin"))).rejects.toThrow("cut off");
  expect(origin.count("/cut.bin")).toBe(2);
  await gw.idle();
  expect(gw.pipeline.inFlight()).toBe(0);
});

test("an origin's 5xx whose body breaks in the packet of its head, while a stale copy may stand in: the agent gets the stale copy", async () => {
  let clock = Date.parse("2026-01-05T10:00:00Z");
  let failing = false;
  const origin = await startRawOrigin((_, socket) => {
    if (failing) return void socket.end("HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    socket.end(
      "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 9\r\nConnection: close\r\n\r\nthe bytes",
    );
  });
  defer(() => origin.stop());
  const gw = await startTestGateway({ now: () => clock });
  defer(() => gw.close());
  expect((await agentGet(gw.proxyUrl, origin.url("/stale.json"))).body.toString()).toBe("the bytes");
  await gw.idle();
  clock += 3600_000;
  failing = true;
  // Dropping the 5xx's body rejected (it had failed already): unhandled, that ends the process.
  const res = await agentGet(gw.proxyUrl, origin.url("/stale.json"));
  expect(res.status).toBe(200);
  expect(res.body.toString()).toBe("the bytes");
  expect(res.headers["x-cache"]).toBe("STALE");
});
