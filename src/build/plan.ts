/**
 * The stage graph: which stages the target needs (the rest are skipped), what each stage's FROM names (scratch,
 * another stage, an image), and which stages each one reads from (COPY --from, RUN --mount from=). Global ARGs
 * (before the first FROM) and the predefined platform ARGs are expanded in FROM lines, as BuildKit does.
 */
import { HoistError } from '../errors.ts';
import { expandWord } from '../dockerfile/shell-lex.ts';
import { flagValue, flagValues } from '../dockerfile/flags.ts';
import type { Dockerfile, Instruction, Pos, Stage } from '../dockerfile/types.ts';
import { formatPlatform } from '../oci/platform.ts';
import type { Platform } from '../oci/types.ts';

export type BaseRef = { kind: 'scratch' } | { kind: 'stage'; index: number } | { kind: 'image'; name: string };

export interface PlannedStage {
  stage: Stage;
  /** For progress lines: the stage name, or its index. */
  label: string;
  base: BaseRef;
  /** FROM --platform, expanded. */
  platform?: string;
  /** Stages this one reads (FROM, COPY --from, RUN --mount from=). */
  deps: Set<number>;
}

export interface BuildPlan {
  stages: PlannedStage[];
  target: number;
  /** Stage indexes the target needs, in Dockerfile order. */
  needed: number[];
  /** Global ARG values (after --build-arg), for ARG redeclarations without a default inside a stage. */
  globalArgs: Map<string, string | undefined>;
  /** Every ARG name declared globally or in a needed stage (to warn about unused --build-args). */
  declaredArgs: Set<string>;
}

export const PROXY_ARGS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'];

/** TARGETPLATFORM, TARGETOS, …, BUILDVARIANT: values for the platform built for and the one building. */
export function platformArgs(target: Platform, build: Platform): Map<string, string> {
  const m = new Map<string, string>();
  for (const [prefix, p] of [['TARGET', target], ['BUILD', build]] as const) {
    m.set(`${prefix}PLATFORM`, formatPlatform(p));
    m.set(`${prefix}OS`, p.os);
    m.set(`${prefix}ARCH`, p.architecture);
    m.set(`${prefix}VARIANT`, p.variant ?? '');
  }
  return m;
}

export function posString(p: Pos): string {
  return `${p.file}:${p.line}:${p.col}`;
}

/** expandWord with the position prefixed to errors. */
export function expandAt(word: string, env: ReadonlyMap<string, string>, pos: Pos, escape: '\\' | '`'): string {
  try {
    return expandWord(word, env, { escape }).value;
  } catch (e) {
    if (e instanceof HoistError) throw new HoistError(e.code, `${posString(pos)}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** A `--from=` / `from=` value: a stage by name or index, else an image name. */
export function stageRef(df: Dockerfile, value: string, before: number): number | undefined {
  const lower = value.toLowerCase();
  const byName = df.stages.findIndex((s, i) => i < before && s.name === lower);
  if (byName >= 0) return byName;
  if (/^\d+$/.test(value)) {
    const i = Number(value);
    if (i < before) return i;
  }
  return undefined;
}

export function planBuild(df: Dockerfile, opts: { buildArgs: ReadonlyMap<string, string>; target?: string; platform: Map<string, string> }): BuildPlan {
  const globalArgs = new Map<string, string | undefined>();
  const globalEnv = new Map(opts.platform);
  const declaredArgs = new Set<string>();
  for (const a of df.globalArgs) {
    for (const { name, default: def } of a.args) {
      declaredArgs.add(name);
      const v = opts.buildArgs.has(name) ? opts.buildArgs.get(name)! : def !== undefined ? expandAt(def, globalEnv, a.pos, df.escape) : undefined;
      globalArgs.set(name, v);
      if (v !== undefined) globalEnv.set(name, v);
    }
  }
  const stages: PlannedStage[] = df.stages.map((stage, i) => {
    const image = expandAt(stage.from.image, globalEnv, stage.from.pos, df.escape);
    if (image === '') throw new HoistError('DOCKERFILE_SYNTAX', `${posString(stage.from.pos)}: FROM names no image (the ARG in "${stage.from.image}" is empty); pass it with --build-arg or give the ARG a default`);
    const platformFlag = flagValue(stage.from.flags, 'platform');
    const platform = platformFlag === undefined ? undefined : expandAt(platformFlag, globalEnv, stage.from.pos, df.escape);
    const stageIndex = stageRef(df, image, i);
    const base: BaseRef = image.toLowerCase() === 'scratch' ? { kind: 'scratch' }
      : stageIndex !== undefined && !/^\d+$/.test(image) ? { kind: 'stage', index: stageIndex }
      : { kind: 'image', name: image };
    const deps = new Set<number>();
    if (base.kind === 'stage') deps.add(base.index);
    for (const ins of stage.instructions) for (const d of readsFrom(df, ins, i, globalEnv)) deps.add(d);
    return { stage, label: stage.name ?? String(i), base, ...(platform !== undefined ? { platform } : {}), deps };
  });

  let target = stages.length - 1;
  if (opts.target !== undefined) {
    const t = df.stages.findIndex((s) => s.name === opts.target!.toLowerCase());
    if (t < 0) {
      const names = df.stages.map((s) => s.name).filter((n) => n !== undefined);
      throw new HoistError('BAD_TARGET', `--target ${opts.target}: no stage of that name in ${df.file}${names.length ? ` (stages: ${names.join(', ')})` : ' (no stage has a name; name one with FROM image AS name)'}`, { exitCode: 2 });
    }
    target = t;
  }
  const needed = new Set<number>();
  const visit = (i: number): void => {
    if (needed.has(i)) return;
    needed.add(i);
    for (const d of stages[i]!.deps) visit(d);
  };
  visit(target);
  for (const i of needed) {
    for (const ins of df.stages[i]!.instructions) if (ins.kind === 'ARG') for (const a of ins.args) declaredArgs.add(a.name);
  }
  return { stages, target, needed: [...needed].sort((a, b) => a - b), globalArgs, declaredArgs };
}

/** The earlier stages an instruction reads from. Values are expanded with the global ARGs (BuildKit resolves them before running). */
function readsFrom(df: Dockerfile, ins: Instruction, self: number, env: ReadonlyMap<string, string>): number[] {
  const out: number[] = [];
  const add = (raw: string): void => {
    const v = expandWord(raw, env, { escape: df.escape }).value;
    const i = stageRef(df, v, self);
    if (i !== undefined) out.push(i);
    else if (df.stages.some((s, j) => j >= self && s.name === v.toLowerCase())) {
      throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: stage "${v}" is used before it is defined; move that stage above this one`);
    }
  };
  if (ins.kind === 'COPY') {
    const f = flagValue(ins.flags, 'from');
    if (f !== undefined) add(f);
  }
  if (ins.kind === 'RUN') {
    for (const m of flagValues(ins.flags, 'mount')) {
      const from = /(?:^|,)from=([^,]+)/.exec(m)?.[1];
      if (from !== undefined) add(from);
    }
  }
  return out;
}
