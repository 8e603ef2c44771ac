import { ENV_VARS } from "./config/env-vars.ts";
import { VERSION } from "./version.ts";

/**
 * The command line. cachegate is configured by its environment and the
 * admin API, so the only flags are the ones that answer a question and
 * exit: --version and --help. They are read before anything else runs,
 * so neither creates a data dir, a token or a CA.
 */
export type Command = { run: true } | { run: false; exitCode: 0 | 2; out: string };

/** Exit code of a usage error: 2, as shell built-ins and getopt-style tools use. */
const USAGE_ERROR = 2;

export function parseCommandLine(args: readonly string[]): Command {
  const [first, ...rest] = args;
  if (first === undefined) return { run: true };
  if (rest.length > 0) return usageError(`too many arguments: ${args.join(" ")}`);
  if (first === "--version" || first === "-v") return { run: false, exitCode: 0, out: `cachegate ${VERSION}\n` };
  if (first === "--help" || first === "-h") return { run: false, exitCode: 0, out: helpText() };
  return usageError(`unknown argument: ${first}`);
}

function usageError(problem: string): Command {
  return {
    run: false,
    exitCode: USAGE_ERROR,
    out: `cachegate: ${problem}\ncachegate takes no arguments but --version and --help; run "bun src/main.ts --help" for its environment variables\n`,
  };
}

export function helpText(): string {
  const width = Math.max(...ENV_VARS.map((v) => v.name.length));
  const rows = ENV_VARS.map((v) => `  ${v.name.padEnd(width)}  ${v.meaning} (default: ${v.default})`);
  return [
    `cachegate ${VERSION}: a caching forward proxy for fleets of endpoint agents`,
    "",
    "Usage:",
    "  bun src/main.ts              start the gateway (or: bun run start)",
    "  bun src/main.ts --version    print the version and exit",
    "  bun src/main.ts --help       print this and exit",
    "",
    "Configured by environment variables; what the admin API changes is kept in",
    "the data dir and wins over them (see the README's Configuration section):",
    "",
    ...rows,
    "",
  ].join("\n");
}
