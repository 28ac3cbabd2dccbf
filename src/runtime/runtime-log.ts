/**
 * How hoist runs `runc run` and reads why it failed: runc's own messages (warnings such as "unable to get oom kill
 * count", and why it could not start the container) go to a JSON log file in the container's directory, not to the
 * container's stderr; a start failure is then reported as one hoist line. Shared by the namespace helper and the
 * outer process's fast path (fast-run.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { HoistError } from '../errors.ts';
import { EXIT_HOIST_FAILED, type InnerRequest } from './request.ts';

export function runtimeLog(containerDir: string): string {
  return path.join(containerDir, 'runtime.log');
}

/** The arguments of `runc run` in the foreground for the request's container. */
export function runtimeRunArgs(req: Pick<InnerRequest, 'runtimeRoot' | 'containerDir' | 'id'>): string[] {
  return ['--root', req.runtimeRoot, '--log', runtimeLog(req.containerDir), '--log-format', 'json', 'run', '--bundle', req.containerDir, req.id];
}

/**
 * Copies the runtime's stderr to ours, without the "runc run failed: …" line runc prints there as well as to the log
 * (hoist reports it as a line of its own). The container's stderr comes this way too when there is no terminal.
 */
export function passRuntimeStderr(stderr: Readable): void {
  stderr.on('data', (chunk: Buffer) => {
    if (/^runc (?:run|create) failed: /.test(chunk.toString('latin1', 0, 24))) return;
    if (!process.stderr.write(chunk)) {
      stderr.pause();
      process.stderr.once('drain', () => stderr.resume());
    }
  });
}

/**
 * The error the OCI runtime logged when it could not start the container, if it did: runc writes one JSON line per
 * message, `{"level":"error","msg":"runc run failed: …"}`. Then the non-zero status is runc's, not the command's.
 */
export function runtimeStartError(containerDir: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(runtimeLog(containerDir), 'utf8');
  } catch {
    return undefined;
  }
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const m = JSON.parse(line) as { level?: string; msg?: string };
      if (m.level === 'error' || m.level === 'fatal') last = m.msg;
    } catch { /* not JSON: a runtime that ignores --log-format */ }
  }
  return last;
}

/** One line for a container the runtime could not start, with a hint where the cause is a known one. */
export function runtimeFailure(msg: string, user: string | undefined): HoistError {
  const detail = msg.replace(/^runc (?:run|create) failed: /, '').replace(/^unable to start container process: /, '');
  let hint = 'check the flags (-w, -v, -u) and the image';
  if (/setup user|invalid argument/.test(detail) && user) {
    hint = `user ${user} may not be mapped in this user namespace (no subordinate ids?); run hoist info, or add a range to /etc/subuid and /etc/subgid`;
  } else if (/not a directory/.test(detail)) {
    hint = 'a path given to -w or -v is a file in the image';
  }
  return new HoistError('RUNTIME_FAILED', `the OCI runtime could not start the container: ${detail}; ${hint}`, { exitCode: EXIT_HOIST_FAILED });
}
