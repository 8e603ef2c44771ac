import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Logger } from "../log.ts";
import { adminAuth } from "./auth.ts";

export interface AdminDeps {
  log: Logger;
  token: string;
  /** Facts for /healthz: cheap, no I/O. */
  health: () => Record<string, unknown>;
  /** Route groups by concern (config, stats, cache…), mounted behind the token. */
  routes: Hono[];
}

/**
 * The admin listener's Hono app. Every route but /healthz needs the bearer
 * token. Errors share one JSON shape: `{ "error": "<what was wrong and what
 * to do>", "details": [{ path, value, rule, message }] }`, details only for
 * validation errors.
 */
export function createAdminApp(deps: AdminDeps) {
  const app = new Hono();
  app.use(adminAuth({ token: deps.token, log: deps.log, open: ["/healthz"] }));
  app.get("/healthz", (c) => c.json({ status: "ok", ...deps.health() }));
  for (const routes of deps.routes) app.route("/", routes);

  app.notFound((c) =>
    c.json({ error: `no route ${c.req.method} ${c.req.path}; see the README's admin API section` }, 404),
  );
  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      const details = Array.isArray(err.cause) ? { details: err.cause } : {};
      return c.json({ error: err.message, ...details }, err.status);
    }
    deps.log.error("admin request failed", { path: c.req.path, error: err });
    return c.json({ error: "internal error; see the gateway log" }, 500);
  });
  return app;
}
