/** A clock the test moves by hand, for the gateway's `now`: freshness and LRU order without sleeping. */
export function manualClock(start = Date.now()): { now: () => number; advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    advance(ms) {
      t += ms;
    },
  };
}
