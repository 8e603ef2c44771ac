import { describe, expect, test } from "bun:test";
import { networkInterfaces } from "node:os";
import {
  type AddressClass,
  classifyAddress,
  createAddressGuard,
  type GuardOptions,
} from "../../src/net/address-guard.ts";
import { refusal } from "../support/refusal.ts";

type Answer = { address: string; family: number };

const answer = (...addresses: string[]): Answer[] =>
  addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));

/** A guard whose DNS is a fixed table; lookups of unknown names fail like getaddrinfo does. */
function guard(table: Record<string, Answer[]>, opts: Partial<GuardOptions> = {}) {
  const lookups: string[] = [];
  const check = createAddressGuard({
    allowPrivate: false,
    ownPorts: new Set([3128, 9090]),
    lookup: async (host) => {
      lookups.push(host);
      const found = table[host];
      if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
      return found;
    },
    ...opts,
  });
  return { check, lookups };
}

describe("classifyAddress", () => {
  test.each<[string, AddressClass | null]>([
    ["9.255.255.255", null],
    ["10.0.0.0", "private"],
    ["10.255.255.255", "private"],
    ["11.0.0.0", null],
    ["172.15.255.255", null],
    ["172.16.0.0", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.0", null],
    ["192.167.255.255", null],
    ["192.168.0.0", "private"],
    ["192.168.255.255", "private"],
    ["192.169.0.0", null],
    ["100.63.255.255", null],
    ["100.64.0.0", "cgnat"],
    ["100.127.255.255", "cgnat"],
    ["100.128.0.0", null],
    ["126.255.255.255", null],
    ["127.0.0.0", "loopback"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.255", "loopback"],
    ["128.0.0.0", null],
    ["169.253.255.255", null],
    ["169.254.0.0", "link-local"],
    ["169.254.169.254", "link-local"],
    ["169.254.255.255", "link-local"],
    ["169.255.0.0", null],
    ["0.0.0.0", "unspecified"],
    ["0.255.255.255", "unspecified"],
    ["1.0.0.0", null],
    ["223.255.255.255", null],
    ["224.0.0.0", "multicast"],
    ["239.255.255.255", "multicast"],
    ["240.0.0.0", "reserved"],
    ["255.255.255.254", "reserved"],
    ["255.255.255.255", "broadcast"],
    ["191.255.255.255", null],
    ["192.0.0.0", "reserved"],
    ["192.0.0.255", "reserved"],
    ["192.0.1.0", null],
    ["192.0.2.0", "reserved"],
    ["192.0.2.255", "reserved"],
    ["192.0.3.0", null],
    ["198.17.255.255", null],
    ["198.18.0.0", "reserved"],
    ["198.19.255.255", "reserved"],
    ["198.20.0.0", null],
    ["198.51.99.255", null],
    ["198.51.100.0", "reserved"],
    ["198.51.100.255", "reserved"],
    ["198.51.101.0", null],
    ["203.0.112.255", null],
    ["203.0.113.0", "reserved"],
    ["203.0.113.255", "reserved"],
    ["203.0.114.0", null],
    ["8.8.8.8", null],
    ["1.1.1.1", null],
  ])("IPv4 %s is classified as %p", (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected);
  });

  test.each<[string, AddressClass | null]>([
    ["::", "unspecified"],
    ["0:0:0:0:0:0:0:0", "unspecified"],
    ["::1", "loopback"],
    ["0000:0000:0000:0000:0000:0000:0000:0001", "loopback"],
    ["::2", "reserved"],
    ["fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", null],
    ["fc00::", "unique-local"],
    ["fd00::2", "unique-local"],
    ["fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique-local"],
    ["fe80::", "link-local"],
    ["fe80::1", "link-local"],
    ["febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"],
    ["fec0::1", "reserved"],
    ["feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
    ["ff00::", "multicast"],
    ["ff02::1", "multicast"],
    ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"],
    ["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", null],
    ["2001:db8::", "reserved"],
    ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
    ["2001:db9::", null],
    ["64:ff9b:0:ffff:ffff:ffff:ffff:ffff", null],
    ["64:ff9b:1::", "reserved"],
    ["64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "reserved"],
    ["64:ff9b:2::", null],
    ["100::", "reserved"],
    ["100::ffff:ffff:ffff:ffff", "reserved"],
    ["100:0:0:1::", null],
    ["2606:4700:4700::1111", null],
    ["2001:4860:4860::8888", null],
    ["1:2:3:4:5:6:1.2.3.4", null],
  ])("IPv6 %s is classified as %p", (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected);
  });

  test.each<[string, AddressClass | null]>([
    ["FE80::1", "link-local"],
    ["FD00::ABCD", "unique-local"],
    ["2001:DB8::1", "reserved"],
  ])("upper-case IPv6 %s is classified like lower case (%p)", (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected);
  });

  test.each<[string, AddressClass | null]>([
    ["fe80::1%eth0", "link-local"],
    ["fe80::1%25eth0", "link-local"],
    ["ff02::1%lo", "multicast"],
    ["2606:4700:4700::1111%eth0", null],
  ])("a zone id does not change the class of %s (%p)", (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected);
  });

  test.each<[string, AddressClass | null]>([
    ["::ffff:10.0.0.1", "private"],
    ["::ffff:a00:1", "private"],
    ["::FFFF:A00:1", "private"],
    ["0:0:0:0:0:ffff:192.168.1.1", "private"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:169.254.169.254", "link-local"],
    ["::ffff:a9fe:a9fe", "link-local"],
    ["::ffff:0.0.0.0", "unspecified"],
    ["::ffff:255.255.255.255", "broadcast"],
    ["::ffff:100.64.0.1", "cgnat"],
    ["::ffff:8.8.8.8", null],
    ["::ffff:808:808", null],
  ])("IPv4-mapped %s is classified as its embedded IPv4 address (%p)", (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected);
  });

  test.each<[string, AddressClass | null]>([
    ["64:ff9b::10.0.0.1", "private"],
    ["64:ff9b::7f00:1", "loopback"],
    ["64:ff9b::8.8.8.8", null],
  ])("NAT64 well-known prefix %s is classified as its embedded IPv4 address (%p)", (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected);
  });

  test("a dotted IPv4 tail in a non-mapped IPv6 address is read as the low 32 bits", () => {
    expect(classifyAddress("2001:db8::192.0.2.1")).toBe("reserved");
    expect(classifyAddress("::0.0.0.1")).toBe("loopback");
  });

  test.each([
    "",
    "example.com",
    "localhost",
    "[::1]",
    "10.0.0.1%eth0",
    "1.2.3",
    "256.0.0.1",
    "010.0.0.1",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "::ffff:10.0.0.1.1",
    " 10.0.0.1",
    "fe80::1%",
  ])("%p is not an IP literal and throws TypeError", (input) => {
    expect(() => classifyAddress(input)).toThrow(TypeError);
  });
});

describe("createAddressGuard", () => {
  test("a public IPv4 literal is accepted without a DNS lookup", async () => {
    const { check, lookups } = guard({});
    expect(await check("93.184.215.14", 443)).toEqual({
      host: "93.184.215.14",
      address: "93.184.215.14",
      family: 4,
      port: 443,
    });
    expect(lookups).toEqual([]);
  });

  test("a bracketed public IPv6 literal is accepted with the brackets stripped", async () => {
    const { check, lookups } = guard({});
    expect(await check("[2606:4700:4700::1111]", 443)).toEqual({
      host: "2606:4700:4700::1111",
      address: "2606:4700:4700::1111",
      family: 6,
      port: 443,
    });
    expect(lookups).toEqual([]);
  });

  test("a bracketed IPv6 loopback literal is refused as loopback", async () => {
    const err = await refusal(guard({}).check("[::1]", 80));
    expect(err.status).toBe(403);
    expect(err.message).toContain("::1 is loopback");
  });

  test("a private IPv4 literal is refused with 403 naming the host, address, class and setting", async () => {
    const err = await refusal(guard({}).check("10.0.0.1", 80));
    expect(err.status).toBe(403);
    expect(err.message).toContain("upstream 10.0.0.1");
    expect(err.message).toContain("10.0.0.1 is private");
    expect(err.message).toContain("set CACHEGATE_ALLOW_PRIVATE_UPSTREAMS=1 only in a lab to allow it");
  });

  test("the cloud metadata name is refused as link-local", async () => {
    const err = await refusal(
      guard({ "metadata.google.internal": answer("169.254.169.254") }).check("metadata.google.internal", 80),
    );
    expect(err.status).toBe(403);
    expect(err.message).toContain("metadata.google.internal");
    expect(err.message).toContain("169.254.169.254 is link-local");
  });

  test.each([
    ["private first", ["10.1.2.3", "93.184.215.14"]],
    ["public first", ["93.184.215.14", "10.1.2.3"]],
  ])("a DNS answer with one private and one public address picks the public one (%s)", async (_, addresses) => {
    const { check } = guard({ "mixed.example": answer(...addresses) });
    expect(await check("mixed.example", 443)).toEqual({
      host: "mixed.example",
      address: "93.184.215.14",
      family: 4,
      port: 443,
    });
  });

  test("a DNS answer of only refused addresses is a 403 naming every address and class and the setting", async () => {
    const { check } = guard({ "intranet.example": answer("192.168.1.10", "fd00::10", "::ffff:127.0.0.1") });
    const err = await refusal(check("intranet.example", 443));
    expect(err.status).toBe(403);
    expect(err.message).toContain("intranet.example");
    expect(err.message).toContain("192.168.1.10 is private");
    expect(err.message).toContain("fd00::10 is unique-local");
    expect(err.message).toContain("::ffff:127.0.0.1 is loopback");
    expect(err.message).toContain("CACHEGATE_ALLOW_PRIVATE_UPSTREAMS=1");
  });

  test("IPv4 is preferred over IPv6 when both are acceptable", async () => {
    const { check } = guard({ "dual.example": answer("2606:4700:4700::1111", "1.1.1.1") });
    expect((await check("dual.example", 443)).address).toBe("1.1.1.1");
  });

  test("resolver order is kept among addresses of the same family", async () => {
    const { check } = guard({ "rr.example": answer("2606:4700::1", "8.8.4.4", "2606:4700::2", "8.8.8.8") });
    expect((await check("rr.example", 443)).address).toBe("8.8.4.4");
  });

  test("an IPv6-only answer is used when there is no IPv4 address", async () => {
    const { check } = guard({ "v6.example": answer("2606:4700::1") });
    expect(await check("v6.example", 443)).toEqual({
      host: "v6.example",
      address: "2606:4700::1",
      family: 6,
      port: 443,
    });
  });

  test("the name is resolved exactly once and the checked address is returned", async () => {
    const { check, lookups } = guard({ "once.example": answer("93.184.215.14") });
    expect((await check("once.example", 80)).address).toBe("93.184.215.14");
    expect(lookups).toEqual(["once.example"]);
  });

  test("a name with no answers is a 502 telling to check the name or the gateway's DNS", async () => {
    const err = await refusal(guard({ "empty.example": [] }).check("empty.example", 80));
    expect(err.status).toBe(502);
    expect(err.message).toBe("could not resolve empty.example: no addresses; check the name, or the gateway's DNS");
  });

  test("a lookup failure is a 502 carrying the resolver's error code", async () => {
    const err = await refusal(guard({}).check("nxdomain.example", 80));
    expect(err.status).toBe(502);
    expect(err.message).toBe("could not resolve nxdomain.example: ENOTFOUND; check the name, or the gateway's DNS");
  });

  test("allowPrivate lets a loopback upstream through on a port the gateway does not listen on", async () => {
    const { check } = guard({ localhost: answer("127.0.0.1") }, { allowPrivate: true });
    expect(await check("localhost", 8080)).toEqual({ host: "localhost", address: "127.0.0.1", family: 4, port: 8080 });
  });

  test("allowPrivate lets RFC 1918 and link-local literals through", async () => {
    const { check } = guard({}, { allowPrivate: true });
    expect((await check("10.0.0.1", 80)).address).toBe("10.0.0.1");
    expect((await check("[fe80::1%eth0]", 80)).address).toBe("fe80::1%eth0");
  });

  test.each(["127.0.0.1", "127.0.0.2", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1"])(
    "%s on the gateway's own listener port is refused even with allowPrivate",
    async (address) => {
      const { check } = guard({ "loop.example": answer(address) }, { allowPrivate: true });
      const err = await refusal(check("loop.example", 3128));
      expect(err.status).toBe(403);
      expect(err.message).toContain(
        "is this gateway's own listener; requests through the gateway cannot target the gateway itself",
      );
      expect(err.message).not.toContain("CACHEGATE_ALLOW_PRIVATE_UPSTREAMS");
    },
  );

  test("the admin listener's port counts as the gateway's own listener too", async () => {
    const err = await refusal(guard({}, { allowPrivate: true }).check("127.0.0.1", 9090));
    expect(err.message).toContain("own listener");
  });

  test("a loopback own-listener target without allowPrivate gets the own-listener message, not the setting", async () => {
    const err = await refusal(guard({}).check("[::1]", 3128));
    expect(err.status).toBe(403);
    expect(err.message).toContain("own listener");
    expect(err.message).not.toContain("CACHEGATE_ALLOW_PRIVATE_UPSTREAMS");
  });

  test("own listener ports are read per request, so ports bound after the guard was created count", async () => {
    const ports = new Set<number>();
    const { check } = guard({}, { allowPrivate: true, ownPorts: ports });
    expect((await check("127.0.0.1", 41234)).address).toBe("127.0.0.1");
    ports.add(41234);
    expect((await refusal(check("127.0.0.1", 41234))).status).toBe(403);
  });

  test("a name resolving to the gateway's own listener and to another address uses the other address", async () => {
    const { check } = guard({ "half.example": answer("127.0.0.1", "10.0.0.7") }, { allowPrivate: true });
    expect((await check("half.example", 3128)).address).toBe("10.0.0.7");
  });

  const ownAddress = Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .find((i) => !i.internal && i.family === "IPv4")?.address;

  test.skipIf(ownAddress === undefined)(
    "an address of one of this machine's interfaces on an own listener port is refused even with allowPrivate",
    async () => {
      const { check } = guard({ "me.example": answer(ownAddress!) }, { allowPrivate: true });
      const err = await refusal(check("me.example", 3128));
      expect(err.status).toBe(403);
      expect(err.message).toContain("own listener");
      expect((await check("me.example", 8080)).address).toBe(ownAddress!);
    },
  );

  test("the default lookup resolves localhost and refuses it as loopback", async () => {
    const check = createAddressGuard({ allowPrivate: false, ownPorts: new Set() });
    const err = await refusal(check("localhost", 80));
    expect(err.status).toBe(403);
    expect(err.message).toMatch(/is loopback/);
  });

  test("a refusal is a GatewayError with a stable code: policy 403, an unresolvable name 502", async () => {
    const { check } = guard({ "internal.example": answer("10.0.0.1") });
    const policy = await refusal(check("internal.example", 80));
    expect(policy).toBeInstanceOf(Error);
    expect([policy.status, policy.code]).toEqual([403, "upstream_address_refused"]);
    const unknown = await refusal(check("nowhere.example", 80));
    expect([unknown.status, unknown.code]).toEqual([502, "upstream_unresolvable"]);
  });
});
