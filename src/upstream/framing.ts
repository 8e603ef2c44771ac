/**
 * HTTP/1.1 response heads and message framing (RFC 9112), as pure
 * functions: the upstream client decides from these alone how a body ends,
 * so that a body whose end was not proven is never taken for complete.
 */

export interface ResponseHead {
  version: "1.0" | "1.1";
  status: number;
  statusText: string;
  /** Field lines in order, names as sent (Set-Cookie and other repeats kept apart). */
  fields: [name: string, value: string][];
}

/** How a response body ends (RFC 9112 §6.3). */
export type Framing =
  | { kind: "none" } // HEAD, 1xx, 204, 304
  | { kind: "length"; length: number } // Content-Length
  | { kind: "chunked" } // Transfer-Encoding ending in chunked
  | { kind: "close" }; // the server closes the connection: only a clean close proves the end

export class FramingError extends Error {
  override name = "FramingError";
}

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/;
/** RFC 9110 §5.5: field values are visible characters, spaces and tabs; any other control character is invalid. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const INVALID_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parses a response head (status line and field lines, without the final CRLF CRLF). */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split("\r\n");
  const m = STATUS_LINE.exec(lines[0] ?? "");
  if (!m) throw new FramingError(`the status line "${(lines[0] ?? "").slice(0, 80)}" is not HTTP/1.x`);
  const fields: [string, string][] = [];
  for (const line of lines.slice(1)) {
    // RFC 9112 §5.2: obsolete line folding must be rejected or replaced; a proxy may reject.
    if (line.startsWith(" ") || line.startsWith("\t")) throw new FramingError("obsolete line folding in a header");
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    // RFC 9112 §5.1: no whitespace between the field name and the colon.
    if (!FIELD_NAME.test(name)) throw new FramingError(`malformed header line "${line.slice(0, 80)}"`);
    const value = line.slice(colon + 1).trim();
    if (INVALID_VALUE.test(value)) throw new FramingError(`the header ${name} holds control characters`);
    fields.push([name, value]);
  }
  return { version: m[1] === "0" ? "1.0" : "1.1", status: Number(m[2]), statusText: m[3] ?? "", fields };
}

const values = (head: ResponseHead, name: string) =>
  head.fields.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);

/** The comma-separated members of every field line of `name`, lower-cased. */
export function listOf(head: ResponseHead, name: string): string[] {
  return values(head, name)
    .flatMap((v) => v.split(","))
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
}

/**
 * RFC 9112 §6.3: how the body of a response to `method` ends. Transfer-Encoding
 * wins over Content-Length (§6.3 item 3: the Content-Length must then be
 * ignored, and not passed on); differing Content-Length values are an error
 * (item 5) rather than a guess, and so is a transfer coding other than
 * chunked alone.
 */
export function framingOf(method: string, head: ResponseHead): Framing {
  if (method === "HEAD" || head.status < 200 || head.status === 204 || head.status === 304) return { kind: "none" };
  const codings = listOf(head, "transfer-encoding");
  if (codings.length > 0) {
    // Only chunked is decoded: relaying gzip (or any other coding) would pass on bytes that are not the content,
    // and a proxy must not strip a coding it does not understand (§6.1), so such a response is refused.
    if (codings.length === 1 && codings[0] === "chunked") return { kind: "chunked" };
    throw new FramingError(`unsupported transfer coding "${codings.join(", ")}"; only chunked is accepted`);
  }
  const lengths = [...new Set(listOf(head, "content-length"))];
  if (lengths.length === 0) return { kind: "close" };
  if (lengths.length > 1 || !/^\d{1,15}$/.test(lengths[0]!)) {
    throw new FramingError(`invalid Content-Length ${JSON.stringify(values(head, "content-length").join(", "))}`);
  }
  return { kind: "length", length: Number(lengths[0]) };
}

/** May the connection carry another request after this response (RFC 9112 §9.3)? */
export function keepsAlive(head: ResponseHead, framing: Framing): boolean {
  const connection = listOf(head, "connection");
  if (connection.includes("close") || framing.kind === "close" || head.status === 101) return false;
  // §6.1: an HTTP/1.0 message with Transfer-Encoding: the connection must be closed after it.
  if (head.version === "1.0" && listOf(head, "transfer-encoding").length > 0) return false;
  // A message with both framings is suspect (request smuggling): do not reuse its connection (§6.3 item 3).
  if (listOf(head, "transfer-encoding").length > 0 && listOf(head, "content-length").length > 0) return false;
  return head.version === "1.1" || connection.includes("keep-alive");
}
