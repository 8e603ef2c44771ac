import { randomBytes } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.ts";

/**
 * The admin token: CACHEGATE_ADMIN_TOKEN if set, else one generated on first
 * start and kept in the data dir with mode 0600. The log says where it is,
 * never what it is.
 */
export async function loadAdminToken(dataDir: string, fromEnv: string | undefined, log: Logger): Promise<string> {
  if (fromEnv) return fromEnv;
  const file = join(dataDir, "admin-token");
  const existing = await readFile(file, "utf8").then(
    (s) => s.trim(),
    () => "",
  );
  if (existing !== "") {
    log.info("admin token read from the data dir", { file });
    return existing;
  }
  const token = randomBytes(32).toString("base64url");
  await writeFile(file, `${token}\n`, { mode: 0o600, flag: "wx" });
  await chmod(file, 0o600);
  log.info("admin token generated; read it from this file to use the admin API", { file });
  return token;
}
