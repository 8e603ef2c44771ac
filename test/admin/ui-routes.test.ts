import { describe, expect, test } from "bun:test";
import { UI_PATHS } from "../../src/admin/ui-routes.ts";
import { admin, closeWhenIdle } from "../support/admin.ts";
import { cleanupAfterEach } from "../support/cleanup.ts";
import { startTestGateway } from "../support/gateway.ts";

const defer = cleanupAfterEach();

async function gateway() {
  const gw = await startTestGateway();
  defer(() => closeWhenIdle(gw));
  return gw;
}

describe("the status page's files on the admin listener", () => {
  test("each is served without the token, with its type, nosniff and the strict Content-Security-Policy", async () => {
    const gw = await gateway();
    for (const path of UI_PATHS) {
      const res = await fetch(`${gw.adminUrl}${path}`);
      expect([path, res.status]).toEqual([path, 200]);
      const type = res.headers.get("content-type") ?? "";
      const want =
        path === "/"
          ? "text/html"
          : path.endsWith(".js")
            ? "text/javascript"
            : path.endsWith(".css")
              ? "text/css"
              : "image/svg+xml";
      expect([path, type.split(";")[0]]).toEqual([path, want]);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("content-security-policy")).toStartWith("default-src 'self'; script-src 'self'");
      expect((await res.text()).length).toBeGreaterThan(0);
    }
  });

  test("everything the page and its modules load is one of those files: no other host, no inline script", async () => {
    const gw = await gateway();
    const served = new Set(UI_PATHS);
    const html = await (await fetch(`${gw.adminUrl}/`)).text();
    const linked = [...html.matchAll(/\s(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(linked.length).toBeGreaterThanOrEqual(4);
    for (const ref of linked) expect(served).toContain(ref);
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/); // every script is a file (the CSP allows no other)
    expect(html).not.toMatch(/\sstyle="/);
    for (const path of UI_PATHS.filter((p) => p.endsWith(".js"))) {
      const code = await (await fetch(`${gw.adminUrl}${path}`)).text();
      const imports = [...code.matchAll(/^import\s[^"]*"([^"]+)"/gm)].map((m) => m[1]!);
      for (const ref of imports) expect(served).toContain(new URL(ref, `http://x${path}`).pathname);
      // Our modules name no host at all; uPlot's (whose comments link to its sources) loads nothing.
      if (path === "/ui/uplot.js")
        expect([path, /\bfetch\(|XMLHttpRequest|import\(/.test(code)]).toEqual([path, false]);
      else expect([path, /\/\/[a-z0-9.-]+\.[a-z]{2,}/i.test(code)]).toEqual([path, false]);
    }
  });

  test("the data the page shows still needs the token, and so does any other path", async () => {
    const gw = await gateway();
    for (const path of ["/api/stats", "/api/downloads", "/api/stats/top-objects", "/ui/other.js", "/index.html"]) {
      const res = await fetch(`${gw.adminUrl}${path}`);
      expect([path, res.status]).toEqual([path, 401]);
    }
    expect((await admin(gw).get("/ui/other.js")).status).toBe(404);
  });
});
