/**
 * Go's path helpers that Docker's build rules are written in terms of, ported exactly: `filepath.Match` (COPY globs,
 * and the syntax check of .dockerignore patterns), `filepath.Clean`, and fsutil's wildcard detection.
 * Unix only: `\` is an escape, `/` the separator.
 */
import { HoistError } from '../errors.ts';

const SLASH = 0x2f;
const STAR = 0x2a;
const QUESTION = 0x3f;
const BACKSLASH = 0x5c;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const CARET = 0x5e;
const DASH = 0x2d;

/** Thrown inside the matcher; turned into a HoistError naming the whole pattern at the API boundary. */
class BadPattern extends Error {}

function codePoints(s: string): number[] {
  const out: number[] = [];
  for (const ch of s) out.push(ch.codePointAt(0)!);
  return out;
}

/**
 * Go's `filepath.Match(pattern, name)` on Unix: `*` (no `/`), `?` (one character, not `/`), `[...]`/`[^...]`
 * classes with ranges and `\` escapes (a class, unlike `?`, can match `/`: Go's quirk, kept), `\c` for a literal c.
 * Throws HoistError BAD_PATTERN for a malformed pattern, as Go returns ErrBadPattern (including Go's check of the
 * rest of the pattern after a failed match).
 */
export function pathMatch(pattern: string, name: string): boolean {
  try {
    return matchCodePoints(codePoints(pattern), codePoints(name));
  } catch (e) {
    if (e instanceof BadPattern) throw badPattern(pattern);
    throw e;
  }
}

export function badPattern(pattern: string): HoistError {
  return new HoistError('BAD_PATTERN', `syntax error in pattern ${JSON.stringify(pattern)}: an unclosed or empty [...] class, a bad range or a trailing \\; fix or escape it`);
}

/** Go's scanChunk: skips leading stars, returns where the next star-free chunk ends. */
function scanChunk(p: number[], start: number): { star: boolean; cs: number; ce: number } {
  let i = start;
  let star = false;
  while (i < p.length && p[i] === STAR) {
    i++;
    star = true;
  }
  const cs = i;
  let inrange = false;
  for (; i < p.length; i++) {
    const c = p[i];
    if (c === BACKSLASH) {
      // error check handled in matchChunk: bad pattern.
      if (i + 1 < p.length) i++;
    } else if (c === LBRACKET) {
      inrange = true;
    } else if (c === RBRACKET) {
      inrange = false;
    } else if (c === STAR && !inrange) {
      break;
    }
  }
  return { star, cs, ce: i };
}

function matchCodePoints(p: number[], n: number[]): boolean {
  let pi = 0;
  let ni = 0;
  pattern: while (pi < p.length) {
    const { star, cs, ce } = scanChunk(p, pi);
    pi = ce;
    if (star && cs === ce) {
      // Trailing * matches the rest of the name unless it has a /.
      for (let k = ni; k < n.length; k++) if (n[k] === SLASH) return false;
      return true;
    }
    // Look for a match at the current position; the last chunk must also exhaust the name.
    const t = matchChunk(p, cs, ce, n, ni);
    if (t >= 0 && (t === n.length || pi < p.length)) {
      ni = t;
      continue;
    }
    if (star) {
      // Look for a match skipping k+1 characters; a star cannot skip a /.
      for (let k = ni; k < n.length && n[k] !== SLASH; k++) {
        const t2 = matchChunk(p, cs, ce, n, k + 1);
        if (t2 >= 0) {
          if (pi === p.length && t2 < n.length) continue;
          ni = t2;
          continue pattern;
        }
      }
    }
    // Before returning false, check that the rest of the pattern is well-formed (Go does).
    const empty: number[] = [];
    while (pi < p.length) {
      const c = scanChunk(p, pi);
      pi = c.ce;
      matchChunk(p, c.cs, c.ce, empty, 0);
    }
    return false;
  }
  return ni === n.length;
}

/** Go's matchChunk: the index in n after chunk p[cs..ce) matched at ni, or -1. Throws BadPattern. */
function matchChunk(p: number[], cs: number, ce: number, n: number[], ni: number): number {
  // After the match fails, keep processing the chunk to check its syntax, no longer reading n.
  let failed = false;
  let i = cs;
  while (i < ce) {
    if (!failed && ni >= n.length) failed = true;
    const c = p[i]!;
    if (c === LBRACKET) {
      let r = -1;
      if (!failed) r = n[ni++]!;
      i++;
      let negated = false;
      if (i < ce && p[i] === CARET) {
        negated = true;
        i++;
      }
      let matched = false;
      let nrange = 0;
      for (;;) {
        if (i < ce && p[i] === RBRACKET && nrange > 0) {
          i++;
          break;
        }
        const lo = getEsc(p, i, ce);
        i = lo.next;
        let hi = lo.r;
        if (p[i] === DASH) {
          const h = getEsc(p, i + 1, ce);
          hi = h.r;
          i = h.next;
        }
        if (lo.r <= r && r <= hi) matched = true;
        nrange++;
      }
      if (matched === negated) failed = true;
    } else if (c === QUESTION) {
      if (!failed) {
        if (n[ni] === SLASH) failed = true;
        ni++;
      }
      i++;
    } else {
      if (c === BACKSLASH) {
        i++;
        if (i >= ce) throw new BadPattern();
      }
      if (!failed) {
        if (p[i] !== n[ni]) failed = true;
        ni++;
      }
      i++;
    }
  }
  return failed ? -1 : ni;
}

/** Go's getEsc: a possibly escaped character of a class; the class must go on after it. */
function getEsc(p: number[], i: number, ce: number): { r: number; next: number } {
  if (i >= ce || p[i] === DASH || p[i] === RBRACKET) throw new BadPattern();
  if (p[i] === BACKSLASH) {
    i++;
    if (i >= ce) throw new BadPattern();
  }
  const r = p[i]!;
  i++;
  if (i >= ce) throw new BadPattern();
  return { r, next: i };
}

/** Go's `filepath.Clean` on Unix: no empty, `.` or inner `..` segments, no trailing `/`; `..` stops at a leading `/`. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.charCodeAt(0) === SLASH;
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(seg);
  }
  const s = (rooted ? '/' : '') + out.join('/');
  return s === '' ? '.' : s;
}

/** fsutil's containsWildcards: `*`, `?` or `[` not escaped by `\`. */
export function containsWildcards(segment: string): boolean {
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    if (c === BACKSLASH) i++;
    else if (c === STAR || c === QUESTION || c === LBRACKET) return true;
  }
  return false;
}

/**
 * Orders names by Unicode code point, which is the byte order of their UTF-8 (Go's string order, used by its
 * directory walks). Plain `<` compares UTF-16 units and puts U+E000..U+FFFF after the astral planes.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/**
 * pathMatch with the pattern parsed once, for matching many names. The pattern is checked up front (Go checks it
 * only as it goes, and BuildKit ignores the error of a COPY glob, so that a malformed one silently matches nothing;
 * failing in one line is kinder).
 */
export function globMatcher(pattern: string): (name: string) => boolean {
  const p = codePoints(pattern);
  try {
    matchCodePoints(p, codePoints('.'));
  } catch (e) {
    if (e instanceof BadPattern) throw badPattern(pattern);
    throw e;
  }
  return (name) => {
    try {
      return matchCodePoints(p, codePoints(name));
    } catch (e) {
      if (e instanceof BadPattern) throw badPattern(pattern);
      throw e;
    }
  };
}
