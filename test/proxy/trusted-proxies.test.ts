import { expect, test } from "bun:test";
import { admin, agentGet } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startHaproxy } from "../support/haproxy.ts";
import { startOrigin } from "../support/origin.ts";
import { startPatchGateway } from "../support/patch.ts";

const defer = cleanupAfterEach();

/**
 * Behind HAProxy every agent's connection comes from HAProxy. With its
 * address in trustedProxies, the gateway takes the agent from the
 * X-Forwarded-For that the shipped config adds (`option forwardfor`): Patch
 * Mode's clientNetworks and the per-agent figures see agents, not HAProxy.
 */
test("behind the shipped HAProxy, Patch Mode's client networks see the agent's address, and only a trusted front end's header counts", async () => {
  const origin = startOrigin(() => new Response("patch bytes", { headers: { "cache-control": "max-age=600" } }));
  defer(() => origin.stop());
  // Agents in 127.0.0.8/29 need no credentials; HAProxy connects from 127.0.0.1, which is not in it.
  const gw = await startPatchGateway({ clientNetworks: ["127.0.0.8/29"] });
  defer(() => gw.close());
  const haproxy = await startHaproxy({ servers: [gw.proxyPort] });
  defer(() => haproxy.stop());
  const url = origin.url("/kb1.msu");

  // Not trusted yet: HAProxy's own address is the client, outside the networks.
  expect((await agentGet(haproxy.url, url, "127.0.0.9")).status).toBe(407);

  expect((await admin(gw).patch({ trustedProxies: ["127.0.0.1/32"] })).status).toBe(200);
  const admitted = await agentGet(haproxy.url, url, "127.0.0.9");
  expect(admitted.status).toBe(200);
  expect(admitted.body.toString()).toBe("patch bytes");
  // An agent outside the networks is still asked for credentials, whatever it claims.
  expect((await agentGet(haproxy.url, url, "127.0.0.20", { "x-forwarded-for": "127.0.0.9" })).status).toBe(407);
  // Straight to the gateway from an untrusted address, a forged header is ignored.
  expect((await agentGet(gw.proxyUrl, url, "127.0.0.20", { "x-forwarded-for": "127.0.0.9" })).status).toBe(407);
});

test("trustedProxies takes CIDR networks, and a bad entry is refused with what to type", async () => {
  const gw = await startPatchGateway();
  defer(() => gw.close());
  const res = await admin(gw).patch({ trustedProxies: ["10.0.0.5"] });
  expect(res.status).toBe(400);
  const body = (await res.json()) as { details: { path: string; message: string }[] };
  expect(body.details[0]?.path).toBe("trustedProxies.0");
  expect(body.details[0]?.message).toContain("CIDR");
});
