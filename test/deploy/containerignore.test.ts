import { expect, test } from "bun:test";
import { join } from "node:path";
import ignore from "@balena/dockerignore";

/**
 * The build context is what buildah/podman/docker send to the build: it
 * must never carry a data dir (ca.key, admin-token, agent password hashes,
 * cached bodies), node_modules, .git or local work. Checked with a library
 * that implements Docker's .dockerignore matching (buildah follows the same
 * rules); `bun run container:smoke` checks the built image's /app as well.
 */
const root = join(import.meta.dir, "../..");
const rules = await Bun.file(join(root, ".containerignore")).text();
const ig = ignore().add(rules);
const sent = (path: string) => !ig.ignores(path);

/** Files git knows about: the real tree, not a list that could go stale. */
const tracked = Bun.spawnSync(["git", "ls-files"], { cwd: root }).stdout.toString().split("\n").filter(Boolean);

test("a data dir, node_modules, .git and local work never reach the build context, wherever they sit", () => {
  const secrets = [
    "data/admin-token",
    "data/ca/ca.key",
    "data/ca/ca.pem",
    "data/index.sqlite",
    "data/blobs/ab/abcdef",
    "src/data/admin-token",
    "node_modules/hono/package.json",
    "src/node_modules/x/index.js",
    ".git/HEAD",
    "bench/.work/nginx.conf",
    "test/support/gateway.ts",
    "cachegate.log",
    "src/tls/leaf.key",
    "migrations/index.sqlite-wal",
    ".env",
  ];
  expect(secrets.filter(sent)).toEqual([]);
});

test("everything the Containerfile copies is sent: package.json, bun.lock, src/ and migrations/", async () => {
  const containerfile = await Bun.file(join(root, "Containerfile")).text();
  const copied = [...containerfile.matchAll(/^COPY\s+(.+)\s+\S+$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  expect(copied.sort()).toEqual(["bun.lock", "migrations", "package.json", "src"]);
  const needed = tracked.filter((f) => copied.some((c) => f === c || f.startsWith(`${c}/`)));
  expect(needed.length).toBeGreaterThan(50);
  expect(needed.filter((f) => !sent(f))).toEqual([]);
});

test("of the files git tracks, only those the Containerfile copies are sent", () => {
  const allowed = (f: string) => ["package.json", "bun.lock"].includes(f) || /^(src|migrations)\//.test(f);
  expect(tracked.filter(sent).filter((f) => !allowed(f))).toEqual([]);
});
