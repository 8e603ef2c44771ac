import type { Socket } from "node:net";
import { ChunkedDecoder } from "./chunked.ts";
import { type Framing, FramingError, framingOf, keepsAlive, parseResponseHead, type ResponseHead } from "./framing.ts";

/** Longest response head accepted (status line and fields). */
const MAX_HEAD = 64 * 1024;
const HEAD_END = Buffer.from("\r\n\r\n");

export interface OutgoingRequest {
  method: string;
  /** The request target in origin form: path and query. */
  path: string;
  /** Host included; no hop-by-hop fields (the caller strips them). */
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
}

/** The connection closed or reset before any byte of a response: on a reused connection, worth one retry. */
export class NoResponse extends Error {
  override name = "NoResponse";
}

export interface Exchanged {
  head: ResponseHead;
  framing: Framing;
  /** Closes only once the end of the body was proven (length reached, last chunk, or a clean close); else errors. */
  body: ReadableStream<Uint8Array> | null;
}

/**
 * One request and its response on one connection, framed exactly as RFC
 * 9112 says. `release` gets the socket back once the response ended cleanly
 * and the connection may carry another request; otherwise it is destroyed.
 */
export function exchange(
  socket: Socket,
  req: OutgoingRequest,
  release: (socket: Socket) => void,
  signal: AbortSignal,
): Promise<Exchanged> {
  return new Promise<Exchanged>((resolve, reject) => {
    // Until the head arrives the caller may give up (its headers timeout): the connection goes with it.
    const abandon = () => finish(signal.reason as Error);
    signal.addEventListener("abort", abandon, { once: true });
    const resolveHead = (value: Exchanged) => {
      signal.removeEventListener("abort", abandon);
      resolve(value);
    };
    const rejectHead = (err: Error) => {
      signal.removeEventListener("abort", abandon);
      reject(err);
    };
    let pending: Buffer | undefined = Buffer.alloc(0); // bytes before the end of the head
    let received = 0;
    let written = false;
    let finished = false;
    let body: ReadableStreamDefaultController<Uint8Array> | undefined;
    let onBody: (chunk: Uint8Array) => void = () => {};
    let onEnd: () => void = () => {};
    let reusable = false;

    const detach = () => {
      socket.off("data", onData);
      socket.off("end", onFin);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    /** The response is over: the socket goes back to the pool or is closed. */
    const finish = (error?: Error) => {
      if (finished) return;
      finished = true;
      detach();
      if (error) {
        socket.destroy();
        if (body) body.error(error);
        else rejectHead(received === 0 ? new NoResponse(error.message) : error);
        return;
      }
      body?.close();
      if (reusable && written && !socket.destroyed) {
        socket.pause();
        release(socket);
      } else socket.destroy();
    };

    function onData(chunk: Buffer) {
      received += chunk.length;
      if (pending === undefined) return onBody(chunk);
      try {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        for (let end = pending.indexOf(HEAD_END); end >= 0; end = pending.indexOf(HEAD_END)) {
          const head = parseResponseHead(pending.subarray(0, end).toString("latin1"));
          pending = pending.subarray(end + 4);
          // RFC 9110 §15.2: interim responses (100 Continue, 103 Early Hints) are skipped; 101 is not offered.
          if (head.status >= 100 && head.status < 200 && head.status !== 101) continue;
          return start(head);
        }
        if (pending.length > MAX_HEAD) throw new FramingError(`the response head is larger than ${MAX_HEAD} bytes`);
      } catch (err) {
        finish(err as Error);
      }
    }

    function start(head: ResponseHead) {
      const framing = framingOf(req.method, head);
      reusable = keepsAlive(head, framing);
      const rest = pending!;
      pending = undefined;
      if (framing.kind === "none") {
        resolveHead({ head, framing, body: null });
        if (rest.length > 0) reusable = false; // bytes after a body-less response: not a connection to reuse
        return finish();
      }
      const stream = new ReadableStream<Uint8Array>(
        {
          start(controller) {
            body = controller;
          },
          pull: () => void socket.resume(),
          cancel: () => {
            reusable = false;
            body = undefined; // cancelled: nothing more goes to the reader
            finish();
          },
        },
        { highWaterMark: 4 },
      );
      wireBody(framing);
      resolveHead({ head, framing, body: stream });
      if (rest.length > 0) onBody(rest);
      else if (framing.kind === "length" && framing.length === 0) finish();
    }

    function wireBody(framing: Framing): void {
      const push = (bytes: Uint8Array) => {
        if (bytes.length === 0 || finished || !body) return;
        body.enqueue(bytes);
        if ((body.desiredSize ?? 0) <= 0) socket.pause(); // the reader's pace, not the origin's
      };
      if (framing.kind === "length") {
        let remaining = framing.length;
        onBody = (chunk) => {
          const take = Math.min(remaining, chunk.length);
          remaining -= take;
          push(chunk.subarray(0, take));
          if (take < chunk.length) reusable = false; // more than Content-Length: never reuse this connection
          if (remaining === 0) finish();
        };
        onEnd = () =>
          finish(
            new Error(`upstream closed the connection after ${framing.length - remaining} of ${framing.length} bytes`),
          );
      } else if (framing.kind === "chunked") {
        const decoder = new ChunkedDecoder();
        onBody = (chunk) => {
          try {
            const { body: parts, rest } = decoder.push(chunk);
            for (const part of parts) push(part);
            if (rest) reusable = false;
          } catch (err) {
            return finish(err as Error);
          }
          if (decoder.done) finish();
        };
        onEnd = () => finish(new Error("upstream closed the connection before the last chunk"));
      } else {
        onBody = push;
        onEnd = () => finish(); // a clean close (FIN) is the end; a reset arrives as an error instead
      }
    }

    const onFin = () => onEnd();
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(new Error("upstream closed the connection"));
    onEnd = () => finish(new Error("upstream closed the connection before sending a response"));
    socket.on("data", onData);
    socket.on("end", onFin);
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.resume();

    writeRequest(socket, req).then(
      () => {
        written = true;
      },
      (err: Error) => finish(err),
    );
  });
}

/**
 * Writes the request head and body. The framing is this function's alone
 * (RFC 9112 §6): a Content-Length or Transfer-Encoding from the caller is
 * never passed on as sent, or an upstream would read the next request on the
 * connection as this one's body (request smuggling). A body of known length
 * goes with its Content-Length, counted as it is written; one of unknown
 * length goes chunked (§7.1).
 */
async function writeRequest(socket: Socket, req: OutgoingRequest): Promise<void> {
  const declared = req.headers.get("content-length");
  const length = req.body !== null && declared !== null && /^\d{1,15}$/.test(declared) ? Number(declared) : undefined;
  const lines = [`${req.method} ${req.path} HTTP/1.1`];
  const host = req.headers.get("host");
  if (host !== null) lines.push(`Host: ${host}`);
  for (const [name, value] of req.headers) {
    if (name !== "host" && name !== "content-length" && name !== "transfer-encoding") lines.push(`${name}: ${value}`);
  }
  const chunked = req.body !== null && length === undefined;
  if (chunked) lines.push("Transfer-Encoding: chunked");
  else if (length !== undefined) lines.push(`Content-Length: ${length}`);
  else if (["POST", "PUT", "PATCH"].includes(req.method)) lines.push("Content-Length: 0"); // RFC 9110 §8.6
  await write(socket, `${lines.join("\r\n")}\r\n\r\n`);
  if (req.body === null) return;
  let sent = 0;
  for await (const chunk of req.body) {
    if (chunk.length === 0) continue;
    sent += chunk.length;
    if (length !== undefined && sent > length) throw new Error("the request body is longer than its Content-Length");
    if (chunked) await write(socket, `${chunk.length.toString(16)}\r\n`);
    await write(socket, chunk);
    if (chunked) await write(socket, "\r\n");
  }
  if (length !== undefined && sent !== length) throw new Error("the request body is shorter than its Content-Length");
  if (chunked) await write(socket, "0\r\n\r\n");
}

function write(socket: Socket, data: string | Uint8Array): Promise<void> {
  if (socket.destroyed) return Promise.reject(new Error("upstream closed the connection"));
  if (socket.write(data)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      socket.off("drain", done);
      socket.off("close", closed);
      err ? reject(err) : resolve();
    };
    const closed = () => done(new Error("upstream closed the connection"));
    socket.once("drain", done);
    socket.once("close", closed);
  });
}
