import { chown, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { envOf, type ImageConfig } from "./image.ts";
import { atInterrupt, type Ran, run, type Started, start } from "./proc.ts";

/**
 * Two ways to run the built image: podman, or, where no container runtime
 * may start containers (this sandbox refuses crun's setrlimit), the image's
 * root file system under chroot with /proc, /dev, /etc/hosts and
 * /etc/resolv.conf mounted as a runtime would, as the image's user, in its
 * working directory, with its environment and command. Both share the
 * host's network, so the origin and the published ports are on 127.0.0.1.
 */
export interface Runner {
  name: "podman" | "chroot";
  /** Starts the image's command with `/data` bound to `dataDir`; `giveData` hands it to the image's user first (podman's `:U`). */
  start(dataDir: string, giveData: boolean, env: Record<string, string>): Promise<Started>;
  /** Runs the image's HEALTHCHECK against what `start` started. */
  healthcheck(env: Record<string, string>): Promise<Ran>;
  /** SIGTERM to the gateway if it still runs; its exit code. Unbinds /data. */
  stop(started: Started): Promise<number>;
  /** The files in the image's /app (for the .containerignore check). */
  appFiles(): Promise<string[]>;
  close(): Promise<void>;
}

/** podman if `podman run` works here, else chroot; says why. */
export async function chooseRunner(tag: string, config: ImageConfig): Promise<{ runner: Runner; why: string }> {
  const probe = await run(["podman", "run", "--rm", "--network", "host", "--no-healthcheck", tag, "bun", "--version"], {
    check: false,
  }).catch((err: Error) => ({ code: 127, stdout: "", stderr: err.message }));
  if (probe.code === 0) return { runner: podmanRunner(tag), why: "podman run works here" };
  const reason = probe.stderr.trim().split("\n").at(-1) ?? `exit ${probe.code}`;
  return { runner: await chrootRunner(tag, config), why: `podman run cannot start containers here (${reason})` };
}

function podmanRunner(tag: string): Runner {
  const name = `cachegate-smoke-${process.pid}`;
  const forget = atInterrupt(async () => void (await run(["podman", "rm", "-f", name], { check: false })));
  const flags = (env: Record<string, string>) => Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  return {
    name: "podman",
    async start(dataDir, giveData, env) {
      await run(["podman", "rm", "-f", name], { check: false });
      const volume = `${dataDir}:/data${giveData ? ":U" : ""}`;
      return start(["podman", "run", "--name", name, "--network", "host", "-v", volume, ...flags(env), tag], {
        ...(process.env as Record<string, string>),
      });
    },
    healthcheck: () => run(["podman", "healthcheck", "run", name], { check: false }),
    async stop(started) {
      await run(["podman", "stop", "-t", "10", name], { check: false });
      return started.exited;
    },
    async appFiles() {
      const { stdout } = await run(["podman", "run", "--rm", "--no-healthcheck", tag, "ls", "-A", "/app"]);
      return stdout.split("\n").filter(Boolean).sort();
    },
    async close() {
      forget();
      await run(["podman", "rm", "-f", name], { check: false });
    },
  };
}

async function chrootRunner(tag: string, config: ImageConfig): Promise<Runner> {
  const ctr = (await run(["buildah", "from", "--pull=never", tag])).stdout.trim();
  const mounts: string[] = [];
  const unmountAll = async () => {
    for (const m of mounts.splice(0).reverse()) await run(["umount", "-l", m], { check: false });
  };
  const remove = async () => {
    await unmountAll();
    await run(["buildah", "umount", ctr], { check: false });
    await run(["buildah", "rm", ctr], { check: false });
  };
  // From here on an interrupt must undo what is set up, even before this function returns.
  const forget = atInterrupt(remove);
  const mount = async (args: string[], target: string) => {
    await run(["mount", ...args, target]);
    mounts.push(target);
  };
  try {
    const root = (await run(["buildah", "mount", ctr])).stdout.trim();
    await mount(["-t", "proc", "proc"], join(root, "proc"));
    await mount(["--bind", "/dev"], join(root, "dev"));
    // What a runtime provides: name resolution as the host's network has it.
    for (const file of ["/etc/hosts", "/etc/resolv.conf"]) {
      await writeFile(join(root, file), "", { flag: "a" });
      await mount(["--bind", file], join(root, file));
    }
    const user = await resolveUser(root, config.User || "root");
    const inImage = (argv: string[]) => [
      "chroot",
      `--userspec=${user.uid}:${user.gid}`,
      root,
      "/bin/sh",
      "-c",
      'cd "$0" && exec "$@"',
      config.WorkingDir || "/",
      ...argv,
    ];
    let dataMount: string | undefined;
    return {
      name: "chroot",
      async start(dataDir, giveData, env) {
        if (giveData) await chown(dataDir, user.uid, user.gid);
        dataMount = join(root, "data");
        await mount(["--bind", dataDir], dataMount);
        return start(inImage(config.Cmd), envOf(config, env));
      },
      async healthcheck(env) {
        const test = config.Healthcheck?.Test ?? [];
        const argv = test[0] === "CMD-SHELL" ? ["/bin/sh", "-c", test[1] ?? "false"] : test.slice(1);
        return run(inImage(argv), { check: false, env: envOf(config, env) });
      },
      async stop(started) {
        if (started.running()) process.kill(started.pid, "SIGTERM");
        const code = await started.exited;
        if (dataMount) {
          await run(["umount", dataMount], { check: false });
          mounts.splice(mounts.lastIndexOf(dataMount), 1);
          dataMount = undefined;
        }
        return code;
      },
      appFiles: async () => (await readdir(join(root, "app"))).sort(),
      async close() {
        forget();
        await remove();
      },
    };
  } catch (err) {
    forget();
    await remove();
    throw err;
  }
}

/** The image's `USER` (a name or uid[:gid]) as numbers, from the image's own /etc/passwd. */
async function resolveUser(root: string, spec: string): Promise<{ uid: number; gid: number }> {
  const [name = "root", group] = spec.split(":");
  if (/^\d+$/.test(name)) return { uid: Number(name), gid: Number(group ?? name) };
  const passwd = await readFile(join(root, "etc/passwd"), "utf8");
  const entry = passwd.split("\n").find((line) => line.startsWith(`${name}:`));
  if (!entry) throw new Error(`the image's user ${name} is not in its /etc/passwd`);
  const [, , uid, gid] = entry.split(":");
  return { uid: Number(uid), gid: Number(group ?? gid) };
}
