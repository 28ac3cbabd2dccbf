/** Runs hoist (and peer tools) as real processes for CLI-level tests. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const HOIST = fileURLToPath(new URL('../../cmd/hoist.mjs', import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({
      code: code ?? (signal ? 128 : 1),
      stdout: Buffer.concat(out).toString('utf8'),
      stderr: Buffer.concat(err).toString('utf8'),
    }));
    child.stdin.on('error', () => {}); // the child may exit before reading its input (EPIPE)
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs `hoist ARGS` on this Node (24) with HOIST_ROOT set to `root`. */
export function hoist(root: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer } = {}): Promise<RunResult> {
  return run(process.execPath, ['--', HOIST, ...args], { env: { ...process.env, HOIST_ROOT: root, ...opts.env }, input: opts.input });
}

/** A result as an assertion message shows it. */
export function show(r: RunResult): string {
  return `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

/** Fails with the command's output when it did not exit 0. */
export async function ok(p: Promise<RunResult>): Promise<RunResult> {
  const r = await p;
  if (r.code !== 0) throw new Error(show(r));
  return r;
}

/** hoist failed with `code` and said so in exactly one `hoist: …` line matching `re`. */
export function oneLine(r: RunResult, code: number, re: RegExp): void {
  assert.equal(r.code, code, show(r));
  assert.match(r.stderr, /^hoist: [^\n]+\n$/, `expected one hoist: line on stderr\n${show(r)}`);
  assert.match(r.stderr, re);
}
