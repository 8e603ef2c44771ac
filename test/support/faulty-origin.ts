import { createServer, type ServerResponse } from "node:http";
import { listenOnLoopback } from "./listen.ts";
import type { PatternBody } from "./patch.ts";

export interface FaultyRoute {
  body: PatternBody;
  /** A strong ETag the object is served with (none: no validator, so no resume is possible). */
  etag?: string;
  /** Send chunked instead of with a Content-Length. */
  chunked?: boolean;
  /** Cut the connection after this many body bytes of each response. */
  breakEvery?: number;
  /** Answer a Range request with a whole new object (200, another ETag), as when the file changed. */
  changedOnRange?: boolean;
}

export interface FaultyOrigin {
  url(path: string): string;
  /** Requests of `path`, and those that carried a Range header. */
  count(path: string): number;
  ranges(path: string): string[];
  /** Body bytes written for every request of `path`, in all. */
  bytesSent(path: string): number;
  stop(): Promise<void>;
}

/**
 * An origin that breaks: pattern bodies (see PatternBody) with an ETag and
 * Range support (RFC 9110 §14, with If-Range), whose connections are cut
 * every `breakEvery` bytes, so a download through the gateway can only
 * complete if the gateway resumes it.
 */
export async function startFaultyOrigin(routes: Record<string, FaultyRoute>): Promise<FaultyOrigin> {
  const counts = new Map<string, number>();
  const ranges = new Map<string, string[]>();
  const sent = new Map<string, number>();
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://origin").pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const route = routes[path];
    if (!route) return void res.writeHead(404).end();
    const { body } = route;
    const range = req.headers.range;
    if (range) ranges.set(path, [...(ranges.get(path) ?? []), range]);
    const ifRange = req.headers["if-range"];
    const partial =
      range !== undefined &&
      route.etag !== undefined &&
      !route.changedOnRange &&
      (ifRange === undefined || ifRange === route.etag);
    const start = partial ? Number(/^bytes=(\d+)-/.exec(range)?.[1] ?? 0) : 0;
    const headers: Record<string, string> = {
      "cache-control": "max-age=86400",
      "content-type": "application/octet-stream",
      ...(route.etag ? { etag: route.changedOnRange && range ? '"changed"' : route.etag } : {}),
      ...(route.chunked ? {} : { "content-length": String(body.size - start) }),
    };
    if (partial) headers["content-range"] = `bytes ${start}-${body.size - 1}/${body.size}`;
    res.writeHead(partial ? 206 : 200, headers);
    await send(res, body, start, route.breakEvery, (n) => sent.set(path, (sent.get(path) ?? 0) + n));
  });
  const { port, stop } = await listenOnLoopback(server);
  return {
    url: (path) => `http://localhost:${port}${path}`,
    count: (path) => counts.get(path) ?? 0,
    ranges: (path) => ranges.get(path) ?? [],
    bytesSent: (path) => sent.get(path) ?? 0,
    stop,
  };
}

async function send(
  res: ServerResponse,
  body: PatternBody,
  start: number,
  breakEvery: number | undefined,
  count: (n: number) => void,
): Promise<void> {
  const stop = breakEvery === undefined ? body.size : Math.min(body.size, start + breakEvery);
  for (let pos = start; pos < stop; ) {
    const next = Math.min(stop, pos + 256 * 1024);
    const chunk = body.slice(pos, next);
    count(chunk.length);
    if (!res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve));
    pos = next;
  }
  if (stop < body.size) {
    // Cut the connection mid-body as a dying origin does. A FIN after the bytes sent so far: a reset
    // would make the kernel drop what the gateway has not read yet, and the test would prove less.
    res.socket?.end();
    return;
  }
  res.end();
}
