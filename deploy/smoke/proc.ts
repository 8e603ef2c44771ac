import { createServer } from "node:net";

/** Small process helpers for the container scripts: run to the end, or start and watch. */

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; `check` (the default) throws with its output when it fails. */
export async function run(cmd: string[], opts: { check?: boolean; env?: Record<string, string> } = {}): Promise<Ran> {
  const child = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: opts.env ?? (process.env as never) });
  const [code, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  if (code !== 0 && opts.check !== false) {
    throw new Error(`${cmd.join(" ")} exited with ${code}:\n${stderr.trim() || stdout.trim()}`);
  }
  return { code, stdout, stderr };
}

/** A long-running process whose output is collected as it comes. */
export interface Started {
  pid: number;
  exited: Promise<number>;
  running(): boolean;
  output(): string;
}

export function start(cmd: string[], env: Record<string, string>): Started {
  const child = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env });
  // An interrupted run stops it before its mounts go (cleanups run last registered first).
  const forget = atInterrupt(async () => {
    child.kill("SIGKILL");
    await child.exited;
  });
  void child.exited.then(forget);
  let log = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) log += decoder.decode(chunk, { stream: true });
  };
  void drain(child.stdout as ReadableStream<Uint8Array>);
  void drain(child.stderr as ReadableStream<Uint8Array>);
  return { pid: child.pid, exited: child.exited, running: () => child.exitCode === null, output: () => log };
}

/** A port nobody listens on now (other gateways on this machine use 8080 and 9090). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls until `condition` holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** Resolves with the exit code, or undefined if the process is still running after `ms`. */
export async function exitWithin(started: Started, ms: number): Promise<number | undefined> {
  let timer: Timer | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([started.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

const cleanups = new Set<() => Promise<void>>();

/**
 * Ctrl-C (or SIGTERM) must not leave /proc, /dev and /data mounted in a
 * buildah container: what registers here is undone before the script exits
 * (130). Returns the function that unregisters it, for a normal close.
 */
export function atInterrupt(cleanup: () => Promise<void>): () => void {
  if (!handlersInstalled) installHandlers();
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

let handlersInstalled = false;
function installHandlers(): void {
  handlersInstalled = true;
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.once(signal, async () => {
      for (const cleanup of [...cleanups].reverse()) await cleanup().catch(() => {});
      process.exit(130);
    });
}
