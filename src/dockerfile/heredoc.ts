/**
 * Here-document markers, as BuildKit finds them (parser.go heredocsFromLine / ParseHeredoc): the line is cut into
 * shell words with quotes and escapes kept, and each word matching `^(\d*)<<(-?)([^<]*)$` whose rest is one shell
 * word is a heredoc. A quoted delimiter (`<<"EOF"`, `<<'EOF'`, `<<E"O"F`) turns expansion of the body off.
 * BuildKit's lexer here always uses `\` as the escape character, whatever the escape directive says.
 */
import { isSpace, type Word } from './words.ts';

export interface HeredocMarker {
  /** The delimiter, quotes removed. */
  name: string;
  /** `<<-`: leading tabs are stripped from the body and the terminator line. */
  chomp: boolean;
  expand: boolean;
}

const HEREDOC = /^(\d*)<<(-?)([^<]*)$/;

/**
 * Shell words with quotes and escapes kept (BuildKit's lexer with RawQuotes and RawEscapes); `${...}` stays one
 * piece. An unterminated quote gives no words, as BuildKit ignores the lexer's error and finds no heredoc.
 */
function rawShellWords(line: string): Word[] {
  const words: Word[] = [];
  let word = '';
  let start = -1;
  const flush = (): void => {
    if (start >= 0) words.push({ text: word, off: start });
    word = '';
    start = -1;
  };
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] ?? '';
    if (isSpace(ch)) {
      flush();
      continue;
    }
    if (start < 0) start = i;
    if (ch === '\\') {
      word += line.slice(i, i + 2);
      i++;
    } else if (ch === "'" || ch === '"') {
      let j = i + 1;
      while (j < line.length && line[j] !== ch) j += ch === '"' && line[j] === '\\' ? 2 : 1;
      if (j >= line.length) return [];
      word += line.slice(i, j + 1);
      i = j;
    } else if (ch === '$' && line[i + 1] === '{') {
      let depth = 0;
      let j = i + 1;
      for (; j < line.length; j++) {
        if (line[j] === '{') depth++;
        else if (line[j] === '}' && --depth === 0) break;
      }
      word += line.slice(i, j + 1);
      i = j;
    } else {
      word += ch;
    }
  }
  flush();
  return words;
}

/** The delimiter word with quotes and escapes removed, or undefined when it is not exactly one shell word. */
function unquoteOneWord(rest: string): { text: string; quoted: boolean } | undefined {
  let text = '';
  let quoted = false;
  let words = 0;
  let inWord = false;
  for (let i = 0; i < rest.length; i++) {
    const ch = rest[i] ?? '';
    if (isSpace(ch)) {
      inWord = false;
      continue;
    }
    if (!inWord) {
      inWord = true;
      words++;
    }
    if (ch === '\\') {
      text += rest[i + 1] ?? '';
      i++;
    } else if (ch === "'" || ch === '"') {
      quoted = true;
      let j = i + 1;
      for (; j < rest.length && rest[j] !== ch; j++) {
        if (ch === '"' && rest[j] === '\\' && j + 1 < rest.length && '"$\\'.includes(rest[j + 1] ?? '')) j++;
        text += rest[j] ?? '';
      }
      if (j >= rest.length) return undefined;
      i = j;
    } else {
      text += ch;
    }
  }
  return words === 1 ? { text, quoted } : undefined;
}

/** BuildKit's ParseHeredoc: the marker a single word stands for, if any (`<<EOF`, `<<-"EOF"`, `3<<EOF`). */
export function parseHeredocWord(word: string): HeredocMarker | undefined {
  const m = HEREDOC.exec(word);
  const rest = m?.[3];
  if (m === null || rest === undefined || rest === '') return undefined;
  const w = unquoteOneWord(rest);
  if (w === undefined || w.text === '') return undefined;
  return { name: w.text, chomp: m[2] === '-', expand: !w.quoted };
}

/** Every heredoc marker on an instruction line, in order, with its offset in the line. */
export function heredocsFromLine(line: string): Array<HeredocMarker & { off: number }> {
  const found: Array<HeredocMarker & { off: number }> = [];
  for (const w of rawShellWords(line)) {
    const h = parseHeredocWord(w.text);
    if (h !== undefined) found.push({ ...h, off: w.off });
  }
  return found;
}

/** BuildKit's ChompHeredocContent: leading tabs off every line (`<<-`). */
export function chompHeredoc(content: string): string {
  return content.replace(/^\t+/gm, '');
}
