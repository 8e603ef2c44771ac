/**
 * bun run container:smoke [base-image]
 *
 * Builds cachegate's image with buildah from the Containerfile (the base image
 * is the argument; default: the Containerfile's, docker.io/oven/bun:<version>-slim,
 * which needs registry access: see `bun run container:base`), checks what the
 * image says about itself (HEALTHCHECK kept, OCI labels, nothing in /app but
 * what .containerignore allows), then runs it with podman, or under chroot
 * where podman cannot start containers, and proves that:
 *
 * 1. a root-owned /data bind mount refuses the start with the fix in words;
 * 2. given to the image's user (podman's `:U`), /data lets it start, its
 *    HEALTHCHECK passes on a moved admin port, and through its proxy port a
 *    real origin on the host is fetched once: MISS, then HIT;
 * 3. SIGTERM stops it cleanly (exit 0).
 *
 * Needs root and buildah. Not part of `bun test`: a build takes a while.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../src/version.ts";
import { buildImage, imageConfig, imageProblems } from "./smoke/image.ts";
import { exitWithin, freePort, run, waitFor } from "./smoke/proc.ts";
import { chooseRunner } from "./smoke/runners.ts";

const root = join(import.meta.dir, "..");

async function idle(adminPort: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
  return ((await res.json()) as { downloads?: number }).downloads === 0;
}
const step = (what: string) => console.log(`== ${what}`);

async function defaultBase(): Promise<string> {
  const containerfile = await Bun.file(join(root, "Containerfile")).text();
  const match = /^ARG BASE_IMAGE=(\S+)/m.exec(containerfile);
  if (!match) throw new Error("the Containerfile has no ARG BASE_IMAGE=… line");
  return match[1]!;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("container:smoke needs root (buildah mount, chroot); run it with sudo");
  const baseImage = process.argv[2] ?? (await defaultBase());
  const source = (await run(["git", "-C", root, "remote", "get-url", "origin"], { check: false })).stdout.trim();
  const tag = `localhost/cachegate:${VERSION}`;
  const bunVersion = /^BUN_VERSION=(\S+)/m.exec(await Bun.file(join(root, ".ci/run")).text())?.[1];
  const localBase = `localhost/bun-base:${bunVersion}`;

  step(`buildah bud --format docker from ${baseImage} as ${tag}`);
  await buildImage({ root, tag, baseImage, version: VERSION, source, localBase });
  const config = await imageConfig(tag);

  const { runner, why } = await chooseRunner(tag, config);
  step(`running the image with ${runner.name}: ${why}`);
  const dataDir = await mkdtemp(join(tmpdir(), "cachegate-smoke-"));
  let originRequests = 0;
  const origin = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => {
      originRequests++;
      return new Response("x".repeat(100_000), { headers: { "cache-control": "max-age=300" } });
    },
  });
  try {
    const problems = imageProblems(config, VERSION, await runner.appFiles());
    if (problems.length > 0) throw new Error(`the image is not right:\n  ${problems.join("\n  ")}`);
    step("image: HEALTHCHECK kept, labels set, /app holds only what .containerignore allows");

    // Ports of their own: other gateways on this machine hold 8080 and 9090. A moved admin port also proves
    // the health check reads CACHEGATE_ADMIN_PORT.
    const proxyPort = await freePort();
    const adminPort = await freePort();
    const env = {
      CACHEGATE_PORT: String(proxyPort),
      CACHEGATE_ADMIN_PORT: String(adminPort),
      CACHEGATE_CACHE_MODE: "1",
      CACHEGATE_PLATFORM_DOMAINS: "localhost",
      CACHEGATE_ALLOW_PRIVATE_UPSTREAMS: "1",
    };

    step("1. /data owned by root: the start is refused with the fix");
    const refused = await runner.start(dataDir, false, env);
    const refusedCode = await exitWithin(refused, 30_000);
    await runner.stop(refused);
    const said = refused.output();
    if (refusedCode !== 1 || !said.includes("not writable") || !said.includes("chown 1000:1000"))
      throw new Error(`expected a refusal naming chown 1000:1000, got exit ${refusedCode}:\n${said}`);
    console.log(`   ${JSON.parse(said.trim().split("\n").at(-1)!).error}`);

    step("2. /data given to the image's user: it serves");
    const gateway = await runner.start(dataDir, true, env);
    let failure: unknown;
    try {
      await waitFor(
        "the container's /healthz",
        async () => {
          if (!gateway.running()) throw new Error(`the gateway exited:\n${gateway.output()}`);
          return fetch(`http://127.0.0.1:${adminPort}/healthz`).then(
            (r) => r.ok,
            () => false,
          );
        },
        30_000,
      );
      const health = await runner.healthcheck(env);
      if (health.code !== 0) throw new Error(`the image's HEALTHCHECK failed (${health.code}): ${health.stderr}`);
      console.log(`   HEALTHCHECK: ${health.stdout.trim() || "healthy"}`);

      const url = `http://localhost:${origin.port}/agent/manifest.json`;
      const proxy = `http://127.0.0.1:${proxyPort}`;
      for (const expected of ["MISS", "HIT"]) {
        const res = await fetch(url, { proxy });
        const body = await res.text();
        const label = res.headers.get("x-cache");
        console.log(`   GET ${url} via ${proxy}: ${res.status} ${label} (${body.length} bytes)`);
        if (res.status !== 200 || label !== expected || body.length !== 100_000)
          throw new Error(`expected 200 ${expected} with 100000 bytes, got ${res.status} ${label} ${body.length}`);
        // The MISS is stored once its download commits: /healthz counts downloads in flight (all workers').
        await waitFor("the download to be stored", () => idle(adminPort), 10_000);
      }
      if (originRequests !== 1) throw new Error(`the origin saw ${originRequests} requests, expected 1`);
      console.log("   the origin saw 1 request");
    } catch (err) {
      failure = err;
    }
    step("3. SIGTERM: a clean stop");
    const code = await runner.stop(gateway);
    if (failure) throw failure;
    if (code !== 0) throw new Error(`the gateway exited with ${code} on SIGTERM:\n${gateway.output()}`);
    console.log(`container:smoke passed (${tag}, from ${baseImage}, run with ${runner.name})`);
  } finally {
    origin.stop(true);
    await runner.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (err) {
  console.error(`container:smoke failed: ${(err as Error).message}`);
  process.exit(1);
}
