import type { AddressInfo } from "node:net";
import { connect, createServer, type Socket } from "node:net";

/**
 * HTTP on raw sockets, for what fetch and Bun.serve hide: a body cut off
 * mid-way, a Content-Length on a streamed body, hop-by-hop headers, CONNECT.
 */

export interface RawRequest {
  method: string;
  target: string;
  headers: Headers;
}

export interface RawOrigin {
  port: number;
  url(path: string): string;
  count(path?: string): number;
  requests: RawRequest[];
  stop(): Promise<void>;
}

/**
 * An origin that parses each request head and hands the socket to `respond`,
 * which writes whatever bytes it likes. One request per connection: responses
 * should say `Connection: close` and end or destroy the socket.
 */
export async function startRawOrigin(
  respond: (req: RawRequest, socket: Socket) => void | Promise<void>,
): Promise<RawOrigin> {
  const requests: RawRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffered = Buffer.alloc(0);
    const onData = (data: Buffer) => {
      buffered = Buffer.concat([buffered, data]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      const req = parseRequestHead(buffered.subarray(0, end).toString("latin1"));
      requests.push(req);
      void Promise.resolve(respond(req, socket)).catch(() => socket.destroy());
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const pathOf = (r: RawRequest) =>
    (r.target.startsWith("/") ? r.target : new URL(r.target).pathname).replace(/\?.*$/, "");
  return {
    port,
    url: (path) => `http://localhost:${port}${path}`,
    count: (path) => requests.filter((r) => path === undefined || pathOf(r) === path).length,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function parseRequestHead(head: string): RawRequest {
  const [line = "", ...fields] = head.split("\r\n");
  const [method = "", target = ""] = line.split(" ");
  const headers = new Headers();
  for (const f of fields) {
    const colon = f.indexOf(":");
    if (colon > 0) headers.append(f.slice(0, colon).trim(), f.slice(colon + 1).trim());
  }
  return { method, target, headers };
}

/** A response head as bytes: status line, the given fields, blank line. */
export function responseHead(status: string, fields: [string, string][]): string {
  return `HTTP/1.1 ${status}\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`;
}

export interface RawResponse {
  status: number;
  /** Field names as sent (case kept), in order. */
  fields: [string, string][];
  /** The first value of a field, case-insensitively. */
  header(name: string): string | undefined;
  /** The body bytes exactly as they came off the wire (still chunk-framed if chunked). */
  body: Buffer;
}

export function parseResponse(raw: Buffer): RawResponse {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no complete response head in ${JSON.stringify(raw.toString("latin1").slice(0, 200))}`);
  const [line = "", ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const fields = lines.map((l): [string, string] => {
    const colon = l.indexOf(":");
    return [l.slice(0, colon).trim(), l.slice(colon + 1).trim()];
  });
  return {
    status: Number(line.split(" ")[1]),
    fields,
    header: (name) => fields.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1],
    body: raw.subarray(end + 4),
  };
}

/** Writes `request` to 127.0.0.1:port and resolves with everything the server sent until it closed. */
export function rawExchange(port: number, request: string | Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete response within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", () => {}); // a reset after the response is still a response; "close" settles
    socket.on("close", () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
    socket.write(request);
  });
}
