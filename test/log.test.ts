import { describe, expect, test } from "bun:test";
import { createLogger, LOG_LEVELS, type LogLevel } from "../src/log.ts";

function captured(level?: LogLevel) {
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger((l) => lines.push(JSON.parse(l)), { worker: 2 }, level);
  for (const at of LOG_LEVELS) log[at](`a ${at} line`);
  return lines;
}

describe("the gateway's own log", () => {
  test("writes info, warn and error by default, and drops debug", () => {
    expect(captured().map((l) => l.level)).toEqual(["info", "warn", "error"]);
  });

  test.each([
    ["debug", ["debug", "info", "warn", "error"]],
    ["info", ["info", "warn", "error"]],
    ["warn", ["warn", "error"]],
    ["error", ["error"]],
  ] as const)("at level %s writes %p", (level, written) => {
    expect(captured(level).map((l) => l.level)).toEqual([...written]);
  });

  test("a line keeps its stable fields and the logger's own", () => {
    const [line] = captured("error");
    expect(line).toMatchObject({ level: "error", msg: "a error line", worker: 2 });
  });
});
