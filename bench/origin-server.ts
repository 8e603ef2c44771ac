/**
 * The counting origin, run as its own process (`bun bench/origin-server.ts
 * <files dir> <port> <rate bytes/s>`) so its CPU is not the benchmark's.
 * Serves every file in the dir from memory with Content-Length,
 * `Cache-Control: max-age=3600` and an ETag; the big file is paced to the
 * given rate per connection, in chunks of the given size. `GET /stats` reports what it served.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FILES } from "./files.ts";
import type { OriginStats } from "./origin.ts";

const [dir, portArg, rateArg, chunkArg] = process.argv.slice(2);
if (dir === undefined || portArg === undefined || rateArg === undefined) {
  console.error("usage: bun bench/origin-server.ts <files dir> <port> <rate bytes/s> [chunk bytes]");
  process.exit(2);
}
const rate = Number(rateArg);
const paced = new Set<string>([FILES.big.path]);
/** What the paced body is sent in (a real origin's TLS records are 16 KiB). */
const CHUNK = Number(chunkArg ?? 256 * 1024);

const bodies = new Map<string, Uint8Array>();
for (const name of readdirSync(dir)) bodies.set(`/${name}`, readFileSync(join(dir, name)));

const stats: OriginStats = { requests: 0, bytes: 0 };
const lastModified = new Date(Date.now() - 86_400_000).toUTCString();

/** A body that never gets ahead of `rate` bytes/s since the response started; bytes count as they are sent. */
function pacedBody(body: Uint8Array): ReadableStream<Uint8Array> {
  const start = performance.now();
  let sent = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (sent >= body.length) return controller.close();
        const due = start + (sent / rate) * 1000;
        const wait = due - performance.now();
        if (wait > 1) await Bun.sleep(wait);
        const n = Math.min(CHUNK, body.length - sent);
        // A copy: the runtime may take ownership of what is enqueued.
        controller.enqueue(body.slice(sent, sent + n));
        sent += n;
        stats.bytes += n;
      },
    },
    { highWaterMark: 0 },
  );
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(portArg),
  idleTimeout: 0,
  fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/stats") return Response.json(stats);
    stats.requests++;
    const body = bodies.get(path);
    if (body === undefined) return new Response("not found\n", { status: 404 });
    const headers = new Headers({
      "content-type": path.endsWith(".json") ? "application/json" : "application/octet-stream",
      "cache-control": "max-age=3600",
      etag: `"${path.slice(1)}-${body.length}"`,
      "last-modified": lastModified,
      "content-length": String(body.length),
    });
    if (req.headers.get("if-none-match") === headers.get("etag")) return new Response(null, { status: 304, headers });
    if (req.method === "HEAD") return new Response(null, { headers });
    if (paced.has(path)) return new Response(pacedBody(body), { headers });
    stats.bytes += body.length;
    return new Response(body, { headers });
  },
});
console.log(`origin listening on ${server.hostname}:${server.port}`);
