import { runtimeFromEnv } from "./config/env.ts";

/**
 * The container's health check (`bun src/healthcheck.ts`): exits 0 when the
 * admin listener's /healthz answers 200, 1 otherwise (a 503 from a primary
 * whose workers are down, a refused connection, no answer in time). It reads
 * CACHEGATE_ADMIN_PORT and CACHEGATE_ADMIN_HOST with the gateway's own parser
 * (src/config/env.ts), so moving the admin port does not leave a health check
 * polling 9090.
 */

/** Where /healthz is for an admin listener bound to `host`: a wildcard bind is reached on loopback. */
export function healthUrl(host: string, port: number): string {
  const target = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" || host === "[::]" ? "::1" : host;
  const bracketed = target.includes(":") && !target.startsWith("[") ? `[${target}]` : target;
  return `http://${bracketed}:${port}/healthz`;
}

/** One probe: what to print and the exit status. Never throws. */
export async function probe(env: Record<string, string | undefined>, timeoutMs = 2500): Promise<[string, number]> {
  let url: string;
  try {
    const runtime = runtimeFromEnv(env);
    url = healthUrl(runtime.adminHost, runtime.adminPort);
  } catch (err) {
    return [`unhealthy: ${(err as Error).message}`, 1];
  }
  try {
    // Straight to the admin port: Bun's fetch would honour an http_proxy set in the container's environment.
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), proxy: false } as RequestInit);
    const body = (await res.text()).slice(0, 500);
    return [`${res.ok ? "healthy" : "unhealthy"}: ${url} answered ${res.status} ${body}`, res.ok ? 0 : 1];
  } catch (err) {
    return [`unhealthy: ${url}: ${(err as Error).message}`, 1];
  }
}

if (import.meta.main) {
  const [message, status] = await probe(process.env);
  (status === 0 ? process.stdout : process.stderr).write(`${message}\n`);
  process.exit(status);
}
