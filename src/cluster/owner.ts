/**
 * Which worker owns a URL: rendezvous (highest random weight) hashing, as
 * CARP does for proxy arrays. Every process computes the same answer from
 * the same list of slots, and when a slot comes or goes only the URLs it
 * owns move; the others keep their owner and their single download.
 */
export function ownerOf(key: string, slots: readonly number[]): number | undefined {
  let best: number | undefined;
  let bestScore = -1n;
  for (const slot of slots) {
    const score = BigInt.asUintN(64, BigInt(Bun.hash(key, slot)));
    if (score > bestScore) {
      bestScore = score;
      best = slot;
    }
  }
  return best;
}
