import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AccessLogFormat } from "../../src/config/env.ts";
import { RESERVED_PORTS } from "../../src/config/schema.ts";
import { createLogger } from "../../src/log.ts";
import { type LoggedRequest, linesOf, loggedRequests } from "../support/access-log.ts";
import { agentGet } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGatewayOptions } from "../support/gateway.ts";
import { type Origin, startOrigin, viaProxy } from "../support/origin.ts";
import { basic, patchUrl, startPatchGateway } from "../support/patch.ts";
import { rawExchange } from "../support/raw-http.ts";
import { exchange, openTunnel } from "../support/tls-clients.ts";
import { waitFor } from "../support/wait.ts";

setDefaultTimeout(30_000);

/**
 * The access log, read back line by line in each format: one line per
 * proxied request (refusals included), per CONNECT, and per request inside
 * an intercepted tunnel, from a real gateway with a real origin.
 */
const defer = cleanupAfterEach();
const BODY = new Uint8Array(10_240).fill(7);

/** An origin whose port tunnels may reach (connect.ports refuses reserved ones). */
function startFileOrigin(): Origin {
  for (;;) {
    const origin = startOrigin(
      (req) =>
        new Response(new URL(req.url).pathname.endsWith(".bin") ? BODY : "manifest", {
          headers: { "cache-control": "max-age=3600", "content-type": "application/octet-stream" },
        }),
    );
    if (!RESERVED_PORTS.has(origin.port)) {
      defer(() => origin.stop());
      return origin;
    }
    void origin.stop();
  }
}

async function setup(format: AccessLogFormat, opts: TestGatewayOptions = {}) {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-access-log-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const origin = startFileOrigin();
  const path = join(dir, "access.log");
  const gw = await startTestGateway({
    ...opts,
    accessLog: { path, format },
    config: { connect: { ports: [origin.port] }, ...opts.config },
  });
  defer(() => gw.close());
  return { gw, origin, path };
}

/** The cache outcome as each format shows it: squid by its code, combined by its label, json by both. */
function expectOutcome(format: AccessLogFormat, r: LoggedRequest, squidCode: string, label: string | null) {
  if (format !== "combined") expect(r.squidCode).toBe(squidCode);
  if (format !== "squid") expect(r.cache).toBe(label);
}

describe.each(["squid", "combined", "json"] as const)("the %s access log", (format) => {
  test("has one line each for a MISS, a HIT, a 403 for a denied domain, a 400 and a refused CONNECT", async () => {
    const { gw, origin, path } = await setup(format);
    const miss = await viaProxy(gw.proxyUrl, origin.url("/a.bin"));
    expect((await miss.bytes()).length).toBe(BODY.length);
    await gw.idle();
    const hit = await viaProxy(gw.proxyUrl, origin.url("/a.bin"));
    expect(hit.headers.get("x-cache")).toBe("HIT");
    await hit.bytes();
    const denied = await viaProxy(gw.proxyUrl, "http://denied.example/setup.exe");
    expect(denied.status).toBe(403);
    const deniedBody = await denied.text();
    const originForm = await rawExchange(
      gw.proxyPort,
      "GET /x HTTP/1.1\r\nHost: gateway.lan\r\nConnection: close\r\n\r\n",
    );
    expect(originForm.status).toBe(400);
    const connect = await rawExchange(
      gw.proxyPort,
      "CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\n\r\n",
    );
    expect(connect.status).toBe(403);

    const lines = await loggedRequests(path, format, 5);
    expect(lines).toHaveLength(5);
    const [l1, l2, l3, l4, l5] = lines as [LoggedRequest, LoggedRequest, LoggedRequest, LoggedRequest, LoggedRequest];
    for (const l of lines) {
      expect(l.client).toBe("127.0.0.1");
      expect(l.user).toBeNull();
    }
    expect(l1).toMatchObject({ method: "GET", url: origin.url("/a.bin"), status: 200, bytes: BODY.length });
    expectOutcome(format, l1, "TCP_MISS", "MISS");
    expect(l2).toMatchObject({ method: "GET", url: origin.url("/a.bin"), status: 200, bytes: BODY.length });
    expectOutcome(format, l2, "TCP_MEM_HIT", "HIT"); // a small fresh hit: the fast path, from memory
    expect(l3).toMatchObject({ method: "GET", url: "http://denied.example/setup.exe", status: 403 });
    expect(l3.bytes).toBe(Buffer.byteLength(deniedBody));
    expectOutcome(format, l3, "TCP_DENIED", null);
    expect(l4).toMatchObject({ method: "GET", url: "http://gateway.lan/x", status: 400 });
    expectOutcome(format, l4, "NONE_NONE", null);
    expect(l5).toMatchObject({ method: "CONNECT", url: "denied.example:443", status: 403 });
    expect(l5.bytes).toBe(connect.body.length);
    expectOutcome(format, l5, "TCP_DENIED", null);
  });
});

describe("the access log of requests that cannot be parsed", () => {
  test("logs them as Squid does: NONE_NONE/400, method NONE, URL error:invalid-request", async () => {
    const { gw, path } = await setup("squid");
    const res = await rawExchange(gw.proxyPort, "NOT AN HTTP REQUEST\r\n\r\n");
    expect(res.status).toBe(400);
    const [line] = await loggedRequests(path, "squid", 1);
    expect(line).toMatchObject({ method: "NONE", url: "error:invalid-request", status: 400, squidCode: "NONE_NONE" });
  });
});

describe("the access log of tunnels", () => {
  test("logs an intercepted CONNECT, then each request inside it with its full URL", async () => {
    const { gw, origin, path } = await setup("json");
    const socket = await openTunnel(gw.proxyPort, `localhost:${origin.port}`);
    defer(() => socket.destroy());
    // Plain HTTP inside the tunnel (as undici's ProxyAgent sends for http:// URLs): intercepted all the same.
    const host = `Host: localhost:${origin.port}\r\n`;
    expect((await exchange(socket, `GET /inside.bin HTTP/1.1\r\n${host}\r\n`)).headers.get("x-cache")).toBe("MISS");
    await gw.idle();
    expect((await exchange(socket, `GET /inside.bin HTTP/1.1\r\n${host}\r\n`)).headers.get("x-cache")).toBe("HIT");

    const lines = await loggedRequests(path, "json", 3);
    const connect = lines.find((l) => l.method === "CONNECT");
    expect(connect).toMatchObject({ url: `localhost:${origin.port}`, status: 200, cache: "INTERCEPTED" });
    expect(connect!.squidCode).toBe("NONE_NONE");
    const inside = lines.filter((l) => l.method === "GET");
    expect(inside.map((l) => [l.url, l.cache, l.squidCode, l.bytes])).toEqual([
      [`http://localhost:${origin.port}/inside.bin`, "MISS", "TCP_MISS", BODY.length],
      [`http://localhost:${origin.port}/inside.bin`, "HIT", "TCP_MEM_HIT", BODY.length],
    ]);
  });

  test("logs a piped tunnel as TCP_TUNNEL when it closes, with the bytes piped to the agent", async () => {
    const { gw, origin, path } = await setup("squid", { config: { tls: { doNotIntercept: ["localhost"] } } });
    const socket = await openTunnel(gw.proxyPort, `localhost:${origin.port}`);
    let received = 0;
    socket.on("data", (d: Buffer) => {
      received += d.length;
    });
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.write(`GET /piped.bin HTTP/1.1\r\nHost: localhost:${origin.port}\r\nConnection: close\r\n\r\n`);
    await closed;
    expect(received).toBeGreaterThan(BODY.length);

    const [line] = await loggedRequests(path, "squid", 1);
    expect(line).toMatchObject({ method: "CONNECT", url: `localhost:${origin.port}`, status: 200, bytes: received });
    expect(line!.squidCode).toBe("TCP_TUNNEL");
    expect(line!.line).toEndWith(" - HIER_DIRECT/localhost -");
    expect(origin.count("/piped.bin")).toBe(1);
  });
});

describe("the access log in Patch Mode", () => {
  test("logs a 407 without a user, and an agent's request under its user name", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cachegate-access-log-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "access.log");
    const origin = startFileOrigin();
    const gw = await startPatchGateway({ accessLog: { path, format: "combined" } });
    defer(() => gw.close());
    const agent = await gw.issueAgent("branch-office-12");

    expect((await agentGet(gw.proxyUrl, patchUrl(origin, "/kb1.msu"))).status).toBe(407);
    const auth = { "proxy-authorization": basic(agent.username, agent.password) };
    expect((await agentGet(gw.proxyUrl, patchUrl(origin, "/kb1.msu"), "127.0.0.1", auth)).status).toBe(200);

    const [refused, served] = await loggedRequests(path, "combined", 2);
    expect(refused).toMatchObject({ status: 407, user: null, cache: null, url: patchUrl(origin, "/kb1.msu") });
    expect(served).toMatchObject({ status: 200, user: agent.username, cache: "MISS", bytes: "manifest".length });
  });
});

describe("the access log at stop", () => {
  test("a graceful stop writes the lines still waiting for the timer", async () => {
    const { gw, origin, path } = await setup("squid");
    // Requests until one is still buffered (the timer writes every second), then stop at once.
    let made = 0;
    do {
      made++;
      await (await viaProxy(gw.proxyUrl, origin.url(`/before-stop-${made}.txt`))).text();
    } while (linesOf(path).length === made && made < 5);
    expect(linesOf(path).length).toBeLessThan(made);
    await gw.idle();
    await gw.close();
    expect(linesOf(path)).toHaveLength(made);
  });
});

describe("the access log on a full disk", () => {
  test.skipIf(!existsSync("/dev/full"))(
    "agents are served all the same, and the failing write is logged as an error, once for the episode",
    async () => {
      const logged: { level: string; msg: string }[] = [];
      const log = createLogger((l) => logged.push(JSON.parse(l)));
      const origin = startFileOrigin();
      // Linux's /dev/full: every write fails with ENOSPC, as on a disk that filled.
      const gw = await startTestGateway({ log, accessLog: { path: "/dev/full", format: "squid" } });
      defer(() => gw.close());
      const failed = () => logged.filter((l) => l.msg.startsWith("writing the access log failed"));
      for (let i = 0; i < 3; i++) {
        const res = await viaProxy(gw.proxyUrl, origin.url(`/full-${i}.txt`));
        expect(res.status).toBe(200);
        expect(await res.text()).toBe("manifest");
        await waitFor("the access log's write to fail", () => failed().length > 0, 3000);
      }
      expect(failed()).toHaveLength(1);
      expect(failed()[0]!.level).toBe("error");
    },
  );
});
