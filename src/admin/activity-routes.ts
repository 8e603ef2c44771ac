import { Hono } from "hono";
import * as v from "valibot";
import type { Downloads } from "../cluster/messages.ts";
import type { Stats } from "../stats/collector.ts";
import { limitParam, parseInput } from "./input.ts";

export interface ActivityDeps {
  stats: Stats;
  /** Writes every serving process's pending counters, then says what each is downloading. */
  downloads: () => Promise<Downloads>;
}

const TopQuery = v.object({ limit: limitParam(100, 10) });

/**
 * What the gateway is doing now, for the status page and scripts: the
 * downloads in progress (with workers, gathered from each over IPC) and
 * the objects that saved the most bandwidth.
 */
export function activityRoutes(deps: ActivityDeps) {
  const app = new Hono();

  app.get("/api/downloads", async (c) => {
    const { active } = await deps.downloads();
    const downloads = active
      .toSorted((a, b) => a.startedAt - b.startedAt || a.url.localeCompare(b.url))
      .map((d) => ({ ...d, startedAt: new Date(d.startedAt).toISOString() }));
    return c.json({ downloads });
  });

  app.get("/api/stats/top-objects", async (c) => {
    const q = parseInput(TopQuery, c.req.query(), "invalid query parameters: ?limit= takes 1 to 100");
    await deps.downloads(); // first: every process writes what it counted, so the list is current
    return c.json({ objects: deps.stats.topObjects(q.limit) });
  });
  return app;
}
