import { afterEach } from "bun:test";

/**
 * Returns `defer`: what a test registers with it runs after that test, last
 * registered first, also when the test failed, so servers and temp dirs
 * never outlive their test.
 */
export function cleanupAfterEach(): (fn: () => unknown) => void {
  const pending: (() => unknown)[] = [];
  afterEach(async () => {
    for (const fn of pending.splice(0).reverse()) await fn();
  });
  return (fn) => void pending.push(fn);
}
