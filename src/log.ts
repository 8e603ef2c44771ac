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

export function createLogger(write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const emit = (level: string) => (msg: string, fields?: Fields) =>
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }, errorsAsText)}\n`);
  return { info: emit("info"), warn: emit("warn"), error: emit("error") };
}

function errorsAsText(_key: string, value: unknown) {
  return value instanceof Error ? value.message : value;
}

/** For tests and tools that want silence. */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
