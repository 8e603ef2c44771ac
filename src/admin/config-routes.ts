import { Hono } from "hono";
import type { LiveConfig } from "../config/live-config.ts";
import { maskedChanges, maskedConfig, restoreMaskedPassword } from "../config/masking.ts";
import type { Json } from "../config/merge-patch.ts";
import { GatewayError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { readJson } from "./input.ts";

/** GET/PATCH /api/config: the one configuration document, live. */
export function configRoutes(deps: { config: LiveConfig; log: Logger }) {
  const app = new Hono();
  const view = () => ({ config: maskedConfig(deps.config.current), sources: deps.config.sources() });

  app.get("/api/config", (c) => c.json(view()));

  app.patch("/api/config", async (c) => {
    const patch = restoreMaskedPassword(await readJson<Json>(c.req.raw), deps.config.current);
    const changes = maskedChanges(await deps.config.patch(patch));
    if (changes.length > 0) deps.log.info("config changed", { changes });
    return c.json({ ...view(), changes });
  });

  app.on(["PUT", "POST"], "/api/config", () => {
    throw new GatewayError(
      405,
      "method_not_allowed",
      "use PATCH /api/config with only the fields to change (JSON merge patch); " +
        "null resets a field to its environment or default value",
    );
  });
  return app;
}
