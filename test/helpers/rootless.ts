/**
 * Runs hoist (and anything else) as the unprivileged user of the rootless tests, from tests that run as root.
 *
 *   const user = ciUser();                                   // undefined: no such user, skip
 *   test('…', { skip: rootlessSkipReason() }, async () => {
 *     const tmp = await userTempDir(user!, 'hoist-run-');     // owned by the user
 *     try {
 *       const r = await hoistAs(user!, path.join(tmp.dir, 'root'), ['run', '--rm', 'busybox', 'true']);
 *     } finally {
 *       await tmp.cleanup();
 *     }
 *   });
 *
 * The user is $HOIST_CI_USER, else `hoistci` when it exists (.ci/run creates it). When the test process itself is not
 * root, the current user is the rootless user and commands run directly (no runuser).
 *
 * Every command gets a clean environment, not root's: HOME is a fresh per-process directory owned by the user,
 * XDG_RUNTIME_DIR is unset (as under runuser/su without a login session), and PATH is what a Debian login gives an
 * unprivileged user (`/usr/local/bin:/usr/bin:/bin`: no sbin, so a runtime has to find /usr/sbin/runc itself, as
 * podman does). `opts.env` adds to that environment; an `undefined` value removes a variable.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOIST, run, type RunResult } from './run.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');

/** PATH of a Debian login shell for an unprivileged user. */
export const USER_PATH = '/usr/local/bin:/usr/bin:/bin';

export interface RunAsOptions {
  /** Added to the clean environment; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  /** Default: the clean HOME. */
  cwd?: string;
  /** HOME for the command; default a fresh per-process directory owned by the user (removed at exit). */
  home?: string;
}

export interface UserTempDir {
  dir: string;
  /** Removes the directory, also when it holds files owned by the user's subordinate ids. */
  cleanup: () => Promise<void>;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function userExists(user: string): boolean {
  return spawnSync('id', ['-u', user], { stdio: 'ignore' }).status === 0;
}

/**
 * The unprivileged user for rootless tests, or undefined when there is none (tests then skip, saying why).
 * Not root: the current user. Root: $HOIST_CI_USER (must exist), else `hoistci` if it exists.
 */
export function ciUser(): string | undefined {
  if (!isRoot()) return os.userInfo().username;
  const fromEnv = process.env['HOIST_CI_USER'];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!userExists(fromEnv)) {
      throw new Error(`HOIST_CI_USER=${fromEnv}: no such user; create it (.ci/run does: useradd -m ${fromEnv}) or unset HOIST_CI_USER`);
    }
    return fromEnv;
  }
  return userExists('hoistci') ? 'hoistci' : undefined;
}

/** True when `user` is the user this process runs as: commands then run directly, without runuser. */
function isSelf(user: string): boolean {
  return !isRoot() && os.userInfo().username === user;
}

const idCache = new Map<string, { uid: number; gid: number }>();

/** The user's uid and primary gid on the host. */
export function hostIds(user: string): { uid: number; gid: number } {
  let ids = idCache.get(user);
  if (ids === undefined) {
    const id = (flag: string): number => {
      const r = spawnSync('id', [flag, user], { encoding: 'utf8' });
      const n = Number(r.stdout.trim());
      if (r.status !== 0 || !Number.isInteger(n)) throw new Error(`id ${flag} ${user} failed: ${r.stderr.trim() || `exit ${r.status}`}`);
      return n;
    };
    ids = { uid: id('-u'), gid: id('-g') };
    idCache.set(user, ids);
  }
  return ids;
}

export interface IdRange {
  start: number;
  count: number;
}

/**
 * The user's first subordinate uid and gid ranges (/etc/subuid, /etc/subgid), or undefined when it has none.
 * With `unshare --map-root-user --map-auto`, container id N ≥ 1 is host id `start + N - 1`; container root is the user.
 */
export function subordinateIds(user: string): { uid: IdRange; gid: IdRange } | undefined {
  const { uid } = hostIds(user);
  const find = (file: string): IdRange | undefined => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    for (const line of text.split('\n')) {
      const [who, start, count] = line.trim().split(':');
      if ((who === user || who === String(uid)) && start !== undefined && count !== undefined) {
        return { start: Number(start), count: Number(count) };
      }
    }
    return undefined;
  };
  const u = find('/etc/subuid');
  const g = find('/etc/subgid');
  return u !== undefined && g !== undefined ? { uid: u, gid: g } : undefined;
}

function onPath(cmd: string, dirs = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']): boolean {
  return dirs.some((d) => existsSync(path.join(d, cmd)));
}

/**
 * Why rootless tests cannot run here, for node:test's `skip` option; false when they can.
 * Checks the user, its subordinate ids, newuidmap/newgidmap, unshare and runc.
 */
export function rootlessSkipReason(): string | false {
  const user = ciUser();
  if (user === undefined) return 'no unprivileged user for rootless tests (set HOIST_CI_USER or create hoistci; .ci/run does)';
  if (subordinateIds(user) === undefined) return `user ${user} has no /etc/subuid and /etc/subgid ranges`;
  for (const cmd of ['newuidmap', 'newgidmap', 'unshare', 'runc']) {
    if (!onPath(cmd)) return `${cmd} is not installed (apt-get install uidmap runc)`;
  }
  return false;
}

const checkedReadable = new Set<string>();

/**
 * Throws unless `user` can read this checkout and run this Node: a clone under /root, or one made with umask 077,
 * is not, and every rootless test would fail with a confusing EACCES from inside the user's process.
 */
export function assertCheckoutReadable(user: string): void {
  if (isSelf(user) || checkedReadable.has(user)) return;
  const probe = (flag: string, p: string): boolean => spawnSync('runuser', ['-u', user, '--', 'test', flag, p], { stdio: 'ignore' }).status === 0;
  const bad = [
    [path.join(REPO_ROOT, 'package.json'), '-r'],
    [HOIST, '-r'],
    [process.execPath, '-x'],
  ].filter(([p, flag]) => !probe(flag!, p!)).map(([p]) => p);
  if (bad.length > 0) {
    throw new Error(`the checkout ${REPO_ROOT} is not readable by ${user} (${bad.join(', ')}): rootless tests run hoist from it `
      + `as that user; run .ci/run's permission step (chmod o+x on each parent directory, chmod -R o+rX ${REPO_ROOT})`);
  }
  checkedReadable.add(user);
}

const homes = new Map<string, Promise<string>>();
const madeHomes: string[] = [];

/** A fresh HOME for the user, made once per process (the promise is cached, so concurrent callers share it) and removed when the process exits. */
function cleanHome(user: string): Promise<string> {
  let home = homes.get(user);
  if (home === undefined) {
    home = (async () => {
      const dir = await mkdtemp(path.join('/tmp', `hoist-home-${user}-`));
      if (!isSelf(user)) {
        const { uid, gid } = hostIds(user);
        await chown(dir, uid, gid);
      }
      if (madeHomes.length === 0) {
        process.once('exit', () => {
          // Synchronous: 'exit' handlers cannot wait. Root removes anything; as the user, HOME holds only its own files.
          for (const h of madeHomes) {
            try {
              rmSync(h, { recursive: true, force: true });
            } catch {
              // Best effort: a leftover dir under /tmp is not worth failing the test run over.
            }
          }
        });
      }
      madeHomes.push(dir);
      return dir;
    })();
    homes.set(user, home);
  }
  return home;
}

/** The environment a command run as `user` sees. */
async function userEnv(user: string, opts: RunAsOptions): Promise<{ env: Record<string, string>; home: string }> {
  const home = opts.home ?? (await cleanHome(user));
  const env: Record<string, string | undefined> = {
    PATH: USER_PATH,
    HOME: home,
    USER: user,
    LOGNAME: user,
    LANG: 'C.UTF-8',
    TMPDIR: '/tmp',
    // hoist.mjs turns Node's compile cache on; its default dir under /tmp may belong to root and be unwritable.
    NODE_COMPILE_CACHE: path.join(home, '.cache', 'node-compile-cache'),
    ...opts.env,
  };
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
  return { env: clean, home };
}

/**
 * Runs `cmd args` as `user` (via `runuser -u USER -- env -i …` from root; directly when this process is that user)
 * in a clean environment (see the top of this file). Resolves with the exit code and output, like run().
 */
export async function runAs(user: string, cmd: string, args: string[], opts: RunAsOptions = {}): Promise<RunResult> {
  const { env, home } = await userEnv(user, opts);
  const cwd = opts.cwd ?? home;
  if (isSelf(user)) return run(cmd, args, { env, input: opts.input, cwd });
  if (!isRoot()) throw new Error(`cannot run commands as ${user}: this process is ${os.userInfo().username}, not root`);
  // runuser sets HOME/USER/LOGNAME/SHELL but keeps the rest of root's environment: `env -i` replaces all of it.
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return run('runuser', ['-u', user, '--', '/usr/bin/env', '-i', ...envArgs, cmd, ...args], { input: opts.input, cwd });
}

/** Runs `hoist ARGS` (cmd/hoist.mjs on this Node 24) as `user` with HOIST_ROOT=`root`. */
export async function hoistAs(user: string, root: string, args: string[], opts: RunAsOptions = {}): Promise<RunResult> {
  assertCheckoutReadable(user);
  return runAs(user, process.execPath, ['--', HOIST, ...args], { ...opts, env: { HOIST_ROOT: root, ...opts.env } });
}

/** Mount points at or below `dir` in this process's mount namespace. */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return text.split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined)
    .map((m) => m.replace(/\\(\d{3})/g, (_s, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(prefix));
}

/**
 * Removes a tree that may hold files owned by the user's subordinate ids (a container's files, unpacked layers).
 * As root a plain `rm -rf` does it. As the user, those files are not ours: the removal is retried inside a user
 * namespace that maps them (`unshare --map-root-user --map-auto`), where we are root over them.
 * Refuses while anything is mounted below `dir`: removing through a bind mount would delete what it points at.
 */
export async function removeTree(dir: string): Promise<void> {
  const mounts = await mountsUnder(dir);
  if (mounts.length > 0) throw new Error(`not removing ${dir}: still mounted below it: ${mounts.join(', ')}`);
  try {
    await rm(dir, { recursive: true, force: true });
    return;
  } catch (e) {
    if (isRoot()) throw e;
  }
  const r = await run('unshare', ['--user', '--map-root-user', '--map-auto', '--', 'rm', '-rf', '--', dir]);
  if (r.code !== 0) throw new Error(`removing ${dir} in a user namespace failed (exit ${r.code}): ${r.stderr.trim()}`);
}

/**
 * A new directory /tmp/PREFIX<12 lowercase hex> owned by `user` (mode 0700), with a cleanup that removes it
 * whatever it holds. Lowercase on purpose (unlike mkdtemp): podman and buildah name an image pulled from
 * `oci:PATH` after PATH and reject upper case in it.
 */
export async function userTempDir(user: string, prefix: string): Promise<UserTempDir> {
  let dir: string;
  for (;;) {
    dir = path.join('/tmp', `${prefix}${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(dir, { mode: 0o700 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  if (!isSelf(user)) {
    const { uid, gid } = hostIds(user);
    await chown(dir, uid, gid);
  }
  return { dir, cleanup: () => removeTree(dir) };
}

/** mkdir -p as `user`'s own directory (chowned when made by root); for making dirs inside a userTempDir. */
export async function mkdirFor(user: string, dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined || isSelf(user)) return;
  const { uid, gid } = hostIds(user);
  // Every directory mkdir made, from the first new one down to `dir`.
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    await chown(d, uid, gid);
    if (d === path.resolve(first) || d === path.dirname(d)) break;
  }
}

/** Why rootful runtime checks can't run here (they need root and runc), or false. */
export function rootfulSkipReason(): string | false {
  return !isRoot() ? 'rootful checks need this process to be root'
    : spawnSync('runc', ['--version'], { stdio: 'ignore' }).status !== 0 ? 'runc is not installed' : false;
}

/**
 * A user without /etc/subuid and /etc/subgid ranges ($HOIST_CI_NOSUB_USER, else `hoistnosub`; .ci/run makes it), for
 * the single-id user namespace, and why tests with it can't run here (or false).
 */
export function noSubUser(): { user: string | undefined; skip: string | false } {
  const rootless = rootlessSkipReason();
  const name = process.env['HOIST_CI_NOSUB_USER'] || 'hoistnosub';
  const user = isRoot() && spawnSync('id', ['-u', name], { stdio: 'ignore' }).status === 0 ? name : undefined;
  const skip = rootless || (user === undefined ? 'no user without subordinate ids (set HOIST_CI_NOSUB_USER or create hoistnosub; .ci/run does)'
    : subordinateIds(user) !== undefined ? `user ${user} has /etc/subuid and /etc/subgid ranges; it must have none` : false);
  return { user, skip };
}
