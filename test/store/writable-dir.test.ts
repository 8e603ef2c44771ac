import { expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GatewayError } from "../../src/errors.ts";
import { freePort } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";
import { mountTmpfs } from "../support/patch.ts";
import { waitFor } from "../support/wait.ts";

setDefaultTimeout(20_000);

/**
 * A data dir the gateway's user cannot write (a root-owned bind mount in a
 * container that runs as `bun`) refuses the start with the path, the user,
 * the owner and the fix, instead of SQLite's "unable to open database file";
 * and it leaves nothing behind.
 *
 * Root bypasses permission bits, so as root the gateway is run as `nobody`
 * (setpriv, util-linux); as any other user it runs as itself on a 0555 dir.
 */
const defer = cleanupAfterEach();
const root = join(import.meta.dir, "../..");
const asRoot = process.getuid!() === 0;
const NOBODY = 65534;
const user = asRoot ? { uid: NOBODY, gid: NOBODY } : { uid: process.getuid!(), gid: process.getgid!() };

/** A temp dir everyone may enter (mkdtemp makes 0700, which `nobody` could not even look into). */
async function openTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cachegate-writable-"));
  await chmod(dir, 0o755);
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A directory the unprivileged gateway cannot write: root's 0755 as root, else its own at 0555. */
async function notWritableDir(parent: string, name = "data"): Promise<string> {
  const dir = join(parent, name);
  await mkdir(dir, { mode: 0o755 });
  if (!asRoot) await chmod(dir, 0o555);
  return dir;
}

/** `bun src/main.ts` as the unprivileged user, with one process and its data in `dataDir`. */
async function spawnGateway(dataDir: string) {
  const adminPort = await freePort();
  const command = asRoot
    ? ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, "src/main.ts"]
    : [process.execPath, "src/main.ts"];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CACHEGATE_")));
  const child = Bun.spawn(command, {
    cwd: root,
    env: {
      ...env,
      HOME: dataDir,
      CACHEGATE_DATA_DIR: dataDir,
      CACHEGATE_PORT: String(await freePort()),
      CACHEGATE_HOST: "127.0.0.1",
      CACHEGATE_ADMIN_PORT: String(adminPort),
      CACHEGATE_ADMIN_TOKEN: "test-token",
      CACHEGATE_WORKERS: "1",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  defer(async () => {
    child.kill("SIGKILL");
    await child.exited;
  });
  const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]).then(
    ([a, b]) => a + b,
  );
  return { child, adminPort, output };
}

/** Runs a gateway that must refuse to start: its exit status and what it logged. */
async function refusedStart(dataDir: string): Promise<{ status: number; output: string }> {
  const { child, output } = await spawnGateway(dataDir);
  const status = await Promise.race([child.exited, Bun.sleep(15_000).then(() => "still running" as const)]);
  return { status: status === "still running" ? -1 : status, output: await output };
}

test("a data dir owned by someone else refuses the start naming the path, the user, the owner and the fix", async () => {
  const data = await notWritableDir(await openTempDir());
  const { status, output } = await refusedStart(data);
  expect(status).toBe(1);
  expect(output).not.toContain("unable to open database file");
  expect(output).toContain(`the data dir ${data} (CACHEGATE_DATA_DIR) is not writable (EACCES)`);
  expect(output).toContain(`(uid ${user.uid}, gid ${user.gid})`);
  expect(output).toContain(asRoot ? `${data} is owned by root (uid 0, gid 0), mode 0755` : "mode 0555");
  expect(output).toContain(`chown ${user.uid}:${user.gid} ${data}`);
  expect(output).toContain(`-v /srv/cachegate:${data}:U`);
  expect(await readdir(data)).toEqual([]);
});

test("a data dir that cannot be created names the directory in its way and who owns it", async () => {
  const parent = await notWritableDir(await openTempDir(), "mnt");
  const data = join(parent, "cachegate");
  const { status, output } = await refusedStart(data);
  expect(status).toBe(1);
  expect(output).toContain(`the data dir ${data} (CACHEGATE_DATA_DIR) cannot be created (EACCES)`);
  expect(output).toContain(`chown ${user.uid}:${user.gid} ${parent}`);
  expect(existsSync(data)).toBe(false);
});

test("the same unprivileged user starts and serves once the data dir is given to it", async () => {
  const data = join(await openTempDir(), "data");
  await mkdir(data);
  if (asRoot) await chown(data, NOBODY, NOBODY);
  const { adminPort } = await spawnGateway(data);
  await waitFor(
    "/healthz on the unprivileged gateway",
    () =>
      fetch(`http://127.0.0.1:${adminPort}/healthz`).then(
        (r) => r.ok,
        () => false,
      ),
    10_000,
  );
  expect(existsSync(join(data, "index.sqlite"))).toBe(true);
});

test("a data dir path that runs through a file is refused, naming the file in the way", async () => {
  const file = join(await openTempDir(), "disk.img");
  await writeFile(file, "not a directory");
  const err = await startTestGateway({ dataDir: join(file, "data") }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe("data_dir_unusable");
  expect((err as GatewayError).message).toContain(
    `the data dir ${join(file, "data")} (CACHEGATE_DATA_DIR) cannot be created (ENOTDIR)`,
  );
  expect((err as GatewayError).message).toContain(`${file} is a file, not a directory`);
});

test("a data dir that is a file is refused as not a directory", async () => {
  const file = join(await openTempDir(), "data");
  await writeFile(file, "");
  const err = await startTestGateway({ dataDir: file }).catch((e: unknown) => e);
  expect((err as GatewayError).message).toContain(`${file} (CACHEGATE_DATA_DIR) is not a directory`);
});

test("a data dir on a read-only mount is refused as read-only, even for root", async () => {
  const ro = await mountTmpfs(1024 * 1024, { readOnly: true });
  if ("error" in ro) {
    console.warn(`skipping the read-only mount case: ${ro.error}`);
    return;
  }
  defer(() => ro.unmount());
  const err = await startTestGateway({ dataDir: ro.dir }).catch((e: unknown) => e);
  expect((err as GatewayError).message).toContain(`${ro.dir} (CACHEGATE_DATA_DIR) is not writable (EROFS)`);
  expect((err as GatewayError).message).toContain("read-only file system: mount it read-write");
});
