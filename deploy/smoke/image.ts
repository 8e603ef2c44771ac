import { existsSync } from "node:fs";
import { run } from "./proc.ts";

/** Building cachegate's image with buildah, and reading back what the image says about itself. */

/** The parts of a Docker-format image config the smoke test runs and checks. */
export interface ImageConfig {
  User: string;
  Env: string[];
  Cmd: string[];
  WorkingDir: string;
  Healthcheck?: { Test: string[]; Timeout?: number };
  Labels: Record<string, string>;
}

export interface BuildOptions {
  root: string;
  tag: string;
  baseImage: string;
  version: string;
  source: string;
  /** What `bun run container:base` builds, for the hint when the base cannot be pulled. */
  localBase: string;
}

/**
 * `--format docker` keeps HEALTHCHECK (the OCI format has no field for it);
 * `--isolation chroot` builds where no OCI runtime may start (this sandbox,
 * CI); the host's CA bundle is lent to `bun install` for a registry behind a
 * TLS-intercepting proxy, and is not kept in the image.
 */
export async function buildImage(opts: BuildOptions): Promise<void> {
  const previous = (await run(["buildah", "images", "--quiet", opts.tag], { check: false })).stdout.trim();
  const certs = existsSync("/etc/ssl/certs/ca-certificates.crt") ? ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"] : [];
  const built = await run(
    [
      "buildah",
      "bud",
      "--isolation",
      "chroot",
      "--format",
      "docker",
      ...certs,
      "--build-arg",
      `BASE_IMAGE=${opts.baseImage}`,
      "--build-arg",
      `VERSION=${opts.version}`,
      "--build-arg",
      `SOURCE=${opts.source}`,
      "-f",
      `${opts.root}/Containerfile`,
      "-t",
      opts.tag,
      opts.root,
    ],
    { check: false },
  );
  if (built.code === 0) {
    // Each run retags; the image it replaces would be left behind nameless.
    if (previous) await run(["buildah", "rmi", previous], { check: false });
    return;
  }
  const pullFailed = /pull|resolv|registr|manifest unknown|no such host|initializing source/i.test(built.stderr);
  throw new Error(
    `buildah bud failed:\n${built.stderr.trim().split("\n").slice(-8).join("\n")}` +
      (pullFailed
        ? `\n\nThe base image ${opts.baseImage} could not be pulled. Without registry access, build a local base ` +
          `(sudo bun run container:base) and pass it: sudo bun run container:smoke ${opts.localBase}`
        : ""),
  );
}

export async function imageConfig(tag: string): Promise<ImageConfig> {
  const { stdout } = await run(["buildah", "inspect", "--type", "image", tag]);
  const config = (JSON.parse(stdout) as { Docker?: { config?: ImageConfig } }).Docker?.config;
  if (!config) throw new Error(`buildah inspect ${tag} shows no Docker image config`);
  return config;
}

/** What must be true of the image before it is run; each failure is one line. */
export function imageProblems(config: ImageConfig, version: string, appFiles: string[]): string[] {
  const problems: string[] = [];
  const test = config.Healthcheck?.Test ?? [];
  if (!test.some((arg) => arg.endsWith("src/healthcheck.ts")))
    problems.push(
      `HEALTHCHECK lost or not src/healthcheck.ts (got ${JSON.stringify(test)}); build with --format docker`,
    );
  const labels = config.Labels ?? {};
  if (labels["org.opencontainers.image.version"] !== version)
    problems.push(
      `label org.opencontainers.image.version is ${labels["org.opencontainers.image.version"]}, not ${version}`,
    );
  if (labels["org.opencontainers.image.title"] !== "cachegate")
    problems.push("label org.opencontainers.image.title is not cachegate");
  // The allowlist in .containerignore, seen from inside: node_modules is the one the build installed.
  const expected = ["bun.lock", "migrations", "node_modules", "package.json", "src"];
  if (appFiles.join(",") !== expected.join(","))
    problems.push(`/app holds ${appFiles.join(", ")}; expected exactly ${expected.join(", ")} (.containerignore)`);
  return problems;
}

/** The image's environment as a map, with `overrides` applied (what `-e` does). */
export function envOf(config: ImageConfig, overrides: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of config.Env ?? []) {
    const eq = pair.indexOf("=");
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { ...env, ...overrides };
}
