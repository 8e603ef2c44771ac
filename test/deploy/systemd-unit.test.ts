import { expect, test } from "bun:test";
import { join } from "node:path";

/**
 * deploy/cachegate.service: a dedicated user, the file system read-only but
 * for the data dir and the patch disk, no capabilities, reload by SIGHUP, and
 * what systemd itself says of the file (`systemd-analyze verify`, and the
 * exposure score of `systemd-analyze security --offline`).
 */
const unitPath = join(import.meta.dir, "../../deploy/cachegate.service");
const text = await Bun.file(unitPath).text();

/** Every `Key=value` of a section, in order (a key may repeat). */
function section(name: string): [string, string][] {
  const body = text.split(/^\[/m).find((s) => s.startsWith(`${name}]`)) ?? "";
  return body
    .split("\n")
    .slice(1)
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]);
}
const service = section("Service");
const values = (key: string) => service.filter(([k]) => k === key).map(([, v]) => v);
const value = (key: string) => values(key).at(-1);

const analyze = Bun.which("systemd-analyze");

test("runs as the dedicated user cachegate, not a dynamic one, with its env file and SIGHUP for reload", () => {
  expect(value("User")).toBe("cachegate");
  expect(value("Group")).toBe("cachegate");
  expect(value("DynamicUser")).toBeUndefined();
  expect(value("EnvironmentFile")).toBe("/etc/cachegate/cachegate.env");
  expect(value("ExecStart")).toBe("bun src/main.ts");
  expect(value("ExecReload")).toBe("/bin/kill -HUP $MAINPID");
  expect(value("KillSignal")).toBe("SIGTERM");
  expect(Number.parseInt(value("TimeoutStopSec") ?? "", 10)).toBeGreaterThanOrEqual(10);
  expect(value("Restart")).toBe("on-failure");
  expect(Number(value("LimitNOFILE"))).toBeGreaterThanOrEqual(65536);
  expect(section("Install")).toContainEqual(["WantedBy", "multi-user.target"]);
});

test("sees a read-only system but for the data dir it is given and the patch disk", () => {
  for (const [key, v] of [
    ["NoNewPrivileges", "yes"],
    ["ProtectSystem", "strict"],
    ["ProtectHome", "yes"],
    ["PrivateTmp", "yes"],
    ["UMask", "0077"],
  ])
    expect({ key, value: value(key!) }).toEqual({ key: key!, value: v! });
  const writable = values("ReadWritePaths").flatMap((v) => v.split(/\s+/));
  const dataDir = values("Environment")
    .find((e) => e.startsWith("CACHEGATE_DATA_DIR="))
    ?.split("=")[1];
  expect(dataDir).toBe("%S/cachegate");
  expect(value("StateDirectory")).toBe("cachegate");
  expect(writable).toContain(dataDir!);
  expect(writable).toContain("-/mnt/patch");
});

test("may write the access log where the README's logrotate rule rotates it: its own /var/log/cachegate", async () => {
  // Under ProtectSystem=strict, /var/log is read-only but for a LogsDirectory= (or a ReadWritePaths= entry).
  expect(value("LogsDirectory")).toBe("cachegate");
  const readme = await Bun.file(join(import.meta.dir, "../../README.md")).text();
  expect(readme).toContain("/var/log/cachegate/access.log {");
});

test("holds no capability (the default ports are above 1024) and lets Bun's JIT map code", () => {
  expect(value("CapabilityBoundingSet")).toBe("");
  expect(value("AmbientCapabilities")).toBe("");
  expect(value("MemoryDenyWriteExecute")).toBeUndefined();
});

test("systemd-analyze verify finds nothing to say about it", () => {
  if (!analyze) return console.warn("skipping: systemd-analyze is not installed (Debian package systemd)");
  const res = Bun.spawnSync([analyze, "verify", unitPath], { stdout: "pipe", stderr: "pipe" });
  expect({ code: res.exitCode, said: (res.stdout.toString() + res.stderr.toString()).trim() }).toEqual({
    code: 0,
    said: "",
  });
});

test("systemd-analyze security rates its exposure 2.0 or lower (OK)", () => {
  if (!analyze) return console.warn("skipping: systemd-analyze is not installed (Debian package systemd)");
  const res = Bun.spawnSync([analyze, "security", "--offline=yes", "--no-pager", unitPath], { stdout: "pipe" });
  const score = /Overall exposure level for cachegate\.service: ([\d.]+)/.exec(res.stdout.toString())?.[1];
  expect(Number(score)).toBeLessThanOrEqual(2.0);
});
