/**
 * Dockerfile word expansion: a port of BuildKit's shell lexer (moby/buildkit frontend/dockerfile/shell/lex.go,
 * `Lex.ProcessWord` / `Lex.ProcessWords`), checked against BuildKit's own tables in
 * testdata/conformance/buildkit-shell/.
 *
 * The structure follows lex.go function by function on purpose: the behaviour is defined by that code (including
 * its quirks, e.g. `$1` expands to "", `\` at the end of a word vanishes, `${V//p/r}` expands `$0` in r like Go's
 * Regexp.ReplaceAllString but `${V/p/r}` does not), so keeping the shape makes divergences easy to spot.
 * Characters are handled as Unicode code points, as Go's text/scanner yields runes.
 */
import { HoistError } from '../errors.ts';

export interface ExpandOptions {
  /** The Dockerfile escape character (`# escape=` directive). Default `\`. */
  escape?: '\\' | '`';
}

export interface Expanded {
  value: string;
  /** names of variables the word referenced (set or not) */
  used: Set<string>;
}

export interface ExpandedWords {
  words: string[];
  used: Set<string>;
}

/** ProcessWord: one word, quotes removed, variables expanded. Throws HoistError('BAD_EXPANSION', msg) on error. */
export function expandWord(word: string, env: ReadonlyMap<string, string>, opts?: ExpandOptions): Expanded {
  const sw = new ShellWord(word, env, opts?.escape ?? '\\');
  const { result } = sw.process(word);
  return { value: result, used: sw.used };
}

/** ProcessWords: splits into words as BuildKit does (unquoted whitespace separates; expansion results split too). */
export function expandWords(word: string, env: ReadonlyMap<string, string>, opts?: ExpandOptions): ExpandedWords {
  const sw = new ShellWord(word, env, opts?.escape ?? '\\');
  const { words } = sw.process(word);
  return { words, used: sw.used };
}

/** text/scanner's EOF. */
const EOF = -1;

/** Internal error carrying BuildKit's inner message; wrapped once at the top like errors.Wrapf in lex.go. */
class LexError extends Error {}

/** Go's string(rune): a negative rune (EOF) becomes U+FFFD. */
function runeStr(ch: number): string {
  return ch < 0 || ch > 0x10ffff ? '\uFFFD' : String.fromCodePoint(ch);
}

// Go's unicode.IsSpace / IsDigit / IsLetter; the Unicode properties coincide with Go's tables (Latin-1 included).
const SPACE_RE = /^\p{White_Space}$/u;
const DIGIT_RE = /^\p{Nd}$/u;
const LETTER_RE = /^\p{L}$/u;
function isSpace(ch: number): boolean {
  if (ch < 0x80) return ch === 0x20 || (ch >= 0x09 && ch <= 0x0d);
  return ch >= 0 && SPACE_RE.test(String.fromCodePoint(ch));
}
function isDigit(ch: number): boolean {
  if (ch < 0x80) return ch >= 0x30 && ch <= 0x39;
  return DIGIT_RE.test(String.fromCodePoint(ch));
}
function isLetter(ch: number): boolean {
  if (ch < 0x80) return (ch >= 0x41 && ch <= 0x5a) || (ch >= 0x61 && ch <= 0x7a);
  return LETTER_RE.test(String.fromCodePoint(ch));
}

/** The part of Go's text/scanner lex.go uses: Peek/Next over runes; a BOM at the very start is skipped. */
class Scanner {
  private readonly cps: number[];
  private pos = 0;
  constructor(src: string) {
    this.cps = Array.from(src, (c) => c.codePointAt(0) as number);
    if (this.cps[0] === 0xfeff) this.pos = 1;
  }
  peek(): number {
    return this.pos < this.cps.length ? (this.cps[this.pos] as number) : EOF;
  }
  next(): number {
    const ch = this.peek();
    if (ch !== EOF) this.pos++;
    return ch;
  }
}

/** lex.go wordsStruct: accumulates the split words of ProcessWords. */
class Words {
  private word = '';
  private readonly words: string[] = [];
  private inWord = false;

  addChar(ch: number): void {
    if (isSpace(ch) && this.inWord) {
      if (this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else if (!isSpace(ch)) {
      this.addRawChar(ch);
    }
  }
  addRawChar(ch: number): void {
    this.word += runeStr(ch);
    this.inWord = true;
  }
  addString(str: string): void {
    for (const c of str) this.addChar(c.codePointAt(0) as number);
  }
  addRawString(str: string): void {
    this.word += str;
    this.inWord = true;
  }
  getWords(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

const DOLLAR = 0x24; // $
const SQUOTE = 0x27; // '
const DQUOTE = 0x22; // "
const LBRACE = 0x7b; // {
const RBRACE = 0x7d; // }
const COLON = 0x3a; // :
const SLASH = 0x2f; // /
const BACKSLASH = 0x5c; // \

class ShellWord {
  private readonly scanner: Scanner;
  private readonly escapeToken: number;
  private rawEscapes = false;
  /** matches ∪ nonmatches of lex.go: every name getEnv was asked about. */
  readonly used = new Set<string>();

  private readonly envs: ReadonlyMap<string, string>;

  constructor(word: string, envs: ReadonlyMap<string, string>, escape: '\\' | '`') {
    this.envs = envs;
    this.scanner = new Scanner(word);
    this.escapeToken = escape.codePointAt(0) as number;
  }

  process(source: string): { result: string; words: string[] } {
    try {
      return this.processStopOn(EOF, this.rawEscapes);
    } catch (e) {
      if (e instanceof LexError) {
        throw new HoistError('BAD_EXPANSION', `failed to process ${goQuote(source)}: ${e.message}`);
      }
      throw e;
    }
  }

  /** Process the word until its end or the (unescaped, unquoted) stopChar, which is consumed. */
  private processStopOn(stopChar: number, rawEscapes: boolean): { result: string; words: string[] } {
    let result = '';
    const words = new Words();
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      while (this.scanner.peek() !== EOF) {
        let ch = this.scanner.peek();
        if (stopChar !== EOF && ch === stopChar) {
          this.scanner.next();
          return { result, words: words.getWords() };
        }
        if (ch === DOLLAR || ch === SQUOTE || ch === DQUOTE) {
          const tmp =
            ch === DOLLAR ? this.processDollar() : ch === SQUOTE ? this.processSingleQuote() : this.processDoubleQuote();
          result += tmp;
          // Only expansion results are split into words; quoted text stays one piece.
          if (ch === DOLLAR) words.addString(tmp);
          else words.addRawString(tmp);
        } else {
          ch = this.scanner.next();
          if (ch === this.escapeToken) {
            if (this.rawEscapes) {
              words.addRawChar(ch);
              result += runeStr(ch);
            }
            // The escape char escapes the next char; at the end of the word it is dropped.
            ch = this.scanner.next();
            if (ch === EOF) break;
            words.addRawChar(ch);
          } else {
            words.addChar(ch);
          }
          result += runeStr(ch);
        }
      }
      if (stopChar !== EOF) {
        throw new LexError(`unexpected end of statement while looking for matching ${runeStr(stopChar)}`);
      }
      return { result, words: words.getWords() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  /** Everything up to the next ' is literal; a ' cannot be escaped inside. */
  private processSingleQuote(): string {
    let result = '';
    this.scanner.next();
    for (;;) {
      const ch = this.scanner.next();
      if (ch === EOF) throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === SQUOTE) return result;
      result += runeStr(ch);
    }
  }

  /** Literal except $ expansions; the escape char only escapes ", $ and itself (otherwise it stays). */
  private processDoubleQuote(): string {
    let result = '';
    this.scanner.next();
    for (;;) {
      const p = this.scanner.peek();
      if (p === EOF) throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (p === DQUOTE) {
        this.scanner.next();
        return result;
      }
      if (p === DOLLAR) {
        result += this.processDollar();
        continue;
      }
      let ch = this.scanner.next();
      if (ch === this.escapeToken) {
        if (this.rawEscapes) result += runeStr(ch);
        const n = this.scanner.peek();
        if (n === EOF) continue; // escape at the end of the word is dropped (then the quote error follows)
        if (n === DQUOTE || n === DOLLAR || n === this.escapeToken) ch = this.scanner.next();
      }
      result += runeStr(ch);
    }
  }

  /** Runs a nested processStopOn, turning "ran out of input" into BuildKit's `missing X` message. */
  private nested(stopChar: number, rawEscapes: boolean, missing: string): string {
    try {
      return this.processStopOn(stopChar, rawEscapes).result;
    } catch (e) {
      if (e instanceof LexError && this.scanner.peek() === EOF) throw new LexError(missing);
      throw e;
    }
  }

  private processDollar(): string {
    this.scanner.next();

    // $xxx case
    if (this.scanner.peek() !== LBRACE) {
      const name = this.processName();
      if (name === '') return '$';
      return this.getEnv(name).value;
    }

    this.scanner.next();
    const first = this.scanner.peek();
    if (first === EOF) throw new LexError("syntax error: missing '}'");
    if (first === LBRACE || first === RBRACE || first === COLON) throw new LexError('syntax error: bad substitution');

    const name = this.processName();
    let ch = this.scanner.next();
    let chs = runeStr(ch);
    let nullIsUnset = false;

    if (ch === RBRACE) return this.getEnv(name).value;

    if (ch === COLON) {
      nullIsUnset = true;
      ch = this.scanner.next();
      chs += runeStr(ch);
    }
    // After ':' any char falls through to the modifier handling (Go `fallthrough`); the switch rejects it later.
    if (nullIsUnset || ch === 0x2b || ch === 0x2d || ch === 0x3f || ch === 0x23 || ch === 0x25) {
      const rawEscapes = ch === 0x23 || ch === 0x25; // # and % keep escapes for the pattern compiler
      if (nullIsUnset && rawEscapes) throw new LexError(`unsupported modifier (${chs}) in substitution`);
      let word = this.nested(RBRACE, rawEscapes, "syntax error: missing '}'");

      const { value, set } = this.getEnv(name);
      switch (ch) {
        case 0x2d: // -
          return !set || (nullIsUnset && value === '') ? word : value;
        case 0x2b: // +
          return !set || (nullIsUnset && value === '') ? '' : word;
        case 0x3f: // ?
          if (!set) throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
          if (nullIsUnset && value === '') {
            throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
          }
          return value;
        case 0x25: // %
        case 0x23: {
          // #: %/# remove the shortest match, %%/## the longest
          let greedy = false;
          if (word.length > 0 && word.codePointAt(0) === ch) {
            greedy = true;
            word = word.slice(1);
          }
          return ch === 0x25 ? trimSuffix(word, value, greedy) : trimPrefix(word, value, greedy);
        }
        default:
          throw new LexError(`unsupported modifier (${chs}) in substitution`);
      }
    }

    if (ch === SLASH) {
      const replaceAll = this.scanner.peek() === SLASH;
      if (replaceAll) this.scanner.next();
      const pattern = this.nested(SLASH, true, "syntax error: missing '/' in ${}");
      const replacement = this.nested(RBRACE, true, "syntax error: missing '}'");
      let { value } = this.getEnv(name);
      const re = compilePattern(pattern, true, false);
      if (replaceAll) {
        value = goReplaceAll(re, value, replacement);
      } else {
        re.lastIndex = 0;
        const m = re.exec(value);
        // A single replacement is plain concatenation in lex.go (no $-template expansion).
        if (m) value = value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
      }
      return value;
    }

    throw new LexError(`unsupported modifier (${chs}) in substitution`);
  }

  /** A name: letters, digits, _; or a run of digits (positional); or one special parameter char. */
  private processName(): string {
    let name = '';
    while (this.scanner.peek() !== EOF) {
      const ch = this.scanner.peek();
      if (name.length === 0 && isDigit(ch)) {
        while (this.scanner.peek() !== EOF && isDigit(this.scanner.peek())) name += runeStr(this.scanner.next());
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) return runeStr(this.scanner.next());
      if (!isLetter(ch) && !isDigit(ch) && ch !== 0x5f) break;
      name += runeStr(this.scanner.next());
    }
    return name;
  }

  private getEnv(name: string): { value: string; set: boolean } {
    this.used.add(name);
    const value = this.envs.get(name);
    return value === undefined ? { value: '', set: false } : { value, set: true };
  }
}

/** Special parameters of POSIX sh (@ * # ? - $ ! 0); never set in a Dockerfile. */
function isSpecialParam(ch: number): boolean {
  switch (ch) {
    case 0x40: // @
    case 0x2a: // *
    case 0x23: // #
    case 0x3f: // ?
    case 0x2d: // -
    case 0x24: // $
    case 0x21: // !
    case 0x30: // 0
      return true;
  }
  return false;
}

/**
 * lex.go convertShellPatternToRegex: `*` any string, `?` one char, `\` escapes `*`, `?`, `\` (and is dropped before
 * `}` and `/`); everything else is literal — there are no bracket expressions, `[` is an ordinary char.
 * Go's `.` does not match "\n" (JS's also excludes \r, U+2028, U+2029), hence `[^\n]`.
 */
function compilePattern(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const s = new Scanner(pattern);
  let out = anchored ? '^' : '';
  const any = '[^\\n]';
  const star = greedy ? `${any}*` : `${any}*?`;
  for (let tok = s.next(); tok !== EOF; tok = s.next()) {
    switch (tok) {
      case 0x2a: // *
        out += star;
        continue;
      case 0x3f: // ?
        out += any;
        continue;
      case BACKSLASH:
        if (s.peek() === RBRACE || s.peek() === SLASH) continue;
        out += '\\';
        tok = s.next();
        if (tok !== 0x2a && tok !== 0x3f && tok !== BACKSLASH) {
          throw new LexError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${runeStr(tok)}'`);
        }
        break;
      case 0x5b: // [ ] { } . + ( ) | ^ $
      case 0x5d:
      case 0x7b:
      case 0x7d:
      case 0x2e:
      case 0x2b:
      case 0x28:
      case 0x29:
      case 0x7c:
      case 0x5e:
      case 0x24:
        out += '\\';
        break;
    }
    out += runeStr(tok);
  }
  return new RegExp(out, 'gu');
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const re = compilePattern(pattern, greedy, true);
  const m = re.exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

/** Reverses a pattern by code point but keeps `\x` pairs in order (a\*c -> c\*a). */
function reversePattern(pattern: string): string {
  const p = Array.from(pattern);
  const out: string[] = new Array<string>(p.length);
  const last = p.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = p[i] as string;
    const outIdx = last - i;
    if (tok === '\\' && i !== last) {
      out[outIdx - 1] = tok;
      out[outIdx] = p[i + 1] as string;
      i += 2;
    } else {
      out[outIdx] = tok;
      i++;
    }
  }
  return out.join('');
}

function reverseString(str: string): string {
  return Array.from(str).reverse().join('');
}

/** Shortest/longest suffix removal, done as a prefix match on the reversed value and pattern (as lex.go does). */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

/**
 * Go's Regexp.ReplaceAllString: an empty match right after a previous match is not replaced, and `$` in the
 * replacement is a template (`$0`/`${0}` the match, `$$` a `$`, other names empty).
 */
function goReplaceAll(re: RegExp, src: string, repl: string): string {
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length) {
    re.lastIndex = searchPos;
    const m = re.exec(src);
    if (!m) break;
    const a0 = m.index;
    const a1 = m.index + m[0].length;
    out += src.slice(lastMatchEnd, a0);
    if (a1 > lastMatchEnd || a0 === 0) out += goExpand(repl, m[0]);
    lastMatchEnd = a1;
    const cp = src.codePointAt(searchPos);
    const width = cp === undefined ? 0 : cp > 0xffff ? 2 : 1;
    if (searchPos + width > a1) searchPos += width;
    else if (searchPos + 1 > a1) searchPos++;
    else searchPos = a1;
  }
  return out + src.slice(lastMatchEnd);
}

/** Go's Regexp.expand for a regexp without capture groups. */
function goExpand(template: string, match: string): string {
  let out = '';
  let t = template;
  for (;;) {
    const i = t.indexOf('$');
    if (i < 0) break;
    out += t.slice(0, i);
    t = t.slice(i + 1);
    if (t.startsWith('$')) {
      out += '$';
      t = t.slice(1);
      continue;
    }
    const ex = goExtract(t);
    if (!ex) {
      out += '$';
      continue;
    }
    t = ex.rest;
    if (ex.num === 0) out += match;
  }
  return out + t;
}

function goExtract(str: string): { num: number; rest: string } | undefined {
  if (str === '') return undefined;
  let s = str;
  const brace = s[0] === '{';
  if (brace) s = s.slice(1);
  let i = 0;
  for (const c of s) {
    const cp = c.codePointAt(0) as number;
    if (!isLetter(cp) && !isDigit(cp) && cp !== 0x5f) break;
    i += c.length;
  }
  if (i === 0) return undefined;
  const name = s.slice(0, i);
  if (brace) {
    if (i >= s.length || s[i] !== '}') return undefined;
    i++;
  }
  let num = 0;
  for (const c of name) {
    if (c < '0' || c > '9' || num >= 1e8) {
      num = -1;
      break;
    }
    num = num * 10 + (c.charCodeAt(0) - 0x30);
  }
  if (name[0] === '0' && name.length > 1) num = -1;
  return { num, rest: s.slice(i) };
}

/** Go's %q (strconv.Quote), so messages match BuildKit's `failed to process "…"` and stay on one line. */
function goQuote(s: string): string {
  let out = '"';
  for (const c of s) {
    const cp = c.codePointAt(0) as number;
    switch (c) {
      case '"':
        out += '\\"';
        continue;
      case '\\':
        out += '\\\\';
        continue;
      case '\x07':
        out += '\\a';
        continue;
      case '\b':
        out += '\\b';
        continue;
      case '\f':
        out += '\\f';
        continue;
      case '\n':
        out += '\\n';
        continue;
      case '\r':
        out += '\\r';
        continue;
      case '\t':
        out += '\\t';
        continue;
      case '\v':
        out += '\\v';
        continue;
    }
    if (cp === 0x20 || /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(c)) out += c;
    else if (cp < 0x80) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp <= 0xffff) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += `\\U${cp.toString(16).padStart(8, '0')}`;
  }
  return out + '"';
}
