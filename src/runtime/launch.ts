/**
 * Starts the namespace helper (inner.ts) under `unshare` and waits for it. The outer process stays on the host side:
 * it forwards SIGINT/SIGTERM to the helper (unshare itself ignores them while it waits), and, for build steps,
 * reads the change layer the helper writes to fd 3.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { HoistError } from '../errors.ts';
import { namespaceArgv, type HostInfo, type UsernsMode } from './host.ts';
import type { InnerRequest } from './request.ts';

const INNER = fileURLToPath(new URL('./inner.ts', import.meta.url));

export interface LaunchOptions {
  host: HostInfo;
  mode: UsernsMode;
  /** Give the container our stdin (-i); otherwise it reads /dev/null. 'pipe': the helper's stdin is `input`. */
  stdin: boolean | 'pipe';
  /** 'pipe': the container's stdout and stderr come back as streams (build steps show them on stderr). Default inherit. */
  output?: 'inherit' | 'pipe';
  /** Called once the helper runs, with its pid (for records). */
  onStart?(pid: number): void;
}

export interface Launched {
  /** The change layer (uncompressed tar), when `req.diff`. Read it to the end before awaiting `exit`. */
  diff?: Readable;
  /** With `output: 'pipe'`. */
  stdout?: Readable;
  stderr?: Readable;
  /** With `stdin: 'pipe'`. */
  input?: Writable;
  exit: Promise<number>;
}

/** What the caller decides; the rest of the request follows from the host and the namespace mode. */
export type LaunchRequest = Omit<InnerRequest, 'runtimeRoot' | 'rootless' | 'hostRoot'>;

/** Writes the request next to the container and runs the helper on it. */
export function launch(request: LaunchRequest, opts: LaunchOptions): Launched {
  const req = innerRequest(request, opts);
  const file = path.join(req.containerDir, 'request.json');
  writeFileSync(file, JSON.stringify(req));
  const argv = [...namespaceArgv(opts.host, opts.mode), process.execPath, INNER, file];
  const out = opts.output === 'pipe' ? 'pipe' : 'inherit';
  const stdio: StdioOptions = [opts.stdin === 'pipe' ? 'pipe' : opts.stdin ? 'inherit' : 'ignore', out, out];
  if (req.diff) stdio.push('pipe');
  // The helper is another Node start; it finds the compile cache through NODE_COMPILE_CACHE, which the bin
  // launcher (cmd/hoist.mjs) sets for every process hoist starts.
  const { child, exit } = startInNamespace(argv, stdio, opts.onStart);
  const diff = req.diff ? (child.stdio[3] as Readable) : undefined;
  return {
    exit,
    ...(diff ? { diff } : {}),
    ...(opts.stdin === 'pipe' ? { input: child.stdin! } : {}),
    ...(opts.output === 'pipe' ? { stdout: child.stdout!, stderr: child.stderr! } : {}),
  };
}

/**
 * Removes `dir` (a container's or step's directory, a trash of snapshots) from inside the user namespace, where files
 * of subordinate ids can be deleted; an overlay still mounted at `dir/rootfs` is unmounted first. Gives the helper's
 * exit status (0: removed).
 */
export function removeInNamespace(storeRoot: string, dir: string, opts: Pick<LaunchOptions, 'host' | 'mode'> & { debug: boolean }): Promise<number> {
  return launch({
    op: 'remove', storeRoot, containerDir: dir, id: path.basename(dir), layers: [],
    process: { args: [], env: [], cwd: '/', terminal: false, hostname: '' }, network: 'host', mounts: [],
    runtime: '', rootfs: 'auto', diff: false, removeAfter: true, debug: opts.debug,
  }, { host: opts.host, mode: opts.mode, stdin: false }).exit;
}

/** The request with what follows from the host and the namespace mode. */
export function innerRequest(request: LaunchRequest, opts: Pick<LaunchOptions, 'host' | 'mode'>): InnerRequest {
  return {
    ...request,
    // runc's state: one directory per namespace kind, so rootful and rootless containers never share one.
    runtimeRoot: path.join(request.storeRoot, 'run', opts.mode === 'host' ? 'runc' : `runc-${opts.host.uid}`),
    rootless: opts.mode !== 'host',
    hostRoot: opts.host.root,
  };
}

/**
 * Spawns `argv` (a namespaceArgv command line) and forwards SIGINT/SIGTERM/SIGHUP/SIGUSR2 to the process unshare
 * runs (unshare itself ignores them while it waits), or has `deliver` do it. `exit` is the exit status, 128 + N for
 * a signal.
 */
export function startInNamespace(
  argv: string[], stdio: StdioOptions, onStart?: (pid: number) => void, deliver?: SignalDelivery,
): { child: ChildProcess; exit: Promise<number> } {
  const child = spawn(argv[0]!, argv.slice(1), { stdio });
  const exit = exitOf(child, argv[0]!);
  child.on('spawn', () => {
    if (child.pid !== undefined) onStart?.(child.pid);
  });
  forwardSignals(child, exit, deliver);
  return { child, exit };
}

/** How a signal hoist received reaches the process unshare runs (`inner`). */
export type SignalDelivery = (sig: NodeJS.Signals, inner: number) => void;

/** The exit status of a namespaceArgv process (`what`: its first word, for the error when it can't start). */
export function exitOf(child: ChildProcess, what: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    child.on('error', (e) => reject(new HoistError('NO_UNSHARE', `cannot start ${what}: ${e.message}; install util-linux`, { exitCode: 125 })));
    child.on('close', (code, signal) => {
      resolve(code ?? 128 + (signal ? (os.constants.signals as Record<string, number>)[signal] ?? 0 : 0));
    });
  });
}

/** From now until `exit` settles, hoist's SIGINT/SIGTERM/SIGHUP/SIGUSR2 go to the process unshare runs. */
export function forwardSignals(child: ChildProcess, exit: Promise<number>, deliver: SignalDelivery = (sig, inner) => process.kill(inner, sig)): void {
  const forward = (sig: NodeJS.Signals) => (): void => {
    // The helper is unshare's only child; it forwards on to the OCI runtime, which forwards to the container.
    const inner = childOf(child.pid);
    try {
      if (inner !== undefined) deliver(sig, inner);
      else child.kill(sig);
    } catch { /* already gone */ }
  };
  // SIGUSR2 is hoist's own "kill the container now" (sent by hoist rm -f; see inner.ts).
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'];
  const handlers = signals.map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  const off = (): void => {
    for (const [s, h] of handlers) process.off(s, h);
  };
  exit.then(off, off);
}

/**
 * The first child of `pid`, if any. Every thread's list is read: a Go program such as runc forks from whichever
 * thread it runs on, and /proc lists a child under the thread that made it.
 */
export function childOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const first = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/)[0];
      if (first) return Number(first);
    }
  } catch { /* gone */ }
  return undefined;
}
