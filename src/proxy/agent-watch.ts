import type { Duplex } from "node:stream";

/** Early bytes kept while waiting; past this the socket is paused (and a hang-up is then seen only as a reset). */
const MAX_EARLY = 64 * 1024;

/**
 * Watches a CONNECT's agent socket while the gateway is still opening the
 * tunnel (through the upstream proxy), so an agent that gives up takes that
 * connection with it at once. A FIN reaches only a socket that is read, so
 * it is read: bytes the agent sends before the 200 (a TLS ClientHello sent
 * right after CONNECT) are kept for the tunnel, in order.
 */
export function watchAgent(client: Duplex): { gone: AbortSignal; stop(): Buffer } {
  const gone = new AbortController();
  const early: Buffer[] = [];
  let kept = 0;
  const onGone = () => gone.abort(new Error("the agent closed the connection"));
  const keep = (chunk: Buffer) => {
    early.push(chunk);
    kept += chunk.length;
    if (kept > MAX_EARLY) client.pause();
  };
  client.on("data", keep);
  client.once("end", onGone);
  client.once("close", onGone);
  return {
    gone: gone.signal,
    /** Stops watching; the socket is paused again, and what the agent sent meanwhile is returned. */
    stop() {
      client.off("data", keep);
      client.off("end", onGone);
      client.off("close", onGone);
      client.pause();
      return Buffer.concat(early);
    },
  };
}
