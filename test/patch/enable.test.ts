import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admin } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { startOrigin, viaProxy } from "../support/origin.ts";
import { freeBytesAt, mountTmpfs, patchUrl } from "../support/patch.ts";

setDefaultTimeout(20_000);

/**
 * Enabling Patch Mode runs the seed's checks on the patch disk: it exists,
 * is a directory, is writable and has the minimum free space. A refusal says
 * which check failed and changes nothing.
 */
const defer = cleanupAfterEach();

async function tempDir(prefix = "cachegate-patchdisk-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function gateway(): Promise<TestGateway> {
  const gw = await startTestGateway();
  defer(() => gw.close());
  return gw;
}

interface Refusal {
  status: number;
  error: string;
  details: { path: string; message: string }[];
}

/** Sends `patch`, expects it refused, and checks that GET /api/config and the proxy's behaviour did not change. */
async function expectRefused(gw: TestGateway, patch: unknown): Promise<Refusal> {
  const before = await admin(gw).configText();
  const res = await admin(gw).patch(patch);
  const body = (await res.json()) as { error: string; details?: Refusal["details"] };
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.status).toBeLessThan(500);
  expect(await admin(gw).configText()).toBe(before);
  expect(gw.config.current.patchMode.enabled).toBe(false);
  expect(gw.patch.cache()).toBeUndefined();
  return { status: res.status, error: body.error, details: body.details ?? [] };
}

/** Patch Mode off: a host outside the platform domains is still refused with 403, not asked for agent credentials. */
async function expectPatchModeOff(gw: TestGateway) {
  const origin = startOrigin(() => new Response("patch"));
  defer(() => origin.stop());
  const res = await viaProxy(gw.proxyUrl, patchUrl(origin, "/kb.msu"));
  await res.text();
  expect(res.status).toBe(403);
  expect(origin.count()).toBe(0);
}

const enable = (path: string | undefined, minFreeBytes = 1024) => ({
  patchDisk: { ...(path === undefined ? {} : { path }), minFreeBytes },
  patchMode: { enabled: true },
});

describe("enabling Patch Mode", () => {
  test("without a patch disk path is refused with a 400 that names patchDisk.path, and changes nothing", async () => {
    const gw = await gateway();
    const refusal = await expectRefused(gw, { patchMode: { enabled: true } });
    expect(refusal.status).toBe(400);
    const detail = refusal.details.find((d) => d.path === "patchMode.enabled");
    expect(detail?.message).toContain("patchDisk.path");
    await expectPatchModeOff(gw);
  });

  test("with a patch disk path that does not exist is refused with a message saying it does not exist", async () => {
    const gw = await gateway();
    const missing = join(await tempDir(), "not-mounted");
    const refusal = await expectRefused(gw, enable(missing));
    expect(refusal.error).toContain(missing);
    expect(refusal.error).toContain("does not exist");
    expect(existsSync(missing)).toBe(false);
    await expectPatchModeOff(gw);
  });

  test("with a patch disk path that is a file, not a directory, is refused with a message saying so", async () => {
    const gw = await gateway();
    const file = join(await tempDir(), "disk.img");
    await writeFile(file, "not a mount point");
    const refusal = await expectRefused(gw, enable(file));
    expect(refusal.error).toContain("not a directory");
  });

  test("with a patch disk on a read-only mount is refused as not writable, and nothing is written there", async () => {
    const gw = await gateway();
    const ro = await mountTmpfs(1024 * 1024, { readOnly: true });
    if ("error" in ro) {
      console.warn(`skipping the read-only mount case: ${ro.error}; /proc/self is checked by the next test`);
      return;
    }
    defer(() => ro.unmount());
    const refusal = await expectRefused(gw, enable(ro.dir));
    expect(refusal.error).toContain("not writable");
    expect(refusal.error).toContain("EROFS");
    expect(existsSync(join(ro.dir, "cachegate"))).toBe(false);
  });

  test("with a patch disk path where nothing can be created (/proc/self) is refused as not writable", async () => {
    const gw = await gateway();
    const refusal = await expectRefused(gw, enable("/proc/self"));
    expect(refusal.error).toContain("not writable");
  });

  test("with less free space than patchDisk.minFreeBytes is refused with a message naming both figures, and changes nothing", async () => {
    const gw = await gateway();
    const dir = await tempDir();
    const tooMuch = freeBytesAt(dir) + 1_000_000_000_000;
    const refusal = await expectRefused(gw, enable(dir, tooMuch));
    expect(refusal.error).toContain("free");
    expect(refusal.error).toContain("patchDisk.minFreeBytes");
    expect(refusal.error).toContain(`${(tooMuch / 1e9).toFixed(1)} GB`);
    // The check must not leave the patch cache half set up on the disk it refused.
    expect(existsSync(join(dir, "cachegate"))).toBe(false);
    await expectPatchModeOff(gw);
  });

  test("with the default minimum (150 GB) on a small disk is refused", async () => {
    const gw = await gateway();
    const small = await mountTmpfs(8 * 1024 * 1024);
    if ("error" in small) {
      console.warn(`skipping: ${small.error}`);
      return;
    }
    defer(() => small.unmount());
    const refusal = await expectRefused(gw, { patchDisk: { path: small.dir }, patchMode: { enabled: true } });
    expect(refusal.error).toContain("150.0 GB");
  });

  test("without Cache Mode is refused with a 400 that says Patch Mode needs Cache Mode", async () => {
    const gw = await gateway();
    const dir = await tempDir();
    const refusal = await expectRefused(gw, { cacheMode: { enabled: false }, ...enable(dir) });
    expect(refusal.status).toBe(400);
    expect(refusal.details.find((d) => d.path === "patchMode.enabled")?.message).toContain("cacheMode.enabled");
  });

  test("with two patch disk paths is refused with a 400 saying only one patch disk is supported", async () => {
    const gw = await gateway();
    const a = await tempDir();
    const b = await tempDir();
    for (const path of [`${a},${b}`, `${a};${b}`, `${a} ${b}`]) {
      const refusal = await expectRefused(gw, enable(path));
      expect(refusal.status).toBe(400);
      expect(refusal.details.find((d) => d.path === "patchDisk.path")?.message).toContain("only one patch disk");
    }
    const refusal = await expectRefused(gw, enable([a, b] as unknown as string));
    expect(refusal.status).toBe(400);
    expect(refusal.details.map((d) => d.path)).toContain("patchDisk.path");
  });

  test("on a usable disk is accepted: the patch cache opens under <path>/cachegate and the stats report the disk", async () => {
    const gw = await gateway();
    const dir = await tempDir();
    const before = await admin(gw).json("/api/stats");
    expect(before.patchDisk).toMatchObject({ path: null, open: false });

    const res = await admin(gw).patch(enable(dir));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { config: { patchMode: { enabled: boolean }; patchDisk: { path: string } } };
    expect(body.config.patchMode.enabled).toBe(true);
    expect(body.config.patchDisk.path).toBe(dir);
    expect((await admin(gw).json("/api/config")).config.patchMode.enabled).toBe(true);
    expect(existsSync(join(dir, "cachegate", "index.sqlite"))).toBe(true);
    // The probe file of the writability check does not stay behind.
    expect(await Array.fromAsync(new Bun.Glob(".cachegate-write-test-*").scan({ cwd: dir, dot: true }))).toEqual([]);

    const stats = await admin(gw).json("/api/stats");
    expect(stats.patchDisk.path).toBe(dir);
    expect(stats.patchDisk.cachedBytes).toBe(0);
    expect(stats.patchDisk.totalBytes).toBeGreaterThan(0);
    expect(stats.patchDisk.freeBytes).toBeGreaterThan(0);
    expect(stats.patchDisk.freeBytes).toBeLessThanOrEqual(stats.patchDisk.totalBytes);
    // Within a few MB of what statfs says now (other tests write to the same disk).
    expect(Math.abs(stats.patchDisk.freeBytes - freeBytesAt(dir))).toBeLessThan(512 * 1024 * 1024);
  });

  test("changing patchDisk.path while Patch Mode is on is refused, and the patch cache stays on its disk", async () => {
    const gw = await gateway();
    const first = await tempDir();
    const second = await tempDir();
    expect((await admin(gw).patch(enable(first))).status).toBe(200);
    const before = await admin(gw).configText();
    const res = await admin(gw).patch({ patchDisk: { path: second } });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(((await res.json()) as { error: string }).error).toContain("only one patch disk");
    expect(await admin(gw).configText()).toBe(before);
    expect(gw.patch.cache()?.dir).toBe(join(first, "cachegate"));
    expect(existsSync(join(second, "cachegate"))).toBe(false);
  });

  test("turning Patch Mode off, moving the disk and turning it on again opens the patch cache on the new disk", async () => {
    const gw = await gateway();
    const first = await tempDir();
    const second = await tempDir();
    expect((await admin(gw).patch(enable(first))).status).toBe(200);
    expect((await admin(gw).patch({ patchMode: { enabled: false } })).status).toBe(200);
    expect((await admin(gw).patch({ patchDisk: { path: second }, patchMode: { enabled: true } })).status).toBe(200);
    expect(gw.patch.cache()?.dir).toBe(join(second, "cachegate"));
    expect((await admin(gw).json("/api/stats")).patchDisk.path).toBe(second);
  });

  test("a Patch Mode setting persisted on a disk that has since gone leaves the gateway up, with patches uncached", async () => {
    const dir = await tempDir();
    const gw = await startTestGateway();
    expect((await admin(gw).patch(enable(dir))).status).toBe(200);
    await gw.stop();
    await rm(dir, { recursive: true, force: true });
    const again = await startTestGateway({ dataDir: gw.dataDir });
    defer(() => again.close());
    expect(again.config.current.patchMode.enabled).toBe(true);
    expect(again.patch.cache()).toBeUndefined();
    expect((await fetch(`${again.adminUrl}/healthz`)).status).toBe(200);
  });

  test("moving patchDisk.path while Patch Mode is off, to a disk not mounted yet, leaves GET /api/stats answering", async () => {
    const gw = await gateway();
    const dir = await tempDir();
    expect((await admin(gw).patch(enable(dir))).status).toBe(200);
    expect((await admin(gw).patch({ patchMode: { enabled: false } })).status).toBe(200);
    const later = join(await tempDir(), "not-mounted-yet");
    expect((await admin(gw).patch({ patchDisk: { path: later } })).status).toBe(200);
    const res = await admin(gw).get("/api/stats");
    expect(res.status).toBe(200);
    const patchDisk = ((await res.json()) as { patchDisk: Record<string, unknown> }).patchDisk;
    expect(patchDisk).toBeDefined();
    // What it reports is about the disk the patch cache is on, not the one named for later.
    if (patchDisk.open) expect(patchDisk.path).toBe(dir);
  });

  test("a patch disk that disappears while Patch Mode is on leaves the stats answering and patches passing through uncached", async () => {
    const gw = await gateway();
    const dir = await tempDir();
    expect((await admin(gw).patch(enable(dir))).status).toBe(200);
    const origin = startOrigin(() => new Response("patch bytes", { headers: { "cache-control": "max-age=3600" } }));
    defer(() => origin.stop());
    const creds = (await (
      await admin(gw).send("POST", "/api/agents", {
        body: '{"name":"a"}',
        headers: { "content-type": "application/json" },
      })
    ).json()) as { username: string; password: string };
    await rm(dir, { recursive: true, force: true }); // the disk is gone (unmounted, failed)

    const res = await viaProxy(
      `http://${creds.username}:${creds.password}@127.0.0.1:${gw.proxyPort}`,
      patchUrl(origin, "/kb.msu"),
    );
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("patch bytes");
    expect(res.headers.get("x-cache")).toBe("BYPASS");
    const stats = await admin(gw).get("/api/stats");
    expect(stats.status).toBe(200);
    expect(((await stats.json()) as { patchDisk: { path: string; problem?: string } }).patchDisk).toMatchObject({
      path: dir,
      problem: expect.stringContaining("ENOENT"),
    });
    expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);
  });
});
