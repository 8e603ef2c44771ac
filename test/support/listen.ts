import type { Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * Binds a test server to 127.0.0.1 on a free port. `stop` also destroys the
 * connections still open (agents the gateway keeps alive), so a test never
 * waits on a kept-alive socket to close.
 */
export async function listenOnLoopback(server: Server): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
