import { Hono } from "hono";
import * as v from "valibot";
import type { CacheIndex } from "../cache/cache-index.ts";
import { freshness, type TtlRule } from "../cache/freshness.ts";
import { cacheKey } from "../cache/key.ts";
import type { createVerifier } from "../cache/verify.ts";
import type { Logger } from "../log.ts";
import { limitParam, parseInput } from "./input.ts";

export interface CacheRouteDeps {
  index: CacheIndex;
  verifier: ReturnType<typeof createVerifier>;
  ttlRules: () => readonly TtlRule[];
  now: () => number;
  log: Logger;
}

const HttpUrl = v.pipe(
  v.string(),
  v.check((s) => {
    try {
      return ["http:", "https:"].includes(new URL(s).protocol);
    } catch {
      return false;
    }
  }, "must be an absolute http:// or https:// URL, e.g. http://dl.qualys.com/manifest.json"),
);

const ListQuery = v.object({
  prefix: v.optional(HttpUrl),
  limit: limitParam(1000, 100),
  cursor: v.optional(
    v.pipe(v.string(), v.regex(/^\d+$/, "must be the nextCursor value of the previous page"), v.transform(Number)),
  ),
});

const PurgeQuery = v.pipe(
  v.object({ url: v.optional(HttpUrl), prefix: v.optional(HttpUrl) }),
  v.check(
    (q) => (q.url === undefined) !== (q.prefix === undefined),
    "give exactly one of ?url=<absolute URL> (one URL) or ?prefix=<absolute URL prefix> (everything under it)",
  ),
);

const query = <T extends v.GenericSchema>(schema: T, input: unknown) =>
  parseInput(schema, input, "invalid query parameters; nothing was changed");

/** Listing, purging and verifying cache entries. */
export function cacheRoutes(deps: CacheRouteDeps) {
  const app = new Hono();

  app.get("/api/cache/entries", (c) => {
    const q = query(ListQuery, c.req.query());
    const page = deps.index.list({ prefix: q.prefix && cacheKey(q.prefix), after: q.cursor, limit: q.limit });
    const now = deps.now();
    const noRequest = { headers: new Headers() };
    return c.json({
      entries: page.map((e) => {
        const f = freshness(noRequest, e, e, e.url, deps.ttlRules(), now);
        return {
          url: e.url,
          variant: e.variant || undefined,
          status: e.status,
          size: e.size,
          sha256: e.sha256,
          hits: e.hits,
          lastAccess: new Date(e.lastAccess).toISOString(),
          storedAt: new Date(e.responseTime).toISOString(),
          fresh: f.verdict === "fresh",
          ageSeconds: f.age,
          ttlSeconds: f.lifetime,
          contentType: e.headers.get("content-type") ?? undefined,
        };
      }),
      nextCursor: page.length === q.limit ? String(page[page.length - 1]!.id) : null,
    });
  });

  app.delete("/api/cache/entries", async (c) => {
    const q = query(PurgeQuery, c.req.query());
    const purged = await deps.index.purge(
      q.url !== undefined ? { url: cacheKey(q.url) } : { prefix: cacheKey(q.prefix!) },
    );
    deps.log.info("cache purged", { ...q, entries: purged });
    return c.json({ purged });
  });

  app.post("/api/cache/verify", (c) => c.json(deps.verifier.start(), 202));
  app.get("/api/cache/verify", (c) => c.json(deps.verifier.status()));
  return app;
}
