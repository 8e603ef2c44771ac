import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/log.ts";
import { type AdminClient, admin, jsonOf } from "../support/admin.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { createTestCa } from "../support/test-ca.ts";

/**
 * upstreamProxy through the admin API: live, validated whole (the CA file
 * is read when it is set), and the proxy's password never shown.
 */

let gw: TestGateway;
let api: AdminClient;
let dir: string;
const lines: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cachegate-upstream-api-"));
  gw = await startTestGateway({ log: createLogger((l) => lines.push(l)) });
  api = admin(gw);
});
afterAll(async () => {
  await gw?.close();
  await rm(dir, { recursive: true, force: true });
});

async function patchOk(patch: unknown): Promise<any> {
  const res = await api.patch(patch);
  const body = await jsonOf(res);
  expect(res.status).toBe(200);
  return body;
}

async function refusedNaming(patch: unknown, path: string): Promise<string> {
  const before = await api.configText();
  const res = await api.patch(patch);
  const body = (await jsonOf(res)) as { details: { path: string; message: string }[] };
  expect(res.status).toBe(400);
  expect(body.details.map((d) => d.path)).toEqual([path]);
  expect(await api.configText()).toBe(before);
  return body.details[0]!.message;
}

describe("upstreamProxy through PATCH /api/config", () => {
  test("the password is masked in GET, in the PATCH answer and in the log, and kept in the live config", async () => {
    const body = await patchOk({ upstreamProxy: { url: "http://agent:top-secret@proxy.corp.example:3128" } });
    expect(JSON.stringify(body)).not.toContain("top-secret");
    expect(body.config.upstreamProxy.url).toBe("http://agent:***@proxy.corp.example:3128");
    expect(await api.configText()).not.toContain("top-secret");
    expect(lines.join("\n")).not.toContain("top-secret");
    expect(lines.join("\n")).toContain("agent:***@proxy.corp.example:3128");
    expect(gw.config.current.upstreamProxy.url).toBe("http://agent:top-secret@proxy.corp.example:3128");
  });

  test("sending the masked URL back keeps the stored password", async () => {
    await patchOk({ upstreamProxy: { url: "http://agent:top-secret@proxy.corp.example:3128" } });
    const { config } = await api.json("/api/config");
    await patchOk({ upstreamProxy: { ...config.upstreamProxy, bypass: ["intranet.example.com"] } });
    expect(gw.config.current.upstreamProxy).toEqual({
      url: "http://agent:top-secret@proxy.corp.example:3128",
      bypass: ["intranet.example.com"],
    });
  });

  test("*** as the password of another proxy is refused: it would become the password", async () => {
    await patchOk({ upstreamProxy: { url: "http://agent:top-secret@proxy.corp.example:3128" } });
    const message = await refusedNaming(
      { upstreamProxy: { url: "http://agent:***@other-proxy.example:3128" } },
      "upstreamProxy.url",
    );
    expect(message).toContain("send the real password");
  });

  test("a bad URL is refused with what to type", async () => {
    const message = await refusedNaming({ upstreamProxy: { url: "https://proxy.corp.example" } }, "upstreamProxy.url");
    expect(message).toContain("only http:// proxies are supported");
  });

  test("a caFile that does not exist is refused, naming the file", async () => {
    const file = join(dir, "missing.pem");
    const message = await refusedNaming({ upstreamProxy: { caFile: file } }, "upstreamProxy.caFile");
    expect(message).toContain(`${file} cannot read it (ENOENT)`);
  });

  test("a caFile without a certificate, or with a broken one, is refused", async () => {
    const notPem = join(dir, "not.pem");
    await writeFile(notPem, "hello\n");
    expect(await refusedNaming({ upstreamProxy: { caFile: notPem } }, "upstreamProxy.caFile")).toContain(
      "holds no PEM certificate",
    );
    const broken = join(dir, "broken.pem");
    await writeFile(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    expect(await refusedNaming({ upstreamProxy: { caFile: broken } }, "upstreamProxy.caFile")).toContain(
      "certificate 1 does not parse",
    );
  });

  test("a caFile with a CA certificate is taken, and null removes the proxy again", async () => {
    const ca = await createTestCa("parent gateway CA");
    const { certFile } = await ca.writeTo(dir);
    const body = await patchOk({ upstreamProxy: { caFile: certFile } });
    expect(body.config.upstreamProxy.caFile).toBe(certFile);
    await patchOk({ upstreamProxy: null });
    expect(gw.config.current.upstreamProxy).toEqual({ bypass: [] });
  });
});
