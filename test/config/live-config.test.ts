import { describe, expect, test } from "bun:test";
import { LiveConfig } from "../../src/config/live-config.ts";
import type { JsonObject } from "../../src/config/merge-patch.ts";
import { GatewayError } from "../../src/errors.ts";
import { refusal } from "../support/refusal.ts";
import { gate, within } from "../support/wait.ts";

function live(env: JsonObject = {}, overrides: JsonObject = {}) {
  const saved: JsonObject[] = [];
  const config = new LiveConfig({ env, overrides, save: (o) => saved.push(structuredClone(o)) });
  return { config, saved };
}

describe("layers and sources", () => {
  test("with nothing set every value is the default and says so", () => {
    const { config } = live();
    expect(config.current.cacheMode.port).toBe(8080);
    expect(config.sources()["cacheMode.port"]).toBe("default");
    expect(config.sources()["allowedDomains.domains"]).toBe("default");
  });

  test("a value the environment sets wins over the default and says env", () => {
    const { config } = live({ cacheMode: { port: 3128 } });
    expect(config.current.cacheMode.port).toBe(3128);
    expect(config.sources()["cacheMode.port"]).toBe("env");
    expect(config.sources()["cacheMode.enabled"]).toBe("default");
  });

  test("a persisted admin value wins over the environment and says api", () => {
    const { config } = live({ cacheMode: { port: 3128 } }, { cacheMode: { port: 8081 } });
    expect(config.current.cacheMode.port).toBe(8081);
    expect(config.sources()["cacheMode.port"]).toBe("api");
  });

  test("sources name every leaf of the document", () => {
    const { config } = live();
    expect(Object.keys(config.sources())).toEqual(
      expect.arrayContaining([
        "cacheMode.enabled",
        "cacheMode.port",
        "platformDomains",
        "allowedDomains.enabled",
        "allowedDomains.domains",
        "tls.minVersion",
        "patchMode.enabled",
      ]),
    );
  });

  test("persisted settings that no longer validate are ignored at start and reported, and the environment is used", () => {
    const { config } = live({ cacheMode: { port: 3128 } }, { cacheMode: { port: 22 }, tls: { minVersion: "1.3" } });
    expect(config.current.cacheMode.port).toBe(3128);
    expect(config.current.tls.minVersion).toBe("1.2");
    expect(config.ignored.map((e) => e.path)).toEqual(["cacheMode.port"]);
    expect(config.sources()["tls.minVersion"]).toBe("default");
  });
});

describe("patch", () => {
  test("an accepted patch changes the value, persists the overrides and lists the change with old and new", async () => {
    const { config, saved } = live({ cacheMode: { enabled: true } });
    const changes = await config.patch({ cacheMode: { port: 8081 } });
    expect(changes).toEqual([{ path: "cacheMode.port", old: 8080, new: 8081 }]);
    expect(config.current.cacheMode).toEqual({ enabled: true, port: 8081 });
    expect(saved).toEqual([{ cacheMode: { port: 8081 } }]);
  });

  test("fields a patch does not name keep their values (merge, not replace)", async () => {
    const { config } = live({}, { tls: { minVersion: "1.3" } });
    await config.patch({ allowedDomains: { enabled: true } });
    expect(config.current.tls.minVersion).toBe("1.3");
    expect(config.current.allowedDomains.enabled).toBe(true);
  });

  test("a list in a patch replaces the list, it is not appended to", async () => {
    const { config } = live({}, { allowedDomains: { domains: ["a.com", "b.com"] } });
    await config.patch({ allowedDomains: { domains: ["c.com"] } });
    expect(config.current.allowedDomains.domains).toEqual(["c.com"]);
  });

  test("null resets a field to the environment's value", async () => {
    const { config, saved } = live({ cacheMode: { port: 3128 } }, { cacheMode: { port: 8081 } });
    const changes = await config.patch({ cacheMode: { port: null } });
    expect(changes).toEqual([{ path: "cacheMode.port", old: 8081, new: 3128 }]);
    expect(config.sources()["cacheMode.port"]).toBe("env");
    expect(saved.at(-1)).toEqual({});
  });

  test("null resets a field the environment does not set to its default", async () => {
    const { config } = live({}, { tls: { minVersion: "1.3" } });
    await config.patch({ tls: { minVersion: null } });
    expect(config.current.tls.minVersion).toBe("1.2");
    expect(config.sources()["tls.minVersion"]).toBe("default");
  });

  test("null on a field only the environment sets leaves the environment's value", async () => {
    const { config } = live({ cacheMode: { enabled: true } });
    const changes = await config.patch({ cacheMode: { enabled: null } });
    expect(changes).toEqual([]);
    expect(config.current.cacheMode.enabled).toBe(true);
  });

  test("null on a whole section drops every override in it", async () => {
    const { config } = live(
      { cacheMode: { port: 3128 } },
      { cacheMode: { port: 8081, enabled: true }, tls: { minVersion: "1.3" } },
    );
    await config.patch({ cacheMode: null });
    expect(config.current.cacheMode).toEqual({ enabled: false, port: 3128 });
    expect(config.current.tls.minVersion).toBe("1.3");
  });

  test("a patch that changes nothing reports no changes", async () => {
    const { config } = live();
    expect(await config.patch({ tls: { minVersion: "1.2" } })).toEqual([]);
    expect(config.current.tls.minVersion).toBe("1.2");
  });

  test("a refused patch changes nothing, persists nothing and names every bad field", async () => {
    const { config, saved } = live({}, { tls: { minVersion: "1.3" } });
    const before = JSON.stringify(config.current);
    const err = await refusal(config.patch({ cacheMode: { port: 22, enabled: "yes" }, tls: { minVersion: "1.1" } }));
    expect(err.status).toBe(400);
    expect(err.details!.map((e) => e.path).sort()).toEqual(["cacheMode.enabled", "cacheMode.port"]);
    expect(JSON.stringify(config.current)).toBe(before);
    expect(saved).toEqual([]);
    expect(config.sources()["cacheMode.port"]).toBe("default");
  });

  test("a refused patch does not run the appliers", async () => {
    const { config } = live();
    let applied = 0;
    config.onApply(async () => void applied++);
    await refusal(config.patch({ cacheMode: { port: 0 } }));
    expect(applied).toBe(0);
  });

  test("an applier that throws refuses the change: nothing is committed or persisted", async () => {
    const { config, saved } = live();
    config.onApply(async () => {
      throw new GatewayError(409, "port_unavailable", "port busy");
    });
    const err = await refusal(config.patch({ cacheMode: { port: 8081 } }));
    expect(err.status).toBe(409);
    expect(config.current.cacheMode.port).toBe(8080);
    expect(config.sources()["cacheMode.port"]).toBe("default");
    expect(saved).toEqual([]);
  });

  test("appliers see the next and previous documents and the changes", async () => {
    const { config } = live();
    const seen: unknown[] = [];
    config.onApply(async (next, prev, changes) => void seen.push([next.cacheMode.port, prev.cacheMode.port, changes]));
    await config.patch({ cacheMode: { port: 8081 } });
    expect(seen).toEqual([[8081, 8080, [{ path: "cacheMode.port", old: 8080, new: 8081 }]]]);
  });

  test.each<[string, unknown]>([
    ["a list", [{ cacheMode: { port: 8081 } }]],
    ["a string", "cacheMode.port=8081"],
    ["a number", 8081],
    ["null", null],
  ])("a body that is %s is refused with an example of a patch", async (_, body) => {
    const { config } = live();
    const err = await refusal(config.patch(body as never));
    expect(err.status).toBe(400);
    expect(err.message).toContain('{"cacheMode":{"port":8081}}');
  });

  test("a section replaced by a list is refused, not reset to defaults", async () => {
    const { config } = live({ cacheMode: { enabled: true } });
    const err = await refusal(config.patch({ cacheMode: [] }));
    expect(err.status).toBe(400);
    expect(config.current.cacheMode.enabled).toBe(true);
  });

  test("two patches at once both take effect: the second waits for the first instead of overwriting it", async () => {
    const { config, saved } = live();
    const rebinding = gate();
    const portBound = gate();
    config.onApply(async (next, prev) => {
      if (next.cacheMode.port !== prev.cacheMode.port) {
        rebinding.open();
        await portBound.opened; // a slow rebind
      }
    });
    const first = config.patch({ cacheMode: { port: 8081 } });
    const second = config.patch({ tls: { minVersion: "1.3" } });
    await within(1000, "the first patch to start its rebind", rebinding.opened);
    expect(config.current.tls.minVersion).not.toBe("1.3"); // the second waits for the first
    portBound.open();
    await Promise.all([first, second]);
    expect(config.current.cacheMode.port).toBe(8081);
    expect(config.current.tls.minVersion).toBe("1.3");
    expect(saved.at(-1)).toEqual({ cacheMode: { port: 8081 }, tls: { minVersion: "1.3" } });
  });

  test("a patch refused while another is being applied does not block the next one", async () => {
    const { config } = live();
    const results = await Promise.allSettled([
      config.patch({ cacheMode: { port: 0 } }),
      config.patch({ tls: { minVersion: "1.1" } }),
    ]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "fulfilled"]);
    expect(config.current.tls.minVersion).toBe("1.1");
  });

  test("domains in a patch are stored normalised", async () => {
    const { config } = live();
    const changes = await config.patch({
      allowedDomains: { domains: ["Microsoft.COM", "microsoft.com", "bücher.de"] },
    });
    expect(config.current.allowedDomains.domains).toEqual(["microsoft.com", "xn--bcher-kva.de"]);
    expect(changes).toEqual([{ path: "allowedDomains.domains", old: [], new: ["microsoft.com", "xn--bcher-kva.de"] }]);
  });
});
