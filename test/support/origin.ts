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
  requests: Request[];
  stop(): Promise<void>;
}

export function startOrigin(handler: (req: Request) => Response | Promise<Response>): Origin {
  const counts = new Map<string, number>();
  const requests: Request[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      counts.set(path, (counts.get(path) ?? 0) + 1);
      requests.push(req);
      return handler(req);
    },
  });
  return {
    port: server.port!,
    url: (path) => `http://localhost:${server.port}${path}`,
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

/** Fetches through the gateway as an agent would (absolute-form proxy request). */
export function viaProxy(proxyUrl: string, url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, proxy: proxyUrl } as RequestInit);
}
