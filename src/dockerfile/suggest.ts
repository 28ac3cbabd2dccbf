/**
 * "Did you mean" for misspelt instructions and flags, as BuildKit's util/suggest: the closest option at a
 * Levenshtein distance of at most 2, in the letter case the user wrote.
 */

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The closest of `options` to `value` (distance ≤ 2), or undefined. */
export function suggest(value: string, options: readonly string[], caseSensitive = false): string | undefined {
  const val = caseSensitive ? value : value.toLowerCase();
  let best: string | undefined;
  let min = 3;
  for (const option of options) {
    const opt = caseSensitive ? option : option.toLowerCase();
    if (opt === val) return undefined;
    const d = levenshtein(val, opt);
    if (d < min) {
      min = d;
      best = opt;
    }
  }
  if (best === undefined || caseSensitive) return best;
  // Answer in the user's case: `form` → `from`, `FORM` → `FROM`.
  if (value === value.toLowerCase()) return best.toLowerCase();
  if (value === value.toUpperCase()) return best.toUpperCase();
  return best;
}
