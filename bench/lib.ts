/**
 * Shared pieces for benchmarks: timed child processes (with peak RSS from GNU time), medians, temp dirs, and a
 * cleanup list that also runs on Ctrl-C / SIGTERM so no registry or temp dir outlives an interrupted run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { USER_PATH, userTempDir } from '../test/helpers/rootless.ts';
import os from 'node:os';
import path from 'node:path';

export const GNU_TIME = '/usr/bin/time';

export interface ToolRun {
  seconds: number;
  /** Peak resident set size of the command itself, in KiB (GNU time %M). */
  maxRssKiB: number;
  stdout: string;
  stderr: string;
}

export class ToolError extends Error {
  readonly stderr: string;
  constructor(message: string, stderr: string) {
    super(message);
    this.stderr = stderr;
  }
}

type CleanupFn = () => Promise<void> | void;

const cleanups: CleanupFn[] = [];
const running = new Set<ChildProcess>();
let cleaning: Promise<void> | undefined;
const inFlight = new Set<Promise<unknown>>();

/**
 * Marks work that may create something to clean up only once it finishes (a registry still starting): on Ctrl-C
 * the process waits for it before exiting, and the work itself must check isAborted() and undo what it made.
 */
export function track<T>(p: Promise<T>): Promise<T> {
  inFlight.add(p);
  void p.then(() => inFlight.delete(p), () => inFlight.delete(p));
  return p;
}

/** Registers work to undo; runs last-registered first. */
export function onCleanup(fn: CleanupFn): void {
  cleanups.push(fn);
}

/** Removes a function registered with onCleanup after it has been run by hand. */
export function dropCleanup(fn: CleanupFn): void {
  const i = cleanups.lastIndexOf(fn);
  if (i >= 0) cleanups.splice(i, 1);
}

/** True once cleanup has begun (Ctrl-C or the end of main): nothing new may start after that. */
export function isAborted(): boolean {
  return cleaning !== undefined;
}

export class AbortedError extends Error {
  constructor() {
    super('interrupted');
  }
}

/**
 * A bench's entry point: runs `main`, turns a failure into one line on stderr and exit status 1, and always runs the
 * registered cleanups.
 */
export async function runBench(name: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    process.stderr.write(`${name}: ${(e as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    await runCleanups();
  }
}

/** Fails unless this is Node 24 or newer, which hoist needs; `how` says how to start the bench on it. */
export function requireNode24(how: string): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) throw new Error(`hoist needs Node >= 24 (this is ${process.version}): run with ${how}`);
}

/**
 * For a bench started by a normal user (the rootless user itself): runs `bench` in a temp dir of that user's, which
 * the cleanups remove (after `beforeRemove`), and copies the results file it writes there to `out`.
 */
export async function inUserTempDir(
  resultsName: string, out: string, bench: (dir: string, tmpOut: string) => Promise<void>, beforeRemove?: (dir: string) => Promise<void>,
): Promise<void> {
  const tmp = await userTempDir(os.userInfo().username, 'hoist-bench-');
  onCleanup(async () => {
    await beforeRemove?.(tmp.dir);
    await tmp.cleanup();
  });
  const tmpOut = path.join(tmp.dir, resultsName);
  await bench(tmp.dir, tmpOut);
  await mkdir(path.dirname(out), { recursive: true });
  await copyFile(tmpOut, out);
}

export function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    for (const child of running) child.kill('SIGKILL');
    while (cleanups.length > 0) {
      const fn = cleanups.pop()!;
      try {
        await fn();
      } catch (e) {
        process.stderr.write(`cleanup: ${(e as Error).message}\n`);
      }
    }
  })();
  return cleaning;
}

/** Ctrl-C and SIGTERM clean up before exiting, so registries and temp dirs never leak. */
export function installSignalHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up\n`);
      void runCleanups()
        .then(() => Promise.allSettled([...inFlight]))
        .finally(() => process.exit(130));
    });
  }
}

export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Runs `cmd args` under GNU time and measures wall time around the whole process (startup included: that is what a
 * user waits for). A non-zero exit throws a ToolError carrying stderr.
 */
export async function runTool(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; rssFile: string }): Promise<ToolRun> {
  if (isAborted()) throw new AbortedError();
  const start = performance.now();
  const child = spawn(GNU_TIME, ['-f', '%M', '-o', opts.rssFile, cmd, ...args], {
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-16 * 1024); });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  }).finally(() => running.delete(child));
  const seconds = (performance.now() - start) / 1000;
  if (isAborted()) throw new AbortedError();
  if (code !== 0) {
    const msg = stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Command exited with non-zero status')).join('\n');
    throw new ToolError(`${path.basename(cmd)} ${args.join(' ')} exited with ${code}: ${msg.trim() || '(no stderr)'}`, stderr);
  }
  const rssText = (await readFile(opts.rssFile, 'utf8')).trim().split('\n').pop() ?? '';
  const maxRssKiB = Number(rssText);
  return { seconds, maxRssKiB: Number.isFinite(maxRssKiB) ? maxRssKiB : NaN, stdout, stderr };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function fmt(x: number, digits = 3): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '—';
}

export function mib(kib: number): number {
  return kib / 1024;
}

/** One tool's figures in one scenario. */
export interface ToolResult {
  seconds: number[];
  maxRssKiB: number[];
  median: number | null;
  /** Errors seen, in order; a run is retried once before the tool is given up on for the scenario. */
  errors: string[];
  failed: boolean;
}

/**
 * Runs `once(tool, i)` `runs` times per tool, alternating tools and swapping who goes first each run, so drift on a
 * shared machine hits both alike. A failing run is retried once; a second failure gives up on that tool for the
 * scenario (the errors are kept). `preFailed` names tools given up on before the first run, with why.
 */
export async function alternateRuns<T extends string>(
  key: string, tools: readonly T[], runs: number,
  once: (tool: T, i: number) => Promise<ToolRun>,
  preFailed: Partial<Record<T, string>> = {},
): Promise<Record<T, ToolResult>> {
  const res = {} as Record<T, ToolResult>;
  for (const t of tools) res[t] = { seconds: [], maxRssKiB: [], median: null, errors: [], failed: false };
  for (const tool of tools) {
    const why = preFailed[tool];
    if (why !== undefined) {
      res[tool].errors.push(why);
      res[tool].failed = true;
    }
  }
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? tools : [...tools].reverse();
    for (const tool of order) {
      const r = res[tool];
      if (r.failed) continue;
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          const t = await once(tool, i);
          r.seconds.push(t.seconds);
          r.maxRssKiB.push(t.maxRssKiB);
          process.stderr.write(`  ${key} ${tool} #${i + 1}: ${fmt(t.seconds)} s, ${fmt(mib(t.maxRssKiB), 0)} MiB\n`);
          break;
        } catch (e) {
          if (isAborted()) throw e;
          const msg = (e as Error).message;
          r.errors.push(msg);
          process.stderr.write(`  ${key} ${tool} #${i + 1} FAILED${attempt === 0 ? ' (retrying once)' : ''}: ${msg}\n`);
          if (attempt === 1) r.failed = true;
        }
      }
    }
  }
  for (const tool of tools) {
    const r = res[tool];
    if (r.seconds.length > 0) r.median = median(r.seconds);
  }
  return res;
}

/** A table cell for one tool's median. */
export function medianCell(r: ToolResult): string {
  if (r.median === null) return 'FAILED';
  return r.failed ? `${fmt(r.median)} (some runs FAILED)` : fmt(r.median);
}

/**
 * As root, after re-running a bench file as the unprivileged user: waits for that child (stopped with SIGTERM if the
 * bench is aborted meanwhile), fails on a non-zero exit, then copies the results it wrote (`childOut`) to `out`.
 */
export async function awaitUserRun(child: ChildProcess, user: string, childOut: string, out: string): Promise<void> {
  const exited = new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  const stopChild = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited.catch(() => {});
  };
  onCleanup(stopChild);
  const code = await exited;
  dropCleanup(stopChild);
  if (code !== 0) throw new Error(`the benchmark as ${user} exited with ${code}`);
  await mkdir(path.dirname(out), { recursive: true });
  await copyFile(childOut, out);
}

/**
 * How to start hoist's bin the way `npx hoist` does, minus npx's own start: the running Node with the options from the
 * bin's `#!/usr/bin/env -S node …` line (V8 flags such as --liftoff-only cannot be set once Node runs), then the bin.
 */
export async function hoistBin(bin: string): Promise<{ cmd: string; prefix: string[] }> {
  const first = (await readFile(bin, 'utf8')).split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node((?: \S+)*)$/.exec(first);
  if (!m) throw new Error(`${bin}: first line is not "#!/usr/bin/env -S node …": ${first}`);
  return { cmd: process.execPath, prefix: [...m[1]!.trim().split(' ').filter(Boolean), bin] };
}

/**
 * A tool's own home, runtime and temp directories under `dir` (created), and the environment pointing it at them, so
 * that nothing a run leaves (config, caches, staged blobs: podman stages pulls in $TMPDIR) is shared between stores.
 */
export async function storeEnv(dir: string): Promise<NodeJS.ProcessEnv> {
  await mkdir(path.join(dir, 'home'), { recursive: true });
  await mkdir(path.join(dir, 'xdg'), { mode: 0o700 });
  await mkdir(path.join(dir, 'tmpfiles'));
  return {
    PATH: process.env['PATH'] ?? USER_PATH,
    HOME: path.join(dir, 'home'),
    XDG_RUNTIME_DIR: path.join(dir, 'xdg'),
    LANG: 'C.UTF-8',
    TMPDIR: path.join(dir, 'tmpfiles'),
    USER: process.env['USER'],
    LOGNAME: process.env['LOGNAME'],
  };
}
