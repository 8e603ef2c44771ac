/**
 * Writes docs/status-page.png: the status page of a real gateway after some
 * real traffic (a few objects, MISSes, HITs, a coalesced storm, several
 * agents, one download held halfway), in headless Chromium.
 *
 *   bun scripts/status-page-screenshot.ts [out.png]
 *
 * The chart's previous days are made up (rows written into the bandwidth
 * table before the gateway starts, and said so here): one afternoon of
 * traffic would otherwise draw a single bar.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDb } from "../src/db/client.ts";
import { dailyAgents, dailyStats } from "../src/db/schema.ts";
import { agentGet, agentRequest } from "../test/support/admin.ts";
import { launchChromium } from "../test/support/browser.ts";
import { startTestGateway } from "../test/support/gateway.ts";
import { listenOnLoopback } from "../test/support/listen.ts";

/** These functions run in the page (puppeteer sends their source): the DOM is the browser's, not typed here. */
declare const document: { querySelector(s: string): unknown; querySelectorAll(s: string): { length: number } };

const out = process.argv[2] ?? join(import.meta.dir, "..", "docs", "status-page.png");
const TOKEN = "screenshot-token";
const MB = 1_000_000;
const cacheable = { "cache-control": "public, max-age=3600" };

const dataDir = await mkdtemp(join(tmpdir(), "cachegate-screenshot-"));
const db = openDb(join(dataDir, "index.sqlite"));
const DAY = 86_400_000;
for (let back = 13; back >= 1; back--) {
  const day = new Date(Date.now() - back * DAY).toISOString().slice(0, 10);
  const agents = 180 + ((back * 37) % 60);
  for (const [kind, each, upstream] of [
    ["manifest", 2 * MB, 2 * MB],
    ["installer", 48 * MB, back % 4 === 0 ? 48 * MB : 0],
  ] as const) {
    const n = kind === "manifest" ? agents : Math.floor(agents / 6);
    db.insert(dailyStats)
      .values({ day, kind, requests: n, bytesServed: n * each, bytesUpstream: upstream })
      .run();
    for (let a = 0; a < n; a++)
      db.insert(dailyAgents)
        .values({ day, kind, agent: `10.1.${a >> 8}.${a & 255}` })
        .run();
  }
}
db.$client.close();

// The origin: three objects, and one large download that stops halfway until the screenshot is taken.
let releaseHeld: () => void = () => {};
const held = new Promise<void>((resolve) => {
  releaseHeld = resolve;
});
const bodies: Record<string, Buffer> = {
  "/qagent/manifest.json": Buffer.alloc(1_800_000, "m"),
  "/qagent/QualysCloudAgent.exe": Buffer.alloc(9 * MB, "i"),
  "/patches/windows10.0-kb5034441-x64.msu": Buffer.alloc(4 * MB, "p"),
};
const origin = createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", "http://origin").pathname;
  if (path === "/qagent/QualysCloudAgent-6.1.rpm") {
    res.writeHead(200, { ...cacheable, "content-length": String(60 * MB) });
    res.write(Buffer.alloc(23 * MB, "r"));
    await held;
    return res.end(Buffer.alloc(37 * MB, "r"));
  }
  const body = bodies[path];
  res.writeHead(body ? 200 : 404, cacheable).end(body ?? "not found");
});
const listening = await listenOnLoopback(origin);
const url = (path: string) => `http://localhost:${listening.port}${path}`;

const gw = await startTestGateway({ dataDir, adminToken: TOKEN });
const agent = (i: number) => `127.0.0.${10 + i}`;
const fetchAs = async (i: number, path: string) => agentGet(gw.proxyUrl, url(path), agent(i));

await fetchAs(0, "/qagent/manifest.json");
await gw.idle();
for (let i = 1; i < 24; i++) await fetchAs(i, "/qagent/manifest.json");
// Six agents at once on a cold installer: one download, the others served from it.
await Promise.all(Array.from({ length: 6 }, (_, i) => fetchAs(i, "/qagent/QualysCloudAgent.exe")));
await gw.idle();
for (let i = 6; i < 9; i++) await fetchAs(i, "/qagent/QualysCloudAgent.exe");
await fetchAs(2, "/patches/windows10.0-kb5034441-x64.msu");
await gw.idle();
for (let i = 3; i < 5; i++) await fetchAs(i, "/patches/windows10.0-kb5034441-x64.msu");
const slow = agentRequest(gw.proxyUrl, url("/qagent/QualysCloudAgent-6.1.rpm"), agent(1));
await Bun.sleep(500); // only a picture: let the download get halfway

const chromium = await launchChromium();
try {
  const page = await chromium.browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  await page.goto(`${gw.adminUrl}/`, { waitUntil: "networkidle0" });
  await page.type("#token", TOKEN);
  await page.click("#signin button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#objects tbody tr td").length > 1);
  await page.waitForFunction(() => document.querySelector("#downloads progress") !== null);
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await chromium.close();
  releaseHeld();
  await (await slow).body.catch(() => {});
  await gw.idle();
  await gw.stop();
  await listening.stop();
  await rm(dataDir, { recursive: true, force: true });
}
