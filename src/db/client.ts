import { Database } from "bun:sqlite";
import { chmodSync, closeSync, existsSync, openSync } from "node:fs";
import { join } from "node:path";
import { type BunSQLiteDatabase, drizzle } from "drizzle-orm/bun-sqlite";
import { migrate } from "drizzle-orm/bun-sqlite/migrator";
import * as schema from "./schema.ts";

export type Db = BunSQLiteDatabase<typeof schema> & { $client: Database };

const MIGRATIONS = join(import.meta.dir, "..", "..", "migrations");

/** Opens (creating if needed) the index database and brings its schema up to date. */
export function openDb(file: string): Db {
  // The index holds agent password hashes: owner-only. SQLite gives its -wal and -shm files the database's mode.
  closeSync(openSync(file, "a", 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  const sqlite = new Database(file, { create: true, strict: true });
  // WAL: readers (hits) never wait for the writer (new entries, batched touches).
  sqlite.exec("PRAGMA journal_mode = WAL");
  // NORMAL is durable across process crashes in WAL mode; a power cut may lose
  // the last transactions, which only forgets entries whose blobs are already
  // on disk (they are swept at the next start).
  sqlite.exec("PRAGMA synchronous = NORMAL");
  sqlite.exec("PRAGMA foreign_keys = ON");
  sqlite.exec("PRAGMA busy_timeout = 5000");
  const db = drizzle(sqlite, { schema });
  migrate(db, { migrationsFolder: MIGRATIONS });
  return db as Db;
}
