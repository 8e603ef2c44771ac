import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { createInterceptor } from "../../src/proxy/intercept.ts";
import { parseAuthority } from "../../src/proxy/tunnel.ts";
import { loadCa } from "../../src/tls/ca.ts";
import { createLeafMinter } from "../../src/tls/leaf-minter.ts";
import { exchange, openTunnel, tlsThroughTunnel } from "../support/tls-clients.ts";
import { waitFor, within } from "../support/wait.ts";

/**
 * The interceptor on its own: a node:http server hands it every CONNECT,
 * as the agent listener does, and a stub proxy app records what arrives.
 * Short timeouts make the tunnel lifecycle observable.
 */
const FIRST_REQUEST_MS = 400;
const KEEP_ALIVE_MS = 250;
/** Pauses of the slow download: five of them, twice the keep-alive time in all. */
const SLOW_PAUSE_MS = 100;

let dir: string;
let caPem: string;
let server: Server;
let port: number;
const seen: { url: string; client: string; host: string | null }[] = [];
/** The gateway's side of each tunnel, to see when the gateway lets go of it. */
const gatewaySockets: Socket[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cachegate-interceptor-"));
  const ca = await loadCa(dir, {}, silentLogger);
  caPem = ca.certPem;
  const intercept = createInterceptor({
    log: silentLogger,
    via: "cachegate-test",
    minter: createLeafMinter(ca),
    minVersion: () => "TLSv1.2",
    timeouts: { firstRequestMs: FIRST_REQUEST_MS, keepAliveMs: KEEP_ALIVE_MS },
    fetch: (req, env) => {
      const url = new URL(req.url);
      seen.push({ url: req.url, client: env.client, host: req.headers.get("host") });
      if (url.pathname === "/slow") {
        // A slow upstream, longer than the keep-alive time in all: a download in progress must not be cut.
        let n = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            await Bun.sleep(SLOW_PAUSE_MS);
            if (n++ === 4) return c.close();
            c.enqueue(new TextEncoder().encode(`chunk${n};`));
          },
        });
        return new Response(body);
      }
      return new Response(`answer for ${url.pathname}`, {
        headers: { "content-length": String(`answer for ${url.pathname}`.length) },
      });
    },
  });
  server = createServer((_req, res) => res.writeHead(400).end());
  server.on("connect", (req, socket: Socket, head: Buffer) => {
    gatewaySockets.push(socket);
    const target = parseAuthority(req.url ?? "")!;
    void (intercept as (...a: unknown[]) => Promise<void>)(
      socket,
      head,
      target.host,
      target.port,
      socket.remoteAddress ?? "unknown",
      false,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const s of gatewaySockets) s.destroy();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

const lastGatewaySocket = () => gatewaySockets.at(-1)!;

/** When `socket` closes (Date.now()), once it does. */
const closedAt = (socket: Socket) => new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));

describe("requests inside an intercepted tunnel", () => {
  test("go to the proxy app as https URLs on the CONNECT host, whatever the Host header says", async () => {
    const socket = await tlsThroughTunnel(port, "dl.qualys.com", 443, { ca: caPem });
    try {
      expect(socket.authorized).toBe(true);
      expect(socket.getPeerCertificate().subjectaltname).toBe("DNS:dl.qualys.com");
      const res = await exchange(socket, "GET /manifest.json?v=2 HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n");
      expect(res.status).toBe(200);
      expect(seen.at(-1)).toEqual({
        url: "https://dl.qualys.com/manifest.json?v=2",
        client: "127.0.0.1",
        host: "elsewhere.example",
      });
    } finally {
      socket.destroy();
    }
    const other = await tlsThroughTunnel(port, "dl.qualys.com", 8443, { ca: caPem });
    try {
      await exchange(other, "GET https://elsewhere.example/a HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n");
      expect(seen.at(-1)!.url).toBe("https://dl.qualys.com:8443/a");
    } finally {
      other.destroy();
    }
  });
});

describe("the lifecycle of an intercepted tunnel", () => {
  test("an agent that drops the connection before its TLS handshake does not leave the gateway's socket open", async () => {
    const raw = await openTunnel(port, "dl.qualys.com:443");
    const gatewaySide = lastGatewaySocket();
    raw.destroy();
    await waitFor("the gateway to close its side", () => gatewaySide.destroyed, 300); // sooner than the first-request timeout
  });

  test("an agent that drops the connection after the handshake without closing TLS does not leave the gateway's socket open", async () => {
    const socket = await tlsThroughTunnel(port, "dl.qualys.com", 443, { ca: caPem });
    const gatewaySide = lastGatewaySocket();
    socket.destroy(); // after the handshake, before any request, without close_notify
    await waitFor("the gateway to close its side", () => gatewaySide.destroyed, 300); // sooner than the first-request timeout
  });

  test("a download longer than the keep-alive time is not cut, and the tunnel serves more requests after it", async () => {
    const socket = await tlsThroughTunnel(port, "dl.qualys.com", 443, { ca: caPem });
    let closed = false;
    socket.once("close", () => {
      closed = true;
    });
    try {
      const started = Date.now();
      const slow = await exchange(socket, "GET /slow HTTP/1.1\r\nHost: dl.qualys.com\r\n\r\n");
      expect(slow.body.toString()).toBe("chunk1;chunk2;chunk3;chunk4;");
      expect(Date.now() - started).toBeGreaterThan(KEEP_ALIVE_MS);
      // Idle for less than the keep-alive time, counted from the end of the download: real time has to pass.
      await Bun.sleep(KEEP_ALIVE_MS / 2);
      expect(closed).toBe(false);
      const next = await exchange(socket, "GET /after-slow HTTP/1.1\r\nHost: dl.qualys.com\r\n\r\n");
      expect(next.body.toString()).toBe("answer for /after-slow");
    } finally {
      socket.destroy();
    }
  });

  test("a tunnel left idle after its requests is closed by the gateway after the keep-alive time", async () => {
    const socket = await tlsThroughTunnel(port, "dl.qualys.com", 443, { ca: caPem });
    const closed = closedAt(socket);
    await exchange(socket, "GET /idle HTTP/1.1\r\nHost: dl.qualys.com\r\n\r\n");
    const answered = Date.now();
    const at = await within(3000, "the gateway to close the idle tunnel", closed);
    expect(at - answered).toBeGreaterThanOrEqual(KEEP_ALIVE_MS - 50);
  });

  test("a tunnel that never sends a request is closed by the gateway", async () => {
    const socket = await tlsThroughTunnel(port, "dl.qualys.com", 443, { ca: caPem });
    const gatewaySide = lastGatewaySocket();
    await within(3000, "the gateway to close the silent tunnel", closedAt(socket));
    expect(gatewaySide.destroyed).toBe(true);
  });

  test("a client that never starts TLS is closed by the gateway", async () => {
    const raw = await openTunnel(port, "dl.qualys.com:443");
    const opened = Date.now();
    try {
      const at = await within(3000, "the gateway to close the tunnel", closedAt(raw));
      expect(at - opened).toBeGreaterThanOrEqual(FIRST_REQUEST_MS - 50); // by its first-request timeout
    } finally {
      raw.destroy();
    }
  });
});
