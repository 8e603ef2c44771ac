import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { DomainList, domainMatches, domainNameProblem, normalizeDomainName } from "../../src/config/domain-name.ts";

const label = (ch: string, n: number) => ch.repeat(n);
/** A name of exactly `length` characters made of 63-character labels. */
const nameOfLength = (length: number) => {
  const labels: string[] = [];
  let left = length;
  for (const ch of "abcdefgh") {
    const n = Math.min(63, left - (labels.length > 0 ? 1 : 0));
    if (n <= 0) break;
    labels.push(label(ch, n));
    left -= n + (labels.length > 1 ? 1 : 0);
  }
  const name = labels.join(".");
  if (name.length !== length) throw new Error(`built ${name.length} characters, wanted ${length}`);
  return name;
};

describe("domainNameProblem refuses what is not a bare domain name and says what to enter", () => {
  test.each([
    ["https://www.microsoft.com", "microsoft.com"],
    ["http://x.com/path", "x.com"],
    ["HTTPS://Update.Microsoft.com", "update.microsoft.com"],
    ["ftp://files.example.org", "files.example.org"],
  ])("the URL %p is refused with a message suggesting %p", (input, suggestion) => {
    const problem = domainNameProblem(input);
    expect(problem).toStartWith("starts with ");
    expect(problem).toContain(`e.g. ${suggestion}`);
  });

  test("a name followed by a path is refused with the bare name suggested", () => {
    expect(domainNameProblem("microsoft.com/downloads")).toBe(
      "contains a path; enter only the domain, e.g. microsoft.com",
    );
  });

  test("a name with a port is refused with the bare name suggested", () => {
    expect(domainNameProblem("x.com:443")).toBe("contains a port; enter only the domain, e.g. x.com");
  });

  test("a name with an empty port is refused as a port", () => {
    expect(domainNameProblem("x.com:")).toContain("contains a port");
  });

  test("a wildcard is refused with the name without the wildcard suggested", () => {
    expect(domainNameProblem("*.x.com")).toBe("is a wildcard; an entry already covers its subdomains, so enter x.com");
  });

  test("a www. name is refused with the name without www. suggested", () => {
    expect(domainNameProblem("www.x.com")).toBe(
      "starts with www.; enter x.com, which covers www. and every other subdomain",
    );
  });

  test("an upper-case WWW. name is refused like www.", () => {
    expect(domainNameProblem("WWW.Microsoft.com")).toBe(
      "starts with www.; enter microsoft.com, which covers www. and every other subdomain",
    );
  });

  test("a name with two dots in a row is refused as having an empty label", () => {
    expect(domainNameProblem("a..com")).toBe(
      "has an empty label (two dots in a row, or a leading dot); enter a name such as microsoft.com",
    );
  });

  test("a name with a leading dot is refused as having an empty label", () => {
    expect(domainNameProblem(".a.com")).toContain("has an empty label");
    expect(domainNameProblem(".a.com")).toContain("microsoft.com");
  });

  test("a name with a space inside is refused and told to enter one name per entry", () => {
    expect(domainNameProblem("microsoft.com windows.com")).toBe(
      "contains spaces; enter one bare domain name per entry, such as microsoft.com",
    );
  });

  test("a name with a tab inside is refused as containing spaces", () => {
    expect(domainNameProblem("micro\tsoft.com")).toContain("contains spaces");
  });

  test("an empty entry is refused", () => {
    expect(domainNameProblem("")).toBe("is empty; enter a domain name such as microsoft.com");
  });

  test("an entry of only spaces is refused as empty", () => {
    expect(domainNameProblem("   ")).toContain("is empty");
  });

  test("a label of 63 characters is accepted", () => {
    expect(domainNameProblem(`${label("a", 63)}.com`)).toBeNull();
  });

  test("a label of 64 characters is refused with a message naming the form to enter", () => {
    const problem = domainNameProblem(`${label("a", 64)}.com`);
    expect(problem).toContain("longer than 63 characters");
    expect(problem).toContain("microsoft.com");
  });

  test("a name of 253 characters is accepted", () => {
    expect(domainNameProblem(nameOfLength(253))).toBeNull();
  });

  test("a name of 254 characters is refused with a message naming the form to enter", () => {
    const problem = domainNameProblem(nameOfLength(254));
    expect(problem).toContain("longer than 253 characters");
    expect(problem).toContain("microsoft.com");
  });

  test("a name of 253 characters with a trailing dot is accepted (the root dot does not count)", () => {
    expect(domainNameProblem(`${nameOfLength(253)}.`)).toBeNull();
  });

  test.each(["-a.com", "a-.com", "a_b.com", "a.-b.com"])(
    "the label with a misplaced hyphen or underscore in %p is refused",
    (input) => {
      expect(domainNameProblem(input)).toContain("has an invalid label");
    },
  );

  test("an e-mail address is refused", () => {
    expect(domainNameProblem("admin@x.com")).not.toBeNull();
  });

  test("a bracketed IPv6 address is refused", () => {
    expect(domainNameProblem("[::1]")).not.toBeNull();
  });

  test.each([
    "microsoft.com",
    "windowsupdate.microsoft.com",
    "xn--bcher-kva.de",
    "a-b.example",
    "Microsoft.COM",
    "bücher.de",
    "x.com.",
  ])("the bare name %p is accepted", (input) => {
    expect(domainNameProblem(input)).toBeNull();
  });
});

describe("normalizeDomainName", () => {
  test("upper case is lowered", () => {
    expect(normalizeDomainName("Microsoft.COM")).toBe("microsoft.com");
  });

  test("an internationalised name becomes punycode", () => {
    expect(normalizeDomainName("Bücher.de")).toBe("xn--bcher-kva.de");
  });

  test("a trailing dot is dropped", () => {
    expect(normalizeDomainName("x.com.")).toBe("x.com");
  });

  test("surrounding spaces are dropped", () => {
    expect(normalizeDomainName("  x.com ")).toBe("x.com");
  });
});

describe("DomainList", () => {
  test("duplicates after normalisation are removed, first one wins", () => {
    expect(
      v.parse(DomainList, ["b.com", "A.com", "a.com", "a.com.", "B.COM", "bücher.de", "xn--bcher-kva.de"]),
    ).toEqual(["b.com", "a.com", "xn--bcher-kva.de"]);
  });

  test("every bad entry is reported with its index", () => {
    const result = v.safeParse(DomainList, ["ok.com", "https://www.microsoft.com", "fine.org", "*.x.com"]);
    expect(result.success).toBe(false);
    expect(result.issues!.map((i) => v.getDotPath(i))).toEqual(["1", "3"]);
  });

  test("a string instead of a list is refused with an example of a list", () => {
    const result = v.safeParse(DomainList, "microsoft.com");
    expect(result.success).toBe(false);
    expect(result.issues![0]!.message).toContain('["microsoft.com"]');
  });

  test("a number inside the list is refused with an example of a string", () => {
    const result = v.safeParse(DomainList, [42]);
    expect(result.success).toBe(false);
    expect(result.issues![0]!.message).toContain('"microsoft.com"');
  });
});

describe("domainMatches", () => {
  test("an entry matches itself", () => {
    expect(domainMatches("microsoft.com", ["microsoft.com"])).toBe(true);
  });

  test("an entry matches a deep subdomain", () => {
    expect(domainMatches("a.b.microsoft.com", ["microsoft.com"])).toBe(true);
  });

  test("an entry does not match a name that only ends with the same letters", () => {
    expect(domainMatches("notmicrosoft.com", ["microsoft.com"])).toBe(false);
  });

  test("an entry does not match its parent domain", () => {
    expect(domainMatches("microsoft.com", ["update.microsoft.com"])).toBe(false);
  });

  test("the host is compared without case and without a trailing dot", () => {
    expect(domainMatches("WWW.Microsoft.COM.", ["microsoft.com"])).toBe(true);
  });

  test("an empty list matches nothing", () => {
    expect(domainMatches("microsoft.com", [])).toBe(false);
  });
});

describe("names that would open too much, or are not names at all", () => {
  test.each(["com", "co.uk", "github.io"])(
    "the public suffix %p alone is refused with a domain under it suggested",
    (name) => {
      const problem = domainNameProblem(name);
      expect(problem).toStartWith("is a public suffix");
      expect(problem).toContain(`example.${name}`);
    },
  );

  test.each(["127.0.0.1", "10.1.2.3"])("the IP address %p is refused: entries are domain names", (ip) => {
    expect(domainNameProblem(ip)).toStartWith("is an IP address");
  });

  test.each(["microsoft.com", "bbc.co.uk", "user.github.io", "localhost", "gateway.internal"])(
    "%p is a domain and is accepted",
    (name) => expect(domainNameProblem(name)).toBeNull(),
  );
});
