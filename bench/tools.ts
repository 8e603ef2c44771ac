/** The programs the benchmark starts or drives, by the Debian package that ships each. */
const TOOLS: Record<string, string> = { nginx: "nginx", wrk: "wrk", varnishd: "varnish" };

/** PATH plus the sbin dirs, where Debian puts nginx and varnishd (a non-login root shell may lack them). */
const PATH = `${process.env.PATH}:/usr/sbin:/sbin`;

/** The path of an installed tool, or its bare name (then spawning it fails with a clear message). */
export const toolPath = (tool: string): string => Bun.which(tool, { PATH }) ?? tool;

/** Installs Debian's nginx, wrk and varnish unless they are on PATH already. */
export async function ensureTools(): Promise<void> {
  const missing = Object.keys(TOOLS).filter((tool) => Bun.which(tool, { PATH }) === null);
  if (missing.length === 0) return;
  const packages = missing.map((tool) => TOOLS[tool]!);
  console.error(`installing ${packages.join(", ")} with apt-get…`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const run = async (cmd: string[]) => {
    const child = Bun.spawn(cmd, { env, stdin: "ignore", stdout: "inherit", stderr: "inherit" });
    if ((await child.exited) !== 0) throw new Error(`${cmd.join(" ")} failed`);
  };
  await run(["apt-get", "update"]);
  // Debian's varnish package enables a systemd unit; in a container without systemd nothing starts (policy-rc.d).
  await run(["apt-get", "install", "-y", "--no-install-recommends", ...packages]);
}
