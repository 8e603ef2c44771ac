import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { asGatewayError, GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { addVia } from "./hop-by-hop.ts";

/**
 * How the proxy port shows an error to an agent: `cachegate: <message>` as
 * plain text, with the error's own headers (Proxy-Authenticate on a 407).
 * One rendering for the proxy app's responses and for CONNECT refusals
 * written to the raw socket.
 */
export const refusalText = (message: string) => `cachegate: ${message}\n`;

/** The response for an error raised while handling a proxied request; RFC 9110 §7.6.3: with our Via. */
export function refusalResponse(err: unknown, via: string): Response {
  const e = asGatewayError(err);
  const headers = new Headers({ "content-type": "text/plain; charset=utf-8", ...e.headers });
  addVia(headers, via);
  return new Response(refusalText(e.message), { status: e.status, headers });
}

/** A proxied request that failed: a GatewayError is its refusal; anything else is a bug, logged, and a plain 500. */
export function failedRequest(err: unknown, url: string, via: string, log: Logger): Response {
  if (!(err instanceof GatewayError)) log.error("proxy request failed", { url, error: err });
  return refusalResponse(err, via);
}

/** Answers a CONNECT the gateway will not tunnel, on the raw socket, and closes it; says what was sent. */
export function writeRefusal(
  client: Duplex,
  err: unknown,
): { label: null; status: number; bytes: number; contentType: string } {
  const e = asGatewayError(err);
  const body = refusalText(e.message);
  const extra = Object.entries(e.headers).map(([name, value]) => `${name}: ${value}\r\n`);
  const contentType = "text/plain; charset=utf-8";
  const bytes = Buffer.byteLength(body);
  client.end(
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? "Error"}\r\n` +
      `Content-Type: ${contentType}\r\n${extra.join("")}` +
      `Content-Length: ${bytes}\r\nConnection: close\r\n\r\n${body}`,
  );
  return { label: null, status: e.status, bytes, contentType };
}
