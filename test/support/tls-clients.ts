import { mkdtempSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";

export { openTunnel, tlsOver, tlsThroughTunnel } from "./tunnel-client.ts";

/**
 * Clients that speak TLS through the gateway the way agents do: curl,
 * a raw CONNECT with node:tls on top (for certificates and keep-alive;
 * in ./tunnel-client.ts, which the TLS bench shares), and openssl s_client
 * (for a chosen TLS version).
 */

export interface CurlResult {
  exitCode: number;
  /** Status of the final response (after any "200 Connection Established"); 0 if none. */
  status: number;
  headers: Headers;
  body: Buffer;
  stderr: string;
  /** Everything curl wrote with -D: every response head, CONNECT's included. */
  rawHeads: string;
}

/** Runs curl with `args` (URL included) and a 15 s cap; the body and the last response head are returned. */
export function curl(args: string[], timeoutSeconds = 15): Promise<CurlResult> {
  return startCurl(args, timeoutSeconds).result;
}

export interface RunningCurl {
  /** What curl has written with -D so far: each response head as soon as it has it, CONNECT's included. */
  heads(): Promise<string>;
  result: Promise<CurlResult>;
}

/** As curl(), but the caller can watch the response heads arrive while the body is still coming. */
export function startCurl(args: string[], timeoutSeconds = 15): RunningCurl {
  const dir = mkdtempSync(join(tmpdir(), "cachegate-curl-"));
  const heads = join(dir, "heads");
  const body = join(dir, "body");
  const child = Bun.spawn(
    ["curl", "-sS", "--noproxy", "", "--max-time", String(timeoutSeconds), "-D", heads, "-o", body, ...args],
    {
      stdout: "ignore",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
    },
  );
  const result = (async (): Promise<CurlResult> => {
    try {
      const [exitCode, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
      const rawHeads = await readFile(heads, "latin1").catch(() => "");
      const blocks = rawHeads.split(/\r\n\r\n/).filter((b) => b.startsWith("HTTP/"));
      const last = blocks.at(-1) ?? "";
      const [statusLine = "", ...fields] = last.split("\r\n");
      const headers = new Headers();
      for (const f of fields) {
        const colon = f.indexOf(":");
        if (colon > 0) headers.append(f.slice(0, colon).trim(), f.slice(colon + 1).trim());
      }
      return {
        exitCode,
        status: Number(statusLine.split(" ")[1] ?? 0) || 0,
        headers,
        body: await readFile(body).catch(() => Buffer.alloc(0)),
        stderr,
        rawHeads,
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return { heads: () => readFile(heads, "latin1").catch(() => ""), result };
}

export interface ParsedResponse {
  status: number;
  headers: Headers;
  body: Buffer;
}

/**
 * Sends one HTTP/1.1 request on an open (keep-alive) socket and reads one
 * response: Content-Length or chunked framing. The socket stays open for
 * the next request.
 */
export function exchange(socket: Socket | TLSSocket, request: string, timeoutMs = 5000): Promise<ParsedResponse> {
  return new Promise((resolve, reject) => {
    // Closed before we asked (a revoked agent's tunnel, say): no "close" event will come again.
    if (socket.destroyed || socket.readyState === "closed")
      return reject(new Error("the connection was already closed"));
    let buffered = Buffer.alloc(0);
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(
          `no complete response within ${timeoutMs} ms; got ${JSON.stringify(buffered.toString("latin1").slice(0, 300))}`,
        ),
      );
    }, timeoutMs);
    const onClose = () => {
      cleanup();
      reject(
        new Error(
          `the connection closed before a complete response; got ${JSON.stringify(buffered.toString("latin1").slice(0, 300))}`,
        ),
      );
    };
    const onData = (data: Buffer) => {
      buffered = Buffer.concat([buffered, data]);
      const parsed = tryParse(buffered);
      if (!parsed) return;
      cleanup();
      resolve(parsed);
    };
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.write(request);
  });
}

function tryParse(buf: Buffer): ParsedResponse | null {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const [line = "", ...fields] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const headers = new Headers();
  for (const f of fields) {
    const colon = f.indexOf(":");
    if (colon > 0) headers.append(f.slice(0, colon).trim(), f.slice(colon + 1).trim());
  }
  const status = Number(line.split(" ")[1]);
  const rest = buf.subarray(end + 4);
  if (status === 304 || status === 204) return { status, headers, body: Buffer.alloc(0) };
  const length = headers.get("content-length");
  if (length !== null) {
    const n = Number(length);
    return rest.length >= n ? { status, headers, body: rest.subarray(0, n) } : null;
  }
  if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = rest.indexOf("\r\n", at);
      if (lineEnd < 0) return null;
      const size = parseInt(rest.subarray(at, lineEnd).toString("latin1"), 16);
      if (size === 0) return rest.length >= lineEnd + 4 ? { status, headers, body: Buffer.concat(parts) } : null;
      if (rest.length < lineEnd + 2 + size + 2) return null;
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  return null; // body until close: not used by these tests
}

export interface OpensslResult {
  exitCode: number;
  /** The negotiated protocol ("TLSv1.2"), or null when the handshake failed. */
  protocol: string | null;
  stdout: string;
  stderr: string;
}

/**
 * `openssl s_client` handshake with one TLS version (`-tls1`, `-tls1_1`,
 * `-tls1_2`, `-tls1_3`), through the proxy when `proxyPort` is given.
 * SECLEVEL=0 lets Debian's OpenSSL offer TLS 1.0/1.1 at all.
 */
export async function opensslHandshake(opts: {
  connect: string;
  servername?: string;
  version: string;
  proxyPort?: number;
  caFile?: string;
}): Promise<OpensslResult> {
  const args = ["openssl", "s_client", "-connect", opts.connect, opts.version, "-cipher", "DEFAULT:@SECLEVEL=0"];
  if (opts.proxyPort) args.push("-proxy", `127.0.0.1:${opts.proxyPort}`);
  if (opts.servername) args.push("-servername", opts.servername);
  if (opts.caFile) args.push("-CAfile", opts.caFile);
  else args.push("-no-CAfile", "-no-CApath", "-no-CAstore"); // loading the system store costs s_client ~0.2 s
  const child = Bun.spawn(args, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  child.stdin.end(); // handshake, then EOF: s_client quits
  const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const [exitCode, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  clearTimeout(killer);
  // "Cipher is (NONE)" means no session; otherwise the SSL-Session block names the protocol.
  const established = !/Cipher is \(NONE\)/.test(stdout) && /Cipher is /.test(stdout);
  // OpenSSL 3.0 prints the session block (with "Protocol :") for TLS 1.3 only once a ticket arrives;
  // then the "New, TLSv1.3, Cipher is" line (the cipher's version, which for 1.3 suites is the protocol) says it.
  const protocol = established
    ? (/^\s*Protocol\s*:\s*(\S+)/m.exec(stdout)?.[1] ?? /^New, (TLSv1\.3),/m.exec(stdout)?.[1] ?? null)
    : null;
  return { exitCode, protocol, stdout, stderr };
}
