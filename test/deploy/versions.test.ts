import { expect, test } from "bun:test";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * One Bun version everywhere: CI installs it (.ci/run), the image is built on
 * it (Containerfile), newcomers install it (README, CONTRIBUTING, the unit's
 * comment), the types describe it (package.json, bun.lock), and the local base
 * image is tagged with it (deploy/build-base.sh reads .ci/run). A release of
 * the image also carries package.json's version in its label default.
 */
const root = join(import.meta.dir, "../..");

interface Pin {
  where: string;
  version: string | undefined;
}

/** Every place that names the Bun version, as found in the files under `dir`. */
async function bunPins(dir: string): Promise<Pin[]> {
  const read = (file: string) => Bun.file(join(dir, file)).text();
  const one = (where: string, text: string, re: RegExp): Pin => ({ where, version: re.exec(text)?.[1] });
  const all = (where: string, text: string, re: RegExp): Pin[] => {
    const found = [...text.matchAll(re)].map((m) => ({ where, version: m[1] }));
    return found.length > 0 ? found : [{ where, version: undefined }];
  };
  const files = ["Containerfile", "README.md", "CONTRIBUTING.md", "deploy/cachegate.service", "deploy/build-base.sh"];
  const [ci, pkg, lock, containerfile, readme, ...others] = await Promise.all(
    [".ci/run", "package.json", "bun.lock", ...files].map(read),
  );
  const V = String.raw`(\d+\.\d+\.\d+)`;
  return [
    one(".ci/run BUN_VERSION", ci!, new RegExp(`^BUN_VERSION=${V}`, "m")),
    one(
      "Containerfile ARG BASE_IMAGE",
      containerfile!,
      new RegExp(`^ARG BASE_IMAGE=docker\\.io/oven/bun:${V}-slim$`, "m"),
    ),
    ...all("README.md npm install", readme!, new RegExp(`npm install -g bun@${V}`, "g")),
    ...all("README.md local base", readme!, new RegExp(`bun-base:${V}`, "g")),
    one("package.json @types/bun", pkg!, /"@types\/bun": "([^"]+)"/),
    one("bun.lock @types/bun", lock!, /"@types\/bun": \["@types\/bun@([^"]+)"/),
    // Any other mention anywhere in these files: `bun@X`, `oven/bun:X`, `bun-base:X`.
    ...[containerfile!, readme!, ...others].flatMap((text, i) =>
      [...text.matchAll(new RegExp(`(?:bun@|oven/bun:|bun-base:)${V}`, "g"))].map((m) => ({
        where: `${files[i]} mention`,
        version: m[1],
      })),
    ),
  ];
}

function drift(pins: Pin[]): string[] {
  const want = pins[0]!.version;
  return pins.filter((p) => p.version !== want).map((p) => `${p.where} says ${p.version}, .ci/run says ${want}`);
}

test("every place that names the Bun version names the one .ci/run pins", async () => {
  const pins = await bunPins(root);
  expect(pins[0]!.version).toMatch(/^\d+\.\d+\.\d+$/);
  expect(drift(pins)).toEqual([]);
  // The running Bun is the pinned one (CI installs it; a developer should too).
  expect(Bun.version).toBe(pins[0]!.version!);
});

test("a Containerfile left on an older Bun is caught, naming the file and both versions", async () => {
  const copy = await mkdtemp(join(tmpdir(), "cachegate-pins-"));
  try {
    for (const f of [".ci", "Containerfile", "README.md", "CONTRIBUTING.md", "package.json", "bun.lock", "deploy"])
      await cp(join(root, f), join(copy, f), { recursive: true });
    const file = join(copy, "Containerfile");
    await Bun.write(file, (await Bun.file(file).text()).replace(/oven\/bun:[\d.]+-slim/, "oven/bun:1.4.4-slim"));
    const pinned = (await bunPins(root))[0]!.version;
    expect(drift(await bunPins(copy))).toEqual([
      `Containerfile ARG BASE_IMAGE says 1.4.4, .ci/run says ${pinned}`,
      `Containerfile mention says 1.4.4, .ci/run says ${pinned}`,
    ]);
  } finally {
    await rm(copy, { recursive: true, force: true });
  }
});

test("the base image build script takes its version from .ci/run, not a copy of it", async () => {
  const script = await Bun.file(join(root, "deploy/build-base.sh")).text();
  expect(script).toContain("BUN_VERSION=$(sed -n");
  expect(script).toContain(".ci/run");
});

test("the image's version label defaults to package.json's version", async () => {
  const { version } = await Bun.file(join(root, "package.json")).json();
  const containerfile = await Bun.file(join(root, "Containerfile")).text();
  expect(/^ARG VERSION=(\S+)$/m.exec(containerfile)?.[1]).toBe(version);
});
