import { createHash, randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { agents } from "../db/schema.ts";

export interface IssuedCredentials {
  id: number;
  name: string;
  username: string;
  /** Shown once, at issue; only its hash is kept. */
  password: string;
}

/** Successful checks are remembered this long, so a busy agent does not pay an argon2 hash per request. */
const VERIFIED_TTL_MS = 10 * 60_000;

/**
 * Agent credentials for Patch Mode: issued, listed, revoked, and checked.
 * Passwords are stored as argon2id hashes (slow on purpose); a verified
 * pair is remembered in memory by its sha256 until it expires or the agent
 * is revoked, which takes effect at once.
 */
export function createAgentStore(db: Db, now: () => number = Date.now) {
  const verified = new Map<string, { id: number; username: string; until: number }>();
  const checking = new Map<string, Promise<string | null>>();
  const revoked: ((username: string) => void)[] = [];
  // Checked against when the user name is unknown, so both cases cost one hash.
  const decoy = Bun.password.hash(randomBytes(16).toString("hex"));
  const keyOf = (username: string, password: string) =>
    createHash("sha256").update(`${username}\0${password}`).digest("hex");

  return {
    async issue(name: string): Promise<IssuedCredentials> {
      const username = `agent-${randomBytes(5).toString("hex")}`;
      const password = randomBytes(24).toString("base64url");
      const passwordHash = await Bun.password.hash(password);
      const row = db.insert(agents).values({ name, username, passwordHash, createdAt: now() }).returning().get();
      return { id: row.id, name, username, password };
    },

    list() {
      return db
        .select({ id: agents.id, name: agents.name, username: agents.username, createdAt: agents.createdAt })
        .from(agents)
        .orderBy(agents.id)
        .all()
        .map((a) => ({ ...a, createdAt: new Date(a.createdAt).toISOString() }));
    },

    /** Whether an agent of this user name exists now (tunnels authorized at CONNECT ask again per request). */
    exists(username: string): boolean {
      return db.select({ id: agents.id }).from(agents).where(eq(agents.username, username)).get() !== undefined;
    },

    /** Revokes at once: the row and every remembered check for it go. */
    revoke(id: number): boolean {
      const gone = db.delete(agents).where(eq(agents.id, id)).returning({ username: agents.username }).get();
      for (const [key, v] of verified) if (v.id === id) verified.delete(key);
      if (gone) for (const listener of revoked) listener(gone.username);
      return gone !== undefined;
    },

    /** Told the user name of each revoked agent (the proxy closes its open tunnels). */
    onRevoke(listener: (username: string) => void): void {
      revoked.push(listener);
    },

    /** The agent's user name if the pair is valid, else null. Never says which half was wrong. */
    verify(username: string, password: string): Promise<string | null> {
      const key = keyOf(username, password);
      const hit = verified.get(key);
      // Asked of the database each time: another process (a worker) may have revoked it a moment ago.
      if (hit && hit.until > now() && this.exists(hit.username)) return Promise.resolve(hit.username);
      // Agents sharing one credential arrive together (after a restart, at a patch window):
      // they wait on one hash instead of each starting their own.
      let check = checking.get(key);
      if (!check) {
        check = check_(key, username, password).finally(() => checking.delete(key));
        checking.set(key, check);
      }
      return check;
    },
  };

  async function check_(key: string, username: string, password: string): Promise<string | null> {
    const row = db.select().from(agents).where(eq(agents.username, username)).get();
    const ok = await Bun.password.verify(password, row?.passwordHash ?? (await decoy));
    if (!ok || !row) return null;
    // A revocation that landed while the hash was being checked wins: nothing is remembered for a gone agent.
    const still = db.select({ passwordHash: agents.passwordHash }).from(agents).where(eq(agents.id, row.id)).get();
    if (still?.passwordHash !== row.passwordHash) return null;
    verified.set(key, { id: row.id, username: row.username, until: now() + VERIFIED_TTL_MS });
    return row.username;
  }
}

export type AgentStore = ReturnType<typeof createAgentStore>;
