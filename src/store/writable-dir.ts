import { readFileSync, statSync } from "node:fs";
import { mkdir, stat, unlink, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { GatewayError } from "../errors.ts";

export interface DirRole {
  /** What the directory is to the operator: "data dir". */
  what: string;
  /** The variable that sets it, so the operator knows what to change. */
  variable: string;
}

/**
 * The data dir must exist (or be creatable) and be writable by the user the
 * gateway runs as. Without this check a root-owned bind mount (`-v
 * /srv/cachegate:/data` in a container whose user is `bun`, uid 1000) stops
 * the start deep inside SQLite with "unable to open database file", which
 * names neither the path nor the user. Checked before anything is opened, so
 * a refusal changes nothing.
 */
export async function ensureWritableDir(path: string, role: DirRole): Promise<void> {
  const name = `the ${role.what} ${path} (${role.variable})`;
  const existing = await stat(path).catch(() => undefined);
  if (existing && !existing.isDirectory()) {
    throw unusable(`${name} is not a directory; set ${role.variable} to a directory`);
  }
  if (!existing) {
    const created = await mkdir(path, { recursive: true, mode: 0o700 }).catch((err: NodeJS.ErrnoException) => err);
    if (created instanceof Error) {
      const blocker = await nearestExisting(dirname(resolve(path)));
      throw unusable(
        `${name} cannot be created (${created.code ?? created.message}). ${fixFor(blocker, path, created)}`,
      );
    }
  }
  // A real write, not access(2): root passes access() on a read-only file system, and ACLs or mount options
  // (ro, root_squash on NFS) only tell the truth when tried.
  const e = await writeProbe(path);
  if (e) throw unusable(`${name} is not writable (${e.code ?? e.message}). ${fixFor(path, path, e)}`);
}

/** Writes and removes a file in `dir`: the error if that fails, else undefined. Also the patch disk's check. */
export async function writeProbe(dir: string): Promise<NodeJS.ErrnoException | undefined> {
  const probe = resolve(dir, `.cachegate-write-test-${process.pid}`);
  try {
    await writeFile(probe, "");
    await unlink(probe);
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
}

const unusable = (message: string) => new GatewayError(500, "data_dir_unusable", message);

/** A read-only mount needs remounting, a file in the way a directory; anything else is ownership, said with who is who. */
function fixFor(blocker: string, mountPoint: string, err: NodeJS.ErrnoException): string {
  if (err.code === "EROFS") return `${blocker} is on a read-only file system: mount it read-write.`;
  if (err.code === "ENOTDIR") return `${blocker} is a file, not a directory: choose a path of directories.`;
  return ownershipHint(blocker, mountPoint);
}

/**
 * Who the gateway runs as, who owns the directory in its way, and the two
 * usual fixes, in words an operator can act on. `mountPoint` is the path a
 * container would mount (for podman's `:U` example). Also used for the patch
 * disk (src/patch/disk.ts).
 */
export function ownershipHint(dir: string, mountPoint = dir): string {
  const uid = process.getuid?.() ?? -1;
  const gid = process.getgid?.() ?? -1;
  const owner = ownerOf(dir);
  const ownedBy = owner
    ? `; ${dir} is owned by ${userName(owner.uid)} (uid ${owner.uid}, gid ${owner.gid}), mode ${owner.mode}`
    : "";
  return (
    `The gateway runs as user ${userName(uid)} (uid ${uid}, gid ${gid})${ownedBy}. ` +
    `Fix: chown ${uid}:${gid} ${dir} (in a container, chown ${uid}:${gid} the host directory mounted there), ` +
    `or let podman do it by mounting the volume with :U (-v /srv/cachegate:${mountPoint}:U).`
  );
}

function ownerOf(dir: string): { uid: number; gid: number; mode: string } | undefined {
  try {
    const info = statSync(dir);
    return { uid: info.uid, gid: info.gid, mode: `0${(info.mode & 0o777).toString(8)}` };
  } catch {
    return undefined;
  }
}

/** The closest ancestor that exists: the directory that refused the mkdir. */
async function nearestExisting(dir: string): Promise<string> {
  let d = dir;
  while (
    d !== dirname(d) &&
    !(await stat(d).then(
      () => true,
      () => false,
    ))
  )
    d = dirname(d);
  return d;
}

/** The name /etc/passwd gives a uid; a container's `--user 1234` may have none. */
function userName(uid: number): string {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [name, , id] = line.split(":");
      if (name && id !== undefined && Number(id) === uid) return name;
    }
  } catch {
    // No /etc/passwd (a scratch image): the uid alone is still true.
  }
  return "(no name)";
}
