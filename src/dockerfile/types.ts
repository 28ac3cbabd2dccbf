/**
 * The Dockerfile model hoist builds from: what src/dockerfile/parse.ts produces and src/build consumes.
 *
 * Values are kept RAW (unexpanded) here: BuildKit expands each word when the step is dispatched, with the ARG/ENV
 * state of that moment, so expansion belongs to the builder (src/dockerfile/shell-lex.ts does the expanding).
 * Positions are 1-based, as users read them: `Dockerfile:3:1`.
 */

export interface Pos {
  file: string;
  line: number;
  col: number;
}

/** `--name=value` (value undefined for a bare `--name`), unexpanded. A flag may repeat (`--mount`, `--exclude`). */
export interface Flag {
  name: string;
  value: string | undefined;
  pos: Pos;
}

/** The exec form `["a","b"]` (arguments as parsed from JSON) or the shell form (the text after the flags). */
export type CommandForm = { kind: 'exec'; args: string[] } | { kind: 'shell'; text: string };

/** A here-document `<<EOF` / `<<-EOF` / `<<"EOF"`. */
export interface Heredoc {
  /** The delimiter word (`EOF`), also the file name for COPY/ADD heredocs. */
  name: string;
  /** The body, lines joined with `\n`, ending with `\n` (tabs stripped for `<<-`). */
  content: string;
  /** True when the delimiter was unquoted: the builder expands variables in the body (COPY/ADD). */
  expand: boolean;
}

interface Base {
  pos: Pos;
  /** The instruction as written, continuation lines joined with a space, comments removed: for history and messages. */
  original: string;
  flags: Flag[];
}

export interface FromInstruction extends Base {
  kind: 'FROM';
  image: string;
  /** `AS name`, lowercased (stage names are case-insensitive). */
  stageName?: string;
}

export interface RunInstruction extends Base {
  kind: 'RUN';
  /** The shell form's text keeps heredoc markers (`cat <<EOF`), as BuildKit passes it to the shell. */
  command: CommandForm;
  heredocs: Heredoc[];
}

export interface CopyInstruction extends Base {
  kind: 'COPY' | 'ADD';
  /** Source words (unexpanded), or heredoc names when the source is a heredoc. */
  sources: string[];
  dest: string;
  heredocs: Heredoc[];
}

export interface KeyValue {
  key: string;
  value: string;
}

export interface EnvInstruction extends Base {
  kind: 'ENV';
  /** `ENV a=1 b=2`, or the legacy `ENV a 1 2` (key a, value "1 2"). Values unexpanded, quotes kept for the lexer. */
  pairs: KeyValue[];
}

export interface LabelInstruction extends Base {
  kind: 'LABEL';
  pairs: KeyValue[];
}

export interface ArgInstruction extends Base {
  kind: 'ARG';
  /** `ARG a b=2`: default undefined when no `=`. */
  args: Array<{ name: string; default?: string }>;
}

export interface WordsInstruction extends Base {
  /** EXPOSE: ports; VOLUME: paths (JSON array or words); SHELL: the JSON array (must be exec form). */
  kind: 'EXPOSE' | 'VOLUME' | 'SHELL';
  words: string[];
}

export interface ValueInstruction extends Base {
  /** The rest of the line, trimmed, unexpanded. */
  kind: 'USER' | 'WORKDIR' | 'STOPSIGNAL' | 'MAINTAINER';
  value: string;
}

export interface CmdInstruction extends Base {
  kind: 'CMD' | 'ENTRYPOINT';
  command: CommandForm;
}

export interface HealthcheckInstruction extends Base {
  kind: 'HEALTHCHECK';
  /** undefined for `HEALTHCHECK NONE`. Flags (--interval, --timeout, --start-period, --start-interval, --retries) in `flags`. */
  command?: CommandForm;
}

export interface OnbuildInstruction extends Base {
  kind: 'ONBUILD';
  /** The trigger as written, e.g. `RUN echo hi` (stored in the config's OnBuild). */
  trigger: string;
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CopyInstruction
  | EnvInstruction
  | LabelInstruction
  | ArgInstruction
  | WordsInstruction
  | ValueInstruction
  | CmdInstruction
  | HealthcheckInstruction
  | OnbuildInstruction;

export interface Stage {
  /** 0-based position among the FROMs. */
  index: number;
  from: FromInstruction;
  /** `AS name`, lowercased. */
  name?: string;
  /** Everything after the FROM, up to the next FROM. */
  instructions: Instruction[];
}

export interface Dockerfile {
  file: string;
  /** Parser directives, names lowercased: `syntax`, `escape`, `check`. */
  directives: Record<string, string>;
  escape: '\\' | '`';
  /** ARGs before the first FROM (usable in FROM lines only, unless redeclared in a stage). */
  globalArgs: ArgInstruction[];
  stages: Stage[];
}
