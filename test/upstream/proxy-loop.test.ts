import { expect, test } from "bun:test";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { tcpConnect } from "../support/tunnel-client.ts";
import { within } from "../support/wait.ts";

const defer = cleanupAfterEach();

test("two gateways set as each other's upstream proxy: a piped CONNECT is refused as a loop (Via), not passed round for ever", async () => {
  const config = {
    platformDomains: ["qualys.com"],
    allowedDomains: { enabled: true, domains: ["localhost"] },
    connect: { ports: [443, 8443] },
  };
  const [a, b] = [await startTestGateway({ config }), await startTestGateway({ config })];
  defer(() => a.close());
  defer(() => b.close());
  expect((await admin(a).patch({ upstreamProxy: { url: b.proxyUrl } })).status).toBe(200);
  expect((await admin(b).patch({ upstreamProxy: { url: a.proxyUrl } })).status).toBe(200);

  const agent = await tcpConnect(a.proxyPort);
  agent.on("error", () => {});
  defer(() => void agent.destroy());
  let answer = "";
  agent.on("data", (chunk: Buffer) => {
    answer += chunk.toString("latin1");
  });
  agent.write("CONNECT localhost:8443 HTTP/1.1\r\nHost: localhost:8443\r\n\r\n");
  // RFC 9110 §7.6.3: a CONNECT forwarded to a proxy carries Via too, so the gateway that sees itself in it refuses.
  await within(5000, "an answer to the CONNECT", new Promise<void>((resolve) => agent.once("end", resolve)));
  // a saw itself in the Via of b's CONNECT (508 to b); b's refusal reached the agent through a.
  expect(answer).toStartWith("HTTP/1.1 502 ");
  expect(answer).toContain(`the upstream proxy 127.0.0.1:${b.proxyPort} refused CONNECT localhost:8443`);
});
