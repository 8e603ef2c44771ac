import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { countRows } from "../support/data-dir.ts";
import { type GatewayProcess, killAllGatewayProcesses, startGatewayProcess } from "../support/gateway-process.ts";
import { basic, patchDiskContents } from "../support/patch.ts";
import { createTestCa, startTlsOrigin, type TlsOrigin } from "../support/test-ca.ts";
import { curl, exchange, openTunnel, tlsOver } from "../support/tls-clients.ts";
import { waitFor } from "../support/wait.ts";

/**
 * Patch Mode over HTTPS, as the seed's steps are followed with curl: the
 * gateway started with Patch Mode from the environment (CACHEGATE_PATCH_MODE,
 * CACHEGATE_PATCH_DISK, CACHEGATE_PATCH_DISK_MIN_FREE), an agent with
 * credentials on its CONNECT, the tunnel to a vendor host intercepted and
 * what flows through cached on the patch disk. The gateway runs as its own
 * process so it can trust the test vendor's CA (NODE_EXTRA_CA_CERTS).
 */
let dir: string;
let patchDir: string;
let origin: TlsOrigin;
let gw: GatewayProcess;
let gatewayCaFile: string;
let agent: { id: number; username: string; password: string };
const patch = randomBytes(1024 * 1024);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cachegate-https-patch-"));
  patchDir = await mkdtemp(join(tmpdir(), "cachegate-https-patchdisk-"));
  const vendorCa = await createTestCa("test vendor CA");
  const trusted = await vendorCa.writeTo(dir);
  origin = await startTlsOrigin(
    vendorCa,
    () =>
      new Response(patch, {
        headers: { "cache-control": "max-age=86400", "content-type": "application/octet-stream" },
      }),
  );
  gw = await startGatewayProcess({
    extraCaFile: trusted.certFile,
    connectPorts: [origin.port],
    env: { CACHEGATE_PATCH_MODE: "1", CACHEGATE_PATCH_DISK: patchDir, CACHEGATE_PATCH_DISK_MIN_FREE: "1024" },
  });
  gatewayCaFile = join(dir, "gateway-ca.pem");
  await writeFile(
    gatewayCaFile,
    await (await fetch(`${gw.adminUrl}/api/ca.pem`, { headers: { authorization: `Bearer ${gw.token}` } })).text(),
  );
  const res = await fetch(`${gw.adminUrl}/api/agents`, {
    method: "POST",
    headers: { authorization: `Bearer ${gw.token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "https-agents" }),
  });
  agent = (await res.json()) as typeof agent;
});

afterAll(async () => {
  await killAllGatewayProcesses();
  await gw?.close();
  await origin?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (patchDir) await rm(patchDir, { recursive: true, force: true });
});

/** Opens a CONNECT tunnel with a Proxy-Authorization header; resolves with the socket once the gateway answered 200. */
const tunnelWith = (authorization: string, authority: string) =>
  openTunnel(gw.proxyPort, authority, { headers: { "proxy-authorization": authorization } });

/** The vendor as a patch host: 127.0.0.1 is not the test platform domain (localhost). */
const vendorUrl = (path: string) => `https://127.0.0.1:${origin.port}${path}`;

describe("Patch Mode over HTTPS", () => {
  test("the gateway started with Patch Mode from the environment reports its patch disk", async () => {
    const config = await gw.json("/api/config");
    expect(config.config.patchMode.enabled).toBe(true);
    expect(config.config.patchDisk).toMatchObject({ path: patchDir, minFreeBytes: 1024 });
    expect((await gw.json("/api/stats")).patchDisk).toMatchObject({ path: patchDir, cachedBytes: 0 });
  });

  test("curl without agent credentials is refused at the CONNECT with 407", async () => {
    const res = await curl(["--cacert", gatewayCaFile, "-x", gw.proxyUrl, vendorUrl("/kb-none.msu")]);
    expect(res.rawHeads).toMatch(/^HTTP\/1\.1 407/m);
    expect(res.rawHeads.toLowerCase()).toContain("proxy-authenticate: basic");
    expect(origin.count("/kb-none.msu")).toBe(0);
  });

  test("an agent with curl -U downloads a patch over HTTPS once from the vendor, and the next download is a HIT from the patch disk", async () => {
    const args = [
      "-U",
      `${agent.username}:${agent.password}`,
      "--cacert",
      gatewayCaFile,
      "-x",
      gw.proxyUrl,
      vendorUrl("/windows-kb5034441.msu"),
    ];
    const first = await curl(args);
    expect(first.stderr).toBe("");
    expect(first.status).toBe(200);
    expect(first.headers.get("x-cache")).toBe("MISS");
    expect(sha256(first.body)).toBe(sha256(patch));
    // Landed on the patch disk (the patch downloads in flight are in the stats; /healthz counts the main cache's).
    await waitFor(
      "the patch download to land",
      async () => (await gw.json("/api/stats")).patchDisk.downloadsInFlight === 0,
    );

    const second = await curl(args);
    expect(second.status).toBe(200);
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(sha256(second.body)).toBe(sha256(patch));
    expect(origin.count("/windows-kb5034441.msu")).toBe(1);

    const disk = await patchDiskContents(join(patchDir, "cachegate"));
    expect(disk.entries).toBe(1);
    expect(disk.blobs.map((f) => basename(f))).toEqual([sha256(patch)]);
    expect(countRows(gw.dataDir, "entries")).toBe(0);
    expect((await gw.json("/api/stats")).patchDisk.cachedBytes).toBe(patch.length);
  });

  test("revoking an agent applies at once to an intercepted tunnel it already has open", async () => {
    const auth = { authorization: `Bearer ${gw.token}`, "content-type": "application/json" };
    const issued = (await (
      await fetch(`${gw.adminUrl}/api/agents`, { method: "POST", headers: auth, body: '{"name":"to-revoke"}' })
    ).json()) as typeof agent;
    const authority = `127.0.0.1:${origin.port}`;
    const raw = await tunnelWith(basic(issued.username, issued.password), authority);
    const tls = await tlsOver(raw, { host: "127.0.0.1", ca: await Bun.file(gatewayCaFile).text() });
    try {
      const before = await exchange(tls, `GET /tunnel-1.msu HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
      expect(before.status).toBe(200);
      expect((await fetch(`${gw.adminUrl}/api/agents/${issued.id}`, { method: "DELETE", headers: auth })).status).toBe(
        200,
      );
      // Same tunnel, same TLS session, next request: refused, and the vendor is not asked.
      const after = await exchange(tls, `GET /tunnel-2.msu HTTP/1.1\r\nHost: ${authority}\r\n\r\n`).catch(
        (err: Error) => ({ status: 0, error: err }),
      );
      expect(after.status).not.toBe(200);
      expect(origin.count("/tunnel-2.msu")).toBe(0);
      // A new tunnel with the revoked credentials is refused at its CONNECT.
      await expect(tunnelWith(basic(issued.username, issued.password), authority)).rejects.toThrow("407");
    } finally {
      tls.destroy();
    }
  });
});
