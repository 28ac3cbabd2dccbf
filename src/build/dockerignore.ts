/**
 * .dockerignore, exactly as Docker and BuildKit read and apply it: moby's ignorefile.ReadAll (the file) and
 * moby/patternmatcher (the patterns), with fsutil's rule for skipping excluded directories. Also the matcher of
 * COPY --exclude, which BuildKit builds the same way.
 *
 * Patterns are matched against the whole '/'-separated path relative to the root: `*` and `?` stay within one
 * segment, `**` spans any number, `[...]` classes and `\` escapes as Go's filepath.Match. The last pattern that
 * matches wins; a leading `!` makes an exception that re-includes. A path is also excluded when a pattern matches
 * one of its parent directories — unless a later exception matches it (or a closer parent).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { HoistError, isErrno } from '../errors.ts';
import { badPattern, cleanPath, pathMatch } from './glob.ts';

/** Go's strings.TrimSpace: Unicode White_Space (JS's trim() also strips U+FEFF and keeps U+0085). */
const GO_SPACE = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM = new RegExp(`^[${GO_SPACE}]+|[${GO_SPACE}]+$`, 'g');
function goTrimSpace(s: string): string {
  return s.replace(TRIM, '');
}

/**
 * The patterns of an ignore file, as moby's ignorefile.ReadAll gives them: a UTF-8 BOM stripped, lines starting
 * with `#` skipped (only at column 0), each line trimmed, blank lines skipped, `!` kept in front of a pattern that is
 * `filepath.Clean`ed and loses one leading `/`. A lone `!` stays: the matcher rejects it, as Docker does.
 */
export function parseIgnore(text: string): string[] {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop(); // bufio.ScanLines: no token after a final \n
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (i === 0 && line.startsWith('\ufeff')) line = line.slice(1);
    if (line.startsWith('#')) continue;
    let pattern = goTrimSpace(line);
    if (pattern === '') continue;
    const invert = pattern[0] === '!';
    if (invert) pattern = goTrimSpace(pattern.slice(1));
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern[0] === '/') pattern = pattern.slice(1);
    }
    out.push(invert ? `!${pattern}` : pattern);
  }
  return out;
}

type MatchType = 'exact' | 'prefix' | 'suffix' | 'regexp';

/** One compiled pattern (patternmatcher.Pattern). */
interface Pattern {
  /** The pattern after Clean and without its `!`. */
  cleaned: string;
  exclusion: boolean;
  type: MatchType;
  /** The regexp patternmatcher builds (Go syntax), for regexp patterns; kept for tests and messages. */
  goRegexp?: string;
  re?: RegExp;
}

/** Characters that patternmatcher escapes: regexp specials that mean nothing to filepath.Match. */
const SHOULD_ESCAPE = new Set(['.', '+', '(', ')', '|', '{', '}', '$']);

/** patternmatcher's Pattern.compile, building the same Go regexp string. Exported for tests. */
export function compilePattern(cleaned: string): { type: MatchType; goRegexp?: string } {
  let reg = '^';
  let type: MatchType = 'exact';
  const cs = Array.from(cleaned);
  let k = 0;
  for (let i = 0; k < cs.length; i++) {
    const ch = cs[k++]!;
    if (ch === '*') {
      if (cs[k] === '*') {
        // Some flavour of "**"; "**/" is treated as "**".
        k++;
        if (cs[k] === '/') k++;
        if (k >= cs.length) {
          // "**" at the end: like .gitignore, accept everything.
          if (type === 'exact') type = 'prefix';
          else {
            reg += '.*';
            type = 'regexp';
          }
        } else {
          // Any number of segments, even none.
          reg += '(.*/)?';
          type = 'regexp';
        }
        if (i === 0) type = 'suffix';
      } else {
        reg += '[^/]*';
        type = 'regexp';
      }
    } else if (ch === '?') {
      reg += '[^/]';
      type = 'regexp';
    } else if (SHOULD_ESCAPE.has(ch)) {
      reg += `\\${ch}`;
    } else if (ch === '\\') {
      // Escapes the next character; a trailing \ is left alone.
      if (k < cs.length) {
        reg += `\\${cs[k++]!}`;
        type = 'regexp';
      } else {
        reg += '\\';
      }
    } else if (ch === '[' || ch === ']') {
      reg += ch;
      type = 'regexp';
    } else {
      reg += ch;
    }
  }
  if (type === 'regexp') return { type, goRegexp: `${reg}$` };
  return { type };
}

/** Go escapes (`\` + letter) with the same meaning in a JS `u` regexp, outside a class. */
const SAME_ESCAPES = new Set(['d', 'D', 'w', 'W', 'f', 't', 'n', 'r', 'v', 'b', 'B']);
const JS_SYNTAX = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);

/**
 * Translates the Go (RE2) regexp patternmatcher builds into an equivalent JS regexp. The differences that matter:
 * JS `u` mode rejects a lone `]` and identity escapes Go accepts, Go's `.` excludes only `\n`, and Go's `\s` is
 * ASCII. Escapes Go gives another meaning (\pN, \x41, octal, \Q..\E) are rejected as bad patterns: nobody writes
 * them in an ignore file, and Go rejects most other escaped letters too.
 */
function goRegexpToJs(src: string, pattern: string): RegExp {
  const cs = Array.from(src);
  let out = '';
  let inClass = false;
  for (let k = 0; k < cs.length; k++) {
    const c = cs[k]!;
    if (c === '\\') {
      const e = cs[++k];
      if (e === undefined) throw badPattern(pattern); // Go: trailing backslash
      if (/^[0-9A-Za-z]$/.test(e)) {
        if (SAME_ESCAPES.has(e) && !(inClass && (e === 'b' || e === 'B'))) out += `\\${e}`;
        else if (e === 's') out += inClass ? '\\t\\n\\f\\r ' : '[\\t\\n\\f\\r ]';
        else if (e === 'S' && !inClass) out += '[^\\t\\n\\f\\r ]';
        else if (e === 'a') out += '\\x07';
        else if (e === 'A' && !inClass) out += '^';
        else if (e === 'z' && !inClass) out += '$';
        else throw badPattern(pattern);
      } else if (e.codePointAt(0)! >= 0x80) {
        throw badPattern(pattern); // Go: invalid escape
      } else {
        // Escaped ASCII punctuation is that character.
        out += JS_SYNTAX.has(e) || e === '-' ? `\\${e}` : e;
      }
      continue;
    }
    if (inClass) {
      if (c === ']') {
        inClass = false;
        out += ']';
      } else if (c === '[') {
        out += '\\[';
      } else {
        out += c;
      }
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += '[';
      if (cs[k + 1] === '^') out += cs[++k]!;
      if (cs[k + 1] === ']') {
        // RE2: a ] first in a class is a member.
        k++;
        out += '\\]';
      }
    } else if (c === ']') {
      out += '\\]';
    } else if (c === '.') {
      out += '[^\\n]';
    } else {
      out += c;
    }
  }
  try {
    return new RegExp(out, 'u');
  } catch {
    throw badPattern(pattern);
  }
}

function patternMatches(p: Pattern, path: string): boolean {
  switch (p.type) {
    case 'exact':
      return path === p.cleaned;
    case 'prefix':
      // Strip the trailing "**".
      return path.startsWith(p.cleaned.slice(0, -2));
    case 'suffix': {
      // Strip the leading "**"; "**/foo" also matches "foo".
      const suffix = p.cleaned.slice(2);
      if (path.endsWith(suffix)) return true;
      return suffix[0] === '/' && path === suffix.slice(1);
    }
    case 'regexp':
      return p.re!.test(path);
  }
}

/** Per-pattern results for a directory, handed to its children (patternmatcher.MatchInfo). */
export type ParentMatch = readonly boolean[];

/** Go's filepath.Dir for a clean relative path. */
function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '.' : cleanPath(path.slice(0, i + 1));
}

/** fsutil's patternWithoutTrailingGlob. */
function withoutTrailingGlob(p: string): string {
  if (p.endsWith('/**')) p = p.slice(0, -3);
  if (p.endsWith('/*')) p = p.slice(0, -2);
  return p;
}

export class IgnoreMatcher {
  readonly #patterns: Pattern[] = [];
  /** True when some pattern is an exception (`!`). */
  readonly hasExceptions: boolean = false;
  /** fsutil's onlyPrefixExcludeExceptions: every exception is a plain path (after a trailing /* or /**). */
  readonly #onlyPrefixExceptions: boolean = true;

  /**
   * patternmatcher.New: each pattern trimmed, blank ones dropped, `filepath.Clean`ed, a leading `!` making it an
   * exception; each is checked with Go's filepath.Match. Throws HoistError BAD_PATTERN for a lone `!` or a
   * malformed pattern. `source` names where the patterns come from, for the message.
   */
  constructor(patterns: readonly string[], source = '.dockerignore') {
    for (const raw of patterns) {
      let p = goTrimSpace(raw);
      if (p === '') continue;
      p = cleanPath(p);
      let exclusion = false;
      if (p[0] === '!') {
        if (p.length === 1) {
          throw new HoistError('BAD_PATTERN', `${source}: illegal exclusion pattern "!"; write the path to re-include after the !`);
        }
        exclusion = true;
        p = p.slice(1);
        this.hasExceptions = true;
      }
      pathMatch(p, '.'); // throws on a malformed pattern, as New calls filepath.Match for its error
      const c = compilePattern(p);
      const pat: Pattern = { cleaned: p, exclusion, type: c.type };
      if (c.goRegexp !== undefined) {
        pat.goRegexp = c.goRegexp;
        pat.re = goRegexpToJs(c.goRegexp, p);
      }
      if (exclusion && /[*[\]?^\\]/.test(withoutTrailingGlob(p))) this.#onlyPrefixExceptions = false;
      this.#patterns.push(pat);
    }
  }

  /** No patterns: nothing is excluded. */
  get empty(): boolean {
    return this.#patterns.length === 0;
  }

  /** The patterns as the matcher holds them (cleaned; exceptions with their `!`). */
  get patterns(): string[] {
    return this.#patterns.map((p) => (p.exclusion ? `!${p.cleaned}` : p.cleaned));
  }

  /**
   * Whether `rel` (clean, '/'-separated, relative to the root) is excluded, as BuildKit's walk decides it:
   * patternmatcher's MatchesUsingParentResults applied from the top directory down to `rel`. The root ('' or '.')
   * never is. (patternmatcher's MatchesOrParentMatches differs in rare orders: with `foo/bar` then `!foo`, it
   * re-includes foo/bar/x, but the walk — what decides what the context holds — keeps it out.)
   * `parentExcluded` is a hint from a walker: without exceptions it decides alone (a parent's exclusion can't be
   * undone); with exceptions which pattern matched the parent matters, so it is not used — walkers should use
   * matchWithParent.
   */
  matches(rel: string, parentExcluded?: boolean): boolean {
    if (rel === '' || rel === '.') return false;
    if (!this.hasExceptions && parentExcluded !== undefined) {
      if (parentExcluded) return true;
      return this.#patterns.some((p) => patternMatches(p, rel));
    }
    const parent = parentOf(rel);
    let info: ParentMatch | undefined;
    if (parent !== '.') {
      const dirs = parent.split('/');
      for (let i = 0; i < dirs.length; i++) info = this.matchWithParent(dirs.slice(0, i + 1).join('/'), info).info;
    }
    return this.matchWithParent(rel, info).excluded;
  }

  /** patternmatcher's MatchesOrParentMatches: each pattern against `rel` and each of its parents. */
  matchesOrParentMatches(rel: string): boolean {
    let matched = false;
    const parent = parentOf(rel);
    const parentDirs = parent === '.' ? [] : parent.split('/');
    for (const p of this.#patterns) {
      // An inclusion can't change a match, an exception can't change a non-match.
      if (p.exclusion !== matched) continue;
      let m = patternMatches(p, rel);
      for (let i = 0; !m && i < parentDirs.length; i++) m = patternMatches(p, parentDirs.slice(0, i + 1).join('/'));
      if (m) matched = !p.exclusion;
    }
    return matched;
  }

  /** patternmatcher's MatchesExact: the patterns against `rel` alone, no parent rule. */
  matchesExact(rel: string): boolean {
    let matched = false;
    for (const p of this.#patterns) {
      if (p.exclusion !== matched) continue;
      if (patternMatches(p, rel)) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * The walker's form (patternmatcher's MatchesUsingParentResults, as fsutil walks): `parent` is the `info` of the
   * parent directory (undefined at the top, or when unknown: then every parent is checked). Returns whether `rel` is
   * excluded and the `info` to hand to its children.
   */
  matchWithParent(rel: string, parent: ParentMatch | undefined): { excluded: boolean; info: ParentMatch } {
    const n = this.#patterns.length;
    const info: boolean[] = new Array<boolean>(n).fill(false);
    const known = parent !== undefined && parent.length === n && n > 0;
    let matched = false;
    for (let i = 0; i < n; i++) {
      const p = this.#patterns[i]!;
      // A pattern that matched the parent matches everything below it.
      let m = known ? parent[i]! : false;
      if (!m) {
        if (p.exclusion !== matched) continue;
        m = patternMatches(p, rel);
        if (!m && !known) {
          const par = parentOf(rel);
          if (par !== '.') {
            const dirs = par.split('/');
            for (let j = 0; !m && j < dirs.length; j++) m = patternMatches(p, dirs.slice(0, j + 1).join('/'));
          }
        }
      }
      info[i] = m;
      if (m) matched = !p.exclusion;
    }
    return { excluded: matched, info };
  }

  /**
   * For an excluded directory `rel`: true when no exception could re-include anything below it, so a walker may
   * skip it without reading it (fsutil's rule: no exceptions at all, or only plain-path exceptions none of which
   * lies below `rel`). False means walk it: something inside may come back.
   */
  canSkipDir(rel: string): boolean {
    if (!this.hasExceptions) return true;
    if (!this.#onlyPrefixExceptions) return false;
    const dirSlash = `${rel}/`;
    for (const p of this.#patterns) {
      if (!p.exclusion) continue;
      if (`${withoutTrailingGlob(p.cleaned)}/`.startsWith(dirSlash)) return false;
    }
    return true;
  }

  /** The Go regexps patternmatcher would build, for tests ('' for patterns that need none). */
  goRegexps(): string[] {
    return this.#patterns.map((p) => p.goRegexp ?? '');
  }

  /** The match kinds patternmatcher would pick, for tests. */
  matchTypes(): MatchType[] {
    return this.#patterns.map((p) => p.type);
  }
}

/**
 * The ignore patterns of a build: `<Dockerfile>.dockerignore` next to the Dockerfile (BuildKit reads it first),
 * else `<context>/.dockerignore`, else `<context>/.containerignore` (buildah and podman's name); the first found
 * wins. Symlinks are followed, as BuildKit follows .dockerignore. A file that can't be read for another reason than
 * not being there fails the build, in one line.
 */
export async function readIgnoreFile(
  contextDir: string,
  dockerfilePath: string | undefined,
): Promise<{ patterns: string[]; file?: string }> {
  const candidates: string[] = [];
  if (dockerfilePath !== undefined && dockerfilePath !== '' && dockerfilePath !== '-') {
    candidates.push(`${resolve(dockerfilePath)}.dockerignore`);
  }
  candidates.push(join(resolve(contextDir), '.dockerignore'), join(resolve(contextDir), '.containerignore'));
  for (const file of candidates) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR') || isErrno(e, 'EISDIR')) continue;
      const code = (e as { code?: string }).code ?? String(e);
      throw new HoistError('IGNORE_FILE', `${file}: cannot read the ignore file (${code}); make it readable or remove it`, { cause: e });
    }
    return { patterns: parseIgnore(text), file };
  }
  return { patterns: [] };
}
