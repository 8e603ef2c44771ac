import { expect, setDefaultTimeout, test } from "bun:test";
import { chmod, chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { freePort } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startOrigin, viaProxy } from "../support/origin.ts";
import { waitFor } from "../support/wait.ts";

setDefaultTimeout(30_000);

/**
 * What deploy/cachegate.service takes away, without systemd (none runs here):
 * in a mount namespace of its own the root file system is read-only
 * (ProtectSystem=strict) but for the data dir (ReadWritePaths=), /tmp is a
 * fresh tmpfs (PrivateTmp=), and the gateway runs as an unprivileged user
 * with no capabilities (CapabilityBoundingSet=, AmbientCapabilities=) and no
 * new privileges (NoNewPrivileges=). With its default workers it must start,
 * cache, and stop on SIGTERM: it writes nowhere else.
 */
const defer = cleanupAfterEach();
const root = join(import.meta.dir, "../..");
const NOBODY = 65534;

// A checkout under /tmp (CI may clone there) would vanish under the fresh /tmp: it is set aside first
// ($KEEP, beside the data dir) and mounted back at its own path, read-only like the rest.
const SANDBOX = `
set -e
mount --bind "$DATA" "$DATA"
mount --bind "$REPO" "$KEEP"
mount -o remount,bind,ro /
mount -t tmpfs -o mode=1777 tmpfs /tmp
case "$REPO" in /tmp/*) mkdir -p "$REPO" && mount --bind "$KEEP" "$REPO" ;; esac
cd "$REPO"
exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all "$@"
`;

test("under the unit's restrictions the gateway starts with its workers, serves MISS then HIT, and stops on SIGTERM", async () => {
  if (process.getuid!() !== 0) return console.warn("skipping: a mount namespace and setpriv need root");
  // Not under /tmp: the sandbox mounts a fresh /tmp over it.
  const parent = await mkdtemp("/var/tmp/cachegate-sandbox-");
  defer(() => rm(parent, { recursive: true, force: true }));
  await chmod(parent, 0o755);
  const data = join(parent, "data");
  await mkdir(data);
  const keep = join(parent, "repo");
  await mkdir(keep);
  await chown(data, NOBODY, NOBODY);
  const origin = startOrigin(() => new Response("patch bytes", { headers: { "cache-control": "max-age=300" } }));
  defer(() => origin.stop());

  const [proxyPort, adminPort] = [await freePort(), await freePort()];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CACHEGATE_")));
  const child = Bun.spawn(
    [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "bash",
      "-c",
      SANDBOX,
      "sandbox",
      process.execPath,
      "src/main.ts",
    ],
    {
      cwd: root,
      env: {
        ...env,
        DATA: data,
        REPO: root,
        KEEP: keep,
        HOME: data,
        BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0",
        CACHEGATE_DATA_DIR: data,
        CACHEGATE_HOST: "127.0.0.1",
        CACHEGATE_PORT: String(proxyPort),
        CACHEGATE_ADMIN_PORT: String(adminPort),
        CACHEGATE_ADMIN_TOKEN: "test-token",
        CACHEGATE_CACHE_MODE: "1",
        CACHEGATE_PLATFORM_DOMAINS: "localhost",
        CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1",
        CACHEGATE_WORKERS: "2",
      },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  defer(async () => {
    child.kill("SIGKILL");
    await child.exited;
  });
  let log = "";
  void (async () => {
    for await (const chunk of child.stdout as ReadableStream<Uint8Array>) log += new TextDecoder().decode(chunk);
  })();
  void (async () => {
    for await (const chunk of child.stderr as ReadableStream<Uint8Array>) log += new TextDecoder().decode(chunk);
  })();

  const health = () =>
    fetch(`http://127.0.0.1:${adminPort}/healthz`).then(
      async (r) => (r.ok ? ((await r.json()) as { workers?: number; downloads?: number }) : undefined),
      () => undefined,
    );
  await waitFor(
    "both workers serving",
    async () => {
      if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}:\n${log}`);
      return (await health())?.workers === 2;
    },
    15_000,
  );

  const proxy = `http://127.0.0.1:${proxyPort}`;
  const first = await viaProxy(proxy, origin.url("/kb5031356.msu"));
  expect([first.status, first.headers.get("x-cache"), await first.text()]).toEqual([200, "MISS", "patch bytes"]);
  await waitFor("the download to be stored", async () => (await health())?.downloads === 0);
  const second = await viaProxy(proxy, origin.url("/kb5031356.msu"));
  expect([second.status, second.headers.get("x-cache"), await second.text()]).toEqual([200, "HIT", "patch bytes"]);
  expect(origin.count()).toBe(1);

  child.kill("SIGTERM");
  expect(await child.exited).toBe(0);
  expect(log).not.toContain("EROFS");
  expect(log).not.toMatch(/"level":"error"/);
});
