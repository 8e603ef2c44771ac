import { describe, expect, test } from "bun:test";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createLogger } from "../../src/log.ts";
import { admin, closeWhenIdle, jsonOf } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";

const defer = cleanupAfterEach();

async function gateway(opts: Parameters<typeof startTestGateway>[0] = {}): Promise<TestGateway> {
  const gw = await startTestGateway(opts);
  defer(() => closeWhenIdle(gw));
  return gw;
}

const call = (gw: TestGateway, path: string, headers: Record<string, string> = {}, method = "GET") =>
  fetch(`${gw.adminUrl}${path}`, { method, headers });

describe("bearer token on the admin API", () => {
  test("GET /healthz answers without a token", async () => {
    const gw = await gateway();
    const res = await call(gw, "/healthz");
    expect(res.status).toBe(200);
    expect(await jsonOf(res)).toMatchObject({ status: "ok", cacheMode: true });
  });

  test("GET /healthz answers even with a wrong token", async () => {
    const gw = await gateway();
    expect((await call(gw, "/healthz", { authorization: "Bearer nope" })).status).toBe(200);
  });

  test("a request without Authorization gets 401 with a Bearer challenge and says where the token is", async () => {
    const gw = await gateway();
    const res = await call(gw, "/api/config");
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="cachegate admin"');
    const { error } = await jsonOf(res);
    expect(error).toContain("missing Authorization: Bearer <token>");
    expect(error).toContain("CACHEGATE_ADMIN_TOKEN");
  });

  test("a wrong token gets 401 saying the token is wrong", async () => {
    const gw = await gateway();
    const res = await call(gw, "/api/config", { authorization: "Bearer not-the-token" });
    expect(res.status).toBe(401);
    expect((await jsonOf(res)).error).toContain("the bearer token is wrong");
  });

  test.each(["Bearer test-toke", "Bearer test-token2", "Bearer TEST-TOKEN", "Bearer test-token extra"])(
    "the near miss %p gets 401",
    async (authorization) => {
      const gw = await gateway();
      expect((await call(gw, "/api/config", { authorization })).status).toBe(401);
    },
  );

  test.each([
    ["Basic with the token as credentials", `Basic ${btoa("admin:test-token")}`],
    ["the token without a scheme", "test-token"],
    ["a Token scheme", "Token test-token"],
    ["Bearer without a token", "Bearer "],
  ])("%s gets 401", async (_, authorization) => {
    const gw = await gateway();
    expect((await call(gw, "/api/config", { authorization })).status).toBe(401);
  });

  test("the scheme name is case-insensitive, as HTTP says", async () => {
    const gw = await gateway();
    expect((await call(gw, "/api/config", { authorization: "bearer test-token" })).status).toBe(200);
  });

  test.each([
    ["GET", "/api/config"],
    ["PATCH", "/api/config"],
    ["GET", "/api/stats"],
    ["GET", "/metrics"],
    ["GET", "/api/cache/entries"],
    ["DELETE", "/api/cache/entries?prefix=http://localhost/"],
    ["POST", "/api/cache/verify"],
    ["GET", "/api/cache/verify"],
    ["GET", "/no/such/route"],
  ])("%s %s needs the token", async (method, path) => {
    const gw = await gateway();
    expect((await call(gw, path, {}, method)).status).toBe(401);
  });

  test("a PATCH without the token changes nothing", async () => {
    const gw = await gateway();
    const before = await admin(gw).configText();
    const res = await fetch(`${gw.adminUrl}/api/config`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ tls: { minVersion: "1.3" } }),
    });
    expect(res.status).toBe(401);
    expect(await admin(gw).configText()).toBe(before);
  });

  test("a refused request is logged with the client address, and the log never holds the token that was tried", async () => {
    const lines: string[] = [];
    const gw = await gateway({ log: createLogger((l) => lines.push(l)) });
    await call(gw, "/api/stats", { authorization: "Bearer guessed-secret-123" });
    const refusals = lines
      .map((l) => JSON.parse(l))
      .filter((l) => l.msg === "admin request refused: bad or missing token");
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({
      level: "warn",
      client: expect.stringContaining("127.0.0.1"),
      method: "GET",
      path: "/api/stats",
    });
    expect(lines.join("")).not.toContain("guessed-secret-123");
  });
});

describe("the admin token", () => {
  test("without CACHEGATE_ADMIN_TOKEN a token is generated into the data dir with mode 0600", async () => {
    const gw = await gateway({ adminToken: "" });
    const file = join(gw.dataDir, "admin-token");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const token = (await readFile(file, "utf8")).trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect(gw.adminToken).toBe(token);
    expect((await admin(gw, token).get("/api/config")).status).toBe(200);
    expect((await admin(gw, "test-token").get("/api/config")).status).toBe(401);
  });

  test("the start-up log says where the generated token is and never what it is", async () => {
    const lines: string[] = [];
    const gw = await gateway({ adminToken: "", log: createLogger((l) => lines.push(l)) });
    await admin(gw, gw.adminToken).patch({ tls: { minVersion: "1.3" } });
    await call(gw, "/api/config", { authorization: "Bearer wrong" });
    const told = lines.map((l) => JSON.parse(l)).find((l) => String(l.msg).startsWith("admin token generated"));
    expect(told?.file).toBe(join(gw.dataDir, "admin-token"));
    expect(lines.join("")).not.toContain(gw.adminToken);
  });

  test("the generated token is kept across restarts", async () => {
    const first = await startTestGateway({ adminToken: "" });
    const token = first.adminToken;
    const again = await first.restart();
    defer(() => closeWhenIdle(again));
    expect(again.adminToken).toBe(token);
    expect((await admin(again, token).get("/api/config")).status).toBe(200);
  });

  test("a token from the environment never appears in the log", async () => {
    const lines: string[] = [];
    const gw = await gateway({ adminToken: "env-secret-4711", log: createLogger((l) => lines.push(l)) });
    await admin(gw, "env-secret-4711").patch({ tls: { minVersion: "1.3" } });
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join("")).not.toContain("env-secret-4711");
  });

  test("a token from the environment is used and no token file is written", async () => {
    const gw = await gateway({ adminToken: "from-the-environment" });
    expect((await admin(gw, "from-the-environment").get("/api/config")).status).toBe(200);
    expect(await stat(join(gw.dataDir, "admin-token")).catch(() => null)).toBeNull();
  });
});
