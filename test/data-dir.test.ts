import { expect, test } from "bun:test";
import { chmod, mkdtemp, readdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupAfterEach } from "./support/cleanup.ts";
import { startTestGateway } from "./support/gateway.ts";
import { startOrigin, viaProxy } from "./support/origin.ts";

/**
 * The data dir holds the admin token, the CA key, agent password hashes and
 * cached bodies: nobody but the gateway's own user may read any of it.
 */
const defer = cleanupAfterEach();
const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

test("the data dir is 0700 and every file the gateway writes in it is 0600, also when the dir was created 0755", async () => {
  const dataDir = join(await mkdtemp(join(tmpdir(), "cachegate-perm-")), "data");
  await Bun.write(join(dataDir, ".keep"), "");
  await chmod(dataDir, 0o755);
  const origin = startOrigin(() => new Response("manifest", { headers: { "cache-control": "max-age=60" } }));
  defer(() => origin.stop());
  const gw = await startTestGateway({ dataDir, adminToken: "" });
  defer(() => gw.close());
  expect((await viaProxy(gw.proxyUrl, origin.url("/m.json"))).status).toBe(200);
  await gw.idle();

  expect(await modeOf(dataDir)).toBe(0o700);
  const files = ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "admin-token", "ca/ca.key", "ca/ca.pem"];
  for (const file of files) expect({ file, mode: await modeOf(join(dataDir, file)) }).toEqual({ file, mode: 0o600 });
  const shards = await readdir(join(dataDir, "blobs"));
  expect(shards).toHaveLength(1);
  const [blob] = await readdir(join(dataDir, "blobs", shards[0]!));
  expect(await modeOf(join(dataDir, "blobs", shards[0]!, blob!))).toBe(0o600);
  for (const dir of ["blobs", "tmp", "ca"])
    expect({ dir, mode: await modeOf(join(dataDir, dir)) }).toEqual({ dir, mode: 0o700 });
});
