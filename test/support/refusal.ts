import { expect } from "bun:test";
import { GatewayError } from "../../src/errors.ts";

/** The GatewayError `p` rejects with; fails the test, saying `what` was expected, if it resolves or throws anything else. */
export async function refusal(p: Promise<unknown>, what = "a refusal"): Promise<GatewayError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error(`expected ${what}, but it was accepted`);
}
