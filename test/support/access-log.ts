import { existsSync, readFileSync } from "node:fs";
import type { AccessLogFormat } from "../../src/config/env.ts";
import { waitFor } from "./wait.ts";

/** The fields every access log format carries, read back from one line. */
export interface LoggedRequest {
  client: string;
  user: string | null;
  method: string;
  url: string;
  status: number;
  bytes: number;
  /** squid: `CODE` of `CODE/status`; json: squidCode; combined: none (it has the label). */
  squidCode?: string;
  /** combined and json: the X-Cache label (null: a refusal). */
  cache?: string | null;
  line: string;
}

// time.ms elapsed client CODE/status bytes method URL user hierarchy/host type
const SQUID = /^(\d{10}\.\d{3}) +(\d+) (\S+) ([A-Z_]+)\/(\d{3}) (\d+) (\S+) (\S+) (\S+) ([A-Z_]+)\/(\S+) (\S+)$/;
// client - user [day/Mon/year:HH:MM:SS +0000] "METHOD URL HTTP/x.y" status bytes "referer" "user-agent" cache=LABEL
const COMBINED =
  /^(\S+) - (\S+) \[(\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000)\] "(\S+) (\S+) HTTP\/\d\.\d" (\d{3}) (\d+) "([^"]*)" "([^"]*)" cache=(\S+)$/;

/** Parses one line of `format`; throws, quoting it, if it does not match the format. */
export function parseLine(format: AccessLogFormat, line: string): LoggedRequest {
  if (format === "json") {
    const o = JSON.parse(line);
    return { ...o, user: o.user, cache: o.cache, squidCode: o.squidCode, line };
  }
  const m = (format === "squid" ? SQUID : COMBINED).exec(line);
  if (!m) throw new Error(`not a ${format} access log line: ${JSON.stringify(line)}`);
  const dash = (s: string) => (s === "-" ? null : s);
  if (format === "squid") {
    return {
      client: m[3]!,
      squidCode: m[4]!,
      status: Number(m[5]),
      bytes: Number(m[6]),
      method: m[7]!,
      url: m[8]!,
      user: dash(m[9]!),
      line,
    };
  }
  return {
    client: m[1]!,
    user: dash(m[2]!),
    method: m[4]!,
    url: m[5]!,
    status: Number(m[6]),
    bytes: Number(m[7]),
    cache: dash(m[10]!),
    line,
  };
}

/** The lines of an access log file so far (none if it does not exist yet). */
export function linesOf(path: string): string[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  if (text !== "" && !text.endsWith("\n")) throw new Error(`${path} ends in the middle of a line`);
  return text.split("\n").filter((l) => l !== "");
}

/** Waits until the file holds at least `n` lines (the log is written every second), then parses them all. */
export async function loggedRequests(path: string, format: AccessLogFormat, n: number): Promise<LoggedRequest[]> {
  await waitFor(`${n} lines in ${path}`, () => linesOf(path).length >= n, 5000);
  return linesOf(path).map((l) => parseLine(format, l));
}
