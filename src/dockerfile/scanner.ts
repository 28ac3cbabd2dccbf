/**
 * The physical-line layer of BuildKit's parser (parser.go Parse), ported: parser directives at the top, comment
 * lines, line continuation with the escape character, comment and empty lines inside a continuation (skipped, as
 * BuildKit does), and heredoc bodies read on demand after an instruction's line.
 */
import { q, syntaxError, type LogicalLine, type Segment } from './source.ts';
import { trimLeftSpace } from './words.ts';

/** BuildKit's directive regexp; names are matched case-insensitively. */
const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);

/** Go's bytes.TrimRight(line, "\r\n"). */
function trimNewline(s: string): string {
  let end = s.length;
  while (end > 0 && (s[end - 1] === '\n' || s[end - 1] === '\r')) end--;
  return s.slice(0, end);
}

function isComment(raw: string): boolean {
  return trimLeftSpace(trimNewline(raw)).text.startsWith('#');
}

export class LineScanner {
  readonly file: string;
  readonly directives: Record<string, string> = {};
  escape: '\\' | '`' = '\\';
  /** Physical lines, each with its line terminator. */
  private readonly lines: string[];
  private next = 0;
  private directivesDone = false;
  private continuation = LineScanner.continuationRegex('\\');

  constructor(text: string, file: string) {
    this.file = file;
    this.lines = text.replace(/^\uFEFF/, '').match(/[^\n]*\n|[^\n]+$/g) ?? [];
  }

  /**
   * BuildKit's line-continuation test: the escape character last on the line (trailing blanks allowed), unless it is
   * itself escaped. The escape character is removed, everything before it kept.
   */
  private static continuationRegex(esc: string): RegExp {
    const e = esc === '\\' ? '\\\\' : esc;
    return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
  }

  /** BuildKit's possibleParserDirective: directives are only read until the first line that is not one. */
  private directive(line: string, lineNo: number): void {
    if (this.directivesDone) return;
    const m = DIRECTIVE.exec(line);
    const name = m?.[1]?.toLowerCase();
    const value = m?.[2];
    if (name === undefined || value === undefined || !KNOWN_DIRECTIVES.has(name)) {
      this.directivesDone = true;
      return;
    }
    const pos = { file: this.file, line: lineNo, col: 1 };
    if (name in this.directives) throw syntaxError(pos, `the ${name} parser directive is given twice; keep one`);
    if (name === 'escape') {
      if (value !== '\\' && value !== '`') {
        throw syntaxError(pos, `invalid escape character ${q(value)}; use # escape=\\ or # escape=\``);
      }
      this.escape = value;
      this.continuation = LineScanner.continuationRegex(value);
    }
    this.directives[name] = value;
  }

  private trimContinuation(line: string): { text: string; more: boolean } {
    if (!this.continuation.test(line)) return { text: line, more: false };
    return { text: line.replace(this.continuation, '$1'), more: true };
  }

  /** The next instruction line, continuation lines joined; undefined at the end of the file. */
  nextLine(): LogicalLine | undefined {
    while (this.next < this.lines.length) {
      const lineNo = this.next + 1;
      const noNl = trimNewline(this.lines[this.next++] ?? '');
      const lead = trimLeftSpace(noNl);
      this.directive(lead.text, lineNo);
      // A comment line (directives included) is dropped whole.
      const first = lead.text.startsWith('#') ? '' : lead.text;
      let { text, more } = this.trimContinuation(first);
      if (!more && text === '') continue;
      const segs: Segment[] = [{ start: 0, line: lineNo, col: lead.off + 1 }];
      let endLine = lineNo;
      while (more && this.next < this.lines.length) {
        const raw = this.lines[this.next++] ?? '';
        endLine = this.next;
        const cont = trimNewline(raw);
        this.directive(cont, endLine);
        // BuildKit skips comment lines and blank lines inside a continuation (blank ones with a warning).
        if (isComment(raw) || trimLeftSpace(cont).text === '') continue;
        const t = this.trimContinuation(cont);
        segs.push({ start: text.length, line: endLine, col: 1 });
        text += t.text;
        more = t.more;
      }
      return { text, segs, startLine: lineNo, endLine };
    }
    return undefined;
  }

  /**
   * The body of a heredoc that starts on the next line, up to the line equal to `name` (leading tabs ignored for
   * `<<-`). Lines are kept as written, line endings included. Undefined when the file ends first.
   */
  readHeredoc(name: string, chomp: boolean): { content: string; endLine: number } | undefined {
    let content = '';
    while (this.next < this.lines.length) {
      const raw = this.lines[this.next++] ?? '';
      let candidate = trimNewline(raw);
      if (chomp) candidate = candidate.replace(/^\t+/, '');
      if (candidate === name) return { content, endLine: this.next };
      content += raw;
    }
    return undefined;
  }

  /** The number of physical lines, for errors at the end of the file. */
  get lineCount(): number {
    return this.lines.length;
  }
}
