import { describe, expect, test } from "bun:test";
import { admin, agentGet, jsonOf } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { type Origin, startOrigin } from "../support/origin.ts";

const defer = cleanupAfterEach();

const body = (path: string) => `the bytes of ${path}\n`.repeat(50);

function objectOrigin(): Origin {
  const origin = startOrigin((req) => {
    const path = new URL(req.url).pathname;
    return new Response(body(path), { headers: { "cache-control": "max-age=600", "content-type": "text/plain" } });
  });
  defer(() => origin.stop());
  return origin;
}

/** Three gateways on loopback made one fleet through the admin API (cluster.peers is live). */
async function startFleet(n = 3): Promise<TestGateway[]> {
  const members: TestGateway[] = [];
  for (let i = 0; i < n; i++) {
    const gw = await startTestGateway();
    defer(() => gw.close());
    members.push(gw);
  }
  const peers = members.map((m) => m.proxyUrl);
  for (const m of members) {
    const res = await admin(m).patch({ cluster: { peers, self: m.proxyUrl } });
    expect(res.status).toBe(200);
  }
  return members;
}

const upstreamBytes = async (m: TestGateway) => (await admin(m).json("/api/stats")).bytesUpstream as number;

describe("a fleet fetches each object once", () => {
  test("10 objects asked of every member: 10 origin fetches, every body right, the non-owners say PEER", async () => {
    const origin = objectOrigin();
    const members = await startFleet();
    const labels: string[] = [];
    for (let i = 0; i < 10; i++) {
      const url = origin.url(`/object/${i}`);
      for (let k = 0; k < 3; k++) {
        const m = members[(i + k) % 3]!;
        const res = await agentGet(m.proxyUrl, url);
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe(body(`/object/${i}`));
        labels.push(String(res.headers["x-cache"]));
      }
    }
    expect(origin.count()).toBe(10);
    // Per object, the owner fetched it (MISS) or served what it had fetched for a member (HIT); the two
    // other members fetched it through the owner (PEER).
    expect(labels.filter((l) => l === "PEER").length).toBe(20);
    expect(labels.filter((l) => l === "MISS" || l === "HIT").length).toBe(10);

    // Asked again, every member answers from its own copy.
    for (const m of members) {
      const res = await agentGet(m.proxyUrl, origin.url("/object/3"));
      expect(res.headers["x-cache"]).toBe("HIT");
    }
    expect(origin.count()).toBe(10);

    // Each member counted its own agents' requests once, and the internet bytes only where they were fetched.
    for (const m of members) await m.stats.flush();
    const stats = await Promise.all(members.map((m) => admin(m).json("/api/stats")));
    expect(stats.reduce((n, s) => n + s.requests, 0)).toBe(33);
    expect(stats.reduce((n, s) => n + s.peer, 0)).toBe(20);
    const fetched = (await Promise.all(members.map(upstreamBytes))).reduce((a, b) => a + b, 0);
    expect(fetched).toBe(10 * body("/object/0").length);
  });

  test("a member that stops: its URLs go to the next member or the origin, and no agent request fails", async () => {
    const origin = objectOrigin();
    const members = await startFleet();
    const [a, b, c] = members as [TestGateway, TestGateway, TestGateway];
    for (let i = 0; i < 12; i++) expect((await agentGet(a.proxyUrl, origin.url(`/before/${i}`))).status).toBe(200);
    await c.stop();
    const started = Date.now();
    for (let i = 0; i < 12; i++) {
      const url = origin.url(`/after/${i}`);
      const first = await agentGet(a.proxyUrl, url);
      expect(first.status).toBe(200);
      expect(first.body.toString()).toBe(body(`/after/${i}`));
      expect((await agentGet(b.proxyUrl, url)).body.toString()).toBe(body(`/after/${i}`));
    }
    // A refused connection is skipped at once, not after a timeout.
    expect(Date.now() - started).toBeLessThan(5000);
    // The two members left still share one fetch per object.
    expect(origin.count("/after/0") + origin.count("/after/11")).toBe(2);
    const view = (await admin(a).json("/healthz")).fleet as { member: string; up: boolean }[];
    expect(view.find((m) => m.member === c.proxyUrl)?.up).toBe(false);
  });

  test("a request another member sent is answered here, never sent on (no loops)", async () => {
    const origin = objectOrigin();
    const [a, b] = (await startFleet(2)) as [TestGateway, TestGateway];
    // Marked as sent by b, to a: a fetches every URL itself, whoever owns it.
    for (let i = 0; i < 8; i++) {
      const res = await agentGet(a.proxyUrl, origin.url(`/marked/${i}`), "127.0.0.1", {
        "x-cachegate-peer": b.proxyUrl,
      });
      expect(res.headers["x-cache"]).toBe("MISS");
      // The mark is meant for one hop: the origin never sees it.
      expect(origin.requests.at(-1)?.headers.has("x-cachegate-peer")).toBe(false);
    }
    expect(await upstreamBytes(b)).toBe(0);
    // Requests another member sent for its agents are counted there, not here.
    await a.stats.flush();
    expect((await admin(a).json("/api/stats")).requests).toBe(0);
  });

  test("peer requests are taken only from the listed members' addresses", async () => {
    const origin = objectOrigin();
    const gw = await startTestGateway();
    defer(() => gw.close());
    // A fleet on other addresses: this test's client (127.0.0.1) is not one of them.
    const peers = ["http://127.0.0.2:8080", "http://127.0.0.3:8080"];
    expect((await admin(gw).patch({ cluster: { peers, self: peers[0] } })).status).toBe(200);
    const res = await agentGet(gw.proxyUrl, origin.url("/x"), "127.0.0.1", { "x-cachegate-peer": peers[1]! });
    expect(res.status).toBe(403);
    expect(res.body.toString()).toContain("CACHEGATE_PEERS");
    expect(origin.count()).toBe(0);
  });
});

describe("the fleet's figures from any member: GET /api/stats?fleet=1", () => {
  test("every member's figures and their sum; a member that does not answer is listed as such", async () => {
    const origin = objectOrigin();
    const members = await startFleet();
    const [a, , c] = members as [TestGateway, TestGateway, TestGateway];
    for (let i = 0; i < 6; i++) {
      for (const m of members) expect((await agentGet(m.proxyUrl, origin.url(`/f/${i}`))).status).toBe(200);
    }
    const view = await admin(a).json("/api/stats?fleet=1");
    expect(view.requests).toBe(6); // its own figures stay where they were
    expect(view.fleet.members.map((m: { member: string }) => m.member)).toEqual(members.map((m) => m.proxyUrl));
    expect(view.fleet.members.every((m: { answered: boolean }) => m.answered)).toBe(true);
    expect(view.fleet.total.requests).toBe(18);
    expect(view.fleet.total.peer).toBe(12);
    expect(view.fleet.total.bytesUpstream).toBe(6 * body("/f/0").length);
    const today = view.fleet.total.bandwidth.filter((r: { day: string }) => r.day === view.bandwidth[0].day);
    expect(today.reduce((n: number, r: { requests: number }) => n + r.requests, 0)).toBe(18);

    await c.stop();
    const partial = await admin(a).json("/api/stats?fleet=1");
    const gone = partial.fleet.members.find((m: { member: string }) => m.member === c.proxyUrl);
    expect(gone).toMatchObject({ answered: false });
    expect(gone.error).toBeString();
    expect(partial.fleet.total.requests).toBe(12);
  });

  test("a member's figures are for the other members only; ?fleet=1 outside a fleet says how to make one", async () => {
    const gw = await startTestGateway();
    defer(() => gw.close());
    const res = await admin(gw).get("/api/stats?fleet=1");
    expect(res.status).toBe(409);
    expect((await jsonOf(res)).error).toContain("CACHEGATE_PEERS");
    expect((await admin(gw).get("/api/stats?fleet=yes")).status).toBe(400);
    const peers = ["http://127.0.0.2:8080", "http://127.0.0.3:8080"];
    expect((await admin(gw).patch({ cluster: { peers, self: peers[0] } })).status).toBe(200);
    const page = await fetch(`${gw.proxyUrl}/fleet/stats`, { headers: { "x-cachegate-peer": peers[1]! } });
    expect(page.status).toBe(403);
    expect((await jsonOf(page)).error).toContain("/api/stats?fleet=1");
  });
});

describe("cluster.peers and cluster.self are validated", () => {
  test.each([
    [{ peers: ["http://10.0.0.1:8080", "http://10.0.0.2:8080"] }, "cluster.self", "must name this member"],
    [{ peers: ["http://10.0.0.1:8080"], self: "http://10.0.0.9:8080" }, "cluster.self", "must name this member"],
    [
      { peers: ["http://10.0.0.1:8080", "http://10.0.0.1:8080/"], self: "http://10.0.0.1:8080" },
      "cluster.peers",
      "twice",
    ],
    [{ peers: ["https://10.0.0.1:8080"], self: "https://10.0.0.1:8080" }, "cluster.peers.0", "http://host:port"],
    [{ peers: ["http://10.0.0.1"], self: "http://10.0.0.1" }, "cluster.peers.0", "http://host:port"],
    [{ peers: ["http://u:p@10.0.0.1:8080"], self: "http://10.0.0.1:8080" }, "cluster.peers.0", "credentials"],
  ])("%j is refused and changes nothing", async (cluster, path, message) => {
    const gw = await startTestGateway();
    defer(() => gw.close());
    const before = await admin(gw).configText();
    const res = await admin(gw).patch({ cluster });
    expect(res.status).toBe(400);
    const err = (await res.json()) as { details: { path: string; message: string }[] };
    expect(err.details.some((d) => d.path === path && d.message.includes(message))).toBe(true);
    expect(await admin(gw).configText()).toBe(before);
  });

  test("member URLs are normalised, so every member ranks the same strings", async () => {
    const gw = await startTestGateway();
    defer(() => gw.close());
    const res = await admin(gw).patch({
      cluster: {
        peers: ["HTTP://Gateway-A.example:8080/", "http://gateway-b.example:8080"],
        self: "http://GATEWAY-A.example:8080",
      },
    });
    expect(res.status).toBe(200);
    const { config } = await admin(gw).json("/api/config");
    expect(config.cluster).toEqual({
      peers: ["http://gateway-a.example:8080", "http://gateway-b.example:8080"],
      self: "http://gateway-a.example:8080",
    });
  });
});
