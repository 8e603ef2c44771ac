import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/** One stored body, named by the sha256 of its bytes: one body under two URLs is kept once. */
export const blobs = sqliteTable("blobs", {
  sha256: text("sha256").primaryKey(),
  size: integer("size").notNull(),
  createdAt: integer("created_at").notNull(),
});

/**
 * One cached response. A URL has one row per variant (RFC 9111 §4.1): `vary`
 * holds the header names the response varies on and `variant` the request's
 * values for them. A row is only written once its blob is complete and renamed
 * into place, so a row never points at a partial body.
 */
export const entries = sqliteTable(
  "entries",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    url: text("url").notNull(),
    variant: text("variant").notNull().default(""),
    vary: text("vary"),
    sha256: text("sha256")
      .notNull()
      .references(() => blobs.sha256),
    status: integer("status").notNull(),
    /** JSON array of [name, value] pairs, hop-by-hop headers already removed. */
    headers: text("headers").notNull(),
    requestTime: integer("request_time").notNull(),
    responseTime: integer("response_time").notNull(),
    lastAccess: integer("last_access").notNull(),
    hits: integer("hits").notNull().default(0),
  },
  (t) => [
    uniqueIndex("entries_url_variant").on(t.url, t.variant),
    index("entries_last_access").on(t.lastAccess),
    index("entries_sha256").on(t.sha256),
  ],
);

export type EntryRow = typeof entries.$inferSelect;

/** Admin API settings that survive restarts: `config` holds the overrides of the environment. */
export const settings = sqliteTable("settings", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** Lifetime counters (hits, misses, bytes…), added to in batches. */
export const counters = sqliteTable("counters", {
  name: text("name").primaryKey(),
  value: integer("value").notNull(),
});

/** The seed's bandwidth table: per day (UTC) and kind of file. */
export const dailyStats = sqliteTable(
  "daily_stats",
  {
    day: text("day").notNull(),
    kind: text("kind").notNull(),
    requests: integer("requests").notNull().default(0),
    /** Bytes agents received: what would have crossed the internet without the cache. */
    bytesServed: integer("bytes_served").notNull().default(0),
    /** Bytes fetched from upstream: what did cross it. */
    bytesUpstream: integer("bytes_upstream").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.day, t.kind] })],
);

/** Which agents fetched which kind of file on which day (for the table's "Number of Agents"). */
export const dailyAgents = sqliteTable(
  "daily_agents",
  {
    day: text("day").notNull(),
    kind: text("kind").notNull(),
    agent: text("agent").notNull(),
  },
  (t) => [primaryKey({ columns: [t.day, t.kind, t.agent] })],
);

/** Every agent (client address) ever seen, for active and total agent counts. */
export const clients = sqliteTable(
  "clients",
  {
    agent: text("agent").primaryKey(),
    firstSeen: integer("first_seen").notNull(),
    lastSeen: integer("last_seen").notNull(),
  },
  (t) => [index("clients_last_seen").on(t.lastSeen)],
);

/** Agent credentials for Patch Mode. The password is kept only as an argon2id hash. */
export const agents = sqliteTable("agents", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  name: text("name").notNull(),
  username: text("username").notNull().unique(),
  passwordHash: text("password_hash").notNull(),
  createdAt: integer("created_at").notNull(),
});

/**
 * Per URL, what agents received from the cache (hits, coalesced, revalidated,
 * stale): bytes that did not cross the internet. Kept by the stats collector,
 * added to in its batches; feeds the status page's top objects.
 */
export const objectSavings = sqliteTable(
  "object_savings",
  {
    url: text("url").primaryKey(),
    /** Responses served from the cache for this URL. */
    responses: integer("responses").notNull().default(0),
    bytesSaved: integer("bytes_saved").notNull().default(0),
    lastServed: integer("last_served").notNull(),
  },
  (t) => [index("object_savings_bytes_saved").on(t.bytesSaved)],
);
