import { type BodySource, streamBody } from "./body-source.ts";
import { resolveRange } from "./range.ts";

/** What the cache knows about a response it is about to serve from disk. */
export interface Representation {
  status: number;
  headers: Headers;
  /** Body size if known now; a chunked download learns it only when it completes. */
  size: number | undefined;
}

/** PEER: fetched through the fleet member that owns the URL (src/fleet/), not from the origin. */
export type XCache = "HIT" | "MISS" | "PEER" | "REVALIDATED" | "COALESCED" | "STALE" | "UPDATING" | "BYPASS";

/**
 * Builds the agent's response from a stored or downloading body: a 304 for
 * a matching conditional request, a 206 or 416 for a Range request, else the
 * whole body. `open` is called only if a body is sent, and its source is
 * owned by the returned stream from then on.
 */
export async function respond(
  req: Request,
  rep: Representation,
  open: () => BodySource | Promise<BodySource>,
  label: XCache,
  age?: number,
): Promise<Response> {
  const headers = storedHead(rep, label, age);
  const full = rep.status === 200;

  if (full && notModified(req.headers, rep.headers)) {
    return new Response(null, { status: 304, headers: strip304(headers) });
  }

  const rangeHeader = full && rangeApplies(req.headers, rep.headers) ? req.headers.get("range") : null;
  let source: BodySource | undefined;
  let size = rep.size;
  if (rangeHeader !== null && size === undefined) {
    // The total length is needed for Content-Range; a chunked download tells it only at the end.
    source = await open();
    while (!source.settled) await source.changed();
    if (source.error) {
      source.release();
      throw source.error;
    }
    size = source.size();
  }

  const range = size === undefined ? ({ kind: "full" } as const) : resolveRange(rangeHeader, size);
  if (range.kind === "unsatisfiable") {
    source?.release();
    headers.set("content-range", `bytes */${size}`);
    headers.set("content-length", "0");
    headers.delete("content-type");
    return new Response(null, { status: 416, headers });
  }

  let status = rep.status;
  let start = 0;
  let end = size;
  if (range.kind === "partial") {
    status = 206;
    start = range.start;
    end = range.end + 1;
    headers.set("content-range", `bytes ${range.start}-${range.end}/${size}`);
  }
  if (end !== undefined) headers.set("content-length", String(end - start));
  if (req.method === "HEAD") {
    source?.release();
    return new Response(null, { status, headers });
  }
  source ??= await open();
  return new Response(streamBody(source, start, end), { status, headers });
}

/**
 * The fields every answer from a stored response starts with: its own, less
 * Content-Length (set for what is sent), with its X-Cache label and Age
 * (RFC 9111 §5.1); a whole 200 also says it takes ranges.
 */
export function storedHead(rep: { status: number; headers: Headers }, label: XCache, age?: number): Headers {
  const headers = new Headers(rep.headers);
  headers.delete("content-length");
  headers.set("x-cache", label);
  if (age !== undefined) headers.set("age", String(age));
  if (rep.status === 200) headers.set("accept-ranges", "bytes");
  return headers;
}

/** RFC 9110 §13.1.2 (weak comparison) and §13.1.3; If-None-Match wins over If-Modified-Since (§13.2.2). */
function notModified(req: Headers, res: Headers): boolean {
  const inm = req.get("if-none-match");
  if (inm !== null) {
    const etag = res.get("etag");
    if (etag === null) return false;
    if (inm.trim() === "*") return true;
    return inm.split(",").some((t) => weak(t.trim()) === weak(etag));
  }
  const ims = req.get("if-modified-since");
  const lm = res.get("last-modified");
  if (ims === null || lm === null) return false;
  const since = Date.parse(ims);
  const modified = Date.parse(lm);
  return !Number.isNaN(since) && !Number.isNaN(modified) && modified <= since;
}

/** If-Range needs a strong match (RFC 9110 §13.1.5): the same ETag, or the exact Last-Modified date. */
function rangeApplies(req: Headers, res: Headers): boolean {
  const ifRange = req.get("if-range");
  if (ifRange === null) return true;
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith("W/")) {
    const etag = res.get("etag");
    return etag !== null && !v.startsWith("W/") && !etag.startsWith("W/") && v === etag;
  }
  return res.get("last-modified") === v;
}

const weak = (tag: string) => tag.replace(/^W\//, "");

/** A 304 carries the validators and caching headers, not the body's (RFC 9110 §15.4.5). */
function strip304(h: Headers): Headers {
  for (const name of ["content-length", "content-type", "content-encoding", "content-range", "accept-ranges"])
    h.delete(name);
  return h;
}
