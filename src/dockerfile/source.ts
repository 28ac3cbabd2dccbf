/**
 * Where things are in a Dockerfile: logical lines (continuation lines joined, as BuildKit joins them) keep a map back
 * to the physical lines and columns they came from, so every error can say `Dockerfile:LINE:COL`.
 */
import { HoistError } from '../errors.ts';
import type { Pos } from './types.ts';

/** From logical offset `start` on, the text came from physical `line`, starting at column `col` (1-based). */
export interface Segment {
  start: number;
  line: number;
  col: number;
}

/** One instruction's text as BuildKit sees it (`node.Original`): continuation lines joined, comment lines dropped. */
export interface LogicalLine {
  text: string;
  segs: Segment[];
  startLine: number;
  /** The last physical line, heredoc bodies included once they are read. */
  endLine: number;
}

/** The position of logical offset `off`; offsets past the end stay on the last physical line. */
export function posAt(file: string, ll: LogicalLine, off: number): Pos {
  let seg = ll.segs[0] ?? { start: 0, line: ll.startLine, col: 1 };
  for (const s of ll.segs) {
    if (s.start > off) break;
    seg = s;
  }
  return { file, line: seg.line, col: seg.col + (off - seg.start) };
}

/** The one error the parser raises: `FILE:LINE:COL: message` on one line. */
export function syntaxError(pos: Pos, message: string): HoistError {
  return new HoistError('DOCKERFILE_SYNTAX', `${pos.file}:${pos.line}:${pos.col}: ${message.replace(/[\r\n]+/g, ' ')}`);
}

/** User text quoted for a one-line message. */
export function q(s: string): string {
  return JSON.stringify(s);
}
