import { FramingError } from "./framing.ts";

/** Longest chunk-size line (size plus extensions) and trailer section accepted. */
const MAX_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;

/**
 * An incremental decoder of the chunked transfer coding (RFC 9112 §7.1):
 * bytes go in as they arrive, body bytes come out (as views, not copies),
 * and `done` says the last chunk and the trailer section were seen, the
 * only proof that a chunked body is complete.
 */
export class ChunkedDecoder {
  private state: "size" | "data" | "data-end" | "trailers" | "done" = "size";
  private line = "";
  private remaining = 0;
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === "done";
  }

  /** Decodes `input`; returns the body bytes it held, and what followed the message, if anything. */
  push(input: Uint8Array): { body: Uint8Array[]; rest: Uint8Array | undefined } {
    const body: Uint8Array[] = [];
    let i = 0;
    while (i < input.length && this.state !== "done") {
      if (this.state === "data") {
        const n = Math.min(this.remaining, input.length - i);
        body.push(input.subarray(i, i + n));
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = "data-end";
        continue;
      }
      const eol = input.indexOf(0x0a, i);
      const end = eol < 0 ? input.length : eol;
      this.line += Buffer.from(input.buffer, input.byteOffset + i, end - i).toString("latin1");
      if (this.line.length > MAX_LINE) throw new FramingError("a chunk-size or trailer line is too long");
      i = eol < 0 ? input.length : eol + 1;
      if (eol >= 0) this.endLine(this.line.endsWith("\r") ? this.line.slice(0, -1) : this.line);
    }
    return { body, rest: i < input.length ? input.subarray(i) : undefined };
  }

  private endLine(line: string): void {
    this.line = "";
    switch (this.state) {
      case "size": {
        // chunk-size [ chunk-ext ]; extensions are ignored (§7.1.1).
        const size = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
        if (!size) throw new FramingError(`invalid chunk size line "${line.slice(0, 40)}"`);
        this.remaining = Number.parseInt(size[1]!, 16);
        this.state = this.remaining === 0 ? "trailers" : "data";
        return;
      }
      case "data-end":
        if (line !== "") throw new FramingError("a chunk is longer than its size says");
        this.state = "size";
        return;
      case "trailers":
        // Trailer fields are not merged into the stored response (§7.1.2 allows discarding them).
        this.trailerBytes += line.length + 2;
        if (this.trailerBytes > MAX_TRAILERS) throw new FramingError("the trailer section is too large");
        if (line === "") this.state = "done";
        return;
      default:
        return;
    }
  }
}
