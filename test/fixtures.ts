/** Deterministic score data for tests: a 31-bit LCG (exact in BigInt) shaped into distributions. */
export function rng(seed: number): () => number {
  let s = BigInt(seed);
  return () => {
    s = (s * 1103515245n + 12345n) % 2147483648n;
    return Number(s) / 2147483648;
  };
}

/** A skewed score in [0, 1]: `u ** power` (power > 1 pushes scores towards 0). */
export const skewed = (power: number) => (random: () => number) => random() ** power;

export type HeadShape = Record<string, (random: () => number) => number>;

/**
 * `count` files from index `from`, each with a score per `<model>/<head>` whose first label is
 * drawn from the head's shape and whose second label is its complement.
 */
export function libraryBatch(from: number, count: number, heads: HeadShape, seed = from + 1) {
  const random = rng(seed);
  const files = [];
  for (let i = from; i < from + count; i++) {
    const scores: Record<string, Record<string, number>> = {};
    for (const [key, shape] of Object.entries(heads)) {
      const [, head] = key.split('/');
      const x = shape(random);
      scores[key] = { [`${head}`]: x, [`not_${head}`]: 1 - x };
    }
    files.push({ path: `/music/${String(i).padStart(6, '0')}.mp3`, scores });
  }
  return { files };
}
