import { firstMatch } from "../config/url-pattern.ts";

// HTTP caching policy for a SHARED cache (RFC 9111). Pure functions: no I/O,
// no clock. Times go in as ms since epoch; ages and lifetimes come out in seconds.

/** Lower-cased directive names; values without quotes; `true` when valueless. */
export type Directives = Map<string, string | true>;

/**
 * Operator TTL rule, modelled on Squid's refresh_pattern: `pattern` is a RegExp source tested
 * (unanchored, case-sensitive) against the full URL; min/max in seconds; lmFactor a fraction.
 */
export interface TtlRule {
  pattern: string;
  min: number;
  lmFactor: number;
  max: number;
  /** Seconds past freshness during which a stale entry is served while it revalidates (nginx's background update). */
  staleWhileRevalidate?: number;
}

export type Storability = { storable: true } | { storable: false; reason: string };

/** When the request was sent and the response received, in ms since epoch. */
export interface ResponseTiming {
  requestTime: number;
  responseTime: number;
}

export type Verdict = "fresh" | "stale";

/**
 * Status codes that are heuristically cacheable (RFC 9111 §4.2.2, listed in
 * RFC 9110 §15.1). Two codes from that list are deliberately left out:
 * - 206: we only ever store complete responses; a partial body cannot be
 *   served as the full representation.
 * - 501: product rule "5xx are never stored"; an origin error must not be
 *   pinned in the cache and replayed to the whole fleet.
 */
export const HEURISTICALLY_CACHEABLE: ReadonlySet<number> = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414]);

/** Status codes whose caching rules this cache implements (for must-understand, RFC 9111 §5.2.2.3). */
const UNDERSTOOD: ReadonlySet<number> = new Set([...HEURISTICALLY_CACHEABLE, 302, 303, 307]);

/** A field name is a token (RFC 9110 §5.1, §5.6.2). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const MAX_DEFAULT_HEURISTIC = 86_400; // one day, RFC 9111 §4.2.2
const DELTA_SECONDS_CAP = 2 ** 31; // RFC 9111 §1.2.2: larger values become 2^31

/**
 * A list member (RFC 9110 §5.6.1): a run of anything but commas and quoted-strings
 * (RFC 9110 §5.6.4), which may contain commas and may be unterminated.
 */
const LIST_MEMBER = /(?:[^,"]|"(?:\\.|[^"\\])*"?)+/g;

/** Tolerant Cache-Control (or Pragma) parser. RFC 9111 §5.2. */
export function parseCacheControl(value: string | null): Directives {
  const directives: Directives = new Map();
  if (value === null) return directives;
  for (const member of value.match(LIST_MEMBER) ?? []) {
    const eq = member.indexOf("=");
    const name = (eq === -1 ? member : member.slice(0, eq)).trim().toLowerCase();
    // RFC 9111 §4.2.1: with duplicate directives, use the first occurrence.
    if (name === "" || directives.has(name)) continue;
    directives.set(name, eq === -1 ? true : unquote(member.slice(eq + 1).trim()));
  }
  return directives;
}

/** Strip a quoted-string's quotes and quoted-pairs; an unterminated quote is tolerated. */
function unquote(value: string): string {
  if (!value.startsWith('"')) return value;
  const end = value.length > 1 && value.endsWith('"') ? value.length - 1 : value.length;
  return value.slice(1, end).replace(/\\(.)/g, "$1");
}

/** RFC 9111 §1.2.2: delta-seconds = 1*DIGIT; anything else is invalid (undefined). */
export function deltaSeconds(value: string | true | undefined): number | undefined {
  if (typeof value !== "string" || !/^\d+$/.test(value)) return undefined;
  return Math.min(Number(value), DELTA_SECONDS_CAP);
}

// RFC 9110 §5.6.7: IMF-fixdate, plus the obsolete RFC 850 and asctime forms.
// Date.parse alone is far too lenient: it reads "0" as 1 January 2000.
const IMF_FIXDATE = /^[a-z]{3}, \d{2} [a-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/i;
const RFC850_DATE = /^[a-z]+, \d{2}-[a-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/i;
const ASCTIME_DATE = /^[a-z]{3} [a-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/i;

/** An HTTP-date in ms since epoch, or undefined when absent or invalid. */
function parseHttpDate(value: string | null): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  let ms = NaN;
  if (IMF_FIXDATE.test(text) || RFC850_DATE.test(text)) ms = Date.parse(text);
  else if (ASCTIME_DATE.test(text)) ms = Date.parse(`${text} GMT`); // asctime is implicitly UTC
  return Number.isNaN(ms) ? undefined : ms;
}

/** May a shared cache store this response at all? RFC 9111 §3. */
export function storability(
  req: { method: string; headers: Headers },
  res: { status: number; headers: Headers },
  hasTtlRule: boolean,
): Storability {
  const resCc = parseCacheControl(res.headers.get("cache-control"));
  const reason =
    messageRejection(req.method, res.status) ??
    directiveRejection(req.headers, res.headers, resCc, res.status) ??
    (canAssignFreshness(res, resCc, hasTtlRule) ? undefined : `status ${res.status} has no freshness information`);
  return reason === undefined ? { storable: true } : { storable: false, reason };
}

/** RFC 9111 §3: cacheable method, final status. Returns a reason to refuse, if any. */
function messageRejection(method: string, status: number): string | undefined {
  // GET only: HEAD is converted to GET by the caller. Methods are case-sensitive (RFC 9110 §9.1).
  if (method !== "GET") return `request method ${method} is not stored`;
  if (status < 200 || status > 599) return `status ${status} is not a final response`;
  // 206 and 304 are not full responses; we only store complete ones.
  if (status === 206) return "partial content (206) is not stored";
  if (status === 304) return "304 Not Modified is not a full response";
  if (status >= 500) return `5xx responses are never stored (status ${status})`; // product rule
  return undefined;
}

/** Directives and fields that forbid storing. Returns a reason to refuse, if any. */
function directiveRejection(
  reqHeaders: Headers,
  resHeaders: Headers,
  resCc: Directives,
  status: number,
): string | undefined {
  const reqCc = parseCacheControl(reqHeaders.get("cache-control"));
  // RFC 9111 §3, §5.2.1.5, §5.2.2.5: no-store in either message.
  if (reqCc.has("no-store")) return "request Cache-Control: no-store";
  // §5.2.2.3: must-understand overrides no-store for a status code whose caching rules the cache implements,
  // and forbids storing one it does not.
  if (resCc.has("must-understand")) {
    if (!UNDERSTOOD.has(status)) return `must-understand, and status ${status} is not one this cache implements`;
  } else if (resCc.has("no-store")) return "response Cache-Control: no-store";
  // RFC 9111 §5.2.2.7: a shared cache must not store private responses; the
  // qualified form private="field" is treated the same (conservative).
  if (resCc.has("private")) return "response Cache-Control: private";
  // RFC 9111 §3.5: authenticated requests need explicit permission to be shared.
  const shareable = resCc.has("public") || resCc.has("s-maxage") || resCc.has("must-revalidate");
  if (reqHeaders.has("authorization") && !shareable) return "request has Authorization and response is not public";
  // RFC 9111 §4.1: Vary: * can never be matched by a later request; nor can a Vary member that is not a field name.
  const varied = (resHeaders.get("vary") ?? "").split(",").map((field) => field.trim());
  if (varied.includes("*")) return "response Vary: *";
  if (varied.some((field) => field !== "" && !FIELD_NAME.test(field))) return "response Vary names an invalid field";
  // Product rule, as nginx's proxy_cache: a response that sets a cookie is somebody's own, not the fleet's.
  if (resHeaders.has("set-cookie")) return "response sets a cookie";
  return undefined;
}

/**
 * RFC 9111 §3: the response needs explicit freshness, public, or a
 * heuristically cacheable status. Response no-cache (§5.2.2.4) does not stop
 * storing; freshnessLifetime() makes such a response revalidate on every use.
 */
function canAssignFreshness(res: { status: number; headers: Headers }, resCc: Directives, byRule: boolean): boolean {
  const explicit =
    deltaSeconds(resCc.get("s-maxage")) !== undefined ||
    deltaSeconds(resCc.get("max-age")) !== undefined ||
    res.headers.has("expires");
  // Operator TTL rules (like nginx proxy_cache_valid) cover 200 only. 200 is
  // heuristically cacheable today; this keeps the rule independent of that set.
  const ruled = byRule && res.status === 200;
  return explicit || resCc.has("public") || HEURISTICALLY_CACHEABLE.has(res.status) || ruled;
}

/** Freshness lifetime in seconds (RFC 9111 §4.2.1); `responseTime` (ms) stands in for a missing Date. */
export function freshnessLifetime(
  res: { status: number; headers: Headers },
  url: string,
  rules: readonly TtlRule[],
  responseTime?: number,
): number {
  const cc = parseCacheControl(res.headers.get("cache-control"));
  // RFC 9111 §5.2.2.4: no-cache (qualified or not) means revalidate every use.
  if (cc.has("no-cache")) return 0;
  // RFC 9111 §4.2.1: s-maxage (shared caches only), then max-age, then Expires.
  // Invalid delta-seconds are ignored (§1.2.2), so the next source applies.
  const explicit = deltaSeconds(cc.get("s-maxage")) ?? deltaSeconds(cc.get("max-age"));
  if (explicit !== undefined) return explicit;
  const date = parseHttpDate(res.headers.get("date")) ?? responseTime;
  if (res.headers.has("expires")) {
    // RFC 9111 §5.3: an invalid Expires (e.g. "0") means already expired.
    const expires = parseHttpDate(res.headers.get("expires"));
    if (expires === undefined || date === undefined) return 0;
    return Math.max(0, Math.floor((expires - date) / 1000));
  }
  // RFC 9111 §4.2.2: heuristics only for heuristically cacheable statuses or public.
  if (!HEURISTICALLY_CACHEABLE.has(res.status) && !cc.has("public")) return 0;
  // Operator TTL rules speak for successful downloads only: a missing
  // installer (404) must not be remembered as missing for the rule's `min`.
  return heuristicLifetime(res.headers, date, res.status === 200 ? matchTtlRule(url, rules) : undefined);
}

/** RFC 9111 §4.2.2: a fraction of the time since Last-Modified. */
function heuristicLifetime(headers: Headers, date: number | undefined, rule: TtlRule | undefined): number {
  const lastModified = parseHttpDate(headers.get("last-modified"));
  const sinceModified =
    date === undefined || lastModified === undefined ? undefined : Math.max(0, (date - lastModified) / 1000);
  if (rule !== undefined) {
    // Squid refresh_pattern style: lmFactor × age, clamped to [min, max].
    if (sinceModified === undefined) return rule.min;
    return Math.min(rule.max, Math.max(rule.min, Math.floor(rule.lmFactor * sinceModified)));
  }
  // The RFC's "typical" 10%, capped at one day.
  if (sinceModified === undefined) return 0;
  return Math.min(MAX_DEFAULT_HEURISTIC, Math.floor(0.1 * sinceModified));
}

/** RFC 9111 §5.1: Age is delta-seconds; for a list use the first member; invalid → 0. */
function ageValue(headers: Headers): number {
  const first = headers.get("age")?.split(",")[0]?.trim();
  return deltaSeconds(first) ?? 0;
}

/** Current age in whole seconds (RFC 9111 §4.2.3). */
export function currentAge(headers: Headers, timing: ResponseTiming, now: number): number {
  const { requestTime, responseTime } = timing;
  const dateValue = parseHttpDate(headers.get("date")) ?? responseTime;
  const apparentAge = Math.max(0, responseTime - dateValue) / 1000;
  const responseDelay = (responseTime - requestTime) / 1000;
  const correctedAgeValue = ageValue(headers) + responseDelay;
  const correctedInitialAge = Math.max(apparentAge, correctedAgeValue);
  const residentTime = (now - responseTime) / 1000;
  return Math.max(0, Math.floor(correctedInitialAge + residentTime));
}

/** Request directives; RFC 9111 §5.4: Pragma: no-cache counts only without Cache-Control. */
export function requestDirectives(headers: Headers): Directives {
  const cc = headers.get("cache-control");
  const pragmaNoCache = cc === null && parseCacheControl(headers.get("pragma")).has("no-cache");
  return pragmaNoCache ? new Map([["no-cache", true]]) : parseCacheControl(cc);
}

/** Do the request's directives (RFC 9111 §5.2.1) accept a response this fresh? */
function requestAccepts(cc: Directives, lifetime: number, age: number): boolean {
  if (cc.has("no-cache")) return false; // §5.2.1.4
  const maxAge = deltaSeconds(cc.get("max-age"));
  if (maxAge !== undefined && age > maxAge) return false; // §5.2.1.1
  const minFresh = deltaSeconds(cc.get("min-fresh"));
  if (minFresh !== undefined && lifetime - age < minFresh) return false; // §5.2.1.3
  // max-stale (§5.2.1.2) is ignored on purpose: we never serve stale content
  // because a client asked for it, only via mayServeStale() on origin failure.
  return true;
}

/** Is the stored response fresh for this request? RFC 9111 §4.2, §5.2.1. */
export function freshness(
  req: { headers: Headers },
  res: { status: number; headers: Headers },
  timing: ResponseTiming,
  url: string,
  rules: readonly TtlRule[],
  now: number,
): { verdict: Verdict; age: number; lifetime: number } {
  const lifetime = freshnessLifetime(res, url, rules, timing.responseTime);
  const age = currentAge(res.headers, timing, now);
  // RFC 9111 §4.2: fresh iff the freshness lifetime exceeds the current age.
  const fresh = lifetime > age && requestAccepts(requestDirectives(req.headers), lifetime, age);
  return { verdict: fresh ? "fresh" : "stale", age, lifetime };
}

/** Headers a 304 must not overwrite: framing fields and hop-by-hop fields. */
const KEEP_STORED = new Set([
  "content-length",
  "content-encoding",
  "transfer-encoding",
  "content-range",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
]);

/** Update stored headers from a 304 response (RFC 9111 §4.3.4). */
export function mergeNotModified(stored: Headers, notModified: Headers): Headers {
  const merged = new Headers(stored);
  // RFC 9110 §7.6.1: fields named in Connection are hop-by-hop too.
  const keep = new Set(KEEP_STORED);
  for (const name of (notModified.get("connection") ?? "").split(",")) keep.add(name.trim().toLowerCase());
  const replaced = new Set<string>();
  // Iteration yields lower-cased names; Set-Cookie values one by one, so a
  // multi-valued field is replaced as a group.
  for (const [name, value] of notModified) {
    if (keep.has(name)) continue;
    if (!replaced.has(name)) merged.delete(name);
    replaced.add(name);
    merged.append(name, value);
  }
  // The stored Age described the stored response when it arrived; counted again from the 304's arrival it
  // would age the refreshed response twice (§4.2.3). The 304's own Age, if any, was merged above.
  if (!notModified.has("age")) merged.delete("age");
  return merged;
}

/** The first rule whose pattern matches the URL (RE2: linear time, whatever the pattern). */
export function matchTtlRule(url: string, rules: readonly TtlRule[]): TtlRule | undefined {
  return firstMatch(url, rules);
}
