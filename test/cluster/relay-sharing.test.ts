import { describe, expect, test } from "bun:test";
import { shareIdenticalRelays } from "../../src/cluster/relay-sharing.ts";
import { gate } from "../support/wait.ts";

const URL_ = "http://localhost/storm.bin";
const get = (headers: Record<string, string> = {}) => new Request(URL_, { headers });
const bytes = (n: number, seed = 0) => new Uint8Array(n).map((_, i) => (i + seed) % 251);

/** A stand-in owner: answers after `release`, counting the requests that reached it. */
function owner(body: () => ConstructorParameters<typeof Response>[0], headers: Record<string, string> = {}) {
  const release = gate();
  let asked = 0;
  const relay = async () => {
    asked++;
    await release.opened;
    return new Response(body(), { headers: { "x-cache": "MISS", ...headers } });
  };
  return { relay, release: release.open, asked: () => asked };
}

describe("identical requests on one worker share one relay to the owner", () => {
  test("ten at once: one relay, ten whole bodies, one MISS and nine COALESCED", async () => {
    const body = bytes(2 * 1024 * 1024);
    const o = owner(() => body, { "content-length": String(body.length) });
    const relayShared = shareIdenticalRelays(o.relay);
    const answers = Array.from({ length: 10 }, () => relayShared(get({ "user-agent": "agent/1" }), URL_));
    o.release();
    const responses = (await Promise.all(answers)) as Response[];
    expect(o.asked()).toBe(1);
    for (const res of responses) expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(body))).toBe(true);
    const labels = responses.map((r) => r.headers.get("x-cache"));
    expect(labels.filter((l) => l === "MISS")).toHaveLength(1);
    expect(labels.filter((l) => l === "COALESCED")).toHaveLength(9);
  });

  test("requests that differ in any header (they may select another variant) are not shared", async () => {
    const o = owner(() => "x", { "content-length": "1" });
    const relayShared = shareIdenticalRelays(o.relay);
    const answers = [
      relayShared(get({ "accept-encoding": "gzip" }), URL_),
      relayShared(get({ "accept-encoding": "br" }), URL_),
      relayShared(get({ "accept-encoding": "gzip" }), URL_),
    ];
    o.release();
    await Promise.all(answers);
    expect(o.asked()).toBe(2);
  });

  test("a body too large to hold, or of unknown length, is not shared: each asks the owner itself", async () => {
    const large = bytes(5 * 1024 * 1024);
    const o = owner(() => large, { "content-length": String(large.length) });
    const relayShared = shareIdenticalRelays(o.relay);
    const answers = Array.from({ length: 3 }, () => relayShared(get(), URL_));
    o.release();
    for (const res of (await Promise.all(answers)) as Response[])
      expect((await res.arrayBuffer()).byteLength).toBe(large.length);
    expect(o.asked()).toBe(3);

    const chunked = owner(() => new Blob(["abc"]).stream());
    const relayChunked = shareIdenticalRelays(chunked.relay);
    const more = Array.from({ length: 3 }, () => relayChunked(get(), URL_));
    chunked.release();
    await Promise.all(more);
    expect(chunked.asked()).toBe(3);
  });

  test("a request arriving after the head came asks on its own; the held answer does not wait for it", async () => {
    const o = owner(() => "late", { "content-length": "4" });
    const relayShared = shareIdenticalRelays(o.relay);
    const first = relayShared(get(), URL_);
    o.release();
    expect(await ((await first) as Response).text()).toBe("late");
    expect(await ((await relayShared(get(), URL_)) as Response).text()).toBe("late");
    expect(o.asked()).toBe(2);
  });

  test("an answer cut off mid-body fails every agent sharing it; one agent leaving does not stop the others", async () => {
    let push!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        push = c;
      },
    });
    const o = owner(() => body, { "content-length": "1000" });
    const relayShared = shareIdenticalRelays(o.relay);
    const answers = Array.from({ length: 3 }, () => relayShared(get(), URL_));
    o.release();
    const [a, b, c] = (await Promise.all(answers)) as Response[];
    await a!.body!.cancel(); // this agent left
    push.enqueue(bytes(400));
    const reads = Promise.allSettled([b!.arrayBuffer(), c!.arrayBuffer()]);
    push.error(new Error("owner died"));
    const outcomes = await reads;
    expect(outcomes.map((o) => (o.status === "rejected" ? (o.reason as Error).message : "complete"))).toEqual([
      "owner died",
      "owner died",
    ]);
  });
});
