import { describe, expect, test } from "bun:test";
import { ChunkedDecoder } from "../../src/upstream/chunked.ts";
import { FramingError, framingOf, keepsAlive, parseResponseHead } from "../../src/upstream/framing.ts";

const head = (lines: string) => parseResponseHead(lines.trim().replace(/\n/g, "\r\n"));

describe("response framing (RFC 9112 §6.3)", () => {
  test.each<[string, string, string, unknown]>([
    ["a HEAD response has no body whatever it says", "HEAD", "HTTP/1.1 200 OK\nContent-Length: 10", { kind: "none" }],
    ["204 has no body (§6.3 item 1)", "GET", "HTTP/1.1 204 No Content", { kind: "none" }],
    ["304 has no body (§6.3 item 1)", "GET", "HTTP/1.1 304 Not Modified\nContent-Length: 10", { kind: "none" }],
    [
      "Content-Length frames the body (§6.3 item 6)",
      "GET",
      "HTTP/1.1 200 OK\nContent-Length: 10",
      { kind: "length", length: 10 },
    ],
    [
      "repeated equal Content-Length values are one (§6.3 item 5)",
      "GET",
      "HTTP/1.1 200 OK\nContent-Length: 7, 7",
      { kind: "length", length: 7 },
    ],
    [
      "chunked frames the body (§6.3 item 4)",
      "GET",
      "HTTP/1.1 200 OK\nTransfer-Encoding: chunked",
      { kind: "chunked" },
    ],
    [
      "chunked wins over Content-Length (§6.3 item 3)",
      "GET",
      "HTTP/1.1 200 OK\nContent-Length: 5\nTransfer-Encoding: chunked",
      { kind: "chunked" },
    ],
    [
      "no framing at all is close-delimited (§6.3 item 8)",
      "GET",
      "HTTP/1.0 200 OK\nContent-Type: text/plain",
      { kind: "close" },
    ],
  ])("%s", (_name, method, text, expected) => {
    expect(framingOf(method, head(text))).toEqual(expected as never);
  });

  test("a transfer coding other than chunked alone is refused, not relayed undecoded (§6.1)", () => {
    expect(() => framingOf("GET", head("HTTP/1.1 200 OK\nTransfer-Encoding: gzip"))).toThrow(FramingError);
    expect(() => framingOf("GET", head("HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked"))).toThrow(FramingError);
  });

  test("a header value with control characters is refused (RFC 9110 §5.5)", () => {
    expect(() => head("HTTP/1.1 200 OK\nX-Odd: a\u0001b")).toThrow(FramingError);
    expect(head("HTTP/1.1 200 OK\nX-Tab: a\tb").fields).toEqual([["X-Tab", "a\tb"]]);
  });

  test("differing Content-Length values are an error, not a guess (§6.3 item 5)", () => {
    expect(() => framingOf("GET", head("HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 6"))).toThrow(FramingError);
    expect(() => framingOf("GET", head("HTTP/1.1 200 OK\nContent-Length: -1"))).toThrow(FramingError);
  });

  test("a connection is kept after an HTTP/1.1 response unless it says close or mixes framings", () => {
    const framing = { kind: "length", length: 1 } as const;
    expect(keepsAlive(head("HTTP/1.1 200 OK\nContent-Length: 1"), framing)).toBe(true);
    expect(keepsAlive(head("HTTP/1.1 200 OK\nConnection: close"), framing)).toBe(false);
    expect(keepsAlive(head("HTTP/1.0 200 OK\nContent-Length: 1"), framing)).toBe(false);
    expect(
      keepsAlive(head("HTTP/1.1 200 OK\nContent-Length: 1\nTransfer-Encoding: chunked"), { kind: "chunked" }),
    ).toBe(false);
    expect(keepsAlive(head("HTTP/1.1 200 OK"), { kind: "close" })).toBe(false);
    expect(keepsAlive(head("HTTP/1.1 101 Switching Protocols"), { kind: "none" })).toBe(false);
    expect(
      keepsAlive(head("HTTP/1.0 200 OK\nConnection: keep-alive\nTransfer-Encoding: chunked"), { kind: "chunked" }),
    ).toBe(false);
  });

  test("a head with obsolete line folding or a space before the colon is refused (§5.1, §5.2)", () => {
    expect(() => head("HTTP/1.1 200 OK\nX-A: 1\n  continued")).toThrow(FramingError);
    expect(() => head("HTTP/1.1 200 OK\nX-A : 1")).toThrow(FramingError);
    expect(() => head("HTTP/2 200")).toThrow(FramingError);
  });

  test("field lines keep their order and repeats", () => {
    const h = head("HTTP/1.1 200 OK\nSet-Cookie: a=1\nSet-Cookie: b=2");
    expect(h.fields).toEqual([
      ["Set-Cookie", "a=1"],
      ["Set-Cookie", "b=2"],
    ]);
  });
});

describe("chunked decoding (RFC 9112 §7.1)", () => {
  const message = Buffer.from("5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT");

  test("the body comes out whole however the bytes are split, and what follows the message is left over", () => {
    for (let split = 1; split < message.length; split++) {
      const decoder = new ChunkedDecoder();
      const parts: Uint8Array[] = [];
      const rest: Uint8Array[] = [];
      for (const piece of [message.subarray(0, split), message.subarray(split)]) {
        const out = decoder.push(piece);
        parts.push(...out.body);
        if (out.rest) rest.push(out.rest);
      }
      expect(Buffer.concat(parts).toString()).toBe("hello world");
      expect(decoder.done).toBe(true);
      expect(Buffer.concat(rest).toString()).toBe("NEXT");
    }
  });

  test("a body without its last chunk is not done", () => {
    const decoder = new ChunkedDecoder();
    decoder.push(Buffer.from("5\r\nhello\r\n"));
    expect(decoder.done).toBe(false);
  });

  test("a chunk longer than its size, or a size that is not hex, is an error", () => {
    expect(() => new ChunkedDecoder().push(Buffer.from("2\r\nhello\r\n"))).toThrow(FramingError);
    expect(() => new ChunkedDecoder().push(Buffer.from("zz\r\n"))).toThrow(FramingError);
  });
});
