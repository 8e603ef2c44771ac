import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { countRows } from "../support/data-dir.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type RawOrigin, responseHead, startRawOrigin } from "../support/raw-http.ts";
import { curl } from "../support/tls-clients.ts";

/**
 * A hostile or broken origin must not be able to plant a wrong byte: a body
 * is stored only when its end was proven (Content-Length reached, the last
 * chunk seen, or a clean close), and an agent reading a body whose end was
 * not proven sees a broken transfer, never a clean end (RFC 9112 §6.3, §8).
 */
const defer = cleanupAfterEach();
const body = randomBytes(400_000);

async function setup(respond: (socket: Socket) => void): Promise<{ origin: RawOrigin; gw: TestGateway }> {
  const origin = await startRawOrigin((_req, socket) => respond(socket));
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => gw.close());
  return { origin, gw };
}

const viaCurl = (gw: TestGateway, origin: RawOrigin, path: string) =>
  curl(["-x", gw.proxyUrl, `http://localhost:${origin.port}${path}`]);

/** A close-delimited 200: no Content-Length, no chunked; the body ends when the connection does. */
function closeDelimited(socket: Socket, sent: number, ending: "reset" | "close") {
  socket.write(responseHead("200 OK", [["Cache-Control", "max-age=3600"]]));
  socket.write(body.subarray(0, sent), () => {
    // Give the bytes a moment on the wire before the reset, as a dying origin would.
    setImmediate(() => (ending === "reset" ? socket.resetAndDestroy() : socket.end()));
  });
}

describe("close-delimited bodies", () => {
  test("a body cut by a connection reset reaches the agent as a broken transfer and is not stored", async () => {
    const { origin, gw } = await setup((socket) => closeDelimited(socket, body.length / 2, "reset"));
    const first = await viaCurl(gw, origin, "/reset.bin");
    expect(first.exitCode).not.toBe(0); // curl sees the transfer fail, as it does straight from the origin
    expect(first.body.length).toBeLessThan(body.length);
    await gw.idle();
    expect(countRows(gw.dataDir, "entries")).toBe(0);

    const second = await viaCurl(gw, origin, "/reset.bin");
    expect(second.headers.get("x-cache")).not.toBe("HIT");
    expect(origin.count()).toBe(2);
  });

  test("a body ended by a clean close is complete: stored, then served as a HIT", async () => {
    const { origin, gw } = await setup((socket) => closeDelimited(socket, body.length, "close"));
    const first = await viaCurl(gw, origin, "/closed.bin");
    expect(first.exitCode).toBe(0);
    expect(first.body.equals(body)).toBe(true);
    await gw.idle();
    const second = await viaCurl(gw, origin, "/closed.bin");
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(second.body.equals(body)).toBe(true);
    expect(origin.count()).toBe(1);
  });
});

describe("Content-Length together with Transfer-Encoding: chunked", () => {
  test("chunked framing wins: the agent gets the whole body, without the wrong Content-Length (RFC 9112 §6.3)", async () => {
    const whole = randomBytes(2_000_000);
    const { origin, gw } = await setup((socket) => {
      socket.write(
        responseHead("200 OK", [
          ["Content-Length", "1000000"],
          ["Transfer-Encoding", "chunked"],
          ["Cache-Control", "max-age=3600"],
        ]),
      );
      for (let at = 0; at < whole.length; at += 300_000) {
        const chunk = whole.subarray(at, at + 300_000);
        socket.write(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")]));
      }
      socket.end("0\r\n\r\n");
    });
    const first = await viaCurl(gw, origin, "/both.bin");
    expect(first.exitCode).toBe(0);
    expect(first.headers.get("content-length")).not.toBe("1000000");
    expect(first.body.equals(whole)).toBe(true);
    await gw.idle();
    const second = await viaCurl(gw, origin, "/both.bin");
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(second.headers.get("content-length")).toBe(String(whole.length));
    expect(second.body.equals(whole)).toBe(true);
  });
});
