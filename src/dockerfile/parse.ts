/**
 * Dockerfile text → the model in ./types.ts, as BuildKit reads it (moby/buildkit frontend/dockerfile/parser and
 * instructions/parse.go): the same line joining, directives, flags, word splitting, JSON-or-shell forms and heredocs.
 * Values stay raw; the builder expands them when each step runs. This module drives the line scanner, reads heredoc
 * bodies and groups instructions into stages (a stage name used twice is an error); ./instructions.ts turns each
 * line into an Instruction.
 *
 * dockerfile-ast is not used: it is an editor parser (heredoc bodies inside the arguments, quote-blind word
 * splitting, no `check` directive, comments kept in continuations), and correcting it would take more code than this
 * port of BuildKit's few hundred lines.
 */
import { chompHeredoc, heredocsFromLine } from './heredoc.ts';
import { at, buildInstruction, checkKnown, splitCommand, takesHeredocs, type Ctx, type ReadHeredoc } from './instructions.ts';
import { LineScanner } from './scanner.ts';
import { q, syntaxError } from './source.ts';
import type { ArgInstruction, Dockerfile, Pos, Stage } from './types.ts';
import { trimSpace } from './words.ts';

/** Reads the bodies of the heredocs the line opens, in order, from the lines after it. */
function readHeredocs(ctx: Ctx): ReadHeredoc[] {
  const read: ReadHeredoc[] = [];
  for (const marker of heredocsFromLine(ctx.ll.text)) {
    const body = ctx.scanner.readHeredoc(marker.name, marker.chomp);
    if (body === undefined) {
      throw syntaxError(
        at(ctx, marker.off),
        `unterminated heredoc <<${marker.chomp ? '-' : ''}${marker.name}: the file ends before a line ${marker.name}; add it`,
      );
    }
    ctx.ll.endLine = body.endLine;
    const content = marker.chomp ? chompHeredoc(body.content) : body.content;
    read.push({ doc: { name: marker.name, content, expand: marker.expand }, raw: body.content });
  }
  return read;
}

/** Parses a Dockerfile. Every problem is a HoistError('DOCKERFILE_SYNTAX') whose message starts `FILE:LINE:COL: `. */
export function parseDockerfile(text: string, file: string): Dockerfile {
  const scanner = new LineScanner(text, file);
  const globalArgs: ArgInstruction[] = [];
  const stages: Stage[] = [];
  const names = new Map<string, Pos>();
  for (let ll = scanner.nextLine(); ll !== undefined; ll = scanner.nextLine()) {
    const ctx: Ctx = { file, escape: scanner.escape, ll, scanner };
    const node = splitCommand(ll.text, 0, ctx.escape);
    checkKnown(ctx, node);
    const heredocs = takesHeredocs(ctx, node) ? readHeredocs(ctx) : [];
    const ins = buildInstruction(ctx, node, heredocs, trimSpace(ll.text).text);
    if (ins.kind === 'FROM') {
      const stage: Stage = { index: stages.length, from: ins, instructions: [] };
      if (ins.stageName !== undefined) {
        const prev = names.get(ins.stageName);
        if (prev !== undefined) {
          throw syntaxError(ins.pos, `stage name ${q(ins.stageName)} is already used at line ${prev.line}; rename one of them`);
        }
        names.set(ins.stageName, ins.pos);
        stage.name = ins.stageName;
      }
      stages.push(stage);
      continue;
    }
    const current = stages[stages.length - 1];
    if (current !== undefined) current.instructions.push(ins);
    else if (ins.kind === 'ARG') globalArgs.push(ins);
    else throw syntaxError(ins.pos, `no FROM before ${ins.kind}: start the build stage with FROM <image> (only ARG may come before the first FROM)`);
  }
  if (stages.length === 0) {
    const first = globalArgs[0];
    if (first !== undefined) throw syntaxError(first.pos, 'no FROM instruction: add FROM <image> after the ARGs');
    throw syntaxError({ file, line: Math.max(1, scanner.lineCount), col: 1 }, 'the Dockerfile has no instructions: add FROM <image>');
  }
  return { file, directives: { ...scanner.directives }, escape: scanner.escape, globalArgs, stages };
}
