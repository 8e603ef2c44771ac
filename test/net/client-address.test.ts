import { describe, expect, test } from "bun:test";
import { createClientAddress } from "../../src/net/client-address.ts";

describe("the agent's address behind a trusted front end (X-Forwarded-For)", () => {
  const clientOf = createClientAddress(() => ["10.0.0.5/32", "10.1.0.0/16"]);
  const header = (value: string | undefined) => () => value;

  test.each([
    ["a trusted front end names the agent", "10.0.0.5", "192.0.2.7", "192.0.2.7"],
    ["IPv4-mapped socket address of a trusted front end", "::ffff:10.0.0.5", "192.0.2.7", "192.0.2.7"],
    [
      "the rightmost untrusted entry: entries further left prove nothing",
      "10.0.0.5",
      "6.6.6.6, 192.0.2.7",
      "192.0.2.7",
    ],
    ["trusted hops are walked past (two front ends)", "10.0.0.5", "192.0.2.7, 10.1.2.3", "192.0.2.7"],
    ["only trusted hops: the front end itself", "10.0.0.5", "10.1.2.3", "10.0.0.5"],
    ["no header", "10.0.0.5", undefined, "10.0.0.5"],
    [
      "garbage where an address belongs: nothing further left is believed",
      "10.0.0.5",
      "192.0.2.7, unknown",
      "10.0.0.5",
    ],
    ["IPv6 agents", "10.0.0.5", "2001:db8::7", "2001:db8::7"],
  ])("%s", (_, socket, forwarded, expected) => {
    expect(clientOf(socket, header(forwarded))).toBe(expected);
  });

  test("from any other connection the header is ignored, and not even read", () => {
    let read = false;
    const spoofed = () => {
      read = true;
      return "10.9.9.9";
    };
    expect(clientOf("192.0.2.50", spoofed)).toBe("192.0.2.50");
    expect(read).toBe(false);
  });

  test("with no trusted proxies (the default) nobody's header counts", () => {
    expect(createClientAddress(() => [])("10.0.0.5", header("192.0.2.7"))).toBe("10.0.0.5");
  });

  test("repeated header lines are read as one list", () => {
    expect(clientOf("10.0.0.5", () => ["6.6.6.6", "192.0.2.7"])).toBe("192.0.2.7");
  });
});
