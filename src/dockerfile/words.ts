/**
 * The word splitters of BuildKit's Dockerfile parser (frontend/dockerfile/parser: line_parsers.go, split_command.go),
 * ported with one addition: every word carries its offset in the string it came from, so errors can point at it.
 *
 * None of these expand variables or (except the flag extractor, as BuildKit) remove quotes: the builder's shell lexer
 * does that when the step runs.
 */

/** A word and where it starts in the string it was cut from. */
export interface Word {
  text: string;
  off: number;
}

/** Go's unicode.IsSpace (Latin-1 spaces and the Unicode White_Space set). */
const SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

export function isSpace(ch: string | undefined): boolean {
  return ch !== undefined && SPACE.test(ch);
}

/** Go's strings.TrimSpace, also returning where the kept part starts. */
export function trimSpace(s: string): Word {
  let start = 0;
  let end = s.length;
  while (start < end && isSpace(s[start])) start++;
  while (end > start && isSpace(s[end - 1])) end--;
  return { text: s.slice(start, end), off: start };
}

/** Go's strings.TrimLeftFunc(s, unicode.IsSpace), returning the count of removed characters too. */
export function trimLeftSpace(s: string): Word {
  let start = 0;
  while (start < s.length && isSpace(s[start])) start++;
  return { text: s.slice(start), off: start };
}

/**
 * BuildKit's `reWhitespace.Split(rest, -1)` (`[\t\v\f\r ]+`) on a trimmed string: FROM, EXPOSE, and the shell form
 * of COPY/ADD/VOLUME split this way, with no regard for quotes.
 */
export function splitWhitespace(s: string, base = 0): Word[] {
  if (s === '') return [];
  const words: Word[] = [];
  const re = /[\t\v\f\r ]+/g;
  let last = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    words.push({ text: s.slice(last, m.index), off: base + last });
    last = m.index + m[0].length;
  }
  words.push({ text: s.slice(last), off: base + last });
  return words;
}

/**
 * BuildKit's parseWords: whitespace-separated words where quotes group, and quotes and escapes are KEPT (`a="b c"`
 * stays one word, quotes included). Used by ENV, LABEL and ARG; the lexer removes the quotes at expansion time.
 */
export function parseWords(rest: string, escape: string, base = 0): Word[] {
  const words: Word[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let start = 0;
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= rest.length; pos++) {
    let ch = rest[pos] ?? '';
    if (phase === 'spaces') {
      if (pos === rest.length) break;
      if (isSpace(ch)) continue;
      phase = 'word';
      start = pos;
    }
    if (pos === rest.length) {
      if (blankOK || word.length > 0) words.push({ text: word, off: base + start });
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push({ text: word, off: base + start });
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escape) {
        if (pos + 1 === rest.length) continue; // an escape token at the end of the line is dropped
        // Unquoted, the escape token and the character after it are both kept, even a quote.
        word += ch;
        pos++;
        ch = rest[pos] ?? '';
      }
      word += ch;
      continue;
    }
    // In quotes: the escape token is special except in single quotes.
    if (ch === quote) phase = 'word';
    if (ch === escape && quote !== "'") {
      if (pos + 1 === rest.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += ch;
      ch = rest[pos] ?? '';
    }
    word += ch;
  }
  return words;
}

/**
 * BuildKit's extractBuilderFlags: the leading `--name[=value]` words of an instruction's arguments. Quotes and escapes
 * in flags are removed here (as BuildKit does), so `--chown="a b"` is the flag `--chown=a b`. A bare `--` ends the
 * flags and is dropped. Returns the flags and where the remaining arguments start.
 */
export function extractBuilderFlags(line: string, escape: string, base = 0): { flags: Word[]; restOff: number } {
  const flags: Word[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let start = 0;
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    let ch = line[pos] ?? '';
    if (phase === 'spaces') {
      if (pos === line.length) break;
      if (isSpace(ch)) continue;
      // Only a word starting with `--` is a flag; the first other word starts the arguments.
      if (ch !== '-' || line[pos + 1] !== '-') return { flags, restOff: base + pos };
      phase = 'word';
      start = pos;
    }
    if (pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) flags.push({ text: word, off: base + start });
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (word === '--') return { flags, restOff: base + pos };
        if (blankOK || word.length > 0) flags.push({ text: word, off: base + start });
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === line.length) continue;
        pos++;
        ch = line[pos] ?? '';
      }
      word += ch;
      continue;
    }
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === escape) {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
      ch = line[pos] ?? '';
    }
    word += ch;
  }
  return { flags, restOff: base + line.length };
}
