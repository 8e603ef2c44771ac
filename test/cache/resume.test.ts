import { describe, expect, test } from "bun:test";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { countRows } from "../support/data-dir.ts";
import { type FaultyRoute, startFaultyOrigin } from "../support/faulty-origin.ts";
import { startTestGateway } from "../support/gateway.ts";
import { viaProxy } from "../support/origin.ts";
import { PatternBody, readAgainst } from "../support/patch.ts";

/**
 * A fill that survives a broken origin: when the connection breaks mid-body
 * and the response has a strong validator and a Content-Length, the gateway
 * continues the same download with Range and If-Range (RFC 9110 §13.1.5,
 * §14.2), and its agents see one continuous, correct body.
 */
const defer = cleanupAfterEach();
const MiB = 1024 * 1024;

/** What an agent got: the response may already fail before its head (a broken transfer too). */
const download = (proxyUrl: string, url: string, body: PatternBody) =>
  viaProxy(proxyUrl, url).then(
    (res) => readAgainst(res.body, body),
    (error: Error) => ({ bytes: 0, intact: true, error }),
  );

async function setup(route: FaultyRoute) {
  const origin = await startFaultyOrigin({ "/patch.cab": route });
  defer(() => origin.stop());
  const gw = await startTestGateway();
  defer(() => gw.close());
  return { origin, gw, url: origin.url("/patch.cab") };
}

describe("resuming a download whose origin breaks", () => {
  test("an origin that cuts the connection every 1 MB of 12 MB: every agent's body is correct, upstream sends at most 1.05× the object, and it is stored", async () => {
    const body = new PatternBody(12 * MiB);
    const { origin, gw, url } = await setup({ body, etag: '"v1"', breakEvery: MiB });

    const agents = await Promise.all(Array.from({ length: 5 }, () => viaProxy(gw.proxyUrl, url)));
    const checks = await Promise.all(agents.map((res) => readAgainst(res.body, body)));
    for (const check of checks) expect(check).toEqual({ bytes: body.size, intact: true });
    await gw.idle();

    expect(origin.count("/patch.cab")).toBeGreaterThanOrEqual(12);
    // Each resume asks for the rest from where the bytes stopped (a cut connection loses what was in flight).
    for (const range of origin.ranges("/patch.cab")) expect(range).toMatch(new RegExp(`^bytes=\\d+-${body.size - 1}$`));
    const stats = gw.stats.snapshot();
    expect(stats.bytesUpstream).toBeLessThanOrEqual(1.05 * body.size); // what reached the gateway, resumes included
    expect(stats.resumes).toBe(origin.count("/patch.cab") - 1);
    expect(countRows(gw.dataDir, "entries")).toBe(1);
    const hit = await viaProxy(gw.proxyUrl, url);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(await readAgainst(hit.body, body)).toEqual({ bytes: body.size, intact: true });
  });

  test("an object that changed (200 to If-Range) is not spliced in: the download fails and nothing is stored", async () => {
    const body = new PatternBody(4 * MiB);
    const { gw, url } = await setup({ body, etag: '"v1"', breakEvery: MiB, changedOnRange: true });
    const check = await download(gw.proxyUrl, url, body);
    expect(check.error).toBeDefined(); // a broken transfer, never a clean end
    expect(check.intact).toBe(true);
    expect(check.bytes).toBeLessThan(body.size);
    await gw.idle();
    expect(countRows(gw.dataDir, "entries")).toBe(0);
  });

  test("a response without a validator is not resumed: the agent sees a broken transfer and nothing is stored", async () => {
    const body = new PatternBody(4 * MiB);
    const { origin, gw, url } = await setup({ body, breakEvery: MiB });
    const check = await download(gw.proxyUrl, url, body);
    expect(check.error).toBeDefined();
    await gw.idle();
    expect(origin.ranges("/patch.cab")).toEqual([]);
    expect(countRows(gw.dataDir, "entries")).toBe(0);
  });
});
