import { GatewayError } from "../errors.ts";

/**
 * Workers bind the agent port with SO_REUSEPORT (Bun's cluster does), and
 * the kernel lets any process of the same user that does the same share it:
 * a second gateway started by mistake on the same port would silently get
 * half the agents. So before workers bind a port, the primary binds it once
 * without SO_REUSEPORT, which fails while anyone holds it, and lets go.
 */
export function assertPortFree(host: string, port: number): void {
  try {
    const probe = Bun.listen({ hostname: host, port, socket: { data() {} } }); // no reusePort
    probe.stop(true);
  } catch (err) {
    throw new GatewayError(
      409,
      "port_unavailable",
      `cannot listen on port ${port} (${(err as Error).message}): another process holds it; ` +
        "stop it or choose a free port; nothing was changed",
      { cause: err },
    );
  }
}
