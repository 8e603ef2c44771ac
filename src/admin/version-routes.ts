import { Hono } from "hono";
import { VERSION } from "../version.ts";

/** GET /api/version: which cachegate (package.json's version) runs on which Bun. */
export function versionRoutes() {
  const app = new Hono();
  app.get("/api/version", (c) => c.json({ version: VERSION, bun: Bun.version }));
  return app;
}
