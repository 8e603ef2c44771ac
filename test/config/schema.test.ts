import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { toFieldErrors } from "../../src/config/issues.ts";
import {
  ConfigSchema,
  DEFAULT_KIND_RULES,
  DEFAULT_PLATFORM_DOMAINS,
  DEFAULT_TTL_RULES,
  RESERVED_PORTS,
} from "../../src/config/schema.ts";

const parse = (doc: unknown) => v.safeParse(ConfigSchema, doc);
const errors = (doc: unknown) => {
  const result = parse(doc);
  if (result.success) throw new Error(`expected ${JSON.stringify(doc)} to be refused`);
  return toFieldErrors(result.issues);
};
const EXCLUDED_PORTS = [22, 23, 2379, 2380, 4001, 5514, 7001, 48081, 48082, 48083, 48084, 48085, 48086];

describe("defaults", () => {
  test("an empty document gets every default of the seed", () => {
    expect(v.parse(ConfigSchema, {})).toMatchObject({
      cacheMode: { enabled: false, port: 8080 },
      platformDomains: DEFAULT_PLATFORM_DOMAINS,
      allowedDomains: { enabled: false, domains: [] },
      tls: { minVersion: "1.2" },
      patchMode: { enabled: false },
      cache: { maxSizeBytes: 10 * 1024 ** 3, ttlRules: DEFAULT_TTL_RULES },
      stats: { kinds: DEFAULT_KIND_RULES },
      connect: { ports: [443] },
    });
  });

  test("the platform domains default to the four Qualys domains", () => {
    expect(DEFAULT_PLATFORM_DOMAINS).toEqual(["qualys.com", "qualys.eu", "qualys.ca", "qualys.in"]);
  });

  test("the reserved port set is exactly the seed's list", () => {
    expect([...RESERVED_PORTS].sort((a, b) => a - b)).toEqual(EXCLUDED_PORTS);
  });

  test("a section given partly keeps the defaults of its other fields", () => {
    expect(v.parse(ConfigSchema, { cacheMode: { port: 3128 } }).cacheMode).toEqual({ enabled: false, port: 3128 });
  });
});

describe("cacheMode.port", () => {
  test.each([1, 65535, 8080, 21, 24, 2378, 2381, 4000, 4002, 5513, 5515, 7000, 7002, 48080, 48087])(
    "port %p is accepted",
    (port) => {
      expect(parse({ cacheMode: { port } }).success).toBe(true);
    },
  );

  test.each([0, -1, 65536, 100000])("port %p is refused as out of range with an example", (port) => {
    expect(errors({ cacheMode: { port } })).toEqual([
      {
        path: "cacheMode.port",
        value: port,
        rule: expect.any(String),
        message: "cacheMode.port must be between 1 and 65535, e.g. 8080",
      },
    ]);
  });

  test.each(EXCLUDED_PORTS)(
    "the reserved port %p is refused, naming the reserved ports and another to choose",
    (port) => {
      const [e, ...rest] = errors({ cacheMode: { port } });
      expect(rest).toEqual([]);
      expect(e).toEqual({
        path: "cacheMode.port",
        value: port,
        rule: "check",
        message: expect.stringContaining("is reserved"),
      });
      expect(e!.message).toContain("48081-48086");
      expect(e!.message).toContain("e.g. 8080");
    },
  );

  test.each([80.5, 1.0000001, 65534.9])("the fraction %p is refused as not a whole number", (port) => {
    expect(errors({ cacheMode: { port } })).toEqual([
      {
        path: "cacheMode.port",
        value: port,
        rule: "integer",
        message: "cacheMode.port must be a whole number between 1 and 65535, e.g. 8080",
      },
    ]);
  });

  test.each<[string, unknown]>([
    ['the string "8080"', "8080"],
    ["an empty string", ""],
    ["true", true],
    ["false", false],
    ["a list", [8080]],
    ["an object", { value: 8080 }],
  ])("%s is refused as not a number", (_, port) => {
    expect(errors({ cacheMode: { port } })).toEqual([
      {
        path: "cacheMode.port",
        value: port,
        rule: "number",
        message: "cacheMode.port must be a whole number between 1 and 65535, e.g. 8080",
      },
    ]);
  });

  test("NaN is refused", () => {
    expect(parse({ cacheMode: { port: Number.NaN } }).success).toBe(false);
  });

  test("Infinity is refused", () => {
    expect(parse({ cacheMode: { port: Number.POSITIVE_INFINITY } }).success).toBe(false);
  });
});

describe("cacheMode.enabled, allowedDomains.enabled", () => {
  test.each([
    ["cacheMode", "yes"],
    ["cacheMode", 1],
    ["allowedDomains", "true"],
    ["allowedDomains", 0],
  ])("%s.enabled %p is refused as not true or false", (section, enabled) => {
    expect(errors({ [section]: { enabled } })).toEqual([
      {
        path: `${section}.enabled`,
        value: enabled,
        rule: "boolean",
        message: `${section}.enabled must be true or false`,
      },
    ]);
  });
});

describe("allowedDomains.domains", () => {
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
  ])("%p is refused with a message naming %p as what to enter", (domain, suggestion) => {
    const [e, ...rest] = errors({ allowedDomains: { domains: [domain] } });
    expect(rest).toEqual([]);
    expect(e!.path).toBe("allowedDomains.domains.0");
    expect(e!.value).toBe(domain);
    expect(e!.message).toStartWith("allowedDomains.domains.0 ");
    expect(e!.message).toContain(suggestion);
  });

  test("names are stored lower-case", () => {
    expect(v.parse(ConfigSchema, { allowedDomains: { domains: ["Microsoft.COM"] } }).allowedDomains.domains).toEqual([
      "microsoft.com",
    ]);
  });

  test("internationalised names are stored in punycode", () => {
    expect(v.parse(ConfigSchema, { allowedDomains: { domains: ["bücher.de"] } }).allowedDomains.domains).toEqual([
      "xn--bcher-kva.de",
    ]);
  });

  test("duplicates are removed", () => {
    expect(
      v.parse(ConfigSchema, { allowedDomains: { domains: ["a.com", "A.COM", "a.com.", "b.com"] } }).allowedDomains
        .domains,
    ).toEqual(["a.com", "b.com"]);
  });

  test("an empty list is accepted", () => {
    expect(v.parse(ConfigSchema, { allowedDomains: { enabled: true, domains: [] } }).allowedDomains).toEqual({
      enabled: true,
      domains: [],
    });
  });

  test("platformDomains follow the same rules as allowedDomains", () => {
    expect(errors({ platformDomains: ["https://qualys.com"] })[0]).toMatchObject({
      path: "platformDomains.0",
      value: "https://qualys.com",
    });
  });
});

describe("tls.minVersion", () => {
  test.each(["1.0", "1.1", "1.2", "1.3"])("%p is accepted", (minVersion) => {
    expect(v.parse(ConfigSchema, { tls: { minVersion } }).tls.minVersion).toBe(minVersion);
  });

  test.each<unknown>(["1.4", "TLSv1.2", "1", "", 1.2, null])(
    "%p is refused, listing the allowed versions",
    (minVersion) => {
      expect(errors({ tls: { minVersion } })).toEqual([
        {
          path: "tls.minVersion",
          value: minVersion,
          rule: "picklist",
          message: 'tls.minVersion must be one of "1.0", "1.1", "1.2", "1.3"',
        },
      ]);
    },
  );
});

describe("patchMode.enabled", () => {
  test("false is accepted", () => {
    expect(v.parse(ConfigSchema, { patchMode: { enabled: false } }).patchMode.enabled).toBe(false);
  });

  test("true without a patch disk is refused, naming the patch disk", () => {
    const found = errors({ cacheMode: { enabled: true }, patchMode: { enabled: true } });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ path: "patchMode.enabled", value: true });
    expect(found[0]!.message).toContain("patch disk");
  });

  test("true is checked against the other fields even when another field is bad too", () => {
    const found = errors({ cacheMode: { enabled: true }, patchMode: { enabled: true }, tls: { minVersion: "9" } });
    expect(found.map((e) => e.path).sort()).toEqual(["patchMode.enabled", "tls.minVersion"]);
  });
});

describe("cache, stats and connect sections", () => {
  test("a cache size of exactly 1 MiB is accepted", () => {
    expect(parse({ cache: { maxSizeBytes: 1024 * 1024 } }).success).toBe(true);
  });

  test("a cache size one byte under 1 MiB is refused", () => {
    expect(errors({ cache: { maxSizeBytes: 1024 * 1024 - 1 } })[0]).toMatchObject({
      path: "cache.maxSizeBytes",
      message: "cache.maxSizeBytes must be at least 1 MiB (1048576)",
    });
  });

  test("a TTL rule with min greater than max is refused", () => {
    expect(errors({ cache: { ttlRules: [{ pattern: ".", min: 10, lmFactor: 0.1, max: 5 }] } })[0]!.message).toContain(
      "min must not be greater than max",
    );
  });

  test("a TTL rule with an invalid regular expression is refused", () => {
    expect(errors({ cache: { ttlRules: [{ pattern: "(", min: 0, lmFactor: 0.1, max: 5 }] } })[0]).toMatchObject({
      path: "cache.ttlRules.0.pattern",
      value: "(",
    });
  });

  test("a pattern with lookaround or backreferences is refused with what to use instead (RE2 syntax)", () => {
    const [error] = errors({ cache: { ttlRules: [{ pattern: "(?=manifest)", min: 0, lmFactor: 0.1, max: 5 }] } });
    expect(error).toMatchObject({ path: "cache.ttlRules.0.pattern" });
    expect(error!.message).toContain("RE2 syntax");
    expect(errors({ stats: { kinds: [{ kind: "x", pattern: "(a)\\1" }] } })[0]).toMatchObject({
      path: "stats.kinds.0.pattern",
    });
  });

  test("a kind rule with an upper-case name is refused", () => {
    expect(errors({ stats: { kinds: [{ kind: "Manifest", pattern: "x" }] } })[0]).toMatchObject({
      path: "stats.kinds.0.kind",
      value: "Manifest",
    });
  });

  test("a reserved port in connect.ports is refused", () => {
    expect(errors({ connect: { ports: [443, 22] } })[0]).toMatchObject({ path: "connect.ports.1", value: 22 });
  });
});

describe("unknown fields and whole-document reports", () => {
  test("an unknown top-level field is refused by its path", () => {
    expect(errors({ cachemode: { enabled: true } })).toEqual([
      {
        path: "cachemode",
        value: { enabled: true },
        rule: "unknown_field",
        message: expect.stringContaining("cachemode"),
      },
    ]);
  });

  test("an unknown field inside a section is refused by its path", () => {
    expect(errors({ cacheMode: { prot: 8081 } })).toEqual([
      {
        path: "cacheMode.prot",
        value: 8081,
        rule: "unknown_field",
        message: expect.stringContaining("cacheMode.prot"),
      },
    ]);
  });

  test("the message for an unknown field says it is not a setting, not valibot's internal wording", () => {
    const [e] = errors({ cacheMode: { prot: 8081 } });
    expect(e!.message).not.toContain("Expected never");
    expect(e!.message).toContain("not a setting");
  });

  test("every bad field of one document is reported, not only the first", () => {
    const paths = errors({
      cacheMode: { port: 0, enabled: "yes" },
      allowedDomains: { domains: ["https://www.microsoft.com", "ok.com", "*.x.com"] },
      tls: { minVersion: "1.4" },
      patchMode: { enabled: true },
      bogus: 1,
    }).map((e) => e.path);
    expect(paths.sort()).toEqual([
      "allowedDomains.domains.0",
      "allowedDomains.domains.2",
      "bogus",
      "cacheMode.enabled",
      "cacheMode.port",
      "patchMode.enabled",
      "tls.minVersion",
    ]);
  });

  test("a document that is not an object is refused at the document level", () => {
    expect(errors("cacheMode")[0]).toMatchObject({ path: "(document)", value: "cacheMode" });
  });

  test.each<[string, unknown]>([
    ["an empty list", []],
    ["a list", [true, 8081]],
    ["a number", 5],
    ["a string", "on"],
  ])("a section given as %s is refused, not reset to its defaults", (_, cacheMode) => {
    expect(errors({ cacheMode })).toEqual([
      {
        path: "cacheMode",
        value: cacheMode,
        rule: expect.any(String),
        message: expect.stringContaining("must be a JSON object"),
      },
    ]);
  });
});
