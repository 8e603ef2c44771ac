import { describe, expect, test } from "bun:test";
import type { AddressInfo } from "node:net";
import { connect, createServer, type Socket } from "node:net";
import { RESERVED_PORTS } from "../../src/config/schema.ts";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGatewayOptions } from "../support/gateway.ts";
import { type Origin, startOrigin } from "../support/origin.ts";
import { parseResponse, rawExchange } from "../support/raw-http.ts";

/**
 * CONNECT as a byte tunnel. Cache Mode is off here: in Cache Mode a tunnel to
 * a platform host is intercepted (TLS terminated), which the TLS suites test.
 */
const defer = cleanupAfterEach();

/** A plain HTTP origin the tunnel can reach; connect.ports must list its port, and the schema refuses reserved ones. */
function startTunnelTarget(): Origin {
  for (;;) {
    const origin = startOrigin((req) => new Response(`tunnelled ${new URL(req.url).pathname}`));
    if (!RESERVED_PORTS.has(origin.port)) {
      defer(() => origin.stop());
      return origin;
    }
    void origin.stop();
  }
}

async function setup(opts: TestGatewayOptions & { ports?: (origin: Origin) => number[] } = {}) {
  const origin = startTunnelTarget();
  const gw = await startTestGateway({
    ...opts,
    config: {
      ...opts.config,
      cacheMode: { enabled: false },
      connect: { ports: opts.ports?.(origin) ?? [origin.port] },
    },
  });
  defer(() => gw.close());
  return { origin, gw };
}

/** Opens a CONNECT tunnel on a raw socket; resolves with the gateway's answer head and the socket. */
function openTunnel(
  proxyPort: number,
  authority: string,
  extra = "",
): Promise<{ status: number; head: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxyPort, "127.0.0.1");
    defer(() => socket.destroy());
    let buffered = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      socket.pause();
      const rest = buffered.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      const head = buffered.subarray(0, end).toString("latin1");
      resolve({ status: Number(head.split(" ")[1]), head, socket });
    };
    socket.on("data", onData);
    socket.on("error", reject);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n${extra}`);
  });
}

/** Sends an HTTP request through an open tunnel and reads the response until the origin closes. */
function throughTunnel(socket: Socket, request: string) {
  return new Promise<ReturnType<typeof parseResponse>>((resolve) => {
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("close", () => resolve(parseResponse(Buffer.concat(chunks))));
    socket.resume();
    if (request) socket.write(request);
  });
}

describe("CONNECT", () => {
  test("to an allowed host and port tunnels bytes both ways", async () => {
    const { origin, gw } = await setup();
    const tunnel = await openTunnel(gw.proxyPort, `localhost:${origin.port}`);
    expect(tunnel.status).toBe(200);

    const res = await throughTunnel(
      tunnel.socket,
      "GET /inside HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("tunnelled /inside");
    expect(origin.count("/inside")).toBe(1);
  });

  test("bytes the agent sends right behind its CONNECT reach the origin", async () => {
    const { origin, gw } = await setup();
    const early = "GET /early HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    const tunnel = await openTunnel(gw.proxyPort, `localhost:${origin.port}`, early);
    expect(tunnel.status).toBe(200);
    const res = await throughTunnel(tunnel.socket, "");
    expect(res.body.toString()).toBe("tunnelled /early");
  });

  test("to a host outside the platform domains gets 403 naming CACHEGATE_PLATFORM_DOMAINS", async () => {
    const { origin, gw } = await setup();
    const res = await rawExchange(
      gw.proxyPort,
      `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`,
    );
    expect(res.status).toBe(403);
    expect(res.body.toString()).toContain("CACHEGATE_PLATFORM_DOMAINS");
    expect(origin.count()).toBe(0);
  });

  test("to a port not in connect.ports is refused, naming the setting", async () => {
    const { origin, gw } = await setup({ ports: () => [443] });
    const res = await rawExchange(
      gw.proxyPort,
      `CONNECT localhost:${origin.port} HTTP/1.1\r\nHost: localhost:${origin.port}\r\n\r\n`,
    );
    expect(res.status).toBe(403);
    expect(res.body.toString()).toContain("connect.ports");
    expect(origin.count()).toBe(0);
  });

  test("without private upstreams allowed, a platform name resolving to 127.0.0.1 gets 403 naming CACHEGATE_ALLOW_PRIVATE_UPSTREAMS", async () => {
    const { origin, gw } = await setup({ allowPrivate: false });
    const res = await rawExchange(
      gw.proxyPort,
      `CONNECT localhost:${origin.port} HTTP/1.1\r\nHost: localhost:${origin.port}\r\n\r\n`,
    );
    expect(res.status).toBe(403);
    expect(res.body.toString()).toContain("CACHEGATE_ALLOW_PRIVATE_UPSTREAMS");
  });

  test("to the gateway's own proxy port is refused even when connect.ports lists it", async () => {
    const { gw } = await setup();
    const patched = await admin(gw).patch({ connect: { ports: [gw.proxyPort] } });
    expect(patched.status).toBe(200);
    const res = await rawExchange(
      gw.proxyPort,
      `CONNECT localhost:${gw.proxyPort} HTTP/1.1\r\nHost: localhost:${gw.proxyPort}\r\n\r\n`,
    );
    expect(res.status).toBe(403);
    expect(res.body.toString()).toContain("own listener");
  });

  test.each(["localhost", "localhost:", "localhost:99999", "http://localhost:443"])(
    "with a malformed target %p gets 400",
    async (authority) => {
      const { gw } = await setup();
      const res = await rawExchange(gw.proxyPort, `CONNECT ${authority} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      expect(res.status).toBe(400);
    },
  );

  test("to an allowed port where nothing listens gets 502", async () => {
    const closedPort = await freePort();
    const { gw } = await setup({ ports: () => [closedPort] });
    const res = await rawExchange(
      gw.proxyPort,
      `CONNECT localhost:${closedPort} HTTP/1.1\r\nHost: localhost:${closedPort}\r\n\r\n`,
    );
    expect(res.status).toBe(502);
  });

  test("when the agent closes its end, the tunnel's upstream connection closes too", async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
    const target = createServer((s) => s.on("close", upstreamClosed));
    await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
    defer(() => new Promise((resolve) => target.close(resolve)));
    const port = (target.address() as AddressInfo).port;
    if (RESERVED_PORTS.has(port)) return; // cannot be listed in connect.ports; vanishingly rare

    const { gw } = await setup({ ports: () => [port] });
    const tunnel = await openTunnel(gw.proxyPort, `localhost:${port}`);
    expect(tunnel.status).toBe(200);
    tunnel.socket.destroy();
    await closed; // bounded by the test timeout
  });
});

/** A port nothing listens on (bound, then released), not one the schema reserves. */
async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    if (!RESERVED_PORTS.has(port)) return port;
  }
}
