import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentStore, createAgentStore } from "../../src/agents/agent-store.ts";
import { createProxyAuth } from "../../src/agents/proxy-auth.ts";
import { type Db, openDb } from "../../src/db/client.ts";
import { PROXY_AUTHENTICATE } from "../../src/proxy/agents-only.ts";
import { manualClock } from "../support/clock.ts";
import { basic } from "../support/patch.ts";
import { gate, waitFor } from "../support/wait.ts";

/**
 * Patch Mode's agent credentials and the "agents only" check, without a
 * gateway: a real SQLite database (with the migrations), real argon2id
 * hashes, a clock moved by hand.
 */
let dir: string;
let db: Db;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cachegate-agents-"));
  db = openDb(join(dir, "index.sqlite"));
});

afterAll(async () => {
  db.$client.close();
  await rm(dir, { recursive: true, force: true });
});

const MINUTE = 60_000;

/** A store with one issued agent on a hand-moved clock. */
async function storeWithAgent(name = "branch-office-12") {
  const clock = manualClock();
  const store = createAgentStore(db, clock.now);
  const agent = await store.issue(name);
  return { clock, store, agent };
}

/** A store that accepts exactly one pair, to look at how the header is parsed. */
function fakeStore(username: string, password: string): AgentStore & { seen: [string, string][] } {
  const seen: [string, string][] = [];
  return {
    seen,
    issue: () => Promise.reject(new Error("not used")),
    list: () => [],
    exists: (u: string) => u === username,
    revoke: () => false,
    onRevoke: () => {},
    async verify(u: string, p: string) {
      seen.push([u, p]);
      return u === username && p === password ? u : null;
    },
  };
}

describe("agent credentials", () => {
  test("an issued password is shown once and stored only as an argon2id hash", async () => {
    const { store, agent } = await storeWithAgent();
    expect(agent.username).toMatch(/^agent-[0-9a-f]{10}$/);
    expect(agent.password.length).toBeGreaterThanOrEqual(32);
    const row = db.$client.query("select * from agents where id = ?").get(agent.id) as Record<string, unknown>;
    expect(String(row.password_hash)).toStartWith("$argon2id$");
    expect(JSON.stringify(row)).not.toContain(agent.password);
    const listed = store.list().find((a) => a.id === agent.id)!;
    expect(listed).toEqual({
      id: agent.id,
      name: "branch-office-12",
      username: agent.username,
      createdAt: expect.any(String),
    });
    expect(JSON.stringify(store.list())).not.toContain(agent.password);
    expect(JSON.stringify(store.list())).not.toContain("argon2");
  });

  test("two agents never get the same user name or password", async () => {
    const { store } = await storeWithAgent();
    const issued = await Promise.all(Array.from({ length: 5 }, (_, i) => store.issue(`group-${i}`)));
    expect(new Set(issued.map((a) => a.username)).size).toBe(5);
    expect(new Set(issued.map((a) => a.password)).size).toBe(5);
  });

  test("the right pair verifies; a wrong password, an unknown user and an empty pair do not", async () => {
    const { store, agent } = await storeWithAgent();
    expect(await store.verify(agent.username, agent.password)).toBe(agent.username);
    expect(await store.verify(agent.username, `${agent.password}x`)).toBeNull();
    expect(await store.verify(agent.username, "")).toBeNull();
    expect(await store.verify("agent-0000000000", agent.password)).toBeNull();
    expect(await store.verify("", "")).toBeNull();
  });

  test("a revoked agent fails at once, even though its last check was remembered", async () => {
    const { store, agent } = await storeWithAgent();
    const other = await store.issue("other-group");
    expect(await store.verify(agent.username, agent.password)).toBe(agent.username);
    expect(await store.verify(other.username, other.password)).toBe(other.username);
    expect(store.revoke(agent.id)).toBe(true);
    expect(await store.verify(agent.username, agent.password)).toBeNull();
    expect(await store.verify(other.username, other.password)).toBe(other.username);
    expect(store.revoke(agent.id)).toBe(false);
  });

  test("a revocation that lands while the agent's check is still hashing is not undone by that check", async () => {
    const { store, agent } = await storeWithAgent();
    const checking = store.verify(agent.username, agent.password); // reads the row, then hashes (tens of ms)
    expect(store.revoke(agent.id)).toBe(true);
    await checking;
    // Whatever the check in flight answered, it must not have been remembered as valid.
    expect(await store.verify(agent.username, agent.password)).toBeNull();
  });

  test("many agents sharing one credential at once cost one password hash, not one each", async () => {
    const { store, agent } = await storeWithAgent();
    const hashes = spyOn(Bun.password, "verify");
    try {
      const answers = await Promise.all(Array.from({ length: 10 }, () => store.verify(agent.username, agent.password)));
      expect(answers).toEqual(Array(10).fill(agent.username));
      expect(hashes).toHaveBeenCalledTimes(1);
      // Wrong guesses in flight together are answered alike, and each distinct guess is still checked.
      const wrong = await Promise.all([
        store.verify(agent.username, "a"),
        store.verify(agent.username, "a"),
        store.verify(agent.username, "b"),
      ]);
      expect(wrong).toEqual([null, null, null]);
      expect(hashes).toHaveBeenCalledTimes(3);
    } finally {
      hashes.mockRestore();
    }
  });

  test("a remembered check expires after ten minutes and the stored hash is asked again", async () => {
    const { store, agent, clock } = await storeWithAgent();
    expect(await store.verify(agent.username, agent.password)).toBe(agent.username);
    // The stored hash changes underneath (as if the password had been reissued in place).
    db.$client
      .query("update agents set password_hash = ? where id = ?")
      .run(await Bun.password.hash("another"), agent.id);
    clock.advance(9 * MINUTE);
    expect(await store.verify(agent.username, agent.password)).toBe(agent.username);
    clock.advance(2 * MINUTE);
    expect(await store.verify(agent.username, agent.password)).toBeNull();
    expect(await store.verify(agent.username, "another")).toBe(agent.username);
  });
});

describe("proxy authorization", () => {
  test("a request without Proxy-Authorization is refused, without delay for the first failures", async () => {
    const { authorize } = createProxyAuth(fakeStore("u", "p"));
    expect(await authorize(undefined, "10.0.0.1", [])).toEqual({ ok: false, delayMs: 0 });
    expect(await authorize(null, "10.0.0.1", [])).toEqual({ ok: false, delayMs: 0 });
    expect(PROXY_AUTHENTICATE).toStartWith("Basic ");
  });

  test("Basic credentials are parsed as RFC 7617 says: case-insensitive scheme, the password may hold colons and UTF-8", async () => {
    const store = fakeStore("agent-1", "pa:ss:wörd");
    const { authorize } = createProxyAuth(store);
    expect(await authorize(basic("agent-1", "pa:ss:wörd"), "10.0.0.1", [])).toEqual({ ok: true, agent: "agent-1" });
    expect(await authorize(basic("agent-1", "pa:ss:wörd").replace("Basic", "basic"), "10.0.0.1", [])).toEqual({
      ok: true,
      agent: "agent-1",
    });
    expect(store.seen.at(-1)).toEqual(["agent-1", "pa:ss:wörd"]);
  });

  test.each([
    ["another scheme", "Bearer abc"],
    ["no credentials after the scheme", "Basic"],
    ["characters outside base64", "Basic !!!!"],
    ["a decoded value without a colon", `Basic ${Buffer.from("agent-1").toString("base64")}`],
    ["a wrong password", basic("agent-1", "guess")],
  ])("a Proxy-Authorization with %s is refused", async (_what, header) => {
    const { authorize } = createProxyAuth(fakeStore("agent-1", "secret"));
    expect((await authorize(header, "10.0.0.1", [])).ok).toBe(false);
  });

  test("failures from one address are answered ever more slowly after five, up to a ceiling; other addresses are not slowed", async () => {
    const { authorize } = createProxyAuth(fakeStore("agent-1", "secret"));
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await authorize(basic("agent-1", `guess-${i}`), "10.0.0.1", []);
      expect(r.ok).toBe(false);
      delays.push((r as { delayMs: number }).delayMs);
    }
    expect(delays.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    for (let i = 6; i < delays.length; i++) expect(delays[i]!).toBeGreaterThanOrEqual(delays[i - 1]!);
    expect(delays[5]!).toBeGreaterThan(0);
    expect(delays[6]!).toBeGreaterThan(delays[5]!);
    expect(Math.max(...delays)).toBeLessThanOrEqual(8000);
    expect(delays.at(-1)).toBe(8000);
    expect(await authorize(basic("agent-1", "guess"), "10.0.0.2", [])).toEqual({ ok: false, delayMs: 0 });
  });

  test("an address that is being slowed down gets one password check at a time: parallel guesses are refused without a hash each", async () => {
    const store = fakeStore("agent-1", "secret");
    const check = store.verify.bind(store);
    // A hash takes time: the burst's checks are held until the test lets them finish.
    let hashing: Promise<void> = Promise.resolve();
    let started = 0;
    store.verify = async (u, p) => {
      started++;
      await hashing;
      return check(u, p);
    };
    const { authorize } = createProxyAuth(store);
    for (let i = 0; i < 5; i++) await authorize(basic("agent-1", `guess-${i}`), "10.0.0.9", []);
    expect(started).toBe(5);

    const hash = gate();
    hashing = hash.opened;
    let answered = 0;
    const burst = Array.from({ length: 10 }, (_, i) =>
      authorize(basic("agent-1", `burst-${i}`), "10.0.0.9", []).finally(() => answered++),
    );
    await waitFor("nine guesses to be refused while the first is being checked", () => answered === 9);
    expect(started).toBe(6);
    hash.open();
    const results = await Promise.all(burst);
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(store.seen.length).toBe(6);
  });

  test("the failure count of an address is forgotten after a success from it, and after ten quiet minutes", async () => {
    const clock = manualClock();
    const { authorize } = createProxyAuth(fakeStore("agent-1", "secret"), clock.now);
    const fail = async (client: string) =>
      ((await authorize(basic("agent-1", "guess"), client, [])) as { delayMs: number }).delayMs;
    for (let i = 0; i < 6; i++) await fail("10.0.0.1");
    expect(await fail("10.0.0.1")).toBeGreaterThan(0);
    expect(await authorize(basic("agent-1", "secret"), "10.0.0.1", [])).toEqual({ ok: true, agent: "agent-1" });
    expect(await fail("10.0.0.1")).toBe(0);

    for (let i = 0; i < 6; i++) await fail("10.0.0.3");
    expect(await fail("10.0.0.3")).toBeGreaterThan(0);
    clock.advance(11 * MINUTE);
    expect(await fail("10.0.0.3")).toBe(0);
  });

  test("an admitted client network needs no credentials; IPv4-mapped addresses count as their IPv4 address", async () => {
    const store = fakeStore("agent-1", "secret");
    const { authorize } = createProxyAuth(store);
    const networks = ["127.0.0.1/32", "fd00::/8"];
    expect(await authorize(undefined, "127.0.0.1", networks)).toMatchObject({ ok: true });
    expect(await authorize(undefined, "::ffff:127.0.0.1", networks)).toMatchObject({ ok: true });
    expect(await authorize(undefined, "fd00::17", networks)).toMatchObject({ ok: true });
    expect(await authorize(undefined, "127.0.0.2", networks)).toMatchObject({ ok: false });
    expect(await authorize(undefined, "fe80::1", networks)).toMatchObject({ ok: false });
    expect(await authorize(undefined, "unknown", networks)).toMatchObject({ ok: false });
    // Outside the networks, credentials still work.
    expect(await authorize(basic("agent-1", "secret"), "10.9.9.9", networks)).toEqual({ ok: true, agent: "agent-1" });
  });

  test("a tunnel's agent stays admitted until it is revoked, and an admitted address until its network is taken off the list", async () => {
    const { store, agent } = await storeWithAgent();
    const { stillAdmitted } = createProxyAuth(store);
    expect(stillAdmitted(agent.username, [])).toBe(true);
    expect(stillAdmitted("agent-ffffffffff", [])).toBe(false);
    expect(stillAdmitted("10.20.1.7", ["10.20.0.0/16"])).toBe(true);
    expect(stillAdmitted("::ffff:10.20.1.7", ["10.20.0.0/16"])).toBe(true);
    expect(stillAdmitted("10.20.1.7", [])).toBe(false);
    store.revoke(agent.id);
    expect(stillAdmitted(agent.username, [])).toBe(false);
  });

  test("with the real store, an unknown user and a wrong password are refused alike", async () => {
    const { store, agent } = await storeWithAgent();
    const { authorize } = createProxyAuth(store);
    const unknown = await authorize(basic("agent-ffffffffff", agent.password), "10.1.0.1", []);
    const wrong = await authorize(basic(agent.username, "not-the-password"), "10.1.0.2", []);
    expect(unknown).toEqual(wrong);
    expect(await authorize(basic(agent.username, agent.password), "10.1.0.3", [])).toEqual({
      ok: true,
      agent: agent.username,
    });
  });
});
