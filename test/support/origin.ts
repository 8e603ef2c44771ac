/**
 * A real origin server on 127.0.0.1 port 0 that counts the requests it
 * serves, per path. Each test gives it a handler; `url(path)` is the address
 * agents ask for through the gateway (host `localhost`, the test platform domain).
 */
export interface Origin {
  port: number;
  url(path: string): string;
  /** Requests served, per path (all paths when omitted). */
  count(path?: string): number;
  /** What each request looked like when it arrived (headers are copied: Bun empties them after the response). */
  requests: SeenRequest[];
  stop(): Promise<void>;
}

export interface SeenRequest {
  method: string;
  path: string;
  headers: Headers;
}

export function startOrigin(handler: (req: Request) => Response | Promise<Response>): Origin {
  const counts = new Map<string, number>();
  const requests: SeenRequest[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      counts.set(path, (counts.get(path) ?? 0) + 1);
      requests.push({ method: req.method, path, headers: new Headers(req.headers) });
      return handler(req);
    },
  });
  const port = server.port!; // kept: a stopped server reports port 0, and tests still name the URL it had
  return {
    port,
    url: (path) => `http://localhost:${port}${path}`,
    count: (path) => (path === undefined ? [...counts.values()].reduce((a, b) => a + b, 0) : (counts.get(path) ?? 0)),
    requests,
    stop: () => server.stop(true),
  };
}

/** A body that arrives in `chunks` pieces, `delayMs` apart, so tests can act mid-download. */
export function slowBody(chunks: Uint8Array[], delayMs: number): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    async pull(controller) {
      if (i > 0) await Bun.sleep(delayMs);
      if (i >= chunks.length) return controller.close();
      controller.enqueue(chunks[i++]!);
    },
  });
}

/** A body the test writes by hand: the origin sends exactly what was pushed, when it was pushed. */
export interface PushedBody {
  stream: ReadableStream<Uint8Array>;
  push(chunk: Uint8Array): void;
  end(): void;
  /** Bytes pushed so far. */
  readonly pushed: number;
}

export function pushedBody(): PushedBody {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let pushed = 0;
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => {
      controller = c;
    },
  });
  return {
    stream,
    push(chunk) {
      pushed += chunk.length;
      controller.enqueue(chunk);
    },
    end: () => controller.close(),
    get pushed() {
      return pushed;
    },
  };
}

/** Fetches through the gateway as an agent would (absolute-form proxy request). */
export function viaProxy(proxyUrl: string, url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, proxy: proxyUrl } as RequestInit);
}

/** Reads a whole body as bytes, for comparing with what the origin sent. */
export async function bytesOf(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}
