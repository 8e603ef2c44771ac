import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { type BodyCursor, claimCursor, FILE_CHUNK } from "../cache/body-source.ts";
import { discard } from "../upstream/client.ts";

/**
 * The proxy port is a node:http server because only node:http hands over
 * the raw socket of a CONNECT. toRequest and writeResponse turn its
 * messages into Fetch API objects and back, so everything behind them (Hono
 * routes, the cache pipeline) speaks Request/Response; the fast path
 * (fast-hit.ts) uses only headersOf and nodeHeaders.
 */
export function toRequest(req: IncomingMessage, url: string, headers = headersOf(req)): Request {
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
    duplex: "half",
  });
}

/** The request's header fields as a Fetch Headers, repeated fields joined as a Request would see them. */
export function headersOf(req: IncomingMessage): Headers {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  return headers;
}

/**
 * A response head for res.writeHead, in the order Headers iterates (sorted
 * names); Set-Cookie stays a list, one field per cookie. Every response the
 * proxy port writes goes through here, so a fast hit's head is the slow path's.
 */
export function nodeHeaders(fields: Headers): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of fields) {
    if (name === "set-cookie") continue;
    headers[name] = value;
  }
  const cookies = fields.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  return headers;
}

/**
 * Writes a Response to the agent, respecting backpressure so a slow agent
 * holds one chunk in memory, not the object. If the body fails midway the
 * socket is destroyed: the agent sees a broken transfer (short
 * Content-Length or a chunked body without its last chunk), never a
 * truncated body passed off as complete. Resolves with the number of body
 * bytes handed to the socket.
 */
export async function writeResponse(res: ServerResponse, response: Response): Promise<number> {
  const headers = nodeHeaders(response.headers);
  try {
    res.writeHead(response.status, response.statusText || undefined, headers);
  } catch (err) {
    // A head node:http refuses (a stored header it deems invalid): the body's file handle, pin or upstream
    // connection must not wait for a reader that will never come.
    discard(response.body);
    throw err;
  }

  const body = response.body;
  if (body === null || res.req.method === "HEAD") {
    discard(body);
    res.end();
    return 0;
  }
  const file = claimCursor(body);
  return file ? writeFileBody(res, file) : writeStream(res, body);
}

/**
 * A cached body goes to the socket a chunk at a time, with backpressure, so
 * a slow agent holds one chunk, not the object. Bytes a download holds in
 * memory are written as they are (views that never change); bytes from a
 * file are read into a buffer of this agent's. Bun's res.write keeps a
 * reference to what it is given until it is flushed, also when it returns
 * true (measured: writableLength stays above 0), so that buffer is reused
 * only once nothing is pending; otherwise the next read gets a buffer of its
 * own, or later bytes could be sent in place of earlier ones.
 */
async function writeFileBody(res: ServerResponse, file: BodyCursor): Promise<number> {
  const length = file.end === undefined ? undefined : file.end - file.pos;
  const held = file.source.inMemory?.();
  if (held) {
    // Other agents may be sending the same bytes (serve.ts shares them): they are let go of once this one is sent.
    if (res.closed || res.destroyed) file.release();
    else res.once("close", () => file.release());
    const slice = held.subarray(file.pos, file.end);
    return end(res, slice, slice.length);
  }
  // A download in progress may take a while to reach this agent's bytes (a Range
  // far ahead, a slow upstream): send the status line now rather than with them.
  if (!file.source.settled) res.flushHeaders();
  const size = Math.max(1, Math.min(FILE_CHUNK, length ?? FILE_CHUNK));
  let buf: Buffer | undefined;
  /** The buffer to read file bytes into: this agent's own, or a fresh one while the last write may still hold it. */
  const scratch = () => {
    if (buf === undefined || res.writableLength > 0) buf = Buffer.allocUnsafe(size);
    return buf;
  };
  let sent = 0;
  try {
    for (;;) {
      const bytes = await file.next(size, scratch);
      if (bytes.length === 0) break;
      if (res.destroyed) return sent;
      sent += bytes.length;
      if (sent === length) return end(res, bytes, sent); // the common small hit: one read, one write
      if (!res.write(bytes)) await drained(res);
    }
    res.end();
  } catch (err) {
    fail(res, err as Error, sent);
  } finally {
    file.release();
  }
  return sent;
}

async function writeStream(res: ServerResponse, body: ReadableStream<Uint8Array>): Promise<number> {
  let sent = 0;
  let finished = false;
  const reader = body.getReader();
  const abandon = () => {
    if (!finished) void reader.cancel(new Error("agent disconnected")).catch(() => {});
  };
  res.once("close", abandon);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      if (res.destroyed) break;
      sent += value.length;
      if (!res.write(value)) await drained(res);
    }
    if (finished) res.end();
  } catch (err) {
    finished = true; // the stream failed; nothing to cancel
    fail(res, err as Error, sent);
  } finally {
    res.off("close", abandon);
    abandon(); // every exit that did not read the body to its end releases it
  }
  return sent;
}

function end(res: ServerResponse, last: Uint8Array, sent: number): number {
  res.end(last);
  return sent;
}

/**
 * Before the first body write the head is still unsent, and Bun's
 * res.destroy() then answers a bare "200, Connection: close": a complete,
 * empty response to the agent. Dropping the socket itself cannot be mistaken for one.
 */
function fail(res: ServerResponse, err: Error, sent: number): void {
  if (sent === 0) res.socket?.destroy(err);
  else res.destroy(err);
}

/** Resolves when `res` can take more data again, or is gone. */
export function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
