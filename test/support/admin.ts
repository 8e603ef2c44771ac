import { request } from "node:http";
import { createServer, type Server } from "node:net";

/**
 * A curl-like client for the admin API of a test gateway: every call carries
 * the bearer token unless told otherwise.
 */
export interface AdminClient {
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  /** The parsed JSON body of a GET that must answer 200. */
  json<T = any>(path: string): Promise<T>;
  /** PATCH /api/config; objects are sent as JSON, strings as they are. */
  patch(body: unknown, headers?: Record<string, string>): Promise<Response>;
  send(
    method: string,
    path: string,
    init?: { body?: string | Uint8Array; headers?: Record<string, string> },
  ): Promise<Response>;
  /** GET /api/config as raw text, for byte-for-byte comparisons. */
  configText(): Promise<string>;
}

export function admin(gw: { adminUrl: string }, token = "test-token"): AdminClient {
  const send: AdminClient["send"] = (method, path, init = {}) =>
    fetch(`${gw.adminUrl}${path}`, {
      method,
      body: init.body,
      headers: { authorization: `Bearer ${token}`, ...init.headers },
    });
  const get = (path: string, headers?: Record<string, string>) => send("GET", path, { headers });
  return {
    get,
    send,
    async json(path) {
      const res = await get(path);
      if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${await res.text()}`);
      return (await res.json()) as any;
    },
    patch(body, headers) {
      return send("PATCH", "/api/config", {
        body: typeof body === "string" ? body : JSON.stringify(body),
        headers: { "content-type": "application/json", ...headers },
      });
    },
    async configText() {
      const res = await get("/api/config");
      if (res.status !== 200) throw new Error(`GET /api/config answered ${res.status}`);
      return res.text();
    },
  };
}

/** A port that was free a moment ago: bound on port 0, then released. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = await occupyPort(host);
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A plain TCP listener holding a port (port 0: any free one) until closed. */
export function occupyPort(host = "127.0.0.1", port = 0): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.destroy());
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

export interface AgentResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** An agent's request whose response head has arrived; the body may still be coming. */
export interface AgentStream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Promise<Buffer>;
}

/**
 * One request as an agent at `localAddress` (127.0.0.x) makes it: a fresh
 * connection to the proxy with an absolute-form target, so the gateway sees
 * that source address. Resolves once the response head is in.
 */
export function agentRequest(
  proxyUrl: string,
  url: string,
  localAddress = "127.0.0.1",
  headers: Record<string, string> = {},
): Promise<AgentStream> {
  const proxy = new URL(proxyUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: proxy.hostname,
        port: Number(proxy.port),
        path: url,
        method: "GET",
        localAddress,
        agent: false,
        headers: { host: new URL(url).host, ...headers },
      },
      (res) => {
        const body = new Promise<Buffer>((done, fail) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => done(Buffer.concat(chunks)));
          res.on("error", fail);
          res.on("aborted", () => fail(new Error(`${url}: the response was cut off`)));
        });
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** agentRequest, with the whole body read. */
export async function agentGet(
  proxyUrl: string,
  url: string,
  localAddress = "127.0.0.1",
  headers: Record<string, string> = {},
): Promise<AgentResponse> {
  const res = await agentRequest(proxyUrl, url, localAddress, headers);
  return { status: res.status, headers: res.headers, body: await res.body };
}

/** Polls `probe` until it returns a value other than undefined; fails after `tries` attempts. */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  what: string,
  tries = 200,
  delayMs = 10,
): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await Bun.sleep(delayMs);
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** A response's JSON body, untyped, for assertions. */
export async function jsonOf(res: Response): Promise<any> {
  return res.json();
}

/**
 * Closes a test gateway once its downloads have landed: stop() does not wait
 * for them, and a commit after close would recreate the removed data dir.
 */
export async function closeWhenIdle(gw: { idle(): Promise<void>; close(): Promise<void> }): Promise<void> {
  await gw.idle().catch(() => {});
  await gw.close();
}
