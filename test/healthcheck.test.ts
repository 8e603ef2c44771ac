import { expect, test } from "bun:test";
import { join } from "node:path";
import { healthUrl } from "../src/healthcheck.ts";
import { freePort } from "./support/admin.ts";
import { cleanupAfterEach } from "./support/cleanup.ts";
import { startTestGateway } from "./support/gateway.ts";

/**
 * The container's HEALTHCHECK runs `bun src/healthcheck.ts`: it must find
 * the admin port the operator configured (not a hard-coded 9090) and say
 * healthy only when /healthz answers 200.
 */
const defer = cleanupAfterEach();
const root = join(import.meta.dir, "..");

/** Runs the health check as the container does, with only the given CACHEGATE_* variables. */
async function healthcheck(env: Record<string, string>): Promise<{ status: number; output: string }> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CACHEGATE_")));
  const child = Bun.spawn(["bun", "src/healthcheck.ts"], {
    cwd: root,
    env: { ...clean, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [status, out, err] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  return { status, output: out + err };
}

test("is healthy against a running gateway on the admin port CACHEGATE_ADMIN_PORT names", async () => {
  const gw = await startTestGateway();
  defer(() => gw.close());
  const result = await healthcheck({ CACHEGATE_ADMIN_PORT: String(gw.adminPort), CACHEGATE_ADMIN_HOST: "127.0.0.1" });
  expect(result).toMatchObject({ status: 0 });
  expect(result.output).toContain(`127.0.0.1:${gw.adminPort}/healthz answered 200`);
});

test("reaches an admin listener bound to 0.0.0.0 (the container's setting) on loopback", async () => {
  const gw = await startTestGateway();
  defer(() => gw.close());
  const result = await healthcheck({ CACHEGATE_ADMIN_PORT: String(gw.adminPort), CACHEGATE_ADMIN_HOST: "0.0.0.0" });
  expect(result.status).toBe(0);
});

test("is unhealthy, naming the URL, when nothing listens on the configured admin port", async () => {
  const port = await freePort();
  const result = await healthcheck({ CACHEGATE_ADMIN_PORT: String(port), CACHEGATE_ADMIN_HOST: "127.0.0.1" });
  expect(result.status).toBe(1);
  expect(result.output).toContain(`unhealthy: http://127.0.0.1:${port}/healthz`);
});

test("is unhealthy when /healthz answers 503 (a primary whose workers are down)", async () => {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => Response.json({ status: "no worker is serving" }, { status: 503 }),
  });
  defer(() => server.stop(true));
  const result = await healthcheck({ CACHEGATE_ADMIN_PORT: String(server.port), CACHEGATE_ADMIN_HOST: "127.0.0.1" });
  expect(result.status).toBe(1);
  expect(result.output).toContain("answered 503");
});

test("is unhealthy with the variable's name when CACHEGATE_ADMIN_PORT is not a port", async () => {
  const result = await healthcheck({ CACHEGATE_ADMIN_PORT: "ninety" });
  expect(result.status).toBe(1);
  expect(result.output).toContain("CACHEGATE_ADMIN_PORT");
});

test("turns wildcard and IPv6 admin hosts into a URL it can connect to", () => {
  expect(healthUrl("0.0.0.0", 9090)).toBe("http://127.0.0.1:9090/healthz");
  expect(healthUrl("::", 9091)).toBe("http://[::1]:9091/healthz");
  expect(healthUrl("::1", 9092)).toBe("http://[::1]:9092/healthz");
  expect(healthUrl("10.0.0.5", 9093)).toBe("http://10.0.0.5:9093/healthz");
  expect(healthUrl("gateway.example", 9094)).toBe("http://gateway.example:9094/healthz");
});
