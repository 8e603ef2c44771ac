import { describe, expect, test } from "bun:test";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin, viaProxy } from "../support/origin.ts";
import { type RawResponse, rawExchange, responseHead, startRawOrigin } from "../support/raw-http.ts";

/**
 * RFC 9110 §7.6.1: Connection, the fields it names, Proxy-Connection,
 * Keep-Alive, TE, Transfer-Encoding, Upgrade and Proxy-Authorization belong
 * to one connection and are not forwarded; §7.6.3: Via is added both ways.
 * Raw sockets on the agent's side, because fetch manages these headers itself.
 */
const defer = cleanupAfterEach();

async function setup(
  handler: (req: Request) => Response | Promise<Response> = () =>
    new Response("ok", { headers: { "cache-control": "max-age=60" } }),
) {
  const origin = startOrigin(handler);
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => gw.close());
  return { origin, gw };
}

/** A request from an agent that sends every hop-by-hop header there is, plus end-to-end ones. */
function hopByHopRequest(method: string, url: string, host: string, body = ""): string {
  return (
    `${method} ${url} HTTP/1.1\r\n` +
    `Host: ${host}\r\n` +
    "Connection: close, X-Hop-Secret\r\n" +
    "X-Hop-Secret: for the gateway only\r\n" +
    "Keep-Alive: timeout=5, max=100\r\n" +
    "Proxy-Authorization: Basic YWdlbnQ6c2VjcmV0\r\n" +
    "Proxy-Connection: keep-alive\r\n" +
    "TE: trailers\r\n" +
    "Upgrade: websocket\r\n" +
    "Via: 1.0 agent-side-proxy\r\n" +
    "X-End-To-End: kept\r\n" +
    (body ? `Content-Length: ${body.length}\r\n` : "") +
    `\r\n${body}`
  );
}

const viaEntries = (value: string | null | undefined) =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

describe("hop-by-hop request headers", () => {
  test.each([
    ["a cached GET", "GET", ""],
    ["an uncached POST", "POST", "payload"],
  ])("are not forwarded to the origin on %s, while end-to-end headers are", async (_name, method, body) => {
    const { origin, gw } = await setup();
    const res = await rawExchange(
      gw.proxyPort,
      hopByHopRequest(method, origin.url("/hop"), `localhost:${origin.port}`, body),
    );
    expect(res.status).toBe(200);

    const seen = origin.requests[0]!.headers;
    for (const name of ["x-hop-secret", "proxy-authorization", "proxy-connection", "te", "upgrade"])
      expect(seen.get(name)).toBeNull();
    // The gateway's own connection to the origin may have its own Connection and Keep-Alive, never the agent's.
    expect(seen.get("connection") ?? "").not.toMatch(/x-hop-secret/i);
    expect(seen.get("keep-alive") ?? "").not.toContain("max=100");
    expect(seen.get("x-end-to-end")).toBe("kept");
    expect(seen.get("host")).toBe(`localhost:${origin.port}`);
  });

  test("Via is appended to the request with this gateway's pseudonym", async () => {
    const { origin, gw } = await setup();
    await rawExchange(gw.proxyPort, hopByHopRequest("GET", origin.url("/hop"), `localhost:${origin.port}`));
    const via = viaEntries(origin.requests[0]!.headers.get("via"));
    expect(via).toHaveLength(2);
    expect(via[0]).toBe("1.0 agent-side-proxy");
    expect(via[1]).toMatch(/^1\.1 cachegate-[0-9a-f]+$/);
  });
});

describe("hop-by-hop response headers", () => {
  /** An origin whose response carries hop-by-hop headers that fetch would not let a handler set. */
  async function hopByHopOrigin() {
    const origin = await startRawOrigin((_req, socket) => {
      socket.end(
        `${responseHead("200 OK", [
          ["Content-Length", "2"],
          ["Connection", "close, X-Origin-Hop"],
          ["X-Origin-Hop", "for the gateway only"],
          ["Keep-Alive", "timeout=9, max=7"],
          ["Proxy-Authenticate", 'Basic realm="origin"'],
          ["Proxy-Connection", "keep-alive"],
          ["Via", "1.1 origin-side-proxy"],
          ["Cache-Control", "max-age=60"],
          ["X-End-To-End", "kept"],
        ])}ok`,
      );
    });
    defer(() => origin.stop());
    const gw = await startTestGateway();
    defer(() => gw.close());
    return { origin, gw };
  }

  function expectNoOriginHops(res: RawResponse) {
    expect(res.status).toBe(200);
    expect(res.header("x-origin-hop")).toBeUndefined();
    expect(res.header("proxy-authenticate")).toBeUndefined();
    expect(res.header("proxy-connection")).toBeUndefined();
    expect(res.header("keep-alive") ?? "").not.toContain("max=7");
    expect(res.header("connection") ?? "").not.toMatch(/x-origin-hop/i);
    expect(res.header("x-end-to-end")).toBe("kept");
    expect(res.body.toString()).toBe("ok");
  }

  test("are not passed on to the agent, and Via gets this gateway appended", async () => {
    const { origin, gw } = await hopByHopOrigin();
    const res = await rawExchange(
      gw.proxyPort,
      `GET ${origin.url("/hop")} HTTP/1.1\r\nHost: localhost:${origin.port}\r\nConnection: close\r\n\r\n`,
    );
    expectNoOriginHops(res);
    const via = viaEntries(res.header("via"));
    expect(via).toHaveLength(2);
    expect(via[0]).toBe("1.1 origin-side-proxy");
    expect(via[1]).toMatch(/^1\.1 cachegate-[0-9a-f]+$/);
  });

  test("are not stored either: a later HIT carries none of them", async () => {
    const { origin, gw } = await hopByHopOrigin();
    const request = `GET ${origin.url("/hop")} HTTP/1.1\r\nHost: localhost:${origin.port}\r\nConnection: close\r\n\r\n`;
    await rawExchange(gw.proxyPort, request);
    await gw.idle();

    const hit = await rawExchange(gw.proxyPort, request);
    expect(hit.header("x-cache")).toBe("HIT");
    expectNoOriginHops(hit);
    expect(viaEntries(hit.header("via")).filter((v) => v.includes("cachegate-"))).toHaveLength(1);
    expect(origin.count()).toBe(1);
  });
});

describe("Via on responses the gateway makes itself", () => {
  test.each<[string, (origin: { port: number; url(p: string): string }) => string, number]>([
    ["a 403 for a host outside the platform domains", (o) => `http://127.0.0.1:${o.port}/x`, 403],
    ["a 508 for a loop", (o) => o.url("/x"), 508],
  ])("%s names this gateway once in Via", async (_name, target, status) => {
    const { origin, gw } = await setup();
    const ours = viaEntries((await viaProxy(gw.proxyUrl, origin.url("/first"))).headers.get("via"))[0]!;
    const headers = status === 508 ? { via: ours } : undefined;
    const res = await viaProxy(gw.proxyUrl, target(origin), { headers });
    expect(res.status).toBe(status);
    expect(viaEntries(res.headers.get("via"))).toEqual([ours]);
  });
});
