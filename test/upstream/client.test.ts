import { describe, expect, test } from "bun:test";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { createHttp1Client, type OutgoingRequest } from "../../src/upstream/client.ts";
import { FramingError } from "../../src/upstream/framing.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { waitFor } from "../support/wait.ts";

/**
 * The upstream client against origins that speak raw bytes: it frames
 * requests itself (no smuggling through a forwarded Content-Length), reuses a
 * connection only after a response whose end it proved, and refuses what it
 * cannot relay correctly.
 */
const defer = cleanupAfterEach();

interface Wire {
  port: number;
  /** Everything each connection received, in order of connection. */
  received: string[];
}

/** An origin that answers each request head on a connection with `answer(connection, request number)`. */
async function wire(answer: (socket: Socket, connection: number, request: number) => void): Promise<Wire> {
  const received: string[] = [];
  const server = createServer((socket) => {
    const connection = received.push("") - 1;
    let requests = 0;
    let pending = "";
    socket.on("error", () => {});
    socket.on("data", (data) => {
      received[connection] += data.toString("latin1");
      pending += data.toString("latin1");
      for (let end = pending.indexOf("\r\n\r\n"); end >= 0; end = pending.indexOf("\r\n\r\n")) {
        pending = pending.slice(end + 4);
        answer(socket, connection, requests++);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const sockets: Socket[] = [];
  server.on("connection", (s) => sockets.push(s));
  defer(() => {
    for (const s of sockets) s.destroy();
  });
  return { port: (server.address() as AddressInfo).port, received };
}

function client() {
  const c = createHttp1Client({ headersTimeoutMs: 2000 });
  defer(() => c.close());
  return c;
}

const get = (path: string, headers: Record<string, string> = {}): OutgoingRequest => ({
  method: "GET",
  path,
  headers: new Headers({ host: "origin.test", ...headers }),
  body: null,
});

const text = async (body: ReadableStream<Uint8Array> | null) => (body ? await new Response(body).text() : "");

describe("request framing is the client's own", () => {
  test("a Content-Length the agent sent with a bodiless GET is not passed on, so the next request cannot be swallowed", async () => {
    const origin = await wire((socket) => socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    const c = client();
    const target = { address: "127.0.0.1", port: origin.port, tls: false, name: "origin.test" };
    await text((await c.request(target, get("/a", { "content-length": "87" }))).body);
    await text((await c.request(target, get("/popular.js", { "x-smuggle": "GET /evil HTTP/1.1" }))).body);

    expect(origin.received).toHaveLength(1); // one kept-alive connection
    expect(origin.received[0]!.toLowerCase()).not.toContain("content-length");
    expect(origin.received[0]!.match(/^GET \S+ HTTP\/1\.1/gm)).toEqual(["GET /a HTTP/1.1", "GET /popular.js HTTP/1.1"]);
  });

  test("a body of known length goes with exactly its Content-Length; one of unknown length goes chunked", async () => {
    const origin = await wire((socket) => socket.write("HTTP/1.1 204 No Content\r\n\r\n"));
    const c = client();
    const target = { address: "127.0.0.1", port: origin.port, tls: false, name: "origin.test" };
    const post = (headers: Record<string, string>) => ({
      method: "POST",
      path: "/upload",
      headers: new Headers({ host: "origin.test", ...headers }),
      body: new Response("hello").body,
    });
    await c.request(target, post({ "content-length": "5", "transfer-encoding": "gzip" }));
    await c.request(target, post({}));
    await waitFor("both bodies to arrive", () => origin.received.join("").includes("0\r\n\r\n"));
    const [first, second] = origin.received.join("").split("POST /upload").slice(1);
    expect(first).toContain("Content-Length: 5\r\n\r\nhello");
    expect(first!.toLowerCase()).not.toContain("transfer-encoding");
    expect(second).toContain("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  });
});

describe("connection reuse", () => {
  test("bytes after a Content-Length: 0 response mean the connection is not reused", async () => {
    const origin = await wire((socket, connection) =>
      socket.write(
        connection === 0
          ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
          : "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood",
      ),
    );
    const c = client();
    const target = { address: "127.0.0.1", port: origin.port, tls: false, name: "origin.test" };
    expect(await text((await c.request(target, get("/one"))).body)).toBe("");
    expect(await text((await c.request(target, get("/two"))).body)).toBe("good");
    expect(origin.received).toHaveLength(2);
  });

  test("a kept connection the origin closed meanwhile is replaced once, transparently, for a bodiless request", async () => {
    const origin = await wire((socket, connection) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
      if (connection === 0) socket.end(); // closes its side after the response, keep-alive notwithstanding
    });
    const c = client();
    const target = { address: "127.0.0.1", port: origin.port, tls: false, name: "origin.test" };
    expect(await text((await c.request(target, get("/one"))).body)).toBe("x");
    expect(await text((await c.request(target, get("/two"))).body)).toBe("x");
    expect(origin.received.length).toBeGreaterThanOrEqual(2);
  });
});

describe("what cannot be relayed correctly is refused", () => {
  test.each([
    ["a header value with a control character", "HTTP/1.1 200 OK\r\nX-Odd: a\x01b\r\nContent-Length: 0\r\n\r\n"],
    ["a transfer coding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],
    ["differing Content-Length values", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"],
  ])("%s is a FramingError", async (_name, response) => {
    const origin = await wire((socket) => socket.end(response));
    const target = { address: "127.0.0.1", port: origin.port, tls: false, name: "origin.test" };
    await expect(client().request(target, get("/"))).rejects.toBeInstanceOf(FramingError);
  });

  test("a close-delimited body cut by a reset errors; one ended by a clean close ends", async () => {
    const origin = await wire((socket, connection) => {
      socket.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789");
      setImmediate(() => (connection === 0 ? socket.resetAndDestroy() : socket.end()));
    });
    const c = client();
    const target = { address: "127.0.0.1", port: origin.port, tls: false, name: "origin.test" };
    await expect(text((await c.request(target, get("/reset"))).body)).rejects.toThrow();
    expect(await text((await c.request(target, get("/clean"))).body)).toBe("0123456789");
  });
});
