import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer } from "node:http";
import type { Browser, Page } from "puppeteer-core";
import { admin, agentGet, agentRequest, closeWhenIdle, eventually } from "../support/admin.ts";
import { launchChromium } from "../support/browser.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { listenOnLoopback } from "../support/listen.ts";
import { startOrigin } from "../support/origin.ts";
import { gate } from "../support/wait.ts";

/** These functions run in the page (puppeteer sends their source): the DOM is the browser's, not typed here. */
declare const document: any;

/**
 * The status page in a real headless Chromium (Debian's), against a real
 * gateway in Cache Mode and a real origin: what an operator sees after one
 * MISS and one HIT, and that nothing the page loads leaves 127.0.0.1.
 */
const defer = cleanupAfterEach();
const TOKEN = "status-page-token-5f1c9e";
const MANIFEST = Buffer.alloc(12_345, "m");

let chromium: Awaited<ReturnType<typeof launchChromium>>;
let browser: Browser;
beforeAll(async () => {
  chromium = await launchChromium();
  browser = chromium.browser;
});
afterAll(() => chromium?.close());

/** A gateway that has served /manifest.json once from the origin (MISS) and once from its disk (HIT). */
async function afterMissAndHit() {
  const origin = startOrigin(() => new Response(MANIFEST, { headers: { "cache-control": "public, max-age=3600" } }));
  defer(() => origin.stop());
  const gw = await startTestGateway({ adminToken: TOKEN });
  defer(() => closeWhenIdle(gw));
  const url = origin.url("/manifest.json");
  expect((await agentGet(gw.proxyUrl, url)).headers["x-cache"]).toBe("MISS");
  await gw.idle();
  expect((await agentGet(gw.proxyUrl, url)).headers["x-cache"]).toBe("HIT");
  await eventually(
    async () => ((await admin(gw, TOKEN).json("/api/stats")).requests === 2 ? true : undefined),
    "both requests to be counted",
  );
  return { gw, url };
}

/** A page that records every request it makes, and every console error or uncaught exception. */
async function openPage(gw: TestGateway) {
  const page = await browser.newPage();
  defer(() => page.close());
  const requests: string[] = [];
  const problems: string[] = [];
  page.on("request", (req) => void requests.push(req.url()));
  page.on("console", (msg) => void (msg.type() === "error" && problems.push(msg.text())));
  page.on("pageerror", (err) => void problems.push(String(err)));
  const res = await page.goto(`${gw.adminUrl}/`, { waitUntil: "networkidle0" });
  return { page, requests, problems, res };
}

async function signIn(page: Page, token: string) {
  await page.$eval("#token", (el) => {
    (el as any).value = "";
  });
  await page.type("#token", token);
  await page.click("#signin button[type=submit]");
}

const tableRows = (page: Page, id: string) =>
  page.$$eval(`#${id} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.dataset.value ?? td.textContent ?? "")),
  );

const textOf = (page: Page, selector: string) => page.$eval(selector, (el) => el.textContent ?? "");

describe("the status page in a headless browser", () => {
  test("signs in, shows the rows and figures a MISS and a HIT made, and loads nothing from beyond 127.0.0.1", async () => {
    const { gw, url } = await afterMissAndHit();
    const { page, requests, problems, res } = await openPage(gw);
    expect(res?.status()).toBe(200);
    expect(res?.headers()["content-security-policy"]).toContain("default-src 'self'");

    // A wrong token: a clear message, and still the form.
    await signIn(page, "not-the-token");
    await page.waitForFunction(() => !document.querySelector("#signin-error")!.hidden);
    expect(await textOf(page, "#signin-error")).toContain("the bearer token is wrong");
    expect(await page.$eval("#status", (el) => (el as any).hidden)).toBe(true);

    await signIn(page, TOKEN);
    await page.waitForFunction(() => document.querySelectorAll("#bandwidth tbody tr td").length > 1);
    const today = new Date().toISOString().slice(0, 10);
    const size = MANIFEST.length;
    // The seed's columns: day, kind of file, agents, without caching, with caching, saved.
    expect(await tableRows(page, "bandwidth")).toEqual([
      [today, "manifest", "1", String(2 * size), String(size), String(size)],
    ]);
    expect([await textOf(page, "#hits"), await textOf(page, "#misses"), await textOf(page, "#coalesced")]).toEqual([
      "1",
      "1",
      "0",
    ]);
    expect(await textOf(page, "#agents-active")).toBe("1");
    // The HIT saved the object's bytes once: it tops the list.
    expect(await tableRows(page, "objects")).toEqual([[url, "1", String(size), String(size)]]);
    expect(await tableRows(page, "downloads")).toEqual([["No download in progress."]]);
    expect(await page.$$eval("#chart canvas", (c) => c.length)).toBeGreaterThan(0);

    // It refreshes itself: another HIT shows up without a reload.
    expect((await agentGet(gw.proxyUrl, url)).headers["x-cache"]).toBe("HIT");
    await page.waitForFunction(() => document.querySelector("#hits")!.textContent === "2", { timeout: 12_000 });

    expect(requests.length).toBeGreaterThan(5);
    for (const r of requests) {
      expect(new URL(r).hostname).toBe("127.0.0.1");
      expect(r).not.toContain(TOKEN);
    }
    expect(problems.filter((p) => !p.includes("401"))).toEqual([]); // the wrong token's 401 is the only error
  }, 30_000);

  test("the metrics token is refused with what it is for, and the figures stay hidden", async () => {
    const metricsToken = "metrics-only-token-7d2a41";
    const gw = await startTestGateway({ adminToken: TOKEN, metricsToken });
    defer(() => closeWhenIdle(gw));
    const { page } = await openPage(gw);
    await signIn(page, metricsToken);
    await page.waitForFunction(() => !document.querySelector("#signin-error").hidden);
    expect(await textOf(page, "#signin-error")).toContain("can only read GET /metrics");
    expect(await page.$eval("#status", (el) => (el as any).hidden)).toBe(true);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  }, 30_000);

  test("the token stays for a reload of the tab, and signing out forgets it and clears the figures", async () => {
    const { gw } = await afterMissAndHit();
    const { page, requests } = await openPage(gw);
    await signIn(page, TOKEN);
    await page.waitForFunction(() => document.querySelector("#hits")!.textContent === "1");

    await page.reload({ waitUntil: "networkidle0" });
    await page.waitForFunction(() => document.querySelector("#hits")!.textContent === "1");
    expect(await page.$eval("#signin", (el) => (el as any).hidden)).toBe(true);

    await page.click("#signout");
    await page.waitForFunction(() => !document.querySelector("#signin")!.hidden);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(await tableRows(page, "bandwidth")).toEqual([]);
    expect(await textOf(page, "#hits")).toBe("–");
    for (const r of requests) expect(r).not.toContain(TOKEN);
  }, 30_000);

  test("a download in progress shows with its bar and the bytes received of its Content-Length", async () => {
    const release = gate();
    const server = createServer(async (_req, res) => {
      res.writeHead(200, { "cache-control": "public, max-age=3600", "content-length": "400000" });
      res.write(Buffer.alloc(100_000, 1));
      await release.opened;
      res.end(Buffer.alloc(300_000, 2));
    });
    const origin = await listenOnLoopback(server);
    defer(() => origin.stop());
    const gw = await startTestGateway({ adminToken: TOKEN });
    defer(() => closeWhenIdle(gw));
    const url = `http://localhost:${origin.port}/agent-setup.exe`;
    const agent = agentRequest(gw.proxyUrl, url);
    defer(async () => void (await (await agent).body.catch(() => {})));
    defer(() => release.open()); // first of the cleanups (they run last registered first): the body can then end
    await eventually(async () => {
      const { downloads } = await admin(gw, TOKEN).json("/api/downloads");
      return downloads[0]?.receivedBytes === 100_000 ? true : undefined;
    }, "the download to be a quarter in");

    const { page } = await openPage(gw);
    await signIn(page, TOKEN);
    await page.waitForFunction(() => document.querySelector("#downloads tbody progress") !== null);
    const [row] = await tableRows(page, "downloads");
    expect(row).toEqual([url, "platform", "", "100000", expect.stringMatching(/^\d+ s$/)]);
    expect(await textOf(page, "#downloads tbody td:nth-child(4)")).toBe("100 kB of 400 kB (25%)");
    const bar = await page.$eval("#downloads tbody progress", (el: any) => [el.value, el.max]);
    expect(bar).toEqual([100_000, 400_000]);
  }, 30_000);
});
