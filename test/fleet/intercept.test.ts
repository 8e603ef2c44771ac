import { afterAll, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../support/admin.ts";
import { type GatewayProcess, killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { createTestCa, startTlsOrigin } from "../support/test-ca.ts";
import { curl } from "../support/tls-clients.ts";

afterAll(() => killAllGatewayProcesses());

test("intercepted HTTPS: the member that terminated the agent's TLS asks the URL's owner, so the fleet fetches once", async () => {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-fleet-tls-"));
  const originCa = await createTestCa("fleet origin CA");
  const trusted = await originCa.writeTo(dir);
  const origin = await startTlsOrigin(originCa, (req) => {
    const path = new URL(req.url).pathname;
    return new Response(`secret bytes of ${path}\n`.repeat(100), { headers: { "cache-control": "max-age=600" } });
  });
  const ports = [await freePort(), await freePort()];
  const peers = ports.map((p) => `http://127.0.0.1:${p}`).join(",");
  const members: GatewayProcess[] = await Promise.all(
    ports.map((proxyPort) =>
      startGatewayProcess({
        proxyPort,
        extraCaFile: trusted.certFile,
        connectPorts: [origin.port],
        env: { CACHEGATE_PEERS: peers, CACHEGATE_PEER_SELF: `http://127.0.0.1:${proxyPort}`, CACHEGATE_WORKERS: "1" },
      }),
    ),
  );
  try {
    // Each member's CA, as an agent of that member trusts it.
    const caFiles = await Promise.all(
      members.map(async (m, i) => {
        const pem = await (
          await fetch(`${m.adminUrl}/api/ca.pem`, { headers: { authorization: `Bearer ${m.token}` } })
        ).text();
        const file = join(dir, `member-${i}.pem`);
        await writeFile(file, pem);
        return file;
      }),
    );
    const labels: string[] = [];
    for (let i = 0; i < 8; i++) {
      for (const k of [0, 1]) {
        const res = await curl(["--cacert", caFiles[k]!, "-x", members[k]!.proxyUrl, origin.url(`/tls/${i}`)]);
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe(`secret bytes of /tls/${i}\n`.repeat(100));
        labels.push(res.headers.get("x-cache") ?? "");
      }
    }
    expect(origin.count()).toBe(8);
    // Every object was fetched by its owner; the other member got it through the owner.
    expect(labels.filter((l) => l === "PEER").length).toBe(8);
  } finally {
    await Promise.all(members.map((m) => m.close()));
    await origin.stop();
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
