import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { settings } from "../db/schema.ts";
import type { JsonObject } from "./merge-patch.ts";

/** The admin API's overrides of the environment, kept in the index database. */
export function loadOverrides(db: Db): JsonObject {
  const row = db.select().from(settings).where(eq(settings.key, "config")).get();
  return row ? (JSON.parse(row.value) as JsonObject) : {};
}

export function saveOverrides(db: Db, overrides: JsonObject, now = Date.now()): void {
  const value = JSON.stringify(overrides);
  db.insert(settings)
    .values({ key: "config", value, updatedAt: now })
    .onConflictDoUpdate({ target: settings.key, set: { value, updatedAt: now } })
    .run();
}
