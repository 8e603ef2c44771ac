import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { configFromEnv, configInputFromEnv } from "../../src/config/env.ts";
import { toFieldErrors } from "../../src/config/issues.ts";
import { maskProxyUrl, parseProxyUrl } from "../../src/config/proxy-url.ts";
import { ConfigSchema } from "../../src/config/schema.ts";
import { GatewayError } from "../../src/errors.ts";

const errors = (doc: unknown) => {
  const result = v.safeParse(ConfigSchema, doc);
  if (result.success) throw new Error(`expected ${JSON.stringify(doc)} to be refused`);
  return toFieldErrors(result.issues);
};

describe("upstreamProxy in the configuration document", () => {
  test("is off by default: no URL, nothing bypassed, no CA file", () => {
    expect(v.parse(ConfigSchema, {}).upstreamProxy).toEqual({ bypass: [] });
  });

  test.each([
    ["http://proxy.example.com:3128", { host: "proxy.example.com", port: 3128 }],
    ["http://10.0.0.1:8080/", { host: "10.0.0.1", port: 8080 }],
    ["http://[fd00::1]:3128", { host: "fd00::1", port: 3128 }],
    [
      "http://user:pa%40ss@Proxy.Example.com:80",
      { host: "proxy.example.com", port: 80, username: "user", password: "pa@ss" },
    ],
    ["http://user:@proxy:3128", { host: "proxy", port: 3128, username: "user", password: "" }],
  ])("%p is accepted and read as host, port and credentials", (url, expected) => {
    expect(v.parse(ConfigSchema, { upstreamProxy: { url } }).upstreamProxy.url).toBe(url.replace(/\/$/, ""));
    expect(parseProxyUrl(url)).toEqual({ ok: true, value: expected });
  });

  test.each([
    ["proxy.example.com:3128", "must start with http://"],
    ["https://proxy.example.com:3128", "only http:// proxies are supported"],
    ["socks5://proxy.example.com:1080", "only http:// proxies are supported"],
    ["http://proxy.example.com", "needs a port, e.g. http://proxy.example.com:3128"],
    ["http://proxy.example.com:", "needs a port"],
    ["http://proxy.example.com:99999", "outside 1-65535"],
    ["http://proxy.example.com:0", "outside 1-65535"],
    ["http://proxy.example.com:3128/path", "must not have a path, query or fragment"],
    ["http://proxy.example.com:3128?x=1", "must not have a path, query or fragment"],
    ["http://bad_host!:3128", "invalid host"],
    ["http://user:p%zz@proxy:3128", "broken %-escape"],
  ])("%p is refused, saying what to write instead", (url, message) => {
    const [e] = errors({ upstreamProxy: { url } });
    expect(e!.path).toBe("upstreamProxy.url");
    expect(e!.message).toContain(message);
  });

  test("bypass takes bare domain names like allowedDomains, and refuses URLs with a suggestion", () => {
    expect(
      v.parse(ConfigSchema, { upstreamProxy: { bypass: ["Intranet.Example.com."] } }).upstreamProxy.bypass,
    ).toEqual(["intranet.example.com"]);
    const [e] = errors({ upstreamProxy: { bypass: ["https://intranet.example.com/"] } });
    expect(e).toMatchObject({ path: "upstreamProxy.bypass.0" });
    expect(e!.message).toContain("enter only the domain, e.g. intranet.example.com");
  });

  test("caFile must be an absolute path", () => {
    const [e] = errors({ upstreamProxy: { caFile: "parent-ca.pem" } });
    expect(e!.path).toBe("upstreamProxy.caFile");
  });

  test("an unknown field of the section is named", () => {
    const [e] = errors({ upstreamProxy: { host: "proxy" } });
    expect(e!.message).toBe(
      "upstreamProxy.host is not a setting; remove it, or check its spelling against GET /api/config",
    );
  });

  test("the mask hides the password only", () => {
    expect(maskProxyUrl("http://user:secret@proxy:3128")).toBe("http://user:***@proxy:3128");
    expect(maskProxyUrl("http://proxy:3128")).toBe("http://proxy:3128");
  });
});

describe("CACHEGATE_UPSTREAM_PROXY", () => {
  test("seeds upstreamProxy.url", () => {
    const env = { CACHEGATE_UPSTREAM_PROXY: "http://u:p@proxy.corp:3128" };
    expect(configInputFromEnv(env)).toEqual({ upstreamProxy: { url: "http://u:p@proxy.corp:3128" } });
    expect(configFromEnv(env).upstreamProxy.url).toBe("http://u:p@proxy.corp:3128");
  });

  test("empty means no upstream proxy", () => {
    expect(configInputFromEnv({ CACHEGATE_UPSTREAM_PROXY: " " })).toEqual({});
  });

  test("a bad value is reported under the variable's name, without the password", () => {
    let err: unknown;
    try {
      configFromEnv({ CACHEGATE_UPSTREAM_PROXY: "http://u:hunter2@proxy.corp" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatewayError);
    const e = err as GatewayError;
    expect(e.details?.[0]).toMatchObject({ path: "CACHEGATE_UPSTREAM_PROXY", value: "http://u:***@proxy.corp" });
    expect(e.details?.[0]?.message).toStartWith("CACHEGATE_UPSTREAM_PROXY needs a port");
    expect(e.message).not.toContain("hunter2");
  });
});
