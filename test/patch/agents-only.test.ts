import { Database } from "bun:sqlite";
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { createLogger } from "../../src/log.ts";
import { admin, agentGet } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { type Origin, startOrigin, viaProxy } from "../support/origin.ts";
import { basic, type PatchGateway, type PatchGatewayOptions, patchUrl, startPatchGateway } from "../support/patch.ts";
import { rawExchange } from "../support/raw-http.ts";
import { curl } from "../support/tls-clients.ts";
import { waitFor, within } from "../support/wait.ts";

setDefaultTimeout(30_000);

/**
 * "Agents only": while Patch Mode is on, a request or CONNECT without valid
 * Basic Proxy-Authorization gets 407 with Proxy-Authenticate; credentials
 * come from POST /api/agents and DELETE revokes them at once.
 */
const defer = cleanupAfterEach();

async function setup(opts: PatchGatewayOptions = {}): Promise<{ gw: PatchGateway; origin: Origin }> {
  const origin = startOrigin(
    (req) =>
      new Response(`patch bytes for ${new URL(req.url).pathname}`, { headers: { "cache-control": "max-age=3600" } }),
  );
  defer(() => origin.stop());
  const gw = await startPatchGateway(opts);
  defer(() => gw.close());
  return { gw, origin };
}

const header = (h: Record<string, string | string[] | undefined>, name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v.join(", ") : v;
};

function expect407(res: { status: number; headers: Record<string, string | string[] | undefined> }) {
  expect(res.status).toBe(407);
  expect(header(res.headers, "proxy-authenticate")).toMatch(/^Basic realm="[^"]+"/);
}

describe("while Patch Mode is on, the proxy port", () => {
  test("answers a request without credentials with 407 and Proxy-Authenticate: Basic, and never asks the origin", async () => {
    const { gw, origin } = await setup();
    const res = await agentGet(gw.proxyUrl, patchUrl(origin, "/kb1.msu"));
    expect407(res);
    expect(res.body.toString()).toContain("POST /api/agents");
    // The same for the platform's own hosts and for other methods: only agents may use the gateway.
    expect407(await agentGet(gw.proxyUrl, origin.url("/manifest.json")));
    const post = await viaProxy(gw.proxyUrl, patchUrl(origin, "/upload"), { method: "POST", body: "x" });
    await post.text();
    expect(post.status).toBe(407);
    expect(origin.count()).toBe(0);
  });

  test("lets an agent with issued credentials through, with curl -U and with credentials in the proxy URL", async () => {
    const { gw, origin } = await setup();
    const agent = await gw.issueAgent("branch-office-12");
    const viaCurl = await curl([
      "-U",
      `${agent.username}:${agent.password}`,
      "-x",
      gw.proxyUrl,
      patchUrl(origin, "/kb2.msu"),
    ]);
    expect(viaCurl.stderr).toBe("");
    expect(viaCurl.status).toBe(200);
    expect(viaCurl.body.toString()).toBe("patch bytes for /kb2.msu");

    const res = await viaProxy(gw.proxyFor(agent), patchUrl(origin, "/kb3.msu"));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("patch bytes for /kb3.msu");
    // The gateway does not hand the agent's credentials on to the vendor.
    expect(origin.requests.every((r) => !r.headers.has("proxy-authorization"))).toBe(true);
  });

  test("answers a wrong password and an unknown user with the same 407, and logs nothing that tells them apart", async () => {
    const lines: string[] = [];
    const { gw, origin } = await setup({ log: createLogger((l) => void lines.push(l)) });
    const agent = await gw.issueAgent();
    const url = patchUrl(origin, "/kb4.msu");
    const wrong = await agentGet(gw.proxyUrl, url, "127.0.0.1", {
      "proxy-authorization": basic(agent.username, `${agent.password}-wrong`),
    });
    const unknown = await agentGet(gw.proxyUrl, url, "127.0.0.1", {
      "proxy-authorization": basic("agent-0123456789", agent.password),
    });
    expect407(wrong);
    expect407(unknown);
    const comparable = (r: typeof wrong) => ({
      status: r.status,
      body: r.body.toString(),
      headers: { ...r.headers, date: undefined, via: undefined },
    });
    expect(comparable(unknown)).toEqual(comparable(wrong));
    expect(origin.count()).toBe(0);
    const log = lines.join("");
    expect(log).not.toContain("agent-0123456789");
    expect(log).not.toContain(agent.password);

    // And through curl, as an operator would try it.
    const viaCurl = await curl(["-U", `${agent.username}:nope`, "-x", gw.proxyUrl, url]);
    expect(viaCurl.status).toBe(407);
    expect(viaCurl.headers.get("proxy-authenticate")).toStartWith("Basic");
  });

  test("refuses a malformed Proxy-Authorization with 407", async () => {
    const { gw, origin } = await setup();
    for (const value of [
      "Bearer abc",
      "Basic",
      "Basic !!!",
      `Basic ${Buffer.from("no-colon").toString("base64")}`,
      'Digest username="x"',
    ]) {
      expect407(
        await agentGet(gw.proxyUrl, patchUrl(origin, "/kb5.msu"), "127.0.0.1", { "proxy-authorization": value }),
      );
    }
    expect(origin.count()).toBe(0);
  });

  test("turns a revoked agent away at once, even right after a request whose check it remembered", async () => {
    const { gw, origin } = await setup();
    const agent = await gw.issueAgent();
    const keep = await gw.issueAgent("still-valid");
    const proxy = gw.proxyFor(agent);
    const first = await viaProxy(proxy, patchUrl(origin, "/a.msu"));
    expect(first.status).toBe(200);
    await first.text();
    const second = await viaProxy(proxy, patchUrl(origin, "/b.msu")); // answered from the verified-pair memory
    expect(second.status).toBe(200);
    await second.text();

    const del = await admin(gw).send("DELETE", `/api/agents/${agent.id}`);
    expect(del.status).toBe(200);
    expect(await del.json()).toEqual({ revoked: agent.id });
    const after = await agentGet(gw.proxyUrl, patchUrl(origin, "/c.msu"), "127.0.0.1", {
      "proxy-authorization": basic(agent.username, agent.password),
    });
    expect407(after);
    // Even for what is in the cache already.
    expect407(
      await agentGet(gw.proxyUrl, patchUrl(origin, "/a.msu"), "127.0.0.1", {
        "proxy-authorization": basic(agent.username, agent.password),
      }),
    );
    expect(origin.count("/c.msu")).toBe(0);
    // Other agents are not affected.
    const other = await viaProxy(gw.proxyFor(keep), patchUrl(origin, "/c.msu"));
    expect(other.status).toBe(200);
    await other.text();
    expect((await admin(gw).json("/api/agents")).agents.map((a: { id: number }) => a.id)).toEqual([keep.id]);
  });

  test("answers CONNECT without credentials, or with wrong ones, with 407 and Proxy-Authenticate", async () => {
    const { gw } = await setup();
    const agent = await gw.issueAgent();
    const bare = await rawExchange(
      gw.proxyPort,
      "CONNECT updates.vendor.example:443 HTTP/1.1\r\nHost: updates.vendor.example:443\r\n\r\n",
    );
    expect(bare.status).toBe(407);
    expect(bare.header("proxy-authenticate")).toStartWith("Basic realm=");
    const wrong = await rawExchange(
      gw.proxyPort,
      `CONNECT updates.vendor.example:443 HTTP/1.1\r\nHost: updates.vendor.example:443\r\nProxy-Authorization: ${basic(agent.username, "nope")}\r\n\r\n`,
    );
    expect(wrong.status).toBe(407);
    expect(wrong.header("proxy-authenticate")).toStartWith("Basic realm=");
    expect(wrong.body.toString()).toEqual(bare.body.toString());
  });

  test("opens a CONNECT tunnel for an agent with valid credentials", async () => {
    const { gw } = await setup();
    const agent = await gw.issueAgent();
    const res = await rawExchange(
      gw.proxyPort,
      `CONNECT updates.vendor.example:443 HTTP/1.1\r\nHost: updates.vendor.example:443\r\nProxy-Authorization: ${basic(agent.username, agent.password)}\r\n\r\nnot a TLS hello\r\n`,
      15_000,
    );
    expect(res.status).toBe(200);
  });

  test("closes a pass-through tunnel a revoked agent has open, at once", async () => {
    // An upstream the tunnel reaches: echoes what it gets.
    const echo = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (socket, d) => void socket.write(d) } });
    defer(() => echo.stop(true));
    const gw = await startPatchGateway({
      config: { connect: { ports: [443, echo.port] }, tls: { doNotIntercept: ["localhost"] } },
    });
    defer(() => gw.close());
    const agent = await gw.issueAgent();
    const { connect } = await import("node:net");
    const socket = connect(gw.proxyPort, "127.0.0.1");
    defer(() => socket.destroy());
    const received: string[] = [];
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (d) => received.push(d.toString()));
    socket.write(
      `CONNECT localhost:${echo.port} HTTP/1.1\r\nHost: localhost:${echo.port}\r\nProxy-Authorization: ${basic(agent.username, agent.password)}\r\n\r\n`,
    );
    await waitFor("the tunnel to open", () => received.join("").includes("200 Connection Established"));
    socket.write("ping");
    await waitFor("the echo through the tunnel", () => received.join("").includes("ping"));

    expect((await admin(gw).send("DELETE", `/api/agents/${agent.id}`)).status).toBe(200);
    await within(2000, "the revoked agent's tunnel to close", closed);
  });

  test("admits a configured client network (127.0.0.1/32) without credentials, and only that network", async () => {
    const { gw, origin } = await setup({ clientNetworks: ["127.0.0.1/32"] });
    const inside = await agentGet(gw.proxyUrl, patchUrl(origin, "/kb6.msu"), "127.0.0.1");
    expect(inside.status).toBe(200);
    expect(inside.body.toString()).toBe("patch bytes for /kb6.msu");
    expect407(await agentGet(gw.proxyUrl, patchUrl(origin, "/kb6.msu"), "127.0.0.2"));
    const tunnel = await rawExchange(
      gw.proxyPort,
      "CONNECT updates.vendor.example:443 HTTP/1.1\r\nHost: updates.vendor.example:443\r\n\r\nnot a TLS hello\r\n",
      15_000,
    );
    expect(tunnel.status).toBe(200);
  });

  test("slows down repeated failures from one address: the 7th takes measurably longer than the 1st, other addresses are not slowed", async () => {
    const { gw, origin } = await setup();
    const url = patchUrl(origin, "/kb7.msu");
    const timed = async (local: string) => {
      const t = performance.now();
      const res = await agentGet(gw.proxyUrl, url, local);
      expect407(res);
      return performance.now() - t;
    };
    const times: number[] = [];
    for (let i = 0; i < 7; i++) times.push(await timed("127.0.0.3"));
    // Five free failures, then 250 ms, then 500 ms (src/agents/proxy-auth.ts).
    expect(times[0]!).toBeLessThan(400);
    expect(times[6]!).toBeGreaterThanOrEqual(450);
    expect(times[6]! - times[0]!).toBeGreaterThanOrEqual(300);
    expect(await timed("127.0.0.4")).toBeLessThan(400);
    expect(origin.count()).toBe(0);
  });
});

describe("the agents admin API", () => {
  const post = (gw: PatchGateway, body: string, type = "application/json") =>
    admin(gw).send("POST", "/api/agents", { body, headers: { "content-type": type } });

  test("shows the password only in the POST answer: the list has no password and no hash, the database only an argon2id hash", async () => {
    const { gw } = await setup();
    const res = await post(gw, JSON.stringify({ name: "branch-office-12" }));
    expect(res.status).toBe(201);
    const issued = (await res.json()) as { id: number; name: string; username: string; password: string };
    expect(issued).toEqual({
      id: expect.any(Number),
      name: "branch-office-12",
      username: expect.stringMatching(/^agent-/),
      password: expect.any(String),
    });

    const listText = await (await admin(gw).get("/api/agents")).text();
    const list = JSON.parse(listText).agents;
    expect(list).toEqual([
      { id: issued.id, name: "branch-office-12", username: issued.username, createdAt: expect.any(String) },
    ]);
    expect(listText).not.toContain(issued.password);
    expect(listText.toLowerCase()).not.toContain("hash");
    expect(listText).not.toContain("argon2");

    const db = new Database(join(gw.dataDir, "index.sqlite"), { readonly: true });
    try {
      const row = db.query("select password_hash from agents where id = ?").get(issued.id) as { password_hash: string };
      expect(row.password_hash).toStartWith("$argon2id$");
      expect(row.password_hash).not.toContain(issued.password);
    } finally {
      db.close();
    }
  });

  test.each([
    ["an empty object", "{}"],
    ["an empty name", '{"name":"  "}'],
    ["a name that is not a string", '{"name":42}'],
    ["an unknown field", '{"name":"a","admin":true}'],
    ["markup in the name", '{"name":"<script>alert(1)</script>"}'],
    ["a name longer than 100 characters", JSON.stringify({ name: "x".repeat(101) })],
    ["an array", "[]"],
    ["invalid JSON", '{"name":'],
  ])("refuses a POST with %s with a 400 naming the problem, and creates nothing", async (_what, body) => {
    const { gw } = await setup();
    const res = await post(gw, body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: unknown }).error).toBeString();
    expect((await admin(gw).json("/api/agents")).agents).toEqual([]);
  });

  test("refuses a POST that is not JSON with 415, and one without the admin token with 401", async () => {
    const { gw } = await setup();
    expect((await post(gw, "name=x", "application/x-www-form-urlencoded")).status).toBe(415);
    const anon = await fetch(`${gw.adminUrl}/api/agents`, {
      method: "POST",
      body: '{"name":"x"}',
      headers: { "content-type": "application/json" },
    });
    expect(anon.status).toBe(401);
    expect((await fetch(`${gw.adminUrl}/api/agents`)).status).toBe(401);
    expect((await admin(gw).json("/api/agents")).agents).toEqual([]);
  });

  test("answers DELETE of an id that is not a number with 400 and of an unknown id with 404", async () => {
    const { gw } = await setup();
    const agent = await gw.issueAgent();
    expect((await admin(gw).send("DELETE", "/api/agents/abc")).status).toBe(400);
    expect((await admin(gw).send("DELETE", `/api/agents/${agent.id + 1000}`)).status).toBe(404);
    expect((await admin(gw).json("/api/agents")).agents).toHaveLength(1);
  });
});
