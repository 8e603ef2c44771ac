import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { ENV_VARS, INTERNAL_ENV_PREFIX } from "../src/config/env-vars.ts";
import { cleanupAfterEach } from "./support/cleanup.ts";

const defer = cleanupAfterEach();
const root = join(import.meta.dir, "..");

/** Runs the gateway's command line with a data dir that does not exist; what it printed and how it exited. */
async function run(cmd: string[]) {
  const parent = await mkdtemp(join(tmpdir(), "cachegate-cli-"));
  defer(() => rm(parent, { recursive: true, force: true }));
  const dataDir = join(parent, "data");
  const child = Bun.spawn(cmd, {
    cwd: root,
    env: { ...process.env, CACHEGATE_DATA_DIR: dataDir, CACHEGATE_WORKERS: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr] = [await new Response(child.stdout).text(), await new Response(child.stderr).text()];
  return { exitCode: await child.exited, stdout, stderr, dataDirExists: existsSync(dataDir), parent };
}

describe("the command line", () => {
  test("--version prints package.json's version, exits 0 and creates no data dir", async () => {
    const r = await run(["bun", "src/main.ts", "--version"]);
    expect(r).toMatchObject({ exitCode: 0, stdout: `cachegate ${pkg.version}\n`, stderr: "", dataDirExists: false });
    expect(await readdir(r.parent)).toEqual([]);
  });

  test("bun run start -- --version does the same", async () => {
    const r = await run(["bun", "run", "start", "--", "--version"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`cachegate ${pkg.version}\n`);
    expect(r.dataDirExists).toBe(false);
  });

  test("--help lists every CACHEGATE_* variable with its default and meaning, exits 0 and creates nothing", async () => {
    const r = await run(["bun", "src/main.ts", "--help"]);
    expect(r.exitCode).toBe(0);
    expect(r.dataDirExists).toBe(false);
    expect(await readdir(r.parent)).toEqual([]);
    expect(r.stdout).toContain("--version");
    for (const v of ENV_VARS) {
      const line = r.stdout.split("\n").find((l) => l.trim().startsWith(`${v.name} `));
      expect(line, `${v.name} in --help`).toBeDefined();
      expect(line).toContain(v.meaning);
      expect(line).toContain(`(default: ${v.default})`);
    }
  });

  test.each(["--bogus", "--version extra", "start"])(
    "%p exits 2 with a message pointing to --help, and creates nothing",
    async (args) => {
      const r = await run(["bun", "src/main.ts", ...args.split(" ")]);
      expect(r.exitCode).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("--help");
      expect(r.dataDirExists).toBe(false);
    },
  );
});

describe("one table of environment variables for --help, the README and the code", () => {
  test("every CACHEGATE_* name the code reads is in the table (or set by the primary for its workers)", async () => {
    const used = new Set<string>();
    for (const file of await readdir(join(root, "src"), { recursive: true })) {
      if (!file.endsWith(".ts") || file === join("config", "env-vars.ts")) continue; // the table itself
      const text = await readFile(join(root, "src", file), "utf8");
      for (const m of text.matchAll(/CACHEGATE_[A-Z_]*[A-Z]/g)) used.add(m[0]);
    }
    const documented = new Set(ENV_VARS.map((v) => v.name));
    const missing = [...used].filter((n) => !documented.has(n) && !n.startsWith(INTERNAL_ENV_PREFIX));
    expect(missing).toEqual([]);
  });

  test("the README's configuration table has a row for every variable in the table", async () => {
    const readme = await readFile(join(root, "README.md"), "utf8");
    const rows = readme.split("\n").filter((l) => l.startsWith("| `CACHEGATE_"));
    const missing = ENV_VARS.filter((v) => !rows.some((r) => r.includes(`\`${v.name}`))).map((v) => v.name);
    expect(missing).toEqual([]);
  });
});
