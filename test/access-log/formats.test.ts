import { describe, expect, test } from "bun:test";
import { combinedLine, jsonLine, squidLine } from "../../src/access-log/formats.ts";
import { nextPiece, PIPE_BUF } from "../../src/access-log/sink.ts";
import { squidResult } from "../../src/access-log/squid-codes.ts";
import type { Served } from "../../src/stats/collector.ts";

const TIME = Date.parse("2024-11-30T07:00:00.123Z"); // 1732950000.123

function served(over: Partial<Served> = {}): Served {
  return {
    agent: "127.0.0.1",
    client: "127.0.0.1",
    url: "http://dl.example.com/a.bin",
    label: "MISS",
    bytes: 10240,
    method: "GET",
    status: 200,
    elapsedMs: 12.4,
    contentType: "application/octet-stream",
    httpVersion: "1.1",
    ...over,
  };
}

/** A case's name: its label (or "refused"), status and, unless GET, method. */
const caseName = (o: Partial<Served>) =>
  `${o.method && o.method !== "GET" ? `${o.method} ` : ""}${o.label === null ? "refused" : (o.label ?? "MISS")}` +
  `${o.status ? `/${o.status}` : ""}${o.fromMemory ? " from memory" : ""}`;

/** What the gateway reported, and what Squid would have logged for it. */
const CASES: [Partial<Served>, code: string, hierarchy: string][] = [
  [{ label: "MISS" }, "TCP_MISS", "HIER_DIRECT/dl.example.com"],
  [{ label: "BYPASS", method: "POST" }, "TCP_MISS", "HIER_DIRECT/dl.example.com"],
  [{ label: "HIT" }, "TCP_HIT", "HIER_NONE/-"],
  [{ label: "HIT", fromMemory: true }, "TCP_MEM_HIT", "HIER_NONE/-"],
  [{ label: "HIT", status: 304 }, "TCP_IMS_HIT", "HIER_NONE/-"],
  [{ label: "REVALIDATED" }, "TCP_REFRESH_UNMODIFIED", "HIER_DIRECT/dl.example.com"],
  [{ label: "STALE" }, "TCP_REFRESH_FAIL_OLD", "HIER_DIRECT/dl.example.com"],
  [{ label: "UPDATING" }, "TCP_STALE_HIT", "HIER_NONE/-"],
  [{ label: "COALESCED" }, "TCP_CF_HIT", "HIER_NONE/-"],
  [{ label: "PEER" }, "TCP_MISS", "CARP/-"],
  [{ label: null, status: 403 }, "TCP_DENIED", "HIER_NONE/-"],
  [{ label: null, status: 407 }, "TCP_DENIED", "HIER_NONE/-"],
  [{ label: null, status: 400 }, "NONE_NONE", "HIER_NONE/-"],
  [{ label: null, status: 508 }, "NONE_NONE", "HIER_NONE/-"],
  [{ label: null, status: 504 }, "TCP_MISS", "HIER_NONE/-"],
  [{ label: null, status: 502 }, "TCP_MISS", "HIER_NONE/-"],
  [{ label: "TUNNEL", method: "CONNECT", url: "dl.example.com:443" }, "TCP_TUNNEL", "HIER_DIRECT/dl.example.com"],
  [{ label: "INTERCEPTED", method: "CONNECT", url: "dl.example.com:443" }, "NONE_NONE", "HIER_NONE/-"],
  [{ label: null, status: 403, method: "CONNECT", url: "evil.example:443" }, "TCP_DENIED", "HIER_NONE/-"],
];

describe("Squid's result and hierarchy codes", () => {
  test.each(CASES.map(([over, code, hier]) => [caseName(over), code, hier, over] as const))(
    "%s is %s with %s",
    (_, code, hier, over) => {
      const r = squidResult(served(over));
      expect(r.code).toBe(code);
      expect(`${r.hierarchy}/${r.upstream ?? "-"}`).toBe(hier);
    },
  );

  test("an IPv6 origin is named without its brackets", () => {
    expect(squidResult(served({ url: "http://[2001:db8::1]:8080/x" })).upstream).toBe("2001:db8::1");
    expect(squidResult(served({ method: "CONNECT", url: "[2001:db8::1]:443", label: "TUNNEL" })).upstream).toBe(
      "2001:db8::1",
    );
  });
});

describe("the access log's line formats", () => {
  test("squid: Squid's native line, time with milliseconds and elapsed padded to six", () => {
    expect(squidLine(served(), TIME)).toBe(
      "1732950000.123     12 127.0.0.1 TCP_MISS/200 10240 GET http://dl.example.com/a.bin - " +
        "HIER_DIRECT/dl.example.com application/octet-stream\n",
    );
  });

  test("squid: the user, an IPv4-mapped client and a missing type as Squid writes them", () => {
    const line = squidLine(
      served({ client: "::ffff:10.1.2.3", user: "agent-1", label: "HIT", fromMemory: true, contentType: null }),
      TIME + 5,
    );
    expect(line).toBe(
      "1732950000.128     12 10.1.2.3 TCP_MEM_HIT/200 10240 GET http://dl.example.com/a.bin agent-1 HIER_NONE/- -\n",
    );
  });

  test("squid: a space or a quote in a field is percent-encoded, so every line has ten fields", () => {
    const line = squidLine(served({ url: "http://h/a b", contentType: 'text/plain; charset="x"' }), TIME);
    expect(line.trimEnd().split(/ +/)).toHaveLength(10);
    expect(line).toContain("http://h/a%20b");
    expect(line).toContain("text/plain;%20charset=%22x%22");
  });

  test("a URL the agent sent percent-encoded is logged as it sent it, in squid and combined alike", () => {
    const url = "http://h/Windows%2010/kb%2B1.msu?x=%22";
    expect(squidLine(served({ url }), TIME).split(" ")).toContain(url);
    expect(combinedLine(served({ url }), TIME)).toContain(`"GET ${url} HTTP/1.1"`);
  });

  test("combined: Apache's combined line with the cache label after it", () => {
    const line = combinedLine(served({ referer: "http://r/", userAgent: 'Agent "7"', user: "agent-1" }), TIME);
    expect(line).toBe(
      '127.0.0.1 - agent-1 [30/Nov/2024:07:00:00 +0000] "GET http://dl.example.com/a.bin HTTP/1.1" 200 10240 ' +
        '"http://r/" "Agent \\x227\\x22" cache=MISS\n',
    );
    expect(combinedLine(served({ label: null, status: 403 }), TIME)).toEndWith('"-" "-" cache=-\n');
  });

  test("json: one object per line with the documented fields", () => {
    const line = jsonLine(served({ label: "HIT", fromMemory: true }), TIME);
    expect(line.endsWith("\n")).toBe(true);
    expect(line.slice(0, -1)).not.toContain("\n");
    expect(JSON.parse(line)).toEqual({
      time: "2024-11-30T07:00:00.123Z",
      elapsedMs: 12,
      client: "127.0.0.1",
      user: null,
      method: "GET",
      url: "http://dl.example.com/a.bin",
      httpVersion: "1.1",
      status: 200,
      bytes: 10240,
      cache: "HIT",
      squidCode: "TCP_MEM_HIT",
      hierarchy: "HIER_NONE",
      upstream: null,
      contentType: "application/octet-stream",
      referer: null,
      userAgent: null,
    });
  });
});

describe("cutting what is buffered into writes", () => {
  const lines = (n: number, width: number) => Buffer.from(`${"x".repeat(width - 1)}\n`.repeat(n));

  test("a piece ends at a line end and is at most the write size (PIPE_BUF for stdout)", () => {
    const bytes = lines(100, 100); // 10,000 bytes
    const piece = nextPiece(bytes, PIPE_BUF);
    expect(piece.length).toBe(4000);
    expect(piece.at(-1)).toBe(0x0a);
  });

  test("what fits goes whole", () => {
    const bytes = lines(3, 10);
    expect(nextPiece(bytes, PIPE_BUF)).toBe(bytes);
  });

  test("a single line longer than the write size goes alone, whole", () => {
    const bytes = Buffer.concat([lines(1, 5000), lines(1, 10)]);
    expect(nextPiece(bytes, PIPE_BUF).length).toBe(5000);
  });
});
