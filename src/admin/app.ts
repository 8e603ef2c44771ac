import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Logger } from "../log.ts";

export interface AdminDeps {
  log: Logger;
  /** Facts for /healthz: cheap, no I/O. */
  health: () => Record<string, unknown>;
}

/**
 * The admin listener's Hono app. Routes are grouped by concern and mounted
 * here, so a new group (config, stats, cache management) plugs in without
 * touching the others. Errors share one JSON shape: `{ error, details? }`.
 */
export function createAdminApp(deps: AdminDeps) {
  const app = new Hono();

  app.get("/healthz", (c) => c.json({ status: "ok", ...deps.health() }));

  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}; see the README's admin API section` }, 404));
  app.onError((err, c) => {
    if (err instanceof HTTPException) return c.json({ error: err.message, ...(err.cause && typeof err.cause === "object" ? { details: err.cause } : {}) }, err.status);
    deps.log.error("admin request failed", { path: c.req.path, error: err });
    return c.json({ error: "internal error; see the gateway log" }, 500);
  });
  return app;
}
