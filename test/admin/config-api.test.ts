import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createLogger } from "../../src/log.ts";
import { type AdminClient, admin, closeWhenIdle, freePort, jsonOf, occupyPort } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";

interface FieldError {
  path: string;
  value: unknown;
  rule: string;
  message: string;
}

const EXCLUDED_PORTS = [22, 23, 2379, 2380, 4001, 5514, 7001, 48081, 48082, 48083, 48084, 48085, 48086];

describe("PATCH /api/config refuses bad values and changes nothing", () => {
  let gw: TestGateway;
  let api: AdminClient;
  beforeAll(async () => {
    gw = await startTestGateway();
    api = admin(gw);
  });
  afterAll(() => closeWhenIdle(gw));

  /** PATCHes `patch`, expects a 400 that names exactly `paths`, and the document unchanged byte for byte. */
  async function refused(patch: unknown, paths: string[]): Promise<FieldError[]> {
    const before = await api.configText();
    const res = await api.patch(patch);
    const body = (await jsonOf(res)) as { error: string; details: FieldError[] };
    expect(res.status).toBe(400);
    expect(body.error).toBe("invalid configuration; nothing was changed");
    expect(body.details.map((d) => d.path).sort()).toEqual([...paths].sort());
    for (const d of body.details) {
      expect(Object.keys(d).sort()).toEqual(["message", "path", "rule", "value"]);
      expect(d.message).toStartWith(`${d.path} `);
      expect(d.rule).not.toBe("");
    }
    expect(await api.configText()).toBe(before);
    return body.details;
  }

  test.each([0, 65536, -1, 100000])("cacheMode.port %p is refused as out of range", async (port) => {
    const [e] = await refused({ cacheMode: { port } }, ["cacheMode.port"]);
    expect(e).toMatchObject({ value: port, message: "cacheMode.port must be between 1 and 65535, e.g. 8080" });
  });

  test.each(EXCLUDED_PORTS)("cacheMode.port %p is refused as reserved", async (port) => {
    const [e] = await refused({ cacheMode: { port } }, ["cacheMode.port"]);
    expect(e).toMatchObject({ value: port, rule: "check" });
    expect(e!.message).toContain("is reserved");
    expect(e!.message).toContain("choose another port, e.g. 8080");
  });

  test.each<[string, unknown]>([
    ['the string "8080"', "8080"],
    ["the float 80.5", 80.5],
    ["true", true],
    ["false", false],
    ["a list", [8080]],
  ])("cacheMode.port as %s is refused as not a whole number", async (_, port) => {
    const [e] = await refused({ cacheMode: { port } }, ["cacheMode.port"]);
    expect(e).toMatchObject({
      value: port,
      message: "cacheMode.port must be a whole number between 1 and 65535, e.g. 8080",
    });
  });

  test.each([
    ["https://www.microsoft.com", "microsoft.com"],
    ["http://x.com/path", "x.com"],
    ["x.com:443", "x.com"],
    ["*.x.com", "x.com"],
    ["www.x.com", "x.com"],
    ["a..com", "microsoft.com"],
    [".a.com", "microsoft.com"],
    ["micro soft.com", "microsoft.com"],
    [`${"a".repeat(64)}.com`, "microsoft.com"],
    [Array.from({ length: 5 }, () => "a".repeat(63)).join("."), "microsoft.com"],
  ])("the allowed domain %p is refused with a message naming %p", async (domain, suggestion) => {
    const [e] = await refused({ allowedDomains: { enabled: true, domains: ["ok.example", domain] } }, [
      "allowedDomains.domains.1",
    ]);
    expect(e!.value).toBe(domain);
    expect(e!.message).toContain(suggestion);
  });

  test("allowedDomains.domains as a single string is refused with an example of a list", async () => {
    const [e] = await refused({ allowedDomains: { domains: "microsoft.com" } }, ["allowedDomains.domains"]);
    expect(e!.message).toContain('["microsoft.com"]');
  });

  test.each<unknown>(["1.4", "TLSv1.3", 1.3, ""])(
    "tls.minVersion %p is refused, listing the versions to choose from",
    async (minVersion) => {
      const [e] = await refused({ tls: { minVersion } }, ["tls.minVersion"]);
      expect(e).toMatchObject({
        value: minVersion,
        rule: "picklist",
        message: 'tls.minVersion must be one of "1.0", "1.1", "1.2", "1.3"',
      });
    },
  );

  test("patchMode.enabled true without a patch disk is refused with the reason", async () => {
    const [e] = await refused({ patchMode: { enabled: true } }, ["patchMode.enabled"]);
    expect(e!.message).toContain("patch disk");
  });

  test("cacheMode.enabled as a string is refused", async () => {
    await refused({ cacheMode: { enabled: "true" } }, ["cacheMode.enabled"]);
  });

  test("an unknown top-level field is refused by name with its value", async () => {
    const [e] = await refused({ cacheModes: { enabled: false } }, ["cacheModes"]);
    expect(e).toMatchObject({ value: { enabled: false }, rule: "unknown_field" });
    expect(e!.message).toContain("is not a setting");
  });

  test("an unknown field inside a section is refused by its path", async () => {
    const [e] = await refused({ cacheMode: { prot: 8081 } }, ["cacheMode.prot"]);
    expect(e).toMatchObject({ value: 8081, rule: "unknown_field" });
  });

  test("a section sent as a list is refused instead of resetting the section", async () => {
    const [e] = await refused({ cacheMode: [] }, ["cacheMode"]);
    expect(e!.message).toContain("must be a JSON object");
  });

  test("a patch with many bad fields lists every one of them with path, value, rule and message", async () => {
    const details = await refused(
      {
        cacheMode: { port: 80.5, enabled: 1 },
        allowedDomains: { enabled: "yes", domains: ["https://www.microsoft.com", "fine.example", "*.x.com"] },
        tls: { minVersion: "1.4" },
        patchMode: { enabled: true },
        colour: "blue",
      },
      [
        "cacheMode.port",
        "cacheMode.enabled",
        "allowedDomains.enabled",
        "allowedDomains.domains.0",
        "allowedDomains.domains.2",
        "tls.minVersion",
        "patchMode.enabled",
        "colour",
      ],
    );
    const byPath = Object.fromEntries(details.map((d) => [d.path, d]));
    expect(byPath["cacheMode.port"]).toMatchObject({ value: 80.5, rule: "integer" });
    expect(byPath["cacheMode.enabled"]).toMatchObject({ value: 1, rule: "boolean" });
    expect(byPath["allowedDomains.domains.0"]).toMatchObject({
      value: "https://www.microsoft.com",
      message: expect.stringContaining("e.g. microsoft.com"),
    });
    expect(byPath["allowedDomains.domains.2"]).toMatchObject({
      value: "*.x.com",
      message: expect.stringContaining("enter x.com"),
    });
    expect(byPath.colour).toMatchObject({ value: "blue" });
  });

  test("a patch with one good and one bad field applies neither", async () => {
    await refused({ tls: { minVersion: "1.3" }, cacheMode: { port: 22 } }, ["cacheMode.port"]);
    expect((await api.json("/api/config")).config.tls.minVersion).toBe("1.2");
  });

  test("a body that is not JSON gets 400 saying so, and nothing changes", async () => {
    const before = await api.configText();
    const res = await api.patch('{"tls": {"minVersion": "1.3"');
    expect(res.status).toBe(400);
    expect((await jsonOf(res)).error).toStartWith("the body is not valid JSON");
    expect(await api.configText()).toBe(before);
  });

  test("a body sent as text/plain gets 415 naming the Content-Type to use", async () => {
    const res = await api.patch({ tls: { minVersion: "1.3" } }, { "content-type": "text/plain" });
    expect(res.status).toBe(415);
    const { error } = await jsonOf(res);
    expect(error).toContain("Content-Type: application/json");
    expect(error).toContain("text/plain");
    expect((await api.json("/api/config")).config.tls.minVersion).toBe("1.2");
  });

  test("a body without a Content-Type gets 415", async () => {
    const res = await api.send("PATCH", "/api/config", { body: JSON.stringify({ tls: { minVersion: "1.3" } }) });
    // fetch labels a string body text/plain, so send bytes to have no Content-Type at all.
    const bare = await api.send("PATCH", "/api/config", {
      body: new TextEncoder().encode('{"tls":{"minVersion":"1.3"}}'),
    });
    expect(res.status).toBe(415);
    expect(bare.status).toBe(415);
    expect((await jsonOf(bare)).error).toContain("no Content-Type");
  });

  test("a JSON list as the body is refused with an example of a patch", async () => {
    const res = await api.patch([{ cacheMode: { port: 8081 } }]);
    expect(res.status).toBe(400);
    expect((await jsonOf(res)).error).toContain('{"cacheMode":{"port":8081}}');
  });

  test("a body over 64 KiB gets 413", async () => {
    const res = await api.patch({
      allowedDomains: { domains: Array.from({ length: 7000 }, (_, i) => `host${i}.example`) },
    });
    expect(res.status).toBe(413);
  });

  test.each(["PUT", "POST"])("%s /api/config gets 405 pointing at PATCH", async (method) => {
    const res = await api.send(method, "/api/config", { body: "{}", headers: { "content-type": "application/json" } });
    expect(res.status).toBe(405);
    expect((await jsonOf(res)).error).toContain("use PATCH /api/config");
  });

  test("an unknown admin route gets a JSON 404", async () => {
    const res = await api.get("/api/nope");
    expect(res.status).toBe(404);
    expect((await jsonOf(res)).error).toContain("no route GET /api/nope");
  });
});

describe("PATCH /api/config applies, reports and persists", () => {
  const defer = cleanupAfterEach();
  async function gateway(opts: Parameters<typeof startTestGateway>[0] = {}) {
    const gw = await startTestGateway(opts);
    let current = gw;
    defer(() => closeWhenIdle(current));
    return {
      gw,
      async restart() {
        current = await current.restart();
        return current;
      },
    };
  }

  test("GET /api/config says where each value came from: env for what the environment set, default for the rest", async () => {
    const { gw } = await gateway();
    const { config, sources } = await admin(gw).json("/api/config");
    expect(config.platformDomains).toEqual(["localhost"]);
    expect(sources).toMatchObject({
      platformDomains: "env",
      "cacheMode.enabled": "env",
      "cacheMode.port": "default",
      "tls.minVersion": "default",
      "allowedDomains.enabled": "default",
      "allowedDomains.domains": "default",
      "patchMode.enabled": "default",
    });
  });

  test("an accepted patch answers 200 with the new document, its sources and the changes", async () => {
    const { gw } = await gateway();
    const res = await admin(gw).patch({ tls: { minVersion: "1.3" } });
    expect(res.status).toBe(200);
    const body = await jsonOf(res);
    expect(body.config.tls.minVersion).toBe("1.3");
    expect(body.sources["tls.minVersion"]).toBe("api");
    expect(body.changes).toEqual([{ path: "tls.minVersion", old: "1.2", new: "1.3" }]);
  });

  test("a patch sent as application/merge-patch+json is accepted", async () => {
    const { gw } = await gateway();
    const res = await admin(gw).patch(
      { allowedDomains: { enabled: true } },
      { "content-type": "application/merge-patch+json" },
    );
    expect(res.status).toBe(200);
    expect((await jsonOf(res)).config.allowedDomains.enabled).toBe(true);
  });

  test("allowed domains are stored lower-case, in punycode and without duplicates", async () => {
    const { gw } = await gateway();
    const res = await admin(gw).patch({
      allowedDomains: {
        domains: ["Microsoft.COM", "microsoft.com.", "bücher.de", "xn--bcher-kva.de", "windowsupdate.com"],
      },
    });
    expect(res.status).toBe(200);
    expect((await jsonOf(res)).config.allowedDomains.domains).toEqual([
      "microsoft.com",
      "xn--bcher-kva.de",
      "windowsupdate.com",
    ]);
  });

  test("each of the four TLS versions is accepted", async () => {
    const { gw } = await gateway();
    for (const minVersion of ["1.0", "1.1", "1.3", "1.2"]) {
      const res = await admin(gw).patch({ tls: { minVersion } });
      expect(res.status).toBe(200);
      expect((await jsonOf(res)).config.tls.minVersion).toBe(minVersion);
    }
  });

  test("patchMode.enabled false is accepted", async () => {
    const { gw } = await gateway();
    expect((await admin(gw).patch({ patchMode: { enabled: false } })).status).toBe(200);
  });

  test("null resets a field set through the API to its default", async () => {
    const { gw } = await gateway();
    const api = admin(gw);
    await api.patch({ tls: { minVersion: "1.3" } });
    const body = await jsonOf(await api.patch({ tls: { minVersion: null } }));
    expect(body.config.tls.minVersion).toBe("1.2");
    expect(body.sources["tls.minVersion"]).toBe("default");
    expect(body.changes).toEqual([{ path: "tls.minVersion", old: "1.3", new: "1.2" }]);
  });

  test("null resets a field set through the API to the environment's value", async () => {
    const { gw } = await gateway({ config: { platformDomains: ["localhost", "qualys.com"] } });
    const api = admin(gw);
    await api.patch({ platformDomains: ["localhost"] });
    const body = await jsonOf(await api.patch({ platformDomains: null }));
    expect(body.config.platformDomains).toEqual(["localhost", "qualys.com"]);
    expect(body.sources.platformDomains).toBe("env");
  });

  test("null on a field only the environment sets keeps the environment's value", async () => {
    const { gw } = await gateway();
    const body = await jsonOf(await admin(gw).patch({ cacheMode: { enabled: null } }));
    expect(body.config.cacheMode.enabled).toBe(true);
    expect(body.sources["cacheMode.enabled"]).toBe("env");
    expect(body.changes).toEqual([]);
  });

  test("settings changed through the API survive a restart and say api", async () => {
    const { gw, restart } = await gateway();
    const res = await admin(gw).patch({
      allowedDomains: { enabled: true, domains: ["microsoft.com"] },
      tls: { minVersion: "1.3" },
    });
    expect(res.status).toBe(200);
    const before = await admin(gw).configText();

    const again = await restart();
    expect(await admin(again).configText()).toBe(before);
    const { config, sources } = await admin(again).json("/api/config");
    expect(config.allowedDomains).toEqual({ enabled: true, domains: ["microsoft.com"] });
    expect(config.tls.minVersion).toBe("1.3");
    expect(sources).toMatchObject({
      "allowedDomains.enabled": "api",
      "allowedDomains.domains": "api",
      "tls.minVersion": "api",
      "cacheMode.enabled": "env",
    });
  });

  test("a field reset with null stays reset after a restart", async () => {
    const { gw, restart } = await gateway();
    await admin(gw).patch({ tls: { minVersion: "1.3" } });
    await admin(gw).patch({ tls: null });
    const again = await restart();
    const { config, sources } = await admin(again).json("/api/config");
    expect(config.tls.minVersion).toBe("1.2");
    expect(sources["tls.minVersion"]).toBe("default");
  });

  test("a refused patch is not persisted: after a restart the old value is still there", async () => {
    const { gw, restart } = await gateway();
    await admin(gw).patch({ tls: { minVersion: "1.1" } });
    expect((await admin(gw).patch({ tls: { minVersion: "1.3" }, cacheMode: { port: 0 } })).status).toBe(400);
    const again = await restart();
    expect((await admin(again).json("/api/config")).config.tls.minVersion).toBe("1.1");
  });

  test("cacheMode.port moves to a free port and GET shows it", async () => {
    const { gw } = await gateway();
    const port = await freePort();
    const res = await admin(gw).patch({ cacheMode: { port } });
    expect(res.status).toBe(200);
    expect((await jsonOf(res)).changes).toEqual([{ path: "cacheMode.port", old: 8080, new: port }]);
    expect(gw.proxyPort).toBe(port);
    expect((await admin(gw).json("/api/config")).sources["cacheMode.port"]).toBe("api");
  });

  test("a port already in use gets 409 and nothing changes", async () => {
    const { gw } = await gateway();
    const blocker = await occupyPort();
    defer(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const taken = (blocker.address() as { port: number }).port;
    const before = await admin(gw).configText();
    const oldPort = gw.proxyPort;

    const res = await admin(gw).patch({ cacheMode: { port: taken }, tls: { minVersion: "1.3" } });
    expect(res.status).toBe(409);
    const { error } = await jsonOf(res);
    expect(error).toContain(`port ${taken}`);
    expect(error).toContain("nothing was changed");
    expect(await admin(gw).configText()).toBe(before);
    expect(gw.proxyPort).toBe(oldPort);
    // The old port still proxies.
    const probe = await fetch(`http://127.0.0.1:${oldPort}/`);
    expect(probe.status).toBe(400);
  });

  test("an accepted change is logged as one structured line with each changed field, old and new", async () => {
    const lines: string[] = [];
    const { gw } = await gateway({ log: createLogger((l) => lines.push(l)) });
    await admin(gw).patch({
      tls: { minVersion: "1.3" },
      allowedDomains: { enabled: true, domains: ["Microsoft.com"] },
    });
    const audit = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "config changed");
    expect(audit).toHaveLength(1);
    expect(audit[0].level).toBe("info");
    expect(audit[0].changes).toEqual(
      expect.arrayContaining([
        { path: "tls.minVersion", old: "1.2", new: "1.3" },
        { path: "allowedDomains.enabled", old: false, new: true },
        { path: "allowedDomains.domains", old: [], new: ["microsoft.com"] },
      ]),
    );
    expect(audit[0].changes).toHaveLength(3);
  });

  test("refused and no-op patches log no config change", async () => {
    const lines: string[] = [];
    const { gw } = await gateway({ log: createLogger((l) => lines.push(l)) });
    await admin(gw).patch({ tls: { minVersion: "1.4" } });
    await admin(gw).patch({ tls: { minVersion: "1.2" } });
    expect(lines.filter((l) => JSON.parse(l).msg === "config changed")).toEqual([]);
  });
});
