/**
 * The load generator of `bun run bench:tls`, run as its own process
 * (`bun bench/tls-client.ts '<json LoadSpec>'`) so its CPU is not the
 * gateway's. C client loops on raw sockets, no fetch (its pooling would
 * hide what a connection or a handshake costs):
 *
 *   plain   keep-alive absolute-form GETs on one TCP connection per loop
 *   reuse   one CONNECT + TLS handshake per loop, then keep-alive GETs inside
 *   fresh   per request: TCP connect, CONNECT, TLS handshake, one GET, close
 *
 * Stdout: `{"event":"start"}` when measuring begins (after a warm-up), then
 * one JSON LoadResult line.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
// The same CONNECT and TLS client code the tests use: what the bench measures is what they check.
import { tcpConnect, tlsThroughTunnel } from "../test/support/tunnel-client.ts";

export type Mode = "plain" | "reuse" | "fresh";

export interface LoadSpec {
  mode: Mode;
  proxyPort: number;
  /** Origin host and port: absolute-form URL for plain, CONNECT authority for the TLS modes. */
  host: string;
  port: number;
  path: string;
  /** PEM of the gateway CA (TLS modes). */
  ca?: string;
  /** Default "cachegate-bench"; the warm-up sends its own (Squid logs only those). */
  userAgent?: string;
  concurrency: number;
  warmupSeconds: number;
  seconds: number;
  expectBytes: number;
}

export interface LoadResult {
  mode: Mode;
  requests: number;
  errors: number;
  firstError?: string;
  statuses: Record<string, number>;
  xcache: Record<string, number>;
  /** Responses whose body length was not expectBytes. */
  badBodies: number;
  elapsedS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

export interface OneResponse {
  status: number;
  xcache: string;
  bodyBytes: number;
}

const TIMEOUT_MS = 10_000;

/**
 * Reads Content-Length responses off a socket, one request in flight at a
 * time: next() resolves with the next complete response.
 */
export class ResponseReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private head: { status: number; xcache: string; length: number; bodyStart: number } | undefined;
  private waiter: { resolve: (r: OneResponse) => void; reject: (e: Error) => void } | undefined;
  private failed: Error | undefined;

  constructor(socket: Socket | TLSSocket) {
    socket.on("data", (data: Buffer) => this.onData(data));
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new Error("connection closed before a complete response")));
  }

  next(): Promise<OneResponse> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.tryParse();
    });
  }

  private fail(err: Error): void {
    this.failed ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  private onData(data: Buffer): void {
    this.chunks.push(data);
    this.buffered += data.length;
    this.tryParse();
  }

  private tryParse(): void {
    if (!this.head) {
      const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.chunks = buf.length > 0 ? [buf] : [];
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(lines[0]!.split(" ")[1]);
      let length = -1;
      let xcache = "-";
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i]!;
        const colon = line.indexOf(":");
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === "content-length") length = Number(value);
        else if (name === "x-cache") xcache = value.split(" ")[0]!; // Squid: "HIT from <hostname>"
      }
      if (length < 0) {
        this.fail(new Error(`response without Content-Length: ${lines[0]}`));
        return;
      }
      this.head = { status, xcache, length, bodyStart: end + 4 };
    }
    const { status, xcache, length, bodyStart } = this.head;
    if (this.buffered < bodyStart + length || !this.waiter) return;
    // Anything past this response would be a pipelined one; we never pipeline, so it is dropped.
    this.chunks = [];
    this.buffered = 0;
    this.head = undefined;
    const w = this.waiter;
    this.waiter = undefined;
    w.resolve({ status, xcache, bodyBytes: length });
  }
}

function withTimeout<T>(p: Promise<T>, what: string, onTimeout: () => void): Promise<T> {
  let timer: Timer | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        reject(new Error(`${what}: no answer within ${TIMEOUT_MS / 1000} s`));
      }, TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** CONNECT, then a TLS handshake inside the tunnel verified against `ca` for the origin host. */
const tlsTunnel = (spec: Pick<LoadSpec, "proxyPort" | "host" | "port">, ca: string) =>
  tlsThroughTunnel(spec.proxyPort, spec.host, spec.port, { ca }, TIMEOUT_MS);

/** A connection that sends one request at a time and reads its response. */
export interface Conn {
  request(): Promise<OneResponse>;
  close(): void;
  /** What the TLS handshake agreed ("TLSv1.3 TLS_AES_256_GCM_SHA384 X25519"); undefined for plain. */
  tls?: string;
}

function tlsSummary(socket: TLSSocket): string {
  const key = socket.getEphemeralKeyInfo();
  // Bun names no group for some (seen against Bun's own TLS server), perhaps a hybrid post-quantum one.
  const group = key && "name" in key && key.name ? ` ${key.name}` : ", key exchange group not reported";
  return `${socket.getProtocol()} ${socket.getCipher().standardName}${group}`;
}

function conn(socket: Socket | TLSSocket, request: string): Conn {
  const reader = new ResponseReader(socket);
  socket.on("error", () => {}); // reported through the reader
  return {
    tls: "getProtocol" in socket ? tlsSummary(socket) : undefined,
    request() {
      socket.write(request);
      return withTimeout(reader.next(), "response", () => socket.destroy());
    },
    close: () => socket.destroy(),
  };
}

type Target = Pick<LoadSpec, "host" | "port" | "path" | "userAgent">;
const head = (spec: Target) =>
  `Host: ${spec.host}:${spec.port}\r\nUser-Agent: ${spec.userAgent ?? "cachegate-bench"}\r\n`;
const plainRequest = (spec: Target) => `GET http://${spec.host}:${spec.port}${spec.path} HTTP/1.1\r\n${head(spec)}\r\n`;
const originRequest = (spec: Target, close = false) =>
  `GET ${spec.path} HTTP/1.1\r\n${head(spec)}${close ? "Connection: close\r\n" : ""}\r\n`;

/** A keep-alive connection for `plain` (to the proxy) or `reuse` (a TLS tunnel through it). */
export async function openConn(
  spec: Omit<LoadSpec, "concurrency" | "warmupSeconds" | "seconds" | "expectBytes">,
): Promise<Conn> {
  if (spec.mode === "plain") return conn(await tcpConnect(spec.proxyPort, "127.0.0.1", TIMEOUT_MS), plainRequest(spec));
  if (!spec.ca) throw new Error("the TLS modes need the gateway CA");
  return conn(await tlsTunnel(spec, spec.ca), originRequest(spec));
}

/** `fresh`: TCP connect + CONNECT + TLS handshake + one GET (Connection: close) + close. */
export async function freshRequest(spec: LoadSpec): Promise<OneResponse> {
  const c = conn(await tlsTunnel(spec, spec.ca!), originRequest(spec, true));
  try {
    return await c.request();
  } finally {
    c.close();
  }
}

export async function runLoad(spec: LoadSpec, onStart: () => void = () => {}): Promise<LoadResult> {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const xcache: Record<string, number> = {};
  let errors = 0;
  let badBodies = 0;
  let firstError: string | undefined;
  let recording = false;
  let stopping = false;

  const record = (res: OneResponse, ms: number) => {
    if (!recording) return;
    latencies.push(ms);
    statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    xcache[res.xcache] = (xcache[res.xcache] ?? 0) + 1;
    if (res.bodyBytes !== spec.expectBytes) badBodies++;
  };
  const error = (err: unknown) => {
    if (!recording) return;
    errors++;
    firstError ??= err instanceof Error ? err.message : String(err);
  };

  // Keep-alive modes open their connections before the clock starts: the steady state is measured.
  const conns: (Conn | undefined)[] =
    spec.mode === "fresh" ? [] : await Promise.all(Array.from({ length: spec.concurrency }, () => openConn(spec)));

  const loop = async (i: number) => {
    while (!stopping) {
      const t0 = performance.now();
      try {
        let res: OneResponse;
        if (spec.mode === "fresh") res = await freshRequest(spec);
        else {
          conns[i] ??= await openConn(spec);
          res = await conns[i]!.request();
        }
        record(res, performance.now() - t0);
      } catch (err) {
        error(err);
        conns[i]?.close();
        conns[i] = undefined; // reconnect on the next iteration
        await Bun.sleep(10);
      }
    }
  };
  const loops = Array.from({ length: spec.concurrency }, (_, i) => loop(i));

  await Bun.sleep(spec.warmupSeconds * 1000);
  recording = true;
  onStart();
  const start = performance.now();
  await Bun.sleep(spec.seconds * 1000);
  recording = false;
  const elapsedS = (performance.now() - start) / 1000;
  stopping = true;
  await Promise.all(loops);
  for (const c of conns) c?.close();

  const sorted = Float64Array.from(latencies).sort();
  const pct = (p: number) =>
    sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  return {
    mode: spec.mode,
    requests: latencies.length,
    errors,
    firstError,
    statuses,
    xcache,
    badBodies,
    elapsedS,
    rps: latencies.length / elapsedS,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
  };
}

if (import.meta.main) {
  const arg = process.argv[2];
  if (arg === undefined) {
    console.error("usage: bun bench/tls-client.ts '<json LoadSpec>'");
    process.exit(2);
  }
  const spec = JSON.parse(arg) as LoadSpec;
  const result = await runLoad(spec, () => console.log(JSON.stringify({ event: "start" })));
  console.log(JSON.stringify(result));
  process.exit(0);
}
