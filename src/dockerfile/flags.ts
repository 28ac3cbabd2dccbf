/**
 * Instruction flags (`--name=value`), checked as BuildKit's BFlags.Parse checks them: known names per instruction,
 * values where a value is required, bool flags bare or `=true/false`, only `--mount`/`--exclude` repeatable.
 * Also the small readers the builder uses on a parsed Flag list, and Go's duration syntax for HEALTHCHECK.
 */
import { q, syntaxError } from './source.ts';
import { suggest } from './suggest.ts';
import type { Flag, Pos } from './types.ts';

type FlagKind = 'string' | 'strings' | 'bool';

/** The flags each instruction accepts (BuildKit's dockerfile frontend, stable channel). */
const FLAG_SPECS: Record<string, Record<string, FlagKind>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'strings', network: 'string', security: 'string' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', exclude: 'strings', parents: 'bool' },
  ADD: {
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    exclude: 'strings',
    checksum: 'string',
    'keep-git-dir': 'bool',
  },
  HEALTHCHECK: {
    interval: 'string',
    timeout: 'string',
    'start-period': 'string',
    'start-interval': 'string',
    retries: 'string',
  },
};

/**
 * Checks the flag words BuildKit's extractBuilderFlags cut off an instruction (`--name` or `--name=value`, quotes
 * already removed) and returns them as Flags. `pos(i)` is the position of word i.
 */
export function checkFlags(keyword: string, words: readonly string[], pos: (i: number) => Pos): Flag[] {
  const spec = FLAG_SPECS[keyword] ?? {};
  const names = Object.keys(spec);
  const flags: Flag[] = [];
  const seen = new Set<string>();
  words.forEach((word, i) => {
    const body = word.slice(2);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const value = eq < 0 ? undefined : body.slice(eq + 1);
    const at = pos(i);
    const kind = spec[name];
    if (kind === undefined) {
      if (names.length === 0) throw syntaxError(at, `unknown flag --${name}: ${keyword} takes no flags; remove it`);
      const near = suggest(name, names, true);
      const hint = near === undefined ? '' : ` (did you mean --${near}?)`;
      const valid = names.map((n) => `--${n}`).join(', ');
      throw syntaxError(at, `unknown flag --${name} for ${keyword}${hint}; valid flags: ${valid}`);
    }
    if (seen.has(name) && kind !== 'strings') {
      throw syntaxError(at, `--${name} is given twice for ${keyword}; give it once`);
    }
    seen.add(name);
    if (kind === 'bool') {
      if (value === '') throw syntaxError(at, `--${name}= needs a value: write --${name}, --${name}=true or --${name}=false`);
      if (value !== undefined && !/^(true|false)$/i.test(value)) {
        throw syntaxError(at, `--${name} expects true or false, not ${q(value)}`);
      }
      flags.push({ name, value: value?.toLowerCase(), pos: at });
      return;
    }
    if (value === undefined) throw syntaxError(at, `--${name} needs a value: --${name}=<value>`);
    flags.push({ name, value, pos: at });
  });
  return flags;
}

/** The value of a single-valued flag (the last one given), or undefined when absent. */
export function flagValue(flags: readonly Flag[], name: string): string | undefined {
  let value: string | undefined;
  for (const f of flags) if (f.name === name) value = f.value ?? '';
  return value;
}

/** Every value of a repeatable flag (`--mount`, `--exclude`), in order. */
export function flagValues(flags: readonly Flag[], name: string): string[] {
  return flags.filter((f) => f.name === name).map((f) => f.value ?? '');
}

/** A bool flag: true when given bare or `=true`. */
export function flagBool(flags: readonly Flag[], name: string): boolean {
  const f = flags.findLast((x) => x.name === name);
  return f !== undefined && (f.value === undefined || f.value === 'true');
}

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * Go's time.ParseDuration (`1m30s`, `1.5h`, `300ms`, `0`), in nanoseconds; undefined when malformed. HEALTHCHECK
 * durations use this syntax.
 */
export function parseGoDuration(s: string): number | undefined {
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return undefined;
  let total = 0;
  const part = /^(\d*)(?:\.(\d*))?([^\d.]+)/;
  while (rest !== '') {
    const m = part.exec(rest);
    if (m === null) return undefined;
    const [all, whole = '', frac = '', unit = ''] = m;
    if (whole === '' && frac === '') return undefined;
    const mult = UNIT_NS[unit];
    if (mult === undefined) return undefined;
    total += Number(`${whole || '0'}.${frac || '0'}`) * mult;
    rest = rest.slice(all.length);
  }
  // Go rejects what does not fit an int64 of nanoseconds (about 292 years).
  if (total > 9.223372036854775e18) return undefined;
  return sign * Math.round(total);
}
