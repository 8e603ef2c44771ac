import { expect, test } from "bun:test";
import { createServer, type Socket } from "node:net";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { tcpConnect } from "../support/tunnel-client.ts";
import { waitFor } from "../support/wait.ts";

const defer = cleanupAfterEach();

/** A proxy that takes CONNECT and answers it only when told; then it echoes what comes through the tunnel. */
async function holdingProxy() {
  const open = new Set<Socket>();
  let connects = 0;
  let answer: (() => void) | undefined;
  const proxy = createServer((socket) => {
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    socket.on("error", () => {});
    socket.once("data", () => {
      connects++;
      answer = () => {
        socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        socket.pipe(socket);
      };
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  defer(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        proxy.close(() => resolve());
      }),
  );
  return {
    url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`,
    open: () => open.size,
    connects: () => connects,
    answer: () => answer?.(),
  };
}

async function gatewayBehind(proxyUrl: string) {
  const gw = await startTestGateway({
    config: {
      platformDomains: ["qualys.com"],
      allowedDomains: { enabled: true, domains: ["localhost"] },
      connect: { ports: [443, 8443] },
      upstreamProxy: { url: proxyUrl },
    },
  });
  defer(() => gw.close());
  return gw;
}

test("an agent that gives up on a CONNECT while the upstream proxy has not answered closes the gateway's connection to the proxy at once", async () => {
  const proxy = await holdingProxy();
  const gw = await gatewayBehind(proxy.url);
  const agent = await tcpConnect(gw.proxyPort);
  agent.on("error", () => {});
  agent.write("CONNECT localhost:8443 HTTP/1.1\r\nHost: localhost:8443\r\n\r\n");
  await waitFor("the gateway's CONNECT at the proxy", () => proxy.connects() === 1);
  expect(proxy.open()).toBe(1);
  agent.destroy();
  // Without it, the connection stayed until the proxy answered or the 30 s tunnel timeout passed.
  await waitFor("the gateway to close its connection to the proxy", () => proxy.open() === 0);
});

test("bytes an agent sends after CONNECT, before the proxy has answered, go through the tunnel first", async () => {
  const proxy = await holdingProxy();
  const gw = await gatewayBehind(proxy.url);
  const agent = await tcpConnect(gw.proxyPort);
  let received = "";
  agent.on("data", (chunk: Buffer) => {
    received += chunk.toString("latin1");
  });
  agent.write("CONNECT localhost:8443 HTTP/1.1\r\nHost: localhost:8443\r\n\r\n");
  await waitFor("the gateway's CONNECT at the proxy", () => proxy.connects() === 1);
  agent.write("early bytes;");
  proxy.answer();
  await waitFor("the 200", () => received.includes("\r\n\r\n"));
  agent.write("later bytes");
  const echoed = "early bytes;later bytes";
  await waitFor("the tunnel's echo of both", () => received.endsWith(echoed));
  expect(received).toBe(`HTTP/1.1 200 Connection Established\r\n\r\n${echoed}`);
  agent.destroy();
});

test("a proxy's 407 whose body breaks in the same packet gives the agent the 502 about credentials, and the gateway serves on", async () => {
  let asked = 0;
  const proxy = createServer((socket) => {
    socket.on("error", () => {});
    socket.on("data", () => {
      asked++;
      socket.write("HTTP/1.1 407 Proxy Authentication Required\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  defer(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  const gw = await gatewayBehind(`http://127.0.0.1:${(proxy.address() as { port: number }).port}`);
  for (let i = 0; i < 2; i++) {
    // Dropping the 407's body rejected (it had failed already): unhandled, that ends the process.
    const res = await fetch(`http://localhost:9/manifest-${i}.json`, { proxy: gw.proxyUrl } as RequestInit);
    expect(res.status).toBe(502);
    expect(await res.text()).toContain("asks for credentials");
  }
  expect(asked).toBe(2);
});
