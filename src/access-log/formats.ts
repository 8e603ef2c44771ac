import type { AccessLogFormat } from "../config/env.ts";
import type { Served } from "../stats/collector.ts";
import { squidResult } from "./squid-codes.ts";

/** One access log line (with its newline) for a response reported at `time` (ms since the epoch). */
export type LineFormat = (s: Served, time: number) => string;

/**
 * Squid's native access.log format (logformat `squid`):
 * `%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`, i.e.
 * `time.ms elapsed client CODE/status bytes method URL user hierarchy/host type`.
 * bytes are body bytes (Squid counts the head too).
 */
export const squidLine: LineFormat = (s, time) => {
  const r = squidResult(s);
  const seconds = `${Math.floor(time / 1000)}.${String(time % 1000).padStart(3, "0")}`;
  const status = String(s.status).padStart(3, "0");
  return (
    `${seconds} ${String(Math.round(s.elapsedMs)).padStart(6)} ${address(s.client)} ${r.code}/${status} ${s.bytes} ` +
    `${token(s.method)} ${token(s.url)} ${token(s.user)} ${r.hierarchy}/${r.upstream ?? "-"} ${token(s.contentType)}\n`
  );
};

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n: number) => String(n).padStart(2, "0");

/**
 * Apache/nginx `combined`, then the X-Cache label as ` cache=LABEL` (`-`
 * for the gateway's own refusals):
 * `client - user [day/Mon/year:HH:MM:SS +0000] "METHOD URL HTTP/x.y" status bytes "referer" "user-agent" cache=HIT`.
 */
export const combinedLine: LineFormat = (s, time) => {
  const d = new Date(time);
  const when =
    `${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
  const request = `${token(s.method)} ${token(s.url)} HTTP/${s.httpVersion ?? "1.1"}`;
  return (
    `${address(s.client)} - ${token(s.user)} [${when}] "${request}" ${s.status} ${s.bytes} ` +
    `${quoted(s.referer)} ${quoted(s.userAgent)} cache=${s.label ?? "-"}\n`
  );
};

/** One JSON object per line; the field names are stable (README, "Access log"). */
export const jsonLine: LineFormat = (s, time) => {
  const r = squidResult(s);
  return `${JSON.stringify({
    time: new Date(time).toISOString(),
    elapsedMs: Math.round(s.elapsedMs),
    client: address(s.client),
    user: s.user ?? null,
    method: s.method,
    url: s.url,
    httpVersion: s.httpVersion ?? null,
    status: s.status,
    bytes: s.bytes,
    cache: s.label,
    squidCode: r.code,
    hierarchy: r.hierarchy,
    upstream: r.upstream,
    contentType: s.contentType ?? null,
    referer: s.referer ?? null,
    userAgent: s.userAgent ?? null,
  })}\n`;
};

export const LINE_FORMATS: Record<AccessLogFormat, LineFormat> = {
  squid: squidLine,
  combined: combinedLine,
  json: jsonLine,
};

/** An IPv4 agent on a dual-stack socket is logged as Squid and nginx log it: 10.0.0.1, not ::ffff:10.0.0.1. */
const address = (client: string) => (client.startsWith("::ffff:") ? client.slice(7) : client) || "-";

/**
 * A space-separated field: `-` when absent; whitespace and `"` (and control
 * characters) percent-encoded, so a field never splits in two. A `%` stays
 * as it is, as Squid's rfc1738_escape_unescaped leaves it: URLs arrive
 * percent-encoded already (`/Windows%2010.msu`), and encoding their `%`
 * again would log a URL the agent never asked for (`%2520`).
 */
function token(value: string | null | undefined): string {
  if (!value) return "-";
  return value.replace(/[\s"\p{Cc}]/gu, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`);
}

/** A quoted field of the combined format, escaped as nginx does (`\x22` for a quote). */
function quoted(value: string | undefined): string {
  if (!value) return '"-"';
  const escaped = value.replace(
    /["\\\p{Cc}]/gu,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`,
  );
  return `"${escaped}"`;
}
