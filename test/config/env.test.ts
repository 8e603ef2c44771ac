import { describe, expect, test } from "bun:test";
import { availableParallelism } from "node:os";
import { configFromEnv, configInputFromEnv, runtimeFromEnv } from "../../src/config/env.ts";
import { GatewayError } from "../../src/errors.ts";

function envError(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe("invalid_environment");
    return err as GatewayError;
  }
  throw new Error("expected a GatewayError");
}

describe("configuration from CACHEGATE_* variables", () => {
  test("no variables give the defaults", () => {
    const c = configFromEnv({});
    expect(c.cacheMode).toEqual({ enabled: false, port: 8080 });
    expect(c.platformDomains).toEqual(["qualys.com", "qualys.eu", "qualys.ca", "qualys.in"]);
  });

  test("no variables set no field of the environment layer", () => {
    expect(configInputFromEnv({})).toEqual({});
  });

  test.each(["1", "true", "YES", "on", " 1 "])("CACHEGATE_CACHE_MODE=%p turns Cache Mode on", (value) => {
    expect(configFromEnv({ CACHEGATE_CACHE_MODE: value }).cacheMode.enabled).toBe(true);
  });

  test.each(["0", "false", "off", ""])("CACHEGATE_CACHE_MODE=%p leaves Cache Mode off", (value) => {
    expect(configFromEnv({ CACHEGATE_CACHE_MODE: value }).cacheMode.enabled).toBe(false);
  });

  test("CACHEGATE_PORT with surrounding spaces is read as the number", () => {
    expect(configFromEnv({ CACHEGATE_PORT: " 3128 " }).cacheMode.port).toBe(3128);
  });

  test.each(["22", "0", "65536", "80.5", "http", ""])(
    "CACHEGATE_PORT=%p is refused under the variable's name",
    (value) => {
      const err = envError(() => configFromEnv({ CACHEGATE_PORT: value }));
      expect(err.details!).toHaveLength(1);
      expect(err.details![0]!.path).toBe("CACHEGATE_PORT");
      expect(err.details![0]!.message).toStartWith("CACHEGATE_PORT ");
      expect(err.message).toContain("CACHEGATE_PORT");
    },
  );

  test("CACHEGATE_PLATFORM_DOMAINS is a comma list, trimmed, normalised, empty items dropped", () => {
    expect(
      configFromEnv({ CACHEGATE_PLATFORM_DOMAINS: " example.com, Example.ORG ,,example.com" }).platformDomains,
    ).toEqual(["example.com", "example.org"]);
  });

  test("a URL in CACHEGATE_PLATFORM_DOMAINS is refused under the variable's name with the bare domain to use", () => {
    const err = envError(() => configFromEnv({ CACHEGATE_PLATFORM_DOMAINS: "qualys.com,https://qualys.eu" }));
    expect(err.details![0]!.path).toBe("CACHEGATE_PLATFORM_DOMAINS");
    expect(err.details![0]!.message).toContain("qualys.eu");
  });

  test("CACHEGATE_CACHE_MAX_SIZE under 1 MiB is refused under the variable's name", () => {
    expect(envError(() => configFromEnv({ CACHEGATE_CACHE_MAX_SIZE: "1000" })).details![0]!.path).toBe(
      "CACHEGATE_CACHE_MAX_SIZE",
    );
  });
});

describe("runtime settings", () => {
  test("defaults match the interface contract", () => {
    expect(runtimeFromEnv({})).toEqual({
      dataDir: "./data",
      host: "0.0.0.0",
      adminHost: "127.0.0.1",
      adminPort: 9090,
      adminToken: undefined,
      allowPrivateUpstreams: false,
      workers: availableParallelism(),
      accessLog: undefined,
      logLevel: "info",
    });
  });

  test("CACHEGATE_ACCESS_LOG turns the access log on, in squid format unless CACHEGATE_ACCESS_LOG_FORMAT says otherwise", () => {
    expect(runtimeFromEnv({ CACHEGATE_ACCESS_LOG: "/var/log/cachegate/access.log" }).accessLog).toEqual({
      path: "/var/log/cachegate/access.log",
      format: "squid",
    });
    const env = { CACHEGATE_ACCESS_LOG: "-", CACHEGATE_ACCESS_LOG_FORMAT: " JSON " };
    expect(runtimeFromEnv(env).accessLog).toEqual({ path: "-", format: "json" });
    expect(runtimeFromEnv({ CACHEGATE_ACCESS_LOG: "" }).accessLog).toBeUndefined();
  });

  test.each(["debug", "info", "warn", "error", "WARN"])("CACHEGATE_LOG_LEVEL=%p is read", (value) => {
    expect(runtimeFromEnv({ CACHEGATE_LOG_LEVEL: value }).logLevel).toBe(value.toLowerCase() as never);
  });

  test.each([
    ["CACHEGATE_LOG_LEVEL", "verbose", "debug, info, warn, error"],
    ["CACHEGATE_LOG_LEVEL", "warning", "debug, info, warn, error"],
    ["CACHEGATE_ACCESS_LOG_FORMAT", "apache", "squid, combined, json"],
    ["CACHEGATE_ACCESS_LOG_FORMAT", "common", "squid, combined, json"],
  ])("%s=%p is refused, naming the variable and the allowed values", (name, value, allowed) => {
    const err = envError(() => runtimeFromEnv({ CACHEGATE_ACCESS_LOG: "access.log", [name]: value }));
    expect(err.details![0]!.path).toBe(name);
    expect(err.message).toContain(`${name} must be one of ${allowed}`);
    expect(err.message).toContain(JSON.stringify(value));
  });

  test("CACHEGATE_WORKERS sets the worker processes; 1 keeps one process", () => {
    expect(runtimeFromEnv({ CACHEGATE_WORKERS: "3" }).workers).toBe(3);
    expect(runtimeFromEnv({ CACHEGATE_WORKERS: "1" }).workers).toBe(1);
  });

  test.each(["0", "-1", "1.5", "two", "65"])("CACHEGATE_WORKERS=%p is refused under its name", (value) => {
    const err = envError(() => runtimeFromEnv({ CACHEGATE_WORKERS: value }));
    expect(err.details![0]!.path).toBe("CACHEGATE_WORKERS");
    expect(err.message).toContain("CACHEGATE_WORKERS");
  });

  test("an empty CACHEGATE_ADMIN_TOKEN means none, so one is generated", () => {
    expect(runtimeFromEnv({ CACHEGATE_ADMIN_TOKEN: "" }).adminToken).toBeUndefined();
  });

  test.each(["0", "65536", "22", "abc"])("CACHEGATE_ADMIN_PORT=%p is refused under its name", (value) => {
    const err = envError(() => runtimeFromEnv({ CACHEGATE_ADMIN_PORT: value }));
    expect(err.details![0]!.path).toBe("CACHEGATE_ADMIN_PORT");
  });

  test("CACHEGATE_ADMIN_PORT is read as a number", () => {
    expect(runtimeFromEnv({ CACHEGATE_ADMIN_PORT: "9191" }).adminPort).toBe(9191);
  });

  test("CACHEGATE_ALLOW_PRIVATE_UPSTREAMS=1 turns the lab switch on", () => {
    expect(runtimeFromEnv({ CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1" }).allowPrivateUpstreams).toBe(true);
  });
});

describe("CACHEGATE_METRICS_TOKEN", () => {
  const good = "0123456789abcdef-prometheus";

  test("unset or empty means no metrics token", () => {
    expect(runtimeFromEnv({}).metricsToken).toBeUndefined();
    expect(runtimeFromEnv({ CACHEGATE_METRICS_TOKEN: "" }).metricsToken).toBeUndefined();
  });

  test("a long enough token is taken as it is", () => {
    expect(runtimeFromEnv({ CACHEGATE_METRICS_TOKEN: good }).metricsToken).toBe(good);
  });

  test.each([
    ["too short", "short-token", "at least 16 characters"],
    ["with a space", "0123456789 abcdef", "no spaces"],
    ["with a quote", '0123456789abcdef"', "only letters, digits"],
  ])("a token %s is refused under the variable's name, without echoing the secret", (_what, value, says) => {
    const err = envError(() => runtimeFromEnv({ CACHEGATE_METRICS_TOKEN: value }));
    expect(err.details![0]!.path).toBe("CACHEGATE_METRICS_TOKEN");
    expect(err.message).toContain("CACHEGATE_METRICS_TOKEN");
    expect(err.message).toContain(says);
    expect(err.message).not.toContain(value);
  });

  test("the admin token is refused as the metrics token: Prometheus would hold the admin token", () => {
    const err = envError(() => runtimeFromEnv({ CACHEGATE_METRICS_TOKEN: good, CACHEGATE_ADMIN_TOKEN: good }));
    expect(err.message).toContain("must differ from CACHEGATE_ADMIN_TOKEN");
  });
});
