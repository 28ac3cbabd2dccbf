/**
 * A user, mount and PID namespace started before hoist knows what to run in it: `hoist run` starts one first thing,
 * so that unshare, newuidmap/newgidmap and the shell (~8 ms of process starts) happen on the other core while
 * hoist loads its modules, reads the store and writes the bundle. The shell waits for a script on fd 3; hoist sends
 * the fast path's (fast-run.ts: mount the overlay, exec runc), or closes fd 3 and the shell exits without doing
 * anything (the fast path does not apply, or hoist failed first).
 *
 * Until the script is sent, hoist's signals keep their default effect (a Ctrl-C ends hoist; setpriv's parent-death
 * signal then ends unshare, and unshare's --kill-child the shell), nothing the namespace prints is shown, and the
 * child does not keep hoist's event loop alive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { namespaceArgv, type HostInfo, type UsernsMode } from './host.ts';
import { exitOf, forwardSignals, type SignalDelivery } from './launch.ts';

/**
 * Reads the script from fd 3 to its end (all builtins: dash's `read` takes a line at a time), runs nothing on an
 * empty one, and evals it otherwise, with fd 3 closed so that nothing the script execs inherits it.
 */
const WAIT = [
  's=',
  'while IFS= read -r l <&3; do s="$s$l',
  '"; done',
  '[ -n "$s" ] || exit 0',
  'exec 3<&-',
  'eval "$s"',
].join('\n');

export interface WaitingNamespace {
  /**
   * Runs `script` (sh syntax; quote every word with shellQuote) in the namespace. Like startInNamespace from then on:
   * signals are forwarded, `onStart` is called, and `exit` is the status (that of unshare when the namespace could
   * not be made: its message is on the child's stderr then).
   */
  run(script: string, onStart?: (pid: number) => void, deliver?: SignalDelivery): { child: ChildProcess; exit: Promise<number> };
  /** Nothing will run: the shell is told so and waited for. Does nothing after run(). */
  cancel(): Promise<void>;
}

/** Starts the namespace; `stdin`: give what runs in it our stdin (-i), else /dev/null. */
export function startWaitingNamespace(host: HostInfo, mode: UsernsMode, stdin: boolean): WaitingNamespace {
  const argv = [...namespaceArgv(host, mode, { pidNamespace: true }), '/bin/sh', '-c', WAIT];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: [stdin ? 'inherit' : 'ignore', 'inherit', 'pipe', 'pipe'] });
  const exit = exitOf(child, argv[0]!);
  exit.catch(() => { /* reported by run(), or moot after cancel() */ });
  const control = child.stdio[3] as Socket;
  // A shell that is gone already (unshare failed) makes the write fail with EPIPE: its exit status tells the caller.
  control.on('error', () => {});
  const stderr = child.stderr as Readable & Partial<Pick<Socket, 'ref' | 'unref'>>;
  child.unref();
  control.unref();
  stderr.unref?.();
  let used = false;
  return {
    run(script, onStart, deliver) {
      used = true;
      child.ref();
      control.ref();
      stderr.ref?.();
      forwardSignals(child, exit, deliver);
      if (child.pid !== undefined) onStart?.(child.pid);
      control.end(`${script}\n`);
      return { child, exit };
    },
    async cancel() {
      if (used) return;
      used = true;
      child.ref();
      stderr.ref?.();
      stderr.resume();
      control.end();
      await exit.catch(() => {});
    },
  };
}

/** `s` as one sh word, whatever it holds. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
