/**
 * One instruction line → one Instruction, by BuildKit's rules (parser/line_parsers.go for the word forms,
 * instructions/parse.go for arguments and flags). Values stay raw; the builder expands them when the step runs.
 *
 * Where BuildKit is lax and the result can only fail later or silently do the wrong thing, this stops with a
 * positioned error instead: unknown instructions (also as ONBUILD triggers), a bracketed value that was clearly meant
 * as exec form but is not valid JSON, an empty RUN/CMD/ENTRYPOINT, and ARG names with quotes or `$`.
 */
import { checkFlags, parseGoDuration } from './flags.ts';
import { parseHeredocWord } from './heredoc.ts';
import type { LineScanner } from './scanner.ts';
import { posAt, q, syntaxError, type LogicalLine } from './source.ts';
import { suggest } from './suggest.ts';
import type { CommandForm, Flag, Heredoc, Instruction, KeyValue, Pos } from './types.ts';
import { extractBuilderFlags, isSpace, parseWords, splitWhitespace, trimSpace, type Word } from './words.ts';

const INSTRUCTIONS = [
  'FROM',
  'RUN',
  'CMD',
  'COPY',
  'ADD',
  'ENV',
  'ARG',
  'LABEL',
  'EXPOSE',
  'VOLUME',
  'WORKDIR',
  'USER',
  'ENTRYPOINT',
  'SHELL',
  'HEALTHCHECK',
  'ONBUILD',
  'STOPSIGNAL',
  'MAINTAINER',
] as const;
const KNOWN = new Set<string>(INSTRUCTIONS);

/** BuildKit's stage name rule, applied to the lowercased name. */
const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** One instruction line cut as BuildKit's splitCommand cuts it; offsets are into the logical line. */
export interface Node {
  /** The keyword as written, and upper-cased. */
  word: string;
  keyword: string;
  kwOff: number;
  flagWords: Word[];
  /** The arguments after the flags, trimmed. */
  args: string;
  argsOff: number;
}

/** What the parser works with for one logical line. */
export interface Ctx {
  file: string;
  escape: '\\' | '`';
  ll: LogicalLine;
  scanner: LineScanner;
}

export function at(ctx: Ctx, off: number): Pos {
  return posAt(ctx.file, ctx.ll, off);
}

/** BuildKit's splitCommand: keyword, leading `--` flags, then the trimmed arguments. */
export function splitCommand(text: string, base: number, escape: string): Node {
  const t = trimSpace(text);
  const m = /[\t\v\f\r ]+/.exec(t.text);
  const word = m === null ? t.text : t.text.slice(0, m.index);
  const node: Node = { word, keyword: word.toUpperCase(), kwOff: base + t.off, flagWords: [], args: '', argsOff: 0 };
  node.argsOff = base + t.off + t.text.length;
  if (m !== null) {
    const restStart = m.index + m[0].length;
    const rest = t.text.slice(restStart);
    const restBase = base + t.off + restStart;
    const { flags, restOff } = extractBuilderFlags(rest, escape, restBase);
    node.flagWords = flags;
    const args = trimSpace(rest.slice(restOff - restBase));
    node.args = args.text;
    node.argsOff = restOff + args.off;
  }
  return node;
}

type JsonResult = { kind: 'json'; args: string[] } | { kind: 'text' };

/**
 * BuildKit's parseJSON/parseMaybeJSON: a JSON array of strings is exec form; a JSON array holding anything else is
 * an error; anything else is text. One addition: text that was plainly meant as JSON (`['a', 'b']`, `["a" "b"]`,
 * `["a",]`) is an error too, where BuildKit would quietly run it through a shell. A `[ -f x ]` test stays shell form.
 */
function maybeJson(ctx: Ctx, keyword: string, args: string, off: number): JsonResult {
  if (!args.startsWith('[')) return { kind: 'text' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    const meant = args.endsWith(']') && (/^\[["'\]]/.test(args) || /["']\s*,\s*["']/.test(args) || /,\s*\]$/.test(args));
    if (meant) {
      throw syntaxError(
        at(ctx, off),
        `${keyword} ${args} is not a valid JSON array: exec form needs double-quoted strings separated by commas, e.g. ["/bin/app", "--flag"]`,
      );
    }
    return { kind: 'text' };
  }
  if (!Array.isArray(parsed)) return { kind: 'text' };
  if (!parsed.every((x) => typeof x === 'string')) {
    throw syntaxError(at(ctx, off), `${keyword} ${args}: a JSON array here must hold strings only; quote every element`);
  }
  return { kind: 'json', args: parsed as string[] };
}

/** The instructions a heredoc may follow (BuildKit's heredocDirectives), in shell/word form only. */
export function takesHeredocs(ctx: Ctx, node: Node): boolean {
  if (node.keyword === 'ONBUILD') {
    return node.args !== '' && takesHeredocs(ctx, splitCommand(node.args, node.argsOff, ctx.escape));
  }
  if (node.keyword !== 'RUN' && node.keyword !== 'COPY' && node.keyword !== 'ADD') return false;
  return jsonStrings(node.args) === undefined;
}

/** The strings of a JSON array of strings, else undefined. */
function jsonStrings(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(args);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
  } catch {
    return undefined;
  }
}

/** A heredoc as read: the model's view (tabs stripped for `<<-`) and the body as written (for ONBUILD triggers). */
export interface ReadHeredoc {
  doc: Heredoc;
  raw: string;
}

/** The instruction's flags, checked against what it accepts. */
function flagsOf(ctx: Ctx, node: Node): Flag[] {
  return checkFlags(node.keyword, node.flagWords.map((w) => w.text), (i) => at(ctx, node.flagWords[i]?.off ?? 0));
}

/** RUN/CMD/ENTRYPOINT/HEALTHCHECK CMD: exec form for a JSON array of strings, else the text for the shell. */
function commandForm(ctx: Ctx, keyword: string, args: string, off: number, kwPos: Pos): CommandForm {
  if (args === '') throw syntaxError(kwPos, `${keyword} needs a command: ${keyword} <command> or ${keyword} ["executable", "arg"]`);
  const j = maybeJson(ctx, keyword, args, off);
  if (j.kind === 'json') {
    if (j.args.length === 0 && (keyword === 'RUN' || keyword === 'HEALTHCHECK CMD')) {
      throw syntaxError(at(ctx, off), `${keyword} [] has no command; give one`);
    }
    return { kind: 'exec', args: j.args };
  }
  return { kind: 'shell', text: args };
}

/** BuildKit's parseNameVal: `K=V K2="V 2"` (quotes kept) or the legacy `K V V` (the rest of the line is the value). */
function keyValues(ctx: Ctx, node: Node): KeyValue[] {
  const kw = node.keyword;
  const words = parseWords(node.args, ctx.escape, node.argsOff);
  const first = words[0];
  if (first === undefined) throw syntaxError(at(ctx, node.kwOff), `${kw} needs at least one name=value pair`);
  if (!first.text.includes('=')) {
    const m = /[\t\v\f\r ]+/.exec(node.args);
    if (m === null) {
      throw syntaxError(at(ctx, first.off), `${kw} ${node.args} has no value: write ${kw} ${node.args}=<value>`);
    }
    return [{ key: node.args.slice(0, m.index), value: node.args.slice(m.index + m[0].length) }];
  }
  return words.map((w) => {
    const eq = w.text.indexOf('=');
    if (eq < 0) throw syntaxError(at(ctx, w.off), `${kw}: no = in ${q(w.text)}; write name=value`);
    if (eq === 0) throw syntaxError(at(ctx, w.off), `${kw}: a name is missing before = in ${q(w.text)}`);
    return { key: w.text.slice(0, eq), value: w.text.slice(eq + 1) };
  });
}

function healthcheckFlags(flags: Flag[]): void {
  for (const f of flags) {
    const v = f.value ?? '';
    if (f.name === 'retries') {
      if (!/^[+-]?\d+$/.test(v) || Math.abs(Number(v)) > 2147483647) {
        throw syntaxError(f.pos, `--retries=${v} is not a whole number; write e.g. --retries=3`);
      }
      if (Number(v) < 0) throw syntaxError(f.pos, `--retries cannot be negative (${v})`);
      continue;
    }
    if (v === '') continue;
    const ns = parseGoDuration(v);
    if (ns === undefined) throw syntaxError(f.pos, `--${f.name}=${v} is not a duration; write e.g. 30s, 1m30s or 500ms`);
    if (ns !== 0 && ns < 1e6) throw syntaxError(f.pos, `--${f.name}=${v} is shorter than the minimum of 1ms`);
  }
}

/** Builds the instruction for a node whose heredoc bodies (if any) have been read. */
export function buildInstruction(ctx: Ctx, node: Node, heredocs: ReadHeredoc[], original: string): Instruction {
  const pos = at(ctx, node.kwOff);
  const kw = node.keyword;
  const flags = flagsOf(ctx, node);
  const base = { pos, original, flags };
  const args = node.args;
  switch (kw) {
    case 'FROM': {
      const words = splitWhitespace(args, node.argsOff);
      const [image, as, name] = words;
      if (image === undefined) throw syntaxError(pos, 'FROM needs an image: FROM <image> [AS <name>]');
      if (words.length === 2 && as !== undefined && as.text.toLowerCase() === 'as') {
        throw syntaxError(at(ctx, as.off), `FROM ${image.text} AS needs a stage name after AS`);
      }
      if (words.length === 1) return { kind: 'FROM', ...base, image: image.text };
      if (words.length !== 3 || as === undefined || name === undefined || as.text.toLowerCase() !== 'as') {
        throw syntaxError(at(ctx, words[1]?.off ?? 0), `FROM takes an image and optionally AS <name>: ${q(args)} has ${words.length} words`);
      }
      const stageName = name.text.toLowerCase();
      if (!STAGE_NAME.test(stageName)) {
        throw syntaxError(at(ctx, name.off), `invalid stage name ${q(name.text)}: start with a letter, then use letters, digits, -, _ or .`);
      }
      return { kind: 'FROM', ...base, image: image.text, stageName };
    }
    case 'RUN': {
      const command = commandForm(ctx, kw, args, node.argsOff, pos);
      return { kind: 'RUN', ...base, command, heredocs: heredocs.map((h) => h.doc) };
    }
    case 'CMD':
    case 'ENTRYPOINT':
      return { kind: kw, ...base, command: commandForm(ctx, kw, args, node.argsOff, pos) };
    case 'COPY':
    case 'ADD': {
      const j = maybeJson(ctx, kw, args, node.argsOff);
      const words: Word[] = j.kind === 'json' ? j.args.map((text) => ({ text, off: node.argsOff })) : splitWhitespace(args, node.argsOff);
      const dest = words[words.length - 1];
      if (dest === undefined || words.length < 2) {
        throw syntaxError(pos, `${kw} needs a source and a destination: ${kw} <src>... <dest>`);
      }
      if (j.kind === 'text' && parseHeredocWord(dest.text) !== undefined) {
        throw syntaxError(at(ctx, dest.off), `${kw} cannot take a heredoc as its destination; put the destination path last`);
      }
      const sources = words.slice(0, -1).map((w) => (j.kind === 'text' ? parseHeredocWord(w.text)?.name : undefined) ?? w.text);
      return { kind: kw, ...base, sources, dest: dest.text, heredocs: heredocs.map((h) => h.doc) };
    }
    case 'ENV':
    case 'LABEL':
      return { kind: kw, ...base, pairs: keyValues(ctx, node) };
    case 'ARG': {
      const words = parseWords(args, ctx.escape, node.argsOff);
      if (words.length === 0) throw syntaxError(pos, 'ARG needs a name: ARG <name>[=<default>]');
      const list = words.map((w) => {
        const eq = w.text.indexOf('=');
        const name = eq < 0 ? w.text : w.text.slice(0, eq);
        if (name === '') throw syntaxError(at(ctx, w.off), `ARG: a name is missing before = in ${q(w.text)}`);
        if (/["'`$\\{}]/.test(name)) {
          throw syntaxError(at(ctx, w.off), `invalid ARG name ${q(name)}: use letters, digits and _ (no quotes, $ or braces)`);
        }
        return eq < 0 ? { name } : { name, default: w.text.slice(eq + 1) };
      });
      return { kind: 'ARG', ...base, args: list };
    }
    case 'EXPOSE': {
      const words = splitWhitespace(args, node.argsOff).map((w) => w.text);
      if (words.length === 0) throw syntaxError(pos, 'EXPOSE needs at least one port: EXPOSE 80 443/tcp');
      return { kind: 'EXPOSE', ...base, words };
    }
    case 'VOLUME': {
      const j = maybeJson(ctx, kw, args, node.argsOff);
      const words = j.kind === 'json' ? j.args.map((s) => s.trim()) : splitWhitespace(args, node.argsOff).map((w) => w.text);
      if (words.length === 0) throw syntaxError(pos, 'VOLUME needs at least one path: VOLUME /data');
      if (words.includes('')) throw syntaxError(at(ctx, node.argsOff), 'VOLUME paths cannot be empty strings');
      return { kind: 'VOLUME', ...base, words };
    }
    case 'SHELL': {
      const j = maybeJson(ctx, kw, args, node.argsOff);
      if (j.kind !== 'json') {
        throw syntaxError(at(ctx, args === '' ? node.kwOff : node.argsOff), 'SHELL needs a JSON array: SHELL ["/bin/sh", "-c"]');
      }
      if (j.args.length === 0) throw syntaxError(at(ctx, node.argsOff), 'SHELL [] is empty: give the shell and its arguments');
      return { kind: 'SHELL', ...base, words: j.args };
    }
    case 'USER':
    case 'WORKDIR':
    case 'STOPSIGNAL':
    case 'MAINTAINER':
      if (args === '') throw syntaxError(pos, `${kw} needs a value`);
      return { kind: kw, ...base, value: args };
    case 'HEALTHCHECK': {
      let sep = 0;
      while (sep < args.length && !isSpace(args[sep])) sep++;
      const typ = args.slice(0, sep).toUpperCase();
      let next = sep;
      while (next < args.length && isSpace(args[next])) next++;
      const rest = args.slice(next);
      if (typ === 'NONE') {
        if (rest !== '') throw syntaxError(at(ctx, node.argsOff + next), 'HEALTHCHECK NONE takes no arguments; remove them');
        return { kind: 'HEALTHCHECK', ...base };
      }
      if (typ !== 'CMD') {
        const what = typ === '' ? 'HEALTHCHECK needs a type' : `unknown HEALTHCHECK type ${q(args.slice(0, sep))}`;
        throw syntaxError(at(ctx, typ === '' ? node.kwOff : node.argsOff), `${what}: write HEALTHCHECK CMD <command> or HEALTHCHECK NONE`);
      }
      healthcheckFlags(flags);
      const command = commandForm(ctx, 'HEALTHCHECK CMD', rest, node.argsOff + next, at(ctx, node.argsOff));
      return { kind: 'HEALTHCHECK', ...base, command };
    }
    case 'ONBUILD': {
      if (args === '') throw syntaxError(pos, 'ONBUILD needs an instruction: ONBUILD <instruction>');
      const child = splitCommand(args, node.argsOff, ctx.escape);
      if (child.keyword === 'ONBUILD') {
        throw syntaxError(at(ctx, child.kwOff), 'ONBUILD ONBUILD is not allowed (triggers cannot chain)');
      }
      if (child.keyword === 'FROM' || child.keyword === 'MAINTAINER') {
        throw syntaxError(at(ctx, child.kwOff), `${child.keyword} is not allowed as an ONBUILD trigger`);
      }
      // The trigger is checked now so mistakes surface here, not in some later build of a child image.
      checkKnown(ctx, child);
      buildInstruction(ctx, child, heredocs, original);
      // As BuildKit stores it: the text after ONBUILD, each heredoc body and terminator appended.
      let trigger = original.replace(/^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*/i, '');
      for (const h of heredocs) trigger += `\n${h.raw}${h.doc.name}`;
      return { kind: 'ONBUILD', ...base, trigger };
    }
  }
  throw syntaxError(pos, `unknown instruction ${node.word}`);
}

export function checkKnown(ctx: Ctx, node: Node): void {
  if (KNOWN.has(node.keyword)) return;
  const near = suggest(node.word, INSTRUCTIONS);
  const hint = near === undefined ? `; use one of ${INSTRUCTIONS.join(', ')}` : ` (did you mean ${near}?)`;
  throw syntaxError(at(ctx, node.kwOff), `unknown instruction ${node.word}${hint}`);
}
