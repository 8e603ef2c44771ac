import { describe, expect, test } from "bun:test";
import { createHangup } from "../src/hangup.ts";
import { createLogger } from "../src/log.ts";

/** A hangup handler over a real logger whose lines the test reads, and a reopen that counts its calls. */
function setup() {
  const lines: string[] = [];
  const hangup = createHangup(createLogger((l) => lines.push(JSON.parse(l).msg)));
  let reopened = 0;
  return { hangup, lines, reopens: () => reopened, reopen: () => void reopened++ };
}

describe("SIGHUP over the life of the process", () => {
  test("one during start-up is remembered and reopens the log once the gateway is up", () => {
    const { hangup, reopen, reopens } = setup();
    hangup.signal();
    expect(reopens()).toBe(0);
    hangup.up(reopen);
    expect(reopens()).toBe(1);
  });

  test("two during start-up make one reopen, not two", () => {
    const { hangup, reopen, reopens } = setup();
    hangup.signal();
    hangup.signal();
    hangup.up(reopen);
    expect(reopens()).toBe(1);
  });

  test("none during start-up: nothing is reopened when the gateway comes up; each later one reopens", () => {
    const { hangup, reopen, reopens } = setup();
    hangup.up(reopen);
    expect(reopens()).toBe(0);
    hangup.signal();
    hangup.signal();
    expect(reopens()).toBe(2);
  });

  test("one during shutdown is ignored, and said so: the log and the database are being closed", () => {
    const { hangup, reopen, reopens, lines } = setup();
    hangup.up(reopen);
    hangup.closing();
    hangup.signal();
    expect(reopens()).toBe(0);
    expect(lines).toContain("SIGHUP during shutdown: ignored");
  });
});
