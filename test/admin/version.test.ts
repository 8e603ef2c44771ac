import { describe, expect, test } from "bun:test";
import pkg from "../../package.json" with { type: "json" };
import { createLogger } from "../../src/log.ts";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";

const defer = cleanupAfterEach();

describe("the version", () => {
  test("GET /api/version says package.json's version and the Bun that runs the gateway", async () => {
    const gw = await startTestGateway();
    defer(() => gw.close());
    expect(await admin(gw).json("/api/version")).toEqual({ version: pkg.version, bun: Bun.version });
  });

  test("GET /api/version needs the admin token", async () => {
    const gw = await startTestGateway();
    defer(() => gw.close());
    expect((await fetch(`${gw.adminUrl}/api/version`)).status).toBe(401);
  });

  test('the start-up log line "cachegate listening" has a version field', async () => {
    const lines: string[] = [];
    const gw = await startTestGateway({ log: createLogger((line) => lines.push(line)) });
    defer(() => gw.close());
    const listening = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "cachegate listening");
    expect(listening).toMatchObject({ level: "info", version: pkg.version });
  });
});
