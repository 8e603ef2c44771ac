import { describe, expect, test } from "bun:test";
import { cacheKey, renormalise, variantOf } from "../../src/cache/key.ts";

describe("the cache key (RFC 9110 §4.2.3)", () => {
  test.each([
    ["HTTP://Host:80/a", "http://host/a"],
    ["https://host:443/a?b=1#frag", "https://host/a?b=1"],
    ["http://host:8080/A", "http://host:8080/A"],
  ])("%p is keyed as %p", (url, key) => expect(cacheKey(url)).toBe(key));
});

describe("variants (RFC 9111 §4.1)", () => {
  test("Accept-Encoding values that differ only in order, case or spaces are one variant", () => {
    const of = (value: string) => variantOf(["accept-encoding"], new Headers({ "accept-encoding": value }));
    expect(of("gzip, deflate")).toBe(of("Deflate,GZIP"));
    expect(of("gzip;q=1.0, br;q=0.5")).toBe(of("br;q=0.5,gzip;q=1.0"));
    expect(of("gzip")).not.toBe(of("br"));
  });

  test("a variant stored before the normalisation matches what variantOf writes now", () => {
    const now = variantOf(
      ["accept-encoding", "x-agent"],
      new Headers({ "accept-encoding": "deflate, gzip", "x-agent": "a  b" }),
    );
    expect(renormalise("accept-encoding:gzip, deflate\nx-agent:a b")).toBe(now);
    expect(renormalise("")).toBe("");
  });
});
