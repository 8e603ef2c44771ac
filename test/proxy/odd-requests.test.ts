import { describe, expect, test } from "bun:test";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { startOrigin } from "../support/origin.ts";
import { rawExchange } from "../support/raw-http.ts";
import { exchange, openTunnel } from "../support/tls-clients.ts";

/** Requests that are unusual but not wrong get served; requests that are wrong get a 400 that says why. */
const defer = cleanupAfterEach();

async function setup() {
  const origin = startOrigin(
    (req) => new Response(`manifest for ${new URL(req.url).pathname}`, { headers: { "cache-control": "max-age=60" } }),
  );
  defer(() => origin.stop());
  const gw = await startTestGateway({ config: { connect: { ports: [443, origin.port] } } });
  defer(() => gw.close());
  return { origin, gw };
}

describe("plain HTTP inside a CONNECT tunnel", () => {
  test("is served as HTTP to the tunnel's host, through the same cache and policy (as undici's ProxyAgent sends http:// URLs)", async () => {
    const { origin, gw } = await setup();
    const authority = `localhost:${origin.port}`;
    const ask = async () => {
      const tunnel = await openTunnel(gw.proxyPort, authority);
      try {
        return await exchange(tunnel, `GET /agent/manifest.json HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
      } finally {
        tunnel.destroy();
      }
    };
    const first = await ask();
    expect([first.status, first.headers.get("x-cache"), first.body.toString()]).toEqual([
      200,
      "MISS",
      "manifest for /agent/manifest.json",
    ]);
    await gw.idle();
    const second = await ask();
    expect([second.status, second.headers.get("x-cache")]).toEqual([200, "HIT"]);
    expect(origin.count()).toBe(1);
  });
});

describe("hosts that are not valid names", () => {
  test("a request for a host that is not valid punycode gets a 400 that says so, not a 500", async () => {
    const { gw } = await setup();
    const res = await rawExchange(
      gw.proxyPort,
      "GET http://xn--a/file HTTP/1.1\r\nHost: xn--a\r\nConnection: close\r\n\r\n",
    );
    expect(res.status).toBe(400);
    expect(res.body.toString()).toContain("not a valid request target");
  });

  test("a CONNECT to a host that is not valid punycode gets a 400 with an example of what to send", async () => {
    const { gw } = await setup();
    const res = await rawExchange(gw.proxyPort, "CONNECT xn--a:443 HTTP/1.1\r\nHost: xn--a:443\r\n\r\n");
    expect(res.status).toBe(400);
    expect(res.body.toString()).toContain("CONNECT needs host:port");
  });
});
