import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { asGatewayError, GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { adminAuth } from "./auth.ts";
import { UI_PATHS, uiRoutes } from "./ui-routes.ts";

export interface AdminDeps {
  log: Logger;
  token: string;
  /** Reads GET /metrics and nothing else (CACHEGATE_METRICS_TOKEN). */
  metricsToken?: string;
  /** Facts for /healthz: cheap (with workers, one question to each). A `status` other than "ok" answers 503. */
  health: () => Promise<Record<string, unknown>>;
  /** Route groups by concern (config, stats, cache…), mounted behind the token. */
  routes: Hono[];
}

/**
 * The admin listener's Hono app. Every route but /healthz and the status
 * page's files (GET / and /ui/…, which hold no data) needs the bearer token. Errors share one JSON shape: `{ "error": "<what was wrong and what
 * to do>", "code": "<stable name>", "details": [{ path, value, rule, message }] }`,
 * details only for validation errors.
 */
export function createAdminApp(deps: AdminDeps) {
  const app = new Hono();
  app.use(
    adminAuth({
      token: deps.token,
      metricsToken: deps.metricsToken,
      log: deps.log,
      open: ["/healthz", ...UI_PATHS],
      metricsPaths: ["/metrics"],
    }),
  );
  app.get("/healthz", async (c) => {
    const health = { status: "ok", ...(await deps.health()) };
    return c.json(health, health.status === "ok" ? 200 : 503);
  });
  app.route("/", uiRoutes());
  for (const routes of deps.routes) app.route("/", routes);

  app.notFound((c) => {
    const route = `${c.req.method} ${c.req.path}`;
    throw new GatewayError(404, "not_found", `no route ${route}; see the README's admin API section`);
  });
  app.onError(function renderError(err, c) {
    if (!(err instanceof GatewayError)) deps.log.error("admin request failed", { path: c.req.path, error: err });
    const e = asGatewayError(err);
    const body = { error: e.message, code: e.code, ...(e.details ? { details: e.details } : {}) };
    return c.json(body, e.status as ContentfulStatusCode, e.headers);
  });
  return app;
}
