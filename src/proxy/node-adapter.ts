import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";

/**
 * The proxy port is a node:http server because only node:http hands over
 * the raw socket of a CONNECT. These two functions turn its messages into
 * Fetch API objects and back, so everything behind them (Hono routes, the
 * cache pipeline) speaks Request/Response.
 */
export function toRequest(req: IncomingMessage, url: string): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
    duplex: "half",
  });
}

/**
 * Writes a Response to the agent, respecting backpressure so a slow agent
 * holds one chunk in memory, not the object. If the body fails midway the
 * socket is destroyed: the agent sees a broken transfer (short
 * Content-Length or a chunked body without its last chunk), never a
 * truncated body passed off as complete.
 */
/** Resolves with the number of body bytes handed to the socket. */
export async function writeResponse(res: ServerResponse, response: Response): Promise<number> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of response.headers) {
    if (name === "set-cookie") continue;
    headers[name] = value;
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  res.writeHead(response.status, response.statusText || undefined, headers);

  const body = response.body;
  if (body === null || res.req.method === "HEAD") {
    void body?.cancel();
    res.end();
    return 0;
  }
  let sent = 0;
  const reader = body.getReader();
  const gone = () => void reader.cancel(new Error("agent disconnected")).catch(() => {});
  res.once("close", gone);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) return sent;
      sent += value.length;
      if (!res.write(value)) await drained(res);
    }
    res.end();
  } catch (err) {
    // Before the first body write the head is still unsent, and Bun's
    // res.destroy() then answers a bare "200, Connection: close": a complete,
    // empty response to the agent. Dropping the socket itself cannot be mistaken for one.
    if (sent === 0) res.socket?.destroy(err as Error);
    else res.destroy(err as Error);
  } finally {
    res.off("close", gone);
  }
  return sent;
}

function drained(res: ServerResponse): Promise<void> {
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
