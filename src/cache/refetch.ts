import { discard } from "../upstream/client.ts";

/**
 * Asking upstream again for part of a response the cache is downloading: to
 * resume a fill after the connection broke, or for a reader that fell behind
 * a download whose disk failed. Only ever the same representation: the
 * request carries If-Range with a strong validator, and only a 206 for
 * exactly the bytes asked for is accepted (RFC 9110 §13.1.5, §14.4), so a
 * changed object is never spliced into the old one.
 */

const IMF_FIXDATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * A validator If-Range may carry (RFC 9110 §13.1.5): a strong ETag, or a
 * Last-Modified that is strong because it is at least a second older than
 * the response's Date (§8.8.2.2). Undefined when there is none.
 */
export function strongValidator(headers: Headers): string | undefined {
  const etag = headers.get("etag")?.trim();
  if (etag?.startsWith('"')) return etag;
  const lastModified = headers.get("last-modified")?.trim();
  const date = headers.get("date")?.trim();
  if (!lastModified || !date || !IMF_FIXDATE.test(lastModified)) return undefined;
  return Date.parse(date) - Date.parse(lastModified) >= 1000 ? lastModified : undefined;
}

/** Headers of the original request that would change what a Range request answers. */
const CONDITIONALS = ["range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since"];

/** Bytes [from, end) of a response, from upstream again. */
export interface Refetched {
  body: ReadableStream<Uint8Array>;
  /** Where the body ends (exclusive): `to` when asked for, else the complete length upstream gave. */
  end: number;
}

/** The body of bytes [from, to) (to: the end when undefined) of the response `original` got. */
export async function fetchRange(
  fetchUpstream: (req: Request) => Promise<Response>,
  original: Request,
  validator: string,
  from: number,
  to: number | undefined,
): Promise<Refetched> {
  const headers = new Headers(original.headers);
  for (const name of [...CONDITIONALS, "content-length", "transfer-encoding"]) headers.delete(name);
  headers.set("range", `bytes=${from}-${to === undefined ? "" : to - 1}`);
  headers.set("if-range", validator);
  const res = await fetchUpstream(new Request(original.url, { method: "GET", headers }));
  // Exactly the bytes asked for; open-ended, they must run to the complete length upstream states (§14.4).
  const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
  const last = to === undefined ? (range && range[3] !== "*" ? Number(range[3]) - 1 : Number.NaN) : to - 1;
  const exact = range !== null && Number(range[1]) === from && Number(range[2]) === last;
  if (res.status !== 206 || !exact || !res.body) {
    discard(res.body);
    const why = res.status === 206 ? `Content-Range "${res.headers.get("content-range")}"` : `status ${res.status}`;
    throw new Error(
      `upstream answered a request for bytes ${from}- with ${why}; the object changed or ranges are refused`,
    );
  }
  return { body: res.body, end: last + 1 };
}
