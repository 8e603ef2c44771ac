/**
 * Structured logs: one JSON object per line on stdout, with stable field
 * names (`level`, `msg`, then the event's own fields), so operators can grep
 * them and log shippers can parse them.
 */
export type Fields = Record<string, unknown>;
export interface Logger {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

/** `base`: fields on every line of this logger (a worker's slot, say). */
export function createLogger(write: (line: string) => void = (l) => process.stdout.write(l), base?: Fields): Logger {
  const emit = (level: string) => (msg: string, fields?: Fields) =>
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...fields }, errorsAsText)}\n`);
  return { info: emit("info"), warn: emit("warn"), error: emit("error") };
}

function errorsAsText(_key: string, value: unknown) {
  return value instanceof Error ? value.message : value;
}

/** For tests and tools that want silence. */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
