/**
 * Structured logs: one JSON object per line on stdout, with stable field
 * names (`level`, `msg`, then the event's own fields), so operators can grep
 * them and log shippers can parse them. Lines below the threshold
 * (CACHEGATE_LOG_LEVEL, default `info`) are dropped before they are built.
 */
export type Fields = Record<string, unknown>;
export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

/** From the most talkative to the quietest; a threshold keeps its own level and those after it. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `base`: fields on every line of this logger (a worker's slot, say). `level`: the quietest level written. */
export function createLogger(
  write: (line: string) => void = (l) => process.stdout.write(l),
  base?: Fields,
  level: LogLevel = "info",
): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const emit = (at: LogLevel) =>
    LOG_LEVELS.indexOf(at) < threshold
      ? () => {}
      : (msg: string, fields?: Fields) =>
          write(
            `${JSON.stringify({ time: new Date().toISOString(), level: at, msg, ...base, ...fields }, errorsAsText)}\n`,
          );
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

function errorsAsText(_key: string, value: unknown) {
  return value instanceof Error ? value.message : value;
}

/** For tests and tools that want silence. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
