import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GatewayProcess, killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import {
  type CountingFront,
  createTestCa,
  startCountingFront,
  startTlsOrigin,
  type TestCa,
  type TlsOrigin,
} from "../support/test-ca.ts";
import { type CurlResult, curl, exchange, startCurl, tlsThroughTunnel } from "../support/tls-clients.ts";
import { gate, waitFor } from "../support/wait.ts";

/**
 * HTTPS caching by interception, end to end: curl and fetch as agents with
 * the gateway CA in their trust store, the gateway as its own process
 * trusting the test origin's CA through NODE_EXTRA_CA_CERTS (read at
 * start), and HTTPS origins that count what reaches them.
 */

let dir: string;
let originCa: TestCa;
let origin: TlsOrigin;
let untrusted: TlsOrigin;
let untrustedFront: CountingFront;
let wrongName: ReturnType<typeof Bun.serve>;
let expired: ReturnType<typeof Bun.serve>;
let gw: GatewayProcess;
let gatewayCaFile: string;
let gatewayCaPem: string;

const bundle = crypto.getRandomValues(new Uint8Array(256 * 1024));
const rangeBody = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));
let bundleGate = gate();

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cachegate-intercept-"));
  originCa = await createTestCa("test origin CA");
  const trusted = await originCa.writeTo(dir);

  origin = await startTlsOrigin(originCa, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/bundle.bin") {
      // The head and the first KiB at once; the rest is held until every agent has its response head.
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent > 0) await bundleGate.opened;
          const next = sent === 0 ? 1024 : bundle.length;
          controller.enqueue(bundle.subarray(sent, next));
          sent = next;
          if (sent === bundle.length) controller.close();
        },
      });
      return new Response(body, {
        headers: {
          "cache-control": "max-age=3600",
          etag: '"bundle-1"',
          "content-type": "application/octet-stream",
          "content-length": String(bundle.length),
        },
      });
    }
    if (path === "/range.bin")
      return new Response(rangeBody, {
        headers: { "cache-control": "max-age=3600", "content-type": "application/octet-stream" },
      });
    if (path === "/manifest.json") {
      if (req.headers.get("if-none-match") === '"v1"')
        return new Response(null, { status: 304, headers: { etag: '"v1"', "cache-control": "max-age=0" } });
      return new Response('{"version":1}', {
        headers: { etag: '"v1"', "cache-control": "max-age=0", "content-type": "application/json" },
      });
    }
    return new Response(`body of ${path}`, { headers: { "cache-control": "max-age=3600" } });
  });

  // Signed by a CA the gateway does not trust.
  untrusted = await startTlsOrigin(
    await createTestCa("untrusted CA"),
    () => new Response("must never be cached", { headers: { "cache-control": "max-age=3600" } }),
  );
  untrustedFront = await startCountingFront(untrusted.port);
  // Signed by the trusted CA, but for another name.
  wrongName = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: await originCa.leaf(["not-localhost.test"]),
    fetch: () => new Response("wrong name"),
  });
  // Signed by the trusted CA for the right name, but expired yesterday.
  const lapsed = await originCa.leaf(["localhost"], {
    notBefore: new Date(Date.now() - 10 * 86400_000),
    notAfter: new Date(Date.now() - 86400_000),
  });
  expired = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: lapsed, fetch: () => new Response("expired") });

  gw = await startGatewayProcess({
    extraCaFile: trusted.certFile,
    connectPorts: [origin.port, untrustedFront.port, wrongName.port!, expired.port!],
  });
  gatewayCaPem = await (
    await fetch(`${gw.adminUrl}/api/ca.pem`, { headers: { authorization: `Bearer ${gw.token}` } })
  ).text();
  gatewayCaFile = join(dir, "gateway-ca.pem");
  await writeFile(gatewayCaFile, gatewayCaPem);
});

afterAll(async () => {
  await killAllGatewayProcesses();
  await gw?.close();
  await origin?.stop();
  await untrusted?.stop();
  await untrustedFront?.stop();
  wrongName?.stop(true);
  expired?.stop(true);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** curl as an agent: the gateway as http proxy, the gateway CA as the only trusted root. */
function agent(url: string, ...extra: string[]) {
  return curl(["--cacert", gatewayCaFile, "-x", gw.proxyUrl, ...extra, url]);
}

async function entryUrls(): Promise<string[]> {
  return ((await gw.json("/api/cache/entries")).entries as { url: string }[]).map((e) => e.url);
}

async function stats(): Promise<{ hits: number; misses: number; coalesced: number; revalidated: number }> {
  return gw.json("/api/stats");
}

describe("intercepted HTTPS downloads", () => {
  test("ten agents downloading one artifact at once through intercepted tunnels make one upstream request", async () => {
    bundleGate = gate();
    const before = await stats();
    // The origin sends the head and the first KiB, then holds the rest: an agent whose response head has
    // arrived (curl writes it to its -D file at once) has joined the download, so all ten have before it ends.
    let results: CurlResult[];
    try {
      const downloads = Array.from({ length: 10 }, () =>
        startCurl(["--cacert", gatewayCaFile, "-x", gw.proxyUrl, origin.url("/bundle.bin")]),
      );
      await waitFor(
        "all ten agents to have their response heads",
        async () => (await Promise.all(downloads.map((d) => d.heads()))).every((h) => /^x-cache:/im.test(h)),
        10_000,
      );
      expect(origin.count("/bundle.bin")).toBe(1);
      bundleGate.open();
      results = await Promise.all(downloads.map((d) => d.result));
    } finally {
      bundleGate.open();
    }

    for (const r of results) {
      expect(r.stderr).toBe("");
      expect(r.status).toBe(200);
      expect(sha(r.body)).toBe(sha(bundle));
    }
    // One leads; the others waited on it (COALESCED), or came after its head and were served the fresh
    // response as it downloaded (HIT): which, depends on when each handshake finished.
    const labels = results.map((r) => r.headers.get("x-cache"));
    expect(labels.filter((l) => l === "MISS")).toHaveLength(1);
    for (const label of labels.filter((l) => l !== "MISS")) expect(["COALESCED", "HIT"]).toContain(label ?? "none");
    expect(origin.count("/bundle.bin")).toBe(1);

    const later = await agent(origin.url("/bundle.bin"));
    expect(later.headers.get("x-cache")).toBe("HIT");
    expect(sha(later.body)).toBe(sha(bundle));
    expect(origin.count("/bundle.bin")).toBe(1);

    // Cached under its https:// URL, and counted like plain HTTP.
    expect(await entryUrls()).toContain(`https://localhost:${origin.port}/bundle.bin`);
    // Stats are counted once a response has been written, just after the agent has it.
    await waitFor("the stats to count the eleven downloads", async () => {
      const after = await stats();
      const shared = after.coalesced - before.coalesced + (after.hits - before.hits);
      return after.misses - before.misses === 1 && shared === 10; // nine of the ten, and the later one
    });
  }, 15000);

  test("fetch with a proxy and the gateway CA as tls.ca downloads through an intercepted tunnel, and without that CA it is refused", async () => {
    const url = origin.url("/fetch/agent.zip");
    // keepalive: false, so no pooled tunnel outlives the test and holds up the gateway's shutdown.
    const init = (ca: string) => ({ proxy: gw.proxyUrl, tls: { ca }, keepalive: false }) as RequestInit;
    const res = await fetch(url, init(gatewayCaPem));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("body of /fetch/agent.zip");
    expect(res.headers.get("x-cache")).toBe("MISS");
    await gw.idle();

    const again = await fetch(url, init(gatewayCaPem));
    expect(again.headers.get("x-cache")).toBe("HIT");
    expect(await again.text()).toBe("body of /fetch/agent.zip");

    // The origin's own CA does not vouch for what the gateway presents.
    await expect(fetch(url, init(originCa.certPem))).rejects.toThrow();
    expect(origin.count("/fetch/agent.zip")).toBe(1);
  });

  test("a Range request inside a tunnel is answered 206 with the right Content-Range, cold and from the cache", async () => {
    const cold = await agent(origin.url("/range.bin"), "-r", "100-199");
    expect(cold.status).toBe(206);
    expect(cold.headers.get("content-range")).toBe("bytes 100-199/100000");
    expect(cold.body.equals(rangeBody.subarray(100, 200))).toBe(true);
    // Upstream was asked for the whole object, so the cache can keep it.
    expect(origin.requests.filter((r) => r.path === "/range.bin").map((r) => r.headers.get("range"))).toEqual([null]);
    await gw.idle();

    const warm = await agent(origin.url("/range.bin"), "-r", "99990-");
    expect(warm.status).toBe(206);
    expect(warm.headers.get("content-range")).toBe("bytes 99990-99999/100000");
    expect(warm.headers.get("x-cache")).toBe("HIT");
    expect(warm.body.equals(rangeBody.subarray(99990))).toBe(true);
    expect(origin.count("/range.bin")).toBe(1);
  });

  test("a stale entry is revalidated through the tunnel: upstream answers 304 and the agent gets the cached body marked REVALIDATED", async () => {
    const first = await agent(origin.url("/manifest.json"));
    expect(first.status).toBe(200);
    expect(first.headers.get("x-cache")).toBe("MISS");
    await gw.idle();

    const second = await agent(origin.url("/manifest.json"));
    expect(second.status).toBe(200);
    expect(second.headers.get("x-cache")).toBe("REVALIDATED");
    expect(second.body.toString()).toBe('{"version":1}');

    const seen = origin.requests.filter((r) => r.path === "/manifest.json");
    expect(seen).toHaveLength(2);
    expect(seen[1]!.headers.get("if-none-match")).toBe('"v1"');
  });
});

describe("several requests on one tunnel", () => {
  test("keep-alive requests on one intercepted TLS connection are each answered and cached", async () => {
    const socket = await tlsThroughTunnel(gw.proxyPort, "localhost", origin.port, { ca: gatewayCaPem });
    try {
      expect(socket.authorized).toBe(true);
      const get = (path: string) => exchange(socket, `GET ${path} HTTP/1.1\r\nHost: localhost:${origin.port}\r\n\r\n`);
      const a1 = await get("/keep/a.txt");
      await gw.idle(); // committed, so the next one is a HIT rather than joining the download
      const a2 = await get("/keep/a.txt");
      const b1 = await get("/keep/b.txt");
      expect([a1.status, a2.status, b1.status]).toEqual([200, 200, 200]);
      expect([a1.headers.get("x-cache"), a2.headers.get("x-cache"), b1.headers.get("x-cache")]).toEqual([
        "MISS",
        "HIT",
        "MISS",
      ]);
      expect(a2.body.toString()).toBe("body of /keep/a.txt");
      expect(b1.body.toString()).toBe("body of /keep/b.txt");
      expect(socket.destroyed).toBe(false);
    } finally {
      socket.destroy();
    }
    expect(origin.count("/keep/a.txt")).toBe(1);
    expect(origin.count("/keep/b.txt")).toBe(1);
  });

  test("a fresh hit inside an intercepted tunnel gets the head and body the proxy app gives a request it must answer", async () => {
    const socket = await tlsThroughTunnel(gw.proxyPort, "localhost", origin.port, { ca: gatewayCaPem });
    try {
      const get = (extra = "") =>
        exchange(socket, `GET /keep/same.txt HTTP/1.1\r\nHost: localhost:${origin.port}\r\n${extra}\r\n`);
      expect((await get()).headers.get("x-cache")).toBe("MISS");
      await gw.idle();
      const fast = await get();
      // A conditional request is the proxy app's to answer; one that does not match gets the whole HIT.
      const slow = await get('If-None-Match: "other"\r\n');
      const fields = (headers: Headers) => [...headers].filter(([name]) => name !== "date" && name !== "age");
      expect([fast.status, fast.headers.get("x-cache"), slow.status, slow.headers.get("x-cache")]).toEqual([
        200,
        "HIT",
        200,
        "HIT",
      ]);
      expect(fields(fast.headers)).toEqual(fields(slow.headers));
      expect(fast.body.toString()).toBe("body of /keep/same.txt");
      expect(slow.body.toString()).toBe("body of /keep/same.txt");
    } finally {
      socket.destroy();
    }
    expect(origin.count("/keep/same.txt")).toBe(1);
  });

  test("curl fetching two URLs reuses one tunnel for both", async () => {
    const child = Bun.spawn(
      [
        "curl",
        "-sS",
        "--max-time",
        "15",
        "--cacert",
        gatewayCaFile,
        "-x",
        gw.proxyUrl,
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects} %header{x-cache}\\n",
        origin.url("/keep/c.txt"),
        origin.url("/keep/c.txt"),
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const [code, out, err] = await Promise.all([
      child.exited,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    expect(err).toBe("");
    expect(code).toBe(0);
    // The second transfer made no new connection, and did not go upstream: a HIT, or COALESCED
    // when it arrives before the first download has been committed.
    const [first, second] = out.trim().split("\n");
    expect(first).toBe("200 1 MISS");
    expect(second).toMatch(/^200 0 (HIT|COALESCED)$/);
    expect(origin.count("/keep/c.txt")).toBe(1);
  });

  test("inside a tunnel the Host header and absolute-form targets cannot send a request to another host", async () => {
    const socket = await tlsThroughTunnel(gw.proxyPort, "localhost", origin.port, { ca: gatewayCaPem });
    try {
      const byHost = await exchange(socket, "GET /keep/host.txt HTTP/1.1\r\nHost: evil.example\r\n\r\n");
      expect(byHost.status).toBe(200);
      expect(byHost.body.toString()).toBe("body of /keep/host.txt");
      const absolute = await exchange(
        socket,
        "GET https://evil.example/keep/absolute.txt HTTP/1.1\r\nHost: evil.example\r\n\r\n",
      );
      expect(absolute.status).toBe(200);
      expect(absolute.body.toString()).toBe("body of /keep/absolute.txt");
    } finally {
      socket.destroy();
    }
    await gw.idle();
    const urls = await entryUrls();
    expect(urls).toContain(`https://localhost:${origin.port}/keep/host.txt`);
    expect(urls).toContain(`https://localhost:${origin.port}/keep/absolute.txt`);
    expect(urls.filter((u) => u.includes("evil.example"))).toEqual([]);
  });
});

describe("upstream certificates", () => {
  test("an upstream whose certificate does not verify gets a 502 saying so, and nothing is cached", async () => {
    const url = `https://localhost:${untrustedFront.port}/agent.exe`;
    const first = await agent(url);
    expect(first.status).toBe(502);
    expect(first.body.toString()).toContain("certificate of localhost did not verify");
    expect(first.body.toString()).toContain("NODE_EXTRA_CA_CERTS");

    const second = await agent(url);
    expect(second.status).toBe(502);
    expect(untrustedFront.connections()).toBe(2); // the second agent was not served a cached copy
    expect(untrusted.count()).toBe(0); // no request ever reached the impostor
    expect((await entryUrls()).filter((u) => u.includes(`:${untrustedFront.port}/`))).toEqual([]);
  });

  test("an upstream certificate for another name gets a 502 saying it did not verify", async () => {
    const res = await agent(`https://localhost:${wrongName.port}/agent.exe`);
    expect(res.status).toBe(502);
    expect(res.body.toString()).toContain("certificate of localhost did not verify");
    expect((await entryUrls()).filter((u) => u.includes(`:${wrongName.port}/`))).toEqual([]);
  });

  test("an expired upstream certificate gets a 502 saying it did not verify and why", async () => {
    const res = await agent(`https://localhost:${expired.port}/agent.exe`);
    expect(res.status).toBe(502);
    expect(res.body.toString()).toContain("certificate of localhost did not verify (CERT_HAS_EXPIRED)");
    expect((await entryUrls()).filter((u) => u.includes(`:${expired.port}/`))).toEqual([]);
  });
});

describe("restarts and the TLS agent listener", () => {
  test("after a restart the same gateway CA is trusted and an artifact cached over HTTPS is a HIT", async () => {
    const cached = await agent(origin.url("/restart/agent.rpm"));
    expect(cached.headers.get("x-cache")).toBe("MISS");
    await gw.idle();

    gw = await gw.restart();
    const pem = await (
      await fetch(`${gw.adminUrl}/api/ca.pem`, { headers: { authorization: `Bearer ${gw.token}` } })
    ).text();
    expect(pem).toBe(gatewayCaPem);

    const after = await agent(origin.url("/restart/agent.rpm"));
    expect(after.stderr).toBe("");
    expect(after.status).toBe(200);
    expect(after.headers.get("x-cache")).toBe("HIT");
    expect(origin.count("/restart/agent.rpm")).toBe(1);
  }, 15000);

  test("HTTPS through the TLS agent listener is intercepted and cached too", async () => {
    await gw.configure({ tls: { agentListener: { enabled: true } } });
    const viaTls = (path: string) =>
      curl([
        "--proxy",
        `https://127.0.0.1:${gw.proxyPort}`,
        "--proxy-cacert",
        gatewayCaFile,
        "--cacert",
        gatewayCaFile,
        origin.url(path),
      ]);
    const first = await viaTls("/listener/agent.pkg");
    expect(first.stderr).toBe("");
    expect(first.status).toBe(200);
    expect(first.headers.get("x-cache")).toBe("MISS");
    const second = await viaTls("/listener/agent.pkg");
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(second.body.toString()).toBe("body of /listener/agent.pkg");
    expect(origin.count("/listener/agent.pkg")).toBe(1);
  }, 10000);
});
