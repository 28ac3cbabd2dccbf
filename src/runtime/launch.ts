/**
 * Starts the namespace helper (inner.ts) under `unshare` and waits for it. The outer process stays on the host side:
 * it forwards SIGINT/SIGTERM to the helper (unshare itself ignores them while it waits), and, for build steps,
 * reads the change layer the helper writes to fd 3.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
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
  const req: InnerRequest = {
    ...request,
    // runc's state: one directory per namespace kind, so rootful and rootless containers never share one.
    runtimeRoot: path.join(request.storeRoot, 'run', opts.mode === 'host' ? 'runc' : `runc-${opts.host.uid}`),
    rootless: opts.mode !== 'host',
    hostRoot: opts.host.root,
  };
  const file = path.join(req.containerDir, 'request.json');
  writeFileSync(file, JSON.stringify(req));
  const argv = [...namespaceArgv(opts.host, opts.mode), process.execPath, INNER, file];
  const out = opts.output === 'pipe' ? 'pipe' : 'inherit';
  const stdio: StdioOptions = [opts.stdin === 'pipe' ? 'pipe' : opts.stdin ? 'inherit' : 'ignore', out, out];
  if (req.diff) stdio.push('pipe');
  // The helper is another Node start; it finds the compile cache through NODE_COMPILE_CACHE, which the bin
  // launcher (cmd/hoist.mjs) sets for every process hoist starts.
  const child = spawn(argv[0]!, argv.slice(1), { stdio });
  const diff = req.diff ? (child.stdio[3] as Readable) : undefined;

  const forward = (sig: NodeJS.Signals) => (): void => {
    // The helper is unshare's only child; it forwards on to the OCI runtime, which forwards to the container.
    const inner = childOf(child.pid);
    try {
      if (inner !== undefined) process.kill(inner, sig);
      else child.kill(sig);
    } catch { /* already gone */ }
  };
  // SIGUSR2 is hoist's own "kill the container now" (sent by hoist rm -f; see inner.ts).
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'];
  const handlers = signals.map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);

  const exit = new Promise<number>((resolve, reject) => {
    child.on('error', (e) => reject(new HoistError('NO_UNSHARE', `cannot start ${argv[0]}: ${e.message}; install util-linux`, { exitCode: 125 })));
    child.on('spawn', () => {
      if (child.pid !== undefined) opts.onStart?.(child.pid);
    });
    child.on('close', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code ?? 128 + (signal ? (os.constants.signals as Record<string, number>)[signal] ?? 0 : 0));
    });
  });
  return {
    exit,
    ...(diff ? { diff } : {}),
    ...(opts.stdin === 'pipe' ? { input: child.stdin! } : {}),
    ...(opts.output === 'pipe' ? { stdout: child.stdout!, stderr: child.stderr! } : {}),
  };
}

function childOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}
