import type { AgentGate } from "../agents/proxy-auth.ts";
import { GatewayError } from "../errors.ts";

/** RFC 9110 §11.7.1: a 407 names the scheme the agent should answer with. */
export const PROXY_AUTHENTICATE = 'Basic realm="cachegate agents", charset="UTF-8"';

/** The 407 of Patch Mode's "agents only" rule, for plain requests and CONNECT alike. */
export function agentsOnly(): GatewayError {
  return new GatewayError(
    407,
    "agent_credentials_required",
    "Patch Mode admits agents only: send the agent credentials issued by POST /api/agents " +
      "(curl --proxy-user USER:PASS, or https_proxy=http://USER:PASS@gateway:8080).",
    { headers: { "proxy-authenticate": PROXY_AUTHENTICATE } },
  );
}

/**
 * Admits a request (or a CONNECT) by its Proxy-Authorization or its client
 * address, and returns who the agent is; otherwise throws the 407, after the
 * delay the gate asks for (repeated failures from one address slow down).
 */
export async function admitAgent(
  gate: AgentGate,
  header: string | undefined | null,
  client: string,
  networks: readonly string[],
): Promise<string> {
  const result = await gate.authorize(header, client, networks);
  if (result.ok) return result.agent;
  if (result.delayMs > 0) await Bun.sleep(result.delayMs);
  throw agentsOnly();
}

/**
 * Patch Mode's "agents only" rule for one proxied request, as a plain
 * function for the proxy app and the fast path alike: resolves with who the
 * agent is, or throws the 407. A request inside a tunnel authorized at its
 * CONNECT (`authenticated`) is checked again, so a revocation since then
 * takes effect there too.
 */
export async function admitRequest(
  gate: AgentGate,
  networks: readonly string[],
  who: { client: string; authenticated?: boolean },
  header: string | undefined | null,
): Promise<string> {
  if (!who.authenticated) return admitAgent(gate, header, who.client, networks);
  if (!gate.stillAdmitted(who.client, networks)) throw agentsOnly();
  return who.client;
}
