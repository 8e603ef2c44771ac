import { join } from "node:path";
import { spawnChild } from "./procs.ts";

/** Something agents download from: the origin or nginx directly, or a proxy in front of the origin. */
export interface Target {
  name: string;
  /** The URL agents ask for: a direct URL, or (through a proxy) the origin's absolute URL. */
  url(path: string): string;
  /** `http://127.0.0.1:PORT` of the proxy requests go through, if any. */
  proxy?: string;
}

/** fetch as an agent would: through the target's proxy (absolute-form) or straight to it, never via env proxies. */
export function agentFetch(target: Target, url: string, headers?: Record<string, string>): Promise<Response> {
  return fetch(url, {
    headers,
    proxy: target.proxy === undefined ? false : { url: target.proxy, respectNoProxy: false },
  });
}

/** Reads a body to the end without keeping it; calls `onFirstByte` when the first bytes arrive. */
export async function drain(res: Response, onFirstByte?: () => void): Promise<number> {
  if (res.body === null) return 0;
  const reader = res.body.getReader();
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return bytes;
    if (bytes === 0 && value.length > 0) onFirstByte?.();
    bytes += value.length;
  }
}

const label = (res: Response) => res.headers.get("x-cache") ?? "-";

export interface StormResult {
  wallMs: number;
  errors: number;
  /** X-Cache values seen, e.g. { MISS: 1, COALESCED: 99, HIT: 400 }. */
  labels: Record<string, number>;
  firstError?: string;
}

/** `total` requests for one URL, `concurrency` at a time, each body read fully and its length checked. */
export async function coldStorm(
  target: Target,
  url: string,
  expectedBytes: number,
  total: number,
  concurrency: number,
): Promise<StormResult> {
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const labels: Record<string, number> = {};
  const fail = (why: string) => {
    errors++;
    firstError ??= why;
  };
  const worker = async () => {
    while (next < total) {
      next++;
      try {
        const res = await agentFetch(target, url);
        labels[label(res)] = (labels[label(res)] ?? 0) + 1;
        const bytes = await drain(res);
        if (res.status !== 200) fail(`status ${res.status}`);
        else if (bytes !== expectedBytes) fail(`got ${bytes} of ${expectedBytes} bytes`);
      } catch (err) {
        fail(String(err));
      }
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { wallMs: performance.now() - start, errors, labels, firstError };
}

export interface AgentResult {
  /** From the agent's request to the first body byte. */
  ttfbMs: number;
  /** From the first agent's start to this agent's last byte. */
  doneAtMs: number;
  bytes: number;
  label: string;
  error?: string;
}

/** `agents` agents ask for one URL, one every `spacingMs`, each reading the whole body. */
export async function joinDownload(
  target: Target,
  url: string,
  expectedBytes: number,
  agents: number,
  spacingMs: number,
): Promise<AgentResult[]> {
  const t0 = performance.now();
  const agent = async (i: number): Promise<AgentResult> => {
    await Bun.sleep(Math.max(0, t0 + i * spacingMs - performance.now()));
    const start = performance.now();
    let firstByte = Number.NaN;
    let bytes = 0;
    let tag = "-";
    let error: string | undefined;
    try {
      const res = await agentFetch(target, url);
      tag = label(res);
      bytes = await drain(res, () => (firstByte = performance.now()));
      if (res.status !== 200) error = `status ${res.status}`;
      else if (bytes !== expectedBytes) error = `got ${bytes} of ${expectedBytes} bytes`;
    } catch (err) {
      error = String(err);
    }
    return { ttfbMs: firstByte - start, doneAtMs: performance.now() - t0, bytes, label: tag, error };
  };
  return Promise.all(Array.from({ length: agents }, (_, i) => agent(i)));
}

export interface WrkResult {
  requestsPerSec: number;
  requests: number;
  /** Non-2xx/3xx responses plus socket errors. */
  errors: number;
  p99Ms: number;
}

/**
 * Runs `wrk -t2 -c50 -dNs --latency`. Through a proxy wrk must send
 * absolute-form request lines, so a Lua script sets the request path to the
 * full URL. With `ranges`, each request carries the next of them as its
 * `Range` header, round robin; the requests are formatted once per wrk
 * thread (init) and only picked per call, so wrk's own cost stays small.
 */
export async function runWrk(
  target: Target,
  url: string,
  workDir: string,
  durationS: number,
  ranges: readonly string[] = [],
): Promise<WrkResult> {
  let wrkUrl = url;
  const lua: string[] = [];
  if (target.proxy !== undefined) {
    wrkUrl = `${target.proxy}/`;
    lua.push(`wrk.path = "${url}"`, `wrk.headers["Host"] = "${new URL(url).host}"`);
  }
  if (ranges.length > 0) {
    lua.push(
      `local ranges = { ${ranges.map((r) => `"${r}"`).join(", ")} }`,
      "local requests = {}",
      "local n = 0",
      "function init(args)",
      "  for i, r in ipairs(ranges) do",
      '    wrk.headers["Range"] = r',
      "    requests[i] = wrk.format()",
      "  end",
      "end",
      "function request()",
      "  n = n % #requests + 1",
      "  return requests[n]",
      "end",
    );
  }
  const script: string[] = [];
  if (lua.length > 0) {
    script.push("-s", join(workDir, "wrk.lua"));
    await Bun.write(script[1]!, `${lua.join("\n")}\n`);
  }
  const child = spawnChild(["wrk", "-t2", "-c50", `-d${durationS}s`, "--latency", ...script, wrkUrl], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(child.stdout as ReadableStream).text(),
    new Response(child.stderr as ReadableStream).text(),
    child.exited,
  ]);
  if (code !== 0) throw new Error(`wrk failed (${code}): ${err}${out}`);
  return parseWrk(out);
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

export function parseWrk(out: string): WrkResult {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : 0;
  };
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(out);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  if (!/Requests\/sec:/.test(out)) throw new Error(`cannot read wrk's output:\n${out}`);
  return {
    requestsPerSec: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    errors: num(/Non-2xx or 3xx responses: (\d+)/) + socketErrors,
    p99Ms: p99 ? Number(p99[1]) * UNIT_MS[p99[2]!]! : Number.NaN,
  };
}
