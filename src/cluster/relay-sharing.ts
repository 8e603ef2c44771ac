/**
 * A storm on one worker: many agents ask for the same object at once, and
 * each would be its own relay stream to the owner (its own connection and
 * buffers there). As Varnish's waiting list shares one backend fetch, the
 * requests that are identical (method, URL, every header) and arrive before
 * the owner's answer head share that one answer, when its body is small
 * enough to hold for the slowest of them. A larger or unknown-length body is
 * not held: each waiting agent then asks the owner itself, which serves it
 * from its download at once.
 */

/** Bodies up to this size are held and shared (as the shared copies of serve.ts). */
const SHARE_MAX_BYTES = 4 * 1024 * 1024;
/** What shared answers may hold in all; past it, requests are relayed one by one. */
const SHARE_BUDGET_BYTES = 64 * 1024 * 1024;

/** Sends one request to the owner of `url` (the cache key); undefined when the owner cannot take it. */
type Relay = (req: Request, url: string) => Promise<Response | undefined>;

/** One answer being shared: its head, and its body as it arrives, for every branch to read from the start. */
class SharedAnswer {
  private readonly chunks: Uint8Array[] = [];
  private done = false;
  private error: unknown;
  private branches = 0;
  private pumping = false;
  private released = false;
  private readonly wake = new Set<() => void>();

  constructor(
    private readonly head: Response,
    private readonly release: () => void,
  ) {}

  private async pump(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.chunks.push(value);
        this.notify();
        if (this.branches === 0) return void reader.cancel().catch(() => {}); // everyone left
      }
      this.done = true;
    } catch (err) {
      this.error = err ?? new Error("the owner's answer failed");
    } finally {
      this.notify();
    }
  }

  private notify(): void {
    for (const wake of [...this.wake]) wake();
  }

  /**
   * A response of its own for one agent: the same head, the body from its first byte. `coalesced`: it
   * waited on another agent's fetch, so an owner's MISS is a COALESCED for it (as in one process).
   */
  branch(coalesced: boolean): Response {
    this.branches++;
    if (!this.pumping) {
      this.pumping = true; // from the first branch on: before it, nobody would be there to read
      void this.pump(this.head.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>);
    }
    let next = 0;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      if (--this.branches > 0 || this.released) return;
      this.released = true;
      this.release();
    };
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        while (next >= this.chunks.length && !this.done && this.error === undefined) {
          await new Promise<void>((resolve) => {
            const wake = () => {
              this.wake.delete(wake);
              resolve();
            };
            this.wake.add(wake);
          });
        }
        if (next < this.chunks.length) return controller.enqueue(this.chunks[next++]!);
        leave();
        if (this.error !== undefined) controller.error(this.error);
        else controller.close();
      },
      cancel: leave,
    });
    const headers = new Headers(this.head.headers);
    if (coalesced && headers.get("x-cache") === "MISS") headers.set("x-cache", "COALESCED");
    return new Response(body, { status: this.head.status, statusText: this.head.statusText, headers });
  }
}

export function shareIdenticalRelays(relay: Relay) {
  const waiting = new Map<string, Promise<SharedAnswer | Response | undefined>>();
  let held = 0;

  /** The owner's answer, as something several agents can share if it is small enough; else as it came. */
  async function fetchShared(req: Request, url: string): Promise<SharedAnswer | Response | undefined> {
    const res = await relay(req, url);
    if (!res?.body) return res;
    const size = Number(res.headers.get("content-length") ?? Number.NaN);
    if (!(size <= SHARE_MAX_BYTES) || held + size > SHARE_BUDGET_BYTES) return res;
    held += size;
    return new SharedAnswer(res, () => (held -= size));
  }

  return async function relayShared(req: Request, url: string): Promise<Response | undefined> {
    const key = keyOf(req);
    const pending = waiting.get(key);
    if (pending) {
      const answer = await pending;
      if (answer instanceof SharedAnswer) return answer.branch(true);
      if (answer && !answer.body) return new Response(null, answer); // a head alone (HEAD, 304) is shared as is
      return relay(req, url); // not shareable (too large, unknown length, or no answer): its own relay
    }
    const first = fetchShared(req, url);
    waiting.set(key, first);
    // Only requests that arrive before the head share it: a later one asks on its own (the owner serves
    // it from its download at once), so a held answer never waits for agents still to come.
    const answer = await first.finally(() => waiting.delete(key));
    return answer instanceof SharedAnswer ? answer.branch(false) : answer;
  };
}

/** Requests that may share an answer: the same method, URL and header fields (any of them may select a variant). */
function keyOf(req: Request): string {
  const fields = [...req.headers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${req.method} ${req.url}\n${fields.map(([name, value]) => `${name}: ${value}`).join("\n")}`;
}
