import { describe, expect, test } from "bun:test";
import {
  currentAge,
  freshness,
  freshnessLifetime,
  HEURISTICALLY_CACHEABLE,
  matchTtlRule,
  mergeNotModified,
  parseCacheControl,
  storability,
  type TtlRule,
} from "../../src/cache/freshness";
import { mayServeStale } from "../../src/cache/stale.ts";

type Fields = Record<string, string> | [string, string][];

/** The response time every test uses, and seconds relative to it as HTTP-dates. */
const T = Date.parse("Sun, 06 Nov 1994 08:49:37 GMT");
const at = (seconds: number): string => new Date(T + seconds * 1000).toUTCString();
const URL_EXE = "http://dl.example.com/agent/setup.exe?v=2";
const RULES: TtlRule[] = [
  { pattern: "\\.exe(\\?|$)", min: 100, lmFactor: 0.2, max: 1000 },
  { pattern: "^https://", min: 5, lmFactor: 0.5, max: 50 },
];

describe("parseCacheControl (RFC 9111 §5.2)", () => {
  test.each<[string, string | null, [string, string | true][]]>([
    ["returns no directives for an absent header", null, []],
    ["returns no directives for an empty header", "", []],
    ["returns no directives for a header of only commas and spaces", " , ,, ", []],
    ["parses a valueless directive as true", "no-store", [["no-store", true]]],
    ["parses a directive's value as a string", "max-age=60", [["max-age", "60"]]],
    [
      "lower-cases directive names",
      "No-Store, MAX-AGE=5",
      [
        ["no-store", true],
        ["max-age", "5"],
      ],
    ],
    ["keeps the case of directive values", 'private="X-Secret"', [["private", "X-Secret"]]],
    [
      "trims spaces around names, equals signs and values",
      "  public ,max-age = 60 ",
      [
        ["public", true],
        ["max-age", "60"],
      ],
    ],
    [
      "skips empty list members (RFC 9110 §5.6.1)",
      ",,public,,max-age=1,",
      [
        ["public", true],
        ["max-age", "1"],
      ],
    ],
    ["removes the quotes of a quoted value", 'max-age="60"', [["max-age", "60"]]],
    [
      "keeps commas inside a quoted value",
      'no-cache="Set-Cookie, X-A", max-age=5',
      [
        ["no-cache", "Set-Cookie, X-A"],
        ["max-age", "5"],
      ],
    ],
    ["unescapes quoted-pairs in a quoted value (RFC 9110 §5.6.4)", 'x="a\\"b\\\\c"', [["x", 'a"b\\c']]],
    ["tolerates an unterminated quoted value", 'x="abc', [["x", "abc"]]],
    ["keeps the first of duplicate directives (§4.2.1)", "max-age=10, max-age=20", [["max-age", "10"]]],
    ["parses an empty value as an empty string", "max-age=", [["max-age", ""]]],
    [
      "keeps unknown extension directives",
      "immutable, stale-if-error=60",
      [
        ["immutable", true],
        ["stale-if-error", "60"],
      ],
    ],
  ])("%s", (_name, input, expected) => {
    expect([...parseCacheControl(input)]).toEqual(expected);
  });
});

describe("HEURISTICALLY_CACHEABLE (RFC 9111 §4.2.2)", () => {
  test("lists exactly the heuristically cacheable statuses we store (RFC 9110 §15.1)", () => {
    expect([...HEURISTICALLY_CACHEABLE].sort((a, b) => a - b)).toEqual([
      200, 203, 204, 300, 301, 308, 404, 405, 410, 414,
    ]);
  });

  test.each([206, 501])("deliberately excludes %d (RFC 9111 §4.2.2)", (status) => {
    expect(HEURISTICALLY_CACHEABLE.has(status)).toBe(false);
  });
});

describe("storability (RFC 9111 §3)", () => {
  const cases: [string, string, Fields, number, Fields, boolean, RegExp | null][] = [
    // [name, method, request fields, status, response fields, hasTtlRule, reason or null when storable]
    ["stores a plain 200 GET with no caching headers (§3, §4.2.2)", "GET", {}, 200, {}, false, null],
    [
      "does not store HEAD, which the caller converts to GET (§3)",
      "HEAD",
      {},
      200,
      { "cache-control": "max-age=60" },
      false,
      /HEAD/,
    ],
    ["does not store POST even with max-age (§3)", "POST", {}, 200, { "cache-control": "max-age=60" }, false, /POST/],
    [
      "does not store a response that sets a cookie, even a public one (product rule, as nginx)",
      "GET",
      {},
      200,
      { "cache-control": "public, max-age=60", "set-cookie": "session=1" },
      false,
      /cookie/,
    ],
    [
      "does not store a lower-case method, as methods are case-sensitive (§3, RFC 9110 §9.1)",
      "get",
      {},
      200,
      {},
      false,
      /get/,
    ],
    [
      "does not store an informational 1xx response (§3)",
      "GET",
      {},
      103,
      { "cache-control": "max-age=60" },
      false,
      /final/,
    ],
    [
      "does not store a 206 partial response even with max-age (§3)",
      "GET",
      {},
      206,
      { "cache-control": "max-age=60" },
      false,
      /206/,
    ],
    [
      "does not store a 304, which is not a full response (§3, §4.3.4)",
      "GET",
      {},
      304,
      { "cache-control": "max-age=60" },
      false,
      /304/,
    ],
    [
      "does not store a 500 even with max-age and public (product rule, §3)",
      "GET",
      {},
      500,
      { "cache-control": "public, max-age=60" },
      false,
      /5xx/,
    ],
    [
      "does not store a 501 although RFC 9110 calls it heuristically cacheable (product rule, §4.2.2)",
      "GET",
      {},
      501,
      {},
      false,
      /5xx/,
    ],
    [
      "does not store a 599, the top of the 5xx range (product rule, §3)",
      "GET",
      {},
      599,
      { expires: at(60) },
      false,
      /5xx/,
    ],
    [
      "stores a 499 with explicit freshness, just below the 5xx range (§3)",
      "GET",
      {},
      499,
      { "cache-control": "max-age=60" },
      false,
      null,
    ],
    [
      "does not store when the request Cache-Control says no-store (§3/§5.2.1.5)",
      "GET",
      { "cache-control": "no-store" },
      200,
      {},
      false,
      /request Cache-Control: no-store/,
    ],
    [
      "does not store when the response Cache-Control says no-store (§3/§5.2.2.5)",
      "GET",
      {},
      200,
      { "cache-control": "no-store" },
      false,
      /response Cache-Control: no-store/,
    ],
    [
      "does not store no-store even alongside public and max-age (§5.2.2.5)",
      "GET",
      {},
      200,
      { "cache-control": "public, max-age=60, No-Store" },
      false,
      /no-store/,
    ],
    [
      "does not store a response whose Cache-Control says private (§3.5/§5.2.2.7)",
      "GET",
      {},
      200,
      { "cache-control": "private, max-age=60" },
      false,
      /private/,
    ],
    [
      'does not store a qualified private="field" response, conservatively (§5.2.2.7)',
      "GET",
      {},
      200,
      { "cache-control": 'private="Set-Cookie"' },
      false,
      /private/,
    ],
    [
      "does not store an authorized request's response without public, s-maxage or must-revalidate (§3.5)",
      "GET",
      { authorization: "Bearer x" },
      200,
      { "cache-control": "max-age=60" },
      false,
      /Authorization/,
    ],
    [
      "stores an authorized request's response marked public (§3.5)",
      "GET",
      { authorization: "Bearer x" },
      200,
      { "cache-control": "public" },
      false,
      null,
    ],
    [
      "stores an authorized request's response with s-maxage (§3.5)",
      "GET",
      { authorization: "Bearer x" },
      200,
      { "cache-control": "s-maxage=60" },
      false,
      null,
    ],
    [
      "stores an authorized request's response with must-revalidate (§3.5)",
      "GET",
      { authorization: "Bearer x" },
      200,
      { "cache-control": "must-revalidate" },
      false,
      null,
    ],
    ["does not store a response with Vary: * (§4.1)", "GET", {}, 200, { vary: "*" }, false, /Vary/],
    [
      "does not store a response whose Vary list contains * (§4.1)",
      "GET",
      {},
      200,
      { vary: "Accept-Encoding, *" },
      false,
      /Vary/,
    ],
    [
      "stores a response that varies on named fields only (§4.1)",
      "GET",
      {},
      200,
      { vary: "Accept-Encoding" },
      false,
      null,
    ],
    [
      "stores a response with no-cache, which only forces revalidation (§5.2.2.4)",
      "GET",
      {},
      200,
      { "cache-control": "no-cache" },
      false,
      null,
    ],
    ["does not store a 302 with no freshness information (§3)", "GET", {}, 302, {}, false, /no freshness/],
    [
      "does not store a 302 with only no-cache, which is not freshness information (§3)",
      "GET",
      {},
      302,
      { "cache-control": "no-cache" },
      false,
      /no freshness/,
    ],
    [
      "does not store a 302 whose max-age is malformed (§1.2.2/§3)",
      "GET",
      {},
      302,
      { "cache-control": "max-age=1.5" },
      false,
      /no freshness/,
    ],
    ["stores a 302 with max-age (§3)", "GET", {}, 302, { "cache-control": "max-age=60" }, false, null],
    ["stores a 302 with max-age=0 (§3)", "GET", {}, 302, { "cache-control": "max-age=0" }, false, null],
    ["stores a 302 with s-maxage (§3)", "GET", {}, 302, { "cache-control": "s-maxage=60" }, false, null],
    ["stores a 302 with an Expires header (§3)", "GET", {}, 302, { expires: at(60) }, false, null],
    [
      "stores a 302 with an invalid Expires, which just makes it stale (§3/§5.3)",
      "GET",
      {},
      302,
      { expires: "0" },
      false,
      null,
    ],
    ["stores a 302 marked public (§3)", "GET", {}, 302, { "cache-control": "public" }, false, null],
    ["stores a 200 when an operator TTL rule matches (§3)", "GET", {}, 200, {}, true, null],
    [
      "does not store a 307 just because a TTL rule matches; rules cover 200 only (§3)",
      "GET",
      {},
      307,
      {},
      true,
      /no freshness/,
    ],
  ];

  test.each(cases)("%s", (_name, method, reqFields, status, resFields, hasTtlRule, reason) => {
    const result = storability(
      { method, headers: new Headers(reqFields) },
      { status, headers: new Headers(resFields) },
      hasTtlRule,
    );
    if (reason === null) {
      expect(result).toEqual({ storable: true });
    } else {
      expect(result.storable).toBe(false);
      expect(result.storable ? "" : result.reason).toMatch(reason);
    }
  });

  test.each([...HEURISTICALLY_CACHEABLE])(
    "stores a %d without caching headers, being heuristically cacheable (§4.2.2)",
    (status) => {
      expect(storability({ method: "GET", headers: new Headers() }, { status, headers: new Headers() }, false)).toEqual(
        {
          storable: true,
        },
      );
    },
  );
});

describe("freshnessLifetime (RFC 9111 §4.2.1)", () => {
  const cases: [string, number, Fields, string, number | undefined, number][] = [
    // [name, status, response fields, url, responseTime, expected seconds]
    [
      "uses s-maxage before max-age in a shared cache (§4.2.1/§5.2.2.10)",
      200,
      { "cache-control": "max-age=10, s-maxage=100" },
      URL_EXE,
      T,
      100,
    ],
    [
      "uses s-maxage before Expires (§4.2.1)",
      200,
      { "cache-control": "s-maxage=100", date: at(0), expires: at(10) },
      URL_EXE,
      T,
      100,
    ],
    [
      "uses max-age before Expires (§4.2.1)",
      200,
      { "cache-control": "max-age=30", date: at(0), expires: at(10) },
      URL_EXE,
      T,
      30,
    ],
    [
      "uses max-age=0 as a zero lifetime (§5.2.2.1)",
      200,
      { "cache-control": "max-age=0", "last-modified": at(-10000) },
      URL_EXE,
      T,
      0,
    ],
    ["accepts a quoted max-age (§5.2)", 200, { "cache-control": 'max-age="60"' }, URL_EXE, T, 60],
    [
      "caps a huge max-age at 2^31 seconds (§1.2.2)",
      200,
      { "cache-control": "max-age=99999999999999" },
      URL_EXE,
      T,
      2 ** 31,
    ],
    [
      "ignores a malformed s-maxage and falls back to max-age (§1.2.2)",
      200,
      { "cache-control": "s-maxage=soon, max-age=20" },
      URL_EXE,
      T,
      20,
    ],
    [
      "ignores a fractional max-age and falls back to Expires (§1.2.2)",
      200,
      { "cache-control": "max-age=1.5", date: at(0), expires: at(10) },
      URL_EXE,
      T,
      10,
    ],
    [
      "ignores a negative max-age and falls back to Expires (§1.2.2)",
      200,
      { "cache-control": "max-age=-1", date: at(0), expires: at(10) },
      URL_EXE,
      T,
      10,
    ],
    [
      "ignores a valueless max-age and falls back to the heuristic (§1.2.2/§4.2.2)",
      302,
      { "cache-control": "max-age" },
      URL_EXE,
      T,
      0,
    ],
    [
      "uses the first of two max-age directives on separate lines (§4.2.1)",
      200,
      [
        ["cache-control", "max-age=10"],
        ["cache-control", "max-age=20"],
      ],
      URL_EXE,
      T,
      10,
    ],
    ["uses Expires minus Date (§4.2.1)", 200, { date: at(0), expires: at(3600) }, URL_EXE, T, 3600],
    ["floors a lifetime to whole seconds (§4.2.1)", 200, { date: at(0), expires: at(1.9) }, URL_EXE, T, 1],
    ["gives zero when Expires equals Date (§4.2.1)", 200, { date: at(0), expires: at(0) }, URL_EXE, T, 0],
    [
      "gives zero, not a negative lifetime, when Expires precedes Date (§4.2.1)",
      200,
      { date: at(0), expires: at(-60) },
      URL_EXE,
      T,
      0,
    ],
    [
      "treats an invalid Expires such as 0 as already expired, with no heuristic (§5.3)",
      200,
      { expires: "0", "last-modified": at(-10000) },
      URL_EXE,
      T,
      0,
    ],
    ["treats a garbage Expires as already expired (§5.3)", 200, { date: at(0), expires: "tomorrow" }, URL_EXE, T, 0],
    ["uses the response time when Date is missing (§4.2.1)", 200, { expires: at(120) }, URL_EXE, T, 120],
    [
      "uses the response time when Date is invalid (§4.2.1)",
      200,
      { date: "yesterday", expires: at(120) },
      URL_EXE,
      T,
      120,
    ],
    [
      "gives zero for Expires when neither Date nor a response time is known (§4.2.1)",
      200,
      { expires: at(120) },
      URL_EXE,
      undefined,
      0,
    ],
    [
      "accepts an RFC 850 Expires date (RFC 9110 §5.6.7)",
      200,
      { date: "Sun, 06 Nov 1994 08:49:37 GMT", expires: "Sunday, 06-Nov-94 08:50:37 GMT" },
      URL_EXE,
      T,
      60,
    ],
    [
      "accepts an asctime Expires date as UTC (RFC 9110 §5.6.7)",
      200,
      { date: "Sun, 06 Nov 1994 08:49:37 GMT", expires: "Sun Nov  6 08:51:37 1994" },
      URL_EXE,
      T,
      120,
    ],
    [
      "gives zero for a no-cache response despite max-age (§5.2.2.4)",
      200,
      { "cache-control": "no-cache, max-age=600" },
      URL_EXE,
      T,
      0,
    ],
    [
      'gives zero for a qualified no-cache="field" response, conservatively (§5.2.2.4)',
      200,
      { "cache-control": 'no-cache="Set-Cookie", max-age=600' },
      URL_EXE,
      T,
      0,
    ],
    [
      "takes 10% of the time since Last-Modified when no rule matches (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-1000) },
      "http://x/",
      T,
      100,
    ],
    [
      "floors the 10% heuristic to whole seconds (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-15) },
      "http://x/",
      T,
      1,
    ],
    [
      "gives exactly one day at ten days since Last-Modified (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-864000) },
      "http://x/",
      T,
      86400,
    ],
    [
      "caps the 10% heuristic at one day (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-8640000) },
      "http://x/",
      T,
      86400,
    ],
    [
      "gives zero heuristic lifetime without Last-Modified when no rule matches (§4.2.2)",
      200,
      { date: at(0) },
      "http://x/",
      T,
      0,
    ],
    [
      "treats an invalid Last-Modified as absent (§4.2.2)",
      200,
      { date: at(0), "last-modified": "0" },
      "http://x/",
      T,
      0,
    ],
    [
      "gives zero when Last-Modified is after Date (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(500) },
      "http://x/",
      T,
      0,
    ],
    [
      "measures Last-Modified from the response time when Date is missing (§4.2.2)",
      200,
      { "last-modified": at(-1000) },
      "http://x/",
      T,
      100,
    ],
    [
      "applies the heuristic to a heuristically cacheable 404 (§4.2.2)",
      404,
      { date: at(0), "last-modified": at(-1000) },
      "http://x/",
      T,
      100,
    ],
    [
      "gives no heuristic lifetime to a 302 (§4.2.2)",
      302,
      { date: at(0), "last-modified": at(-1000) },
      "http://x/",
      T,
      0,
    ],
    [
      "applies the heuristic to a public 302 (§4.2.2)",
      302,
      { "cache-control": "public", date: at(0), "last-modified": at(-1000) },
      "http://x/",
      T,
      100,
    ],
    ["uses a matching TTL rule's min without Last-Modified (§4.2.2)", 200, { date: at(0) }, URL_EXE, T, 100],
    [
      "uses lmFactor × time since Last-Modified within a rule's bounds (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-2500) },
      URL_EXE,
      T,
      500,
    ],
    ["raises a rule's heuristic to its min (§4.2.2)", 200, { date: at(0), "last-modified": at(-10) }, URL_EXE, T, 100],
    [
      "gives exactly a rule's min at the lower boundary (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-500) },
      URL_EXE,
      T,
      100,
    ],
    [
      "gives exactly a rule's max at the upper boundary (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-5000) },
      URL_EXE,
      T,
      1000,
    ],
    [
      "lowers a rule's heuristic to its max (§4.2.2)",
      200,
      { date: at(0), "last-modified": at(-1e6) },
      URL_EXE,
      T,
      1000,
    ],
    ["uses the first matching rule (§4.2.2)", 200, { date: at(0) }, "https://dl.example.com/setup.exe", T, 100],
    [
      "uses the next rule when the first does not match (§4.2.2)",
      200,
      { date: at(0) },
      "https://dl.example.com/readme",
      T,
      5,
    ],
    ["prefers max-age over a matching rule (§4.2.1)", 200, { "cache-control": "max-age=7" }, URL_EXE, T, 7],
    ["prefers Expires over a matching rule (§4.2.1)", 200, { date: at(0), expires: at(3) }, URL_EXE, T, 3],
    [
      "does not apply an operator rule to a 404: a missing file is not remembered for the rule's min (§4.2.2)",
      404,
      {},
      URL_EXE,
      T,
      0,
    ],
    ["does not apply a matching rule to a 302 (§4.2.2)", 302, {}, URL_EXE, T, 0],
    [
      "does not apply an operator rule to a public 302 either (rules speak for 200s) (§4.2.2)",
      302,
      { "cache-control": "public" },
      URL_EXE,
      T,
      0,
    ],
  ];

  test.each(cases)("%s", (_name, status, fields, url, responseTime, expected) => {
    expect(freshnessLifetime({ status, headers: new Headers(fields) }, url, RULES, responseTime)).toBe(expected);
  });

  test("reads an asctime date as UTC whatever the local time zone (RFC 9110 §5.6.7)", () => {
    const previous = process.env.TZ;
    process.env.TZ = "America/New_York";
    try {
      const headers = new Headers({ expires: "Sun Nov  6 08:51:37 1994" });
      expect(freshnessLifetime({ status: 200, headers }, "http://x/", [], T)).toBe(120);
    } finally {
      if (previous === undefined) delete process.env.TZ;
      else process.env.TZ = previous;
    }
  });
});

describe("currentAge (RFC 9111 §4.2.3)", () => {
  const cases: [string, Fields, number, number, number][] = [
    // [name, response fields, requestTime offset (s), now offset (s), expected seconds]
    ["is zero for a response just received with a current Date (§4.2.3)", { date: at(0) }, 0, 0, 0],
    ["adds the resident time since the response arrived (§4.2.3)", { date: at(0) }, 0, 30, 30],
    ["floors the age to whole seconds (§4.2.3)", { date: at(0) }, 0, 1.999, 1],
    ["adds the response delay to the Age header (§4.2.3)", { date: at(0), age: "100" }, -2, 0, 102],
    ["uses the apparent age when Date is older than the response time (§4.2.3)", { date: at(-60) }, 0, 0, 60],
    ["clamps a negative apparent age from a Date in the future to zero (§4.2.3)", { date: at(3600) }, 0, 5, 5],
    [
      "takes the apparent age when it exceeds the corrected Age value (§4.2.3)",
      { date: at(-60), age: "10" },
      -1,
      0,
      60,
    ],
    [
      "takes the corrected Age value when it exceeds the apparent age (§4.2.3)",
      { date: at(-10), age: "100" },
      -1,
      0,
      101,
    ],
    ["treats a missing Date as the response time (§4.2.3)", { age: "7" }, 0, 3, 10],
    ["treats an invalid Date as the response time (§4.2.3)", { date: "now", age: "7" }, 0, 3, 10],
    ["ignores a non-numeric Age header (§5.1)", { date: at(0), age: "abc" }, 0, 0, 0],
    ["ignores a negative Age header (§5.1)", { date: at(0), age: "-5" }, 0, 0, 0],
    ["ignores a fractional Age header (§5.1)", { date: at(0), age: "1.5" }, 0, 0, 0],
    [
      "uses the first member of a list-valued Age header (§5.1)",
      [
        ["age", "10"],
        ["age", "20"],
      ],
      0,
      0,
      10,
    ],
    ["caps a huge Age header at 2^31 seconds (§1.2.2)", { age: "99999999999999" }, 0, 0, 2 ** 31],
    ["never returns a negative age if now precedes the response time (§4.2.3)", { date: at(0) }, 0, -30, 0],
  ];

  test.each(cases)("%s", (_name, fields, requestOffset, nowOffset, expected) => {
    const timing = { requestTime: T + requestOffset * 1000, responseTime: T };
    expect(currentAge(new Headers(fields), timing, T + nowOffset * 1000)).toBe(expected);
  });
});

describe("freshness (RFC 9111 §4.2, §5.2.1)", () => {
  const cases: [string, Fields, Fields, number, "fresh" | "stale"][] = [
    // [name, request fields, response fields, now offset (s), verdict]; responses carry Date = response time
    ["is fresh while the lifetime exceeds the age (§4.2)", {}, { "cache-control": "max-age=60" }, 59, "fresh"],
    ["is stale once the age equals the lifetime (§4.2)", {}, { "cache-control": "max-age=60" }, 60, "stale"],
    ["is stale once the age exceeds the lifetime (§4.2)", {}, { "cache-control": "max-age=60" }, 61, "stale"],
    ["is stale at age zero for a zero lifetime (§4.2)", {}, { "cache-control": "max-age=0" }, 0, "stale"],
    ["is always stale for a no-cache response (§5.2.2.4)", {}, { "cache-control": "no-cache, max-age=60" }, 0, "stale"],
    [
      "is stale when the request says no-cache (§5.2.1.4)",
      { "cache-control": "no-cache" },
      { "cache-control": "max-age=60" },
      0,
      "stale",
    ],
    [
      "treats request Pragma: no-cache without Cache-Control as no-cache (§5.4)",
      { pragma: "no-cache" },
      { "cache-control": "max-age=60" },
      0,
      "stale",
    ],
    [
      "ignores request Pragma when Cache-Control is present (§5.4)",
      { pragma: "no-cache", "cache-control": "max-age=30" },
      { "cache-control": "max-age=60" },
      0,
      "fresh",
    ],
    [
      "is fresh when the age equals the request's max-age (§5.2.1.1)",
      { "cache-control": "max-age=10" },
      { "cache-control": "max-age=60" },
      10,
      "fresh",
    ],
    [
      "is stale when the age exceeds the request's max-age (§5.2.1.1)",
      { "cache-control": "max-age=10" },
      { "cache-control": "max-age=60" },
      11,
      "stale",
    ],
    [
      "is fresh at age zero for a request max-age=0 (§5.2.1.1)",
      { "cache-control": "max-age=0" },
      { "cache-control": "max-age=60" },
      0,
      "fresh",
    ],
    [
      "ignores a malformed request max-age (§1.2.2/§5.2.1.1)",
      { "cache-control": "max-age=-1" },
      { "cache-control": "max-age=60" },
      30,
      "fresh",
    ],
    [
      "is fresh when the remaining lifetime equals min-fresh (§5.2.1.3)",
      { "cache-control": "min-fresh=10" },
      { "cache-control": "max-age=60" },
      50,
      "fresh",
    ],
    [
      "is stale when the remaining lifetime is below min-fresh (§5.2.1.3)",
      { "cache-control": "min-fresh=10" },
      { "cache-control": "max-age=60" },
      51,
      "stale",
    ],
    [
      "does not serve a stale response because of request max-stale=N (§5.2.1.2)",
      { "cache-control": "max-stale=1000" },
      { "cache-control": "max-age=60" },
      70,
      "stale",
    ],
    [
      "does not serve a stale response because of a valueless max-stale (§5.2.1.2)",
      { "cache-control": "max-stale" },
      { "cache-control": "max-age=60" },
      70,
      "stale",
    ],
    [
      "counts the Age header against the lifetime (§4.2.3)",
      {},
      { "cache-control": "max-age=60", age: "55" },
      5,
      "stale",
    ],
  ];

  test.each(cases)("%s", (_name, reqFields, resFields, nowOffset, verdict) => {
    const res = { status: 200, headers: new Headers({ date: at(0), ...resFields }) };
    const timing = { requestTime: T, responseTime: T };
    const result = freshness({ headers: new Headers(reqFields) }, res, timing, URL_EXE, RULES, T + nowOffset * 1000);
    expect(result.verdict).toBe(verdict);
  });

  test("reports the age and lifetime it judged by (§4.2)", () => {
    const res = { status: 200, headers: new Headers({ date: at(-5), "cache-control": "max-age=60", age: "3" }) };
    const result = freshness(
      { headers: new Headers() },
      res,
      { requestTime: T - 1000, responseTime: T },
      "http://x/",
      [],
      T + 10_000,
    );
    expect(result).toEqual({ verdict: "fresh", age: 15, lifetime: 60 });
  });

  test("uses the response time for Expires when Date is missing (§4.2.1)", () => {
    const res = { status: 200, headers: new Headers({ expires: at(60) }) };
    const result = freshness(
      { headers: new Headers() },
      res,
      { requestTime: T, responseTime: T },
      "http://x/",
      [],
      T + 20_000,
    );
    expect(result).toEqual({ verdict: "fresh", age: 20, lifetime: 60 });
  });

  test("applies the URL's TTL rule when the response has no explicit freshness (§4.2.2)", () => {
    const res = { status: 200, headers: new Headers({ date: at(0) }) };
    const timing = { requestTime: T, responseTime: T };
    expect(freshness({ headers: new Headers() }, res, timing, URL_EXE, RULES, T + 99_000)).toEqual({
      verdict: "fresh",
      age: 99,
      lifetime: 100,
    });
    expect(freshness({ headers: new Headers() }, res, timing, "http://x/", RULES, T).verdict).toBe("stale");
  });
});

describe("mayServeStale (RFC 9111 §4.2.4)", () => {
  test.each<[string, string | null, boolean]>([
    ["allows serving stale without Cache-Control (§4.2.4)", null, true],
    ["allows serving stale with only max-age and public (§4.2.4)", "public, max-age=60", true],
    ["forbids serving stale with must-revalidate (§5.2.2.2)", "max-age=60, must-revalidate", false],
    ["forbids serving stale with proxy-revalidate (§5.2.2.8)", "proxy-revalidate", false],
    ["forbids serving stale with no-cache (§5.2.2.4)", "no-cache", false],
    ["forbids serving stale with s-maxage, which implies proxy-revalidate (§5.2.2.10)", "s-maxage=60", false],
    ["forbids serving stale with s-maxage=0 (§5.2.2.10)", "max-age=60, s-maxage=0", false],
    ["matches directive names case-insensitively (§5.2)", "Must-Revalidate", false],
  ])("%s", (_name, cacheControl, expected) => {
    const headers = new Headers(cacheControl === null ? {} : { "cache-control": cacheControl });
    expect(mayServeStale({ headers })).toBe(expected);
  });
});

describe("mergeNotModified (RFC 9111 §4.3.4)", () => {
  test("replaces stored fields with those in the 304 and keeps the rest (§4.3.4)", () => {
    const stored = new Headers({ etag: '"v1"', "cache-control": "max-age=60", "content-type": "application/zip" });
    const merged = mergeNotModified(stored, new Headers({ ETag: '"v2"', "Cache-Control": "max-age=120", date: at(0) }));
    expect(Object.fromEntries(merged)).toEqual({
      etag: '"v2"',
      "cache-control": "max-age=120",
      "content-type": "application/zip",
      date: at(0),
    });
  });

  test.each([
    "Content-Length",
    "Content-Encoding",
    "Transfer-Encoding",
    "Content-Range",
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Upgrade",
  ])("keeps the stored %s, which a 304 must not update (§4.3.4)", (name) => {
    const merged = mergeNotModified(new Headers({ [name]: "stored" }), new Headers({ [name]: "new" }));
    expect(merged.get(name)).toBe("stored");
  });

  test("does not add a protected field that only the 304 carries (§4.3.4)", () => {
    const merged = mergeNotModified(new Headers({ etag: '"v1"' }), new Headers({ "content-length": "0" }));
    expect(merged.has("content-length")).toBe(false);
  });

  test("keeps stored fields that the 304's Connection header names as hop-by-hop (§4.3.4, RFC 9110 §7.6.1)", () => {
    const merged = mergeNotModified(
      new Headers({ "x-hop": "stored" }),
      new Headers({ connection: "X-Hop", "x-hop": "new" }),
    );
    expect(merged.get("x-hop")).toBe("stored");
  });

  test("replaces all stored Set-Cookie fields as a group (§4.3.4)", () => {
    const stored = new Headers([
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2"],
    ]);
    const merged = mergeNotModified(
      stored,
      new Headers([
        ["set-cookie", "c=3"],
        ["set-cookie", "d=4"],
      ]),
    );
    expect(merged.getSetCookie()).toEqual(["c=3", "d=4"]);
  });

  test("replaces a multi-valued field as a group (§4.3.4)", () => {
    const stored = new Headers([
      ["link", "</a>"],
      ["link", "</b>"],
    ]);
    const merged = mergeNotModified(stored, new Headers([["link", "</c>"]]));
    expect(merged.get("link")).toBe("</c>");
  });

  test("leaves the stored Headers object unchanged (§4.3.4)", () => {
    const stored = new Headers({ etag: '"v1"' });
    mergeNotModified(stored, new Headers({ etag: '"v2"' }));
    expect(stored.get("etag")).toBe('"v1"');
  });
});

describe("matchTtlRule (RFC 9111 §4.2.2 heuristics)", () => {
  const rule = (pattern: string): TtlRule => ({ pattern, min: 1, lmFactor: 0.1, max: 2 });

  test.each<[string, string, string[], number | undefined]>([
    ["finds no rule in an empty list", "http://x/a.exe", [], undefined],
    ["returns the first matching rule, not a later one", "http://x/a.exe", ["\\.zip$", "\\.exe$", "."], 1],
    ["matches a pattern anywhere in the URL, as Squid does", "http://x/a.exe", ["x/a"], 0],
    ["honours anchors in a pattern", "http://x/a.exe", ["^x/a"], undefined],
    ["matches case-sensitively", "http://x/A.EXE", ["\\.exe$"], undefined],
    ["matches against the full URL including the query", "http://x/a?dl=1", ["\\?dl=1$"], 0],
  ])("%s", (_name, url, patterns, index) => {
    const rules = patterns.map(rule);
    expect(matchTtlRule(url, rules)).toBe(index === undefined ? undefined : rules[index]);
  });

  test("gives the same answer on repeated calls with a cached pattern", () => {
    const rules = [rule("\\.msi$")];
    expect([1, 2, 3].map(() => matchTtlRule("http://x/a.msi", rules))).toEqual([rules[0], rules[0], rules[0]]);
  });

  test("throws for an invalid pattern, which config validation rejects first", () => {
    expect(() => matchTtlRule("http://x/", [rule("(")])).toThrow();
  });

  test("matches in linear time: a backtracking-prone pattern does not stall on a crafted URL", () => {
    // A backtracking engine would not finish this within the age of the universe (the test would time out).
    const crafted = `http://x/${"a".repeat(50_000)}!`;
    expect(matchTtlRule(crafted, [rule("(a+)+$")])).toBeUndefined();
    expect(matchTtlRule(`http://x/${"a".repeat(50_000)}`, [rule("(a+)+$")])).toBeDefined();
  });
});
