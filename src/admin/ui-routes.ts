import { join } from "node:path";
import { Hono } from "hono";
import { GatewayError } from "../errors.ts";

const UI = join(import.meta.dir, "ui");
const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

/** The status page's files, by the path they are served at: all from the gateway, nothing from the internet. */
const ASSETS: Record<string, { file: () => string; type: string }> = {
  "/": { file: () => join(UI, "index.html"), type: "text/html; charset=utf-8" },
  "/ui/status.js": { file: () => join(UI, "status.js"), type: JS },
  "/ui/api.js": { file: () => join(UI, "api.js"), type: JS },
  "/ui/render.js": { file: () => join(UI, "render.js"), type: JS },
  "/ui/chart.js": { file: () => join(UI, "chart.js"), type: JS },
  "/ui/format.js": { file: () => join(UI, "format.js"), type: JS },
  "/ui/status.css": { file: () => join(UI, "status.css"), type: CSS },
  "/ui/icon.svg": { file: () => join(UI, "icon.svg"), type: "image/svg+xml" },
  // The chart library, an npm dependency, served from node_modules (resolved when asked for, so a
  // missing install breaks the chart, never the gateway's start).
  "/ui/uplot.js": { file: () => Bun.resolveSync("uplot/dist/uPlot.esm.js", import.meta.dir), type: JS },
  "/ui/uplot.css": { file: () => Bun.resolveSync("uplot/dist/uPlot.min.css", import.meta.dir), type: CSS },
};

/** These paths need no token: the page and its code hold no data; every data request carries the token. */
export const UI_PATHS: readonly string[] = Object.keys(ASSETS);

/**
 * Only this gateway's own files run on the page: no inline script or
 * style, no other origin (so a URL an agent chose, shown on the page, can
 * never become script), and no framing (clickjacking).
 */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const HEADERS = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  // Small files: asked again each time, so an upgraded gateway never runs an old page.
  "cache-control": "no-cache",
};

/** GET / (the status page) and its assets under /ui/. */
export function uiRoutes() {
  const app = new Hono();
  for (const [path, asset] of Object.entries(ASSETS)) {
    app.get(path, async () => {
      let file: ReturnType<typeof Bun.file>;
      try {
        file = Bun.file(asset.file());
        if (!(await file.exists())) throw new Error("no such file");
      } catch (err) {
        throw new GatewayError(
          500,
          "internal",
          `the status page's ${path} is missing from this installation (${(err as Error).message}); run bun install in cachegate's directory`,
        );
      }
      return new Response(file, { headers: { ...HEADERS, "content-type": asset.type } });
    });
  }
  return app;
}
