import { afterAll, describe, expect, test } from "bun:test";
import { createServer } from "node:http";
import { runInNewContext } from "node:vm";
import * as v from "valibot";
import { ConfigSchema } from "../../src/config/schema.ts";
import { silentLogger } from "../../src/log.ts";
import { createPortPages } from "../../src/proxy/port-pages.ts";
import { createProxyServer } from "../../src/proxy/proxy-server.ts";
import { admin, agentGet, eventually } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { listenOnLoopback } from "../support/listen.ts";
import { startOrigin } from "../support/origin.ts";
import { startPatchGateway } from "../support/patch.ts";
import { rawExchange } from "../support/raw-http.ts";

const defer = cleanupAfterEach();
afterAll(killAllGatewayProcesses);

const PLATFORM = ["qualys.com", "qualys.eu"];

/**
 * A PAC runtime: the script evaluated in a fresh JS context with the helper
 * functions PAC engines provide (as Mozilla's and Chromium's define them), so
 * FindProxyForURL runs as it would in an agent.
 */
function pacRuntime(script: string): (url: string) => string {
  const sandbox = {
    isPlainHostName: (host: string) => !host.includes("."),
    dnsDomainIs: (host: string, domain: string) =>
      host.length >= domain.length && host.substring(host.length - domain.length) === domain,
    shExpMatch: (s: string, pattern: string) =>
      new RegExp(
        `^${pattern
          .replace(/[.+^${}()|[\]\\]/g, "\\$&")
          .replace(/\*/g, ".*")
          .replace(/\?/g, ".")}$`,
      ).test(s),
  };
  runInNewContext(script, sandbox);
  const find = (sandbox as unknown as { FindProxyForURL: (url: string, host: string) => string }).FindProxyForURL;
  return (url) => find(url, new URL(url).hostname);
}

/** GET on the agent port in origin form, with a chosen Host header, over a raw socket. */
async function page(port: number, path: string, host = `127.0.0.1:${port}`, method = "GET") {
  return rawExchange(port, `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
}

async function gateway(config = {}) {
  const gw = await startTestGateway({ config: { platformDomains: PLATFORM, ...config } });
  defer(() => gw.close());
  return gw;
}

describe("GET /proxy.pac on the agent port", () => {
  test("is a PAC file: application/x-ns-proxy-autoconfig, with a FindProxyForURL", async () => {
    const gw = await gateway();
    const res = await fetch(`${gw.proxyUrl}/proxy.pac`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-ns-proxy-autoconfig");
    expect(await res.text()).toContain("function FindProxyForURL(url, host)");
  });

  test("sends the platform domains and their subdomains through the gateway, the rest DIRECT", async () => {
    const gw = await gateway();
    const find = pacRuntime(await (await fetch(`${gw.proxyUrl}/proxy.pac`)).text());
    const gateway_ = `PROXY 127.0.0.1:${gw.proxyPort}`;
    expect(find("https://qualys.com/manifest.json")).toBe(gateway_);
    expect(find("https://dl.agents.qualys.eu/agent.exe")).toBe(gateway_);
    expect(find("http://DL.Qualys.COM/x")).toBe(gateway_);
    expect(find("https://notqualys.com/")).toBe("DIRECT");
    expect(find("https://qualys.com.example.org/")).toBe("DIRECT");
    expect(find("https://www.microsoft.com/")).toBe("DIRECT");
    expect(find("http://intranet/")).toBe("DIRECT");
  });

  test("sends the Allowed Domains through the gateway while they are enabled, as it lets agents reach them", async () => {
    const gw = await gateway();
    const before = pacRuntime(await (await fetch(`${gw.proxyUrl}/proxy.pac`)).text());
    expect(before("https://www.microsoft.com/")).toBe("DIRECT");
    const res = await admin(gw).patch({ allowedDomains: { enabled: true, domains: ["microsoft.com"] } });
    expect(res.status).toBe(200);
    const after = pacRuntime(await (await fetch(`${gw.proxyUrl}/proxy.pac`)).text());
    expect(after("https://www.microsoft.com/")).toBe(`PROXY 127.0.0.1:${gw.proxyPort}`);
    expect(after("https://example.org/")).toBe("DIRECT");
  });

  test("with Patch Mode on, sends every host through the gateway but plain names and the gateway itself", async () => {
    const gw = await startPatchGateway({ config: { platformDomains: PLATFORM } });
    defer(() => gw.close());
    // No agent credentials: the PAC file is not a proxied request, so Patch Mode's 407 does not apply.
    const find = pacRuntime(await (await fetch(`${gw.proxyUrl}/proxy.pac`)).text());
    const through = `PROXY 127.0.0.1:${gw.proxyPort}`;
    expect(find("https://download.windowsupdate.com/x.msu")).toBe(through);
    expect(find("https://qualys.com/")).toBe(through);
    expect(find("http://intranet/")).toBe("DIRECT");
    expect(find(`http://127.0.0.1:${gw.proxyPort}/proxy.pac`)).toBe("DIRECT");
  });

  test("names the gateway as the agent reached it: the Host header's name, and its port when it has one", async () => {
    const gw = await gateway();
    const named = await page(gw.proxyPort, "/proxy.pac", "Gateway.Example.NET");
    expect(named.body.toString()).toContain(`"PROXY gateway.example.net:${gw.proxyPort}"`);
    // A published container port (-p 18080:8080) differs from the one the gateway binds: the agent's is right.
    const published = await page(gw.proxyPort, "/proxy.pac", "gateway.example.net:18080");
    expect(published.body.toString()).toContain('"PROXY gateway.example.net:18080"');
    const v6 = await page(gw.proxyPort, "/proxy.pac", "[fd00::1]:3128");
    expect(v6.body.toString()).toContain('"PROXY [fd00::1]:3128"');
  });

  test("a Host header that is no host name is not written into the script: the address the agent connected to is", async () => {
    const gw = await gateway();
    for (const host of ['evil"+alert(1)+"', "a b", "user@host", "x/y"]) {
      const res = await page(gw.proxyPort, "/proxy.pac", host);
      expect(res.status).toBe(200);
      const script = res.body.toString();
      expect(script).toContain(`"PROXY 127.0.0.1:${gw.proxyPort}"`);
      expect(script).not.toContain("alert");
      expect(pacRuntime(script)("https://qualys.com/")).toBe(`PROXY 127.0.0.1:${gw.proxyPort}`);
    }
  });

  test("/wpad.dat is the same file (the WPAD convention)", async () => {
    const gw = await gateway();
    const pac = await (await fetch(`${gw.proxyUrl}/proxy.pac`)).text();
    const wpad = await fetch(`${gw.proxyUrl}/wpad.dat`);
    expect(wpad.headers.get("content-type")).toBe("application/x-ns-proxy-autoconfig");
    expect(await wpad.text()).toBe(pac);
  });

  test("curl fetches it as Windows' WinHTTP would, by plain GET", async () => {
    const gw = await gateway();
    const curl = Bun.spawn(["curl", "-s", "-D", "-", `${gw.proxyUrl}/proxy.pac`], { stdout: "pipe" });
    const out = await new Response(curl.stdout).text();
    expect(await curl.exited).toBe(0);
    expect(out).toMatch(/^HTTP\/1\.1 200/);
    expect(out.toLowerCase()).toContain("content-type: application/x-ns-proxy-autoconfig");
    expect(out).toContain(`var gateway = "PROXY 127.0.0.1:${gw.proxyPort}";`);
  });
});

describe("GET /healthz on the agent port", () => {
  test("answers 200 ok while the gateway serves; HEAD answers the same without a body", async () => {
    const gw = await gateway();
    const res = await fetch(`${gw.proxyUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok\n");
    const head = await page(gw.proxyPort, "/healthz", undefined, "HEAD");
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
  });

  test("answers in Patch Mode without agent credentials", async () => {
    const gw = await startPatchGateway();
    defer(() => gw.close());
    expect((await fetch(`${gw.proxyUrl}/healthz`)).status).toBe(200);
  });

  test("answers 503 once stopping, on a real agent-port server", async () => {
    let stopping = false;
    const config = v.parse(ConfigSchema, {});
    const server = createProxyServer({
      fetch: () => new Response("proxied", { headers: { "x-cache": "MISS" } }),
      log: silentLogger,
      via: "test",
      connect: async () => {},
      pages: createPortPages({ config: () => config, stopping: () => stopping }),
    });
    const { port, stop } = await listenOnLoopback(server);
    defer(stop);
    expect((await page(port, "/healthz")).status).toBe(200);
    stopping = true;
    const res = await page(port, "/healthz");
    expect(res.status).toBe(503);
    expect(res.body.toString()).toBe("stopping\n");
  });

  test("is not counted in the stats as a proxied (or refused) request", async () => {
    const origin = startOrigin(() => new Response("x", { headers: { "cache-control": "max-age=60" } }));
    defer(() => origin.stop());
    const gw = await startTestGateway();
    defer(() => gw.close());
    for (const path of ["/healthz", "/proxy.pac", "/wpad.dat", "/healthz"])
      expect((await fetch(`${gw.proxyUrl}${path}`)).status).toBe(200);
    // Then one proxied request: once it is counted, everything before it would have been too.
    expect((await agentGet(gw.proxyUrl, origin.url("/one"))).status).toBe(200);
    const stats = await eventually(async () => {
      const s = await admin(gw).json("/api/stats");
      return s.requests >= 1 ? s : undefined;
    }, "the proxied request to be counted");
    expect(stats).toMatchObject({ requests: 1, refused: 0, misses: 1 });
  });

  test.each([
    ["GET", "/"],
    ["GET", "/status"],
    ["GET", "/healthz/more"],
    ["POST", "/healthz"],
    ["DELETE", "/proxy.pac"],
  ])("origin-form %s %s still gets the 400 that says how to use a proxy", async (method, path) => {
    const gw = await gateway();
    const res = await page(gw.proxyPort, path, undefined, method);
    expect(res.status).toBe(400);
    expect(res.body.toString()).toContain("it expects proxy requests");
    expect(res.body.toString()).toContain("GET /proxy.pac");
  });

  test("with workers, every worker answers it on the shared agent port", async () => {
    const gw = await startGatewayProcess({ env: { CACHEGATE_WORKERS: "2" } });
    defer(() => gw.close());
    // Fresh connections, which the kernel spreads across the workers.
    for (let i = 0; i < 12; i++) {
      const res = await page(gw.proxyPort, "/healthz");
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe("ok\n");
    }
    const pac = await page(gw.proxyPort, "/proxy.pac");
    expect(pacRuntime(pac.body.toString())("http://localhost/x")).toBe(`PROXY 127.0.0.1:${gw.proxyPort}`);
  });
});

describe("the PAC file with a TLS agent port", () => {
  test("names the gateway as an HTTPS proxy", async () => {
    const config = v.parse(ConfigSchema, { tls: { agentListener: { enabled: true } } });
    const server = createServer();
    const { port, stop } = await listenOnLoopback(server);
    defer(stop);
    server.on("request", (req, res) => {
      if (!createPortPages({ config: () => config, stopping: () => false })(req, res)) res.end("not a page");
    });
    const res = await page(port, "/proxy.pac");
    expect(pacRuntime(res.body.toString())("https://qualys.com/")).toBe(`HTTPS 127.0.0.1:${port}`);
  });
});
