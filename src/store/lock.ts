/**
 * A cross-process exclusive lock on a path, for read-modify-write of index.json and for prune.
 *
 * Why a lock file and not flock: Node has no flock/fcntl binding, and native addons are out. A file created with
 * O_CREAT|O_EXCL ('wx') is atomic on every local filesystem and on NFSv3+, so exactly one process creates it. The file
 * holds `{pid, hostname, time, nonce}` so that waiters can say who holds it and can tell a lock left behind by a crashed
 * process (same host, pid no longer running) from a live one.
 *
 * Stealing a dead lock is the hard part. The naive "unlink it and create mine" lets two stealers race: A unlinks the
 * dead file and creates its own, then B (which also saw the dead file) unlinks A's live lock and creates its own, and
 * both believe they hold it. So stealing goes through a second, short-lived guard file (`<lock>.steal`, also O_EXCL):
 * only the guard holder may unlink the lock, and only after re-reading it under the guard and finding the very same
 * file it judged dead (same inode and same bytes, which include a random nonce). A dead lock cannot change by itself
 * (its owner is gone and nobody else may unlink it without the guard), so the unlink removes exactly that file; the
 * stealer then competes for the lock like any other waiter. The guard is held for one read and one unlink; a guard
 * left by a crash in that window is removed once its own owner is seen dead (or, unreadable, after GUARD_STALE_MS) —
 * that recovery path could itself race, but it needs a crash inside a microsecond window first.
 *
 * Limits, on purpose: a lock from another host is never stolen (its pid means nothing here), so a crash on another
 * NFS client leaves a lock a person must remove; the timeout message says which file. Pid reuse only makes a dead
 * lock look alive (we wait, then time out), never the reverse.
 *
 * Inside one process, calls for the same path are queued in memory first, so they do not spin on the file.
 * Not re-entrant: calling withLock for a path from inside fn for the same path waits forever.
 */
import { open, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { HoistError, isErrno } from '../errors.ts';

export interface LockOptions {
  /** Give up waiting after this long with HoistError 'LOCKED'. Default 120 s (a prune of a big store can take a while). */
  timeoutMs?: number;
}

interface Owner {
  pid: number;
  hostname: string;
  time: string;
  nonce: string;
}

/** What a waiter saw in the lock file: the exact bytes and inode, to recognise the same file later. */
interface Seen {
  raw: string;
  ino: number;
  mtimeMs: number;
  owner: Owner | undefined;
}

const DEFAULT_TIMEOUT_MS = 120_000;
/** An unreadable (empty, half-written) lock or guard older than this is taken as abandoned. Writing it takes microseconds. */
const UNREADABLE_STALE_MS = 10_000;
const GUARD_STALE_MS = 10_000;
const MAX_BACKOFF_MS = 100;

const inProcess = new Map<string, Promise<void>>();

export async function withLock<T>(lockPath: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const key = path.resolve(lockPath);
  const prev = inProcess.get(key) ?? Promise.resolve();
  let done!: () => void;
  const mine = new Promise<void>((resolve) => { done = resolve; });
  const tail = prev.then(() => mine);
  inProcess.set(key, tail);
  try {
    await prev;
    const me = await acquire(key, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    try {
      return await fn();
    } finally {
      await releaseLock(key, me);
    }
  } finally {
    done();
    if (inProcess.get(key) === tail) inProcess.delete(key);
  }
}

async function acquire(lockPath: string, timeoutMs: number): Promise<Owner> {
  const me: Owner = { pid: process.pid, hostname: hostname(), time: '', nonce: randomBytes(8).toString('hex') };
  const deadline = Date.now() + timeoutMs;
  let backoff = 2;
  for (;;) {
    me.time = new Date().toISOString();
    if (await createExclusive(lockPath, JSON.stringify(me) + '\n')) return me;
    const seen = await readLockFile(lockPath);
    if (seen === undefined) continue; // released between our create and our read: try again at once
    if (isAbandoned(seen, UNREADABLE_STALE_MS) && await steal(lockPath, seen)) continue;
    if (Date.now() >= deadline) throw lockedError(lockPath, seen);
    await sleep(backoff + Math.random() * backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
}

/** O_EXCL create; false when it already exists. Any other failure (read-only, no such directory) is the caller's error. */
async function createExclusive(file: string, content: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(file, 'wx', 0o644);
  } catch (e) {
    if (isErrno(e, 'EEXIST')) return false;
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new HoistError('LOCK_FAILED', `${file}: cannot create lock file (${code}); check that ${path.dirname(file)} exists and is writable`, { cause: e });
  }
  try {
    await fh.writeFile(content);
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(file).catch(() => {}); // an empty lock would stall everyone until it counts as abandoned
    throw e;
  }
  await fh.close();
  return true;
}

async function readLockFile(file: string): Promise<Seen | undefined> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return undefined;
    throw e;
  }
  try {
    const st = await fh.stat();
    const raw = await fh.readFile('utf8');
    return { raw, ino: st.ino, mtimeMs: st.mtimeMs, owner: parseOwner(raw) };
  } finally {
    await fh.close();
  }
}

function parseOwner(raw: string): Owner | undefined {
  try {
    const o = JSON.parse(raw) as Partial<Owner>;
    if (typeof o.pid === 'number' && typeof o.hostname === 'string' && typeof o.nonce === 'string') {
      return { pid: o.pid, hostname: o.hostname, time: String(o.time ?? ''), nonce: o.nonce };
    }
  } catch {
    // empty or half-written: the owner is between create and write, or crashed there
  }
  return undefined;
}

/** True when `pid` names a running process on this machine (EPERM: it runs, as another user). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return !isErrno(e, 'ESRCH');
  }
}

/** Owned by a process on this host that no longer runs; or unreadable for longer than a write could take. */
function isAbandoned(seen: Seen, unreadableStaleMs: number): boolean {
  if (seen.owner === undefined) return Date.now() - seen.mtimeMs > unreadableStaleMs;
  return seen.owner.hostname === hostname() && !pidAlive(seen.owner.pid);
}

/** Removes the abandoned lock `seen` if it is still that very file; see the header for why the guard. */
async function steal(lockPath: string, seen: Seen): Promise<boolean> {
  const guard = `${lockPath}.steal`;
  const me: Owner = { pid: process.pid, hostname: hostname(), time: new Date().toISOString(), nonce: randomBytes(8).toString('hex') };
  if (!await createExclusive(guard, JSON.stringify(me) + '\n')) {
    const g = await readLockFile(guard);
    if (g !== undefined && isAbandoned(g, GUARD_STALE_MS)) await unlinkIfSame(guard, g);
    return false;
  }
  try {
    const now = await readLockFile(lockPath);
    if (now === undefined) return true;
    if (now.ino === seen.ino && now.raw === seen.raw) {
      await unlink(lockPath).catch((e: unknown) => { if (!isErrno(e, 'ENOENT')) throw e; });
      return true;
    }
    return false;
  } finally {
    await unlinkIfSame(guard, undefined, me.nonce);
  }
}

/** Unlinks `file` when it still is what was seen (or still carries `nonce`); best effort. */
async function unlinkIfSame(file: string, seen: Seen | undefined, nonce?: string): Promise<void> {
  const now = await readLockFile(file).catch(() => undefined);
  if (now === undefined) return;
  const same = nonce !== undefined ? now.owner?.nonce === nonce : seen !== undefined && now.ino === seen.ino && now.raw === seen.raw;
  if (same) await unlink(file).catch(() => {});
}

async function releaseLock(lockPath: string, me: Owner): Promise<void> {
  // Only ever remove our own file: if it were somehow not ours any more, unlinking would free someone else's lock.
  await unlinkIfSame(lockPath, undefined, me.nonce);
}

function lockedError(lockPath: string, seen: Seen): HoistError {
  const who = seen.owner ? `pid ${seen.owner.pid} on ${seen.owner.hostname} since ${seen.owner.time}` : 'another process';
  return new HoistError('LOCKED',
    `${lockPath}: locked by ${who}; wait for that hoist to finish, or if none is running remove ${lockPath}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Who holds the lock now (for messages and tests); undefined when unlocked or unreadable. */
export async function lockHolder(lockPath: string): Promise<{ pid: number; hostname: string; time: string } | undefined> {
  const seen = await readLockFile(lockPath);
  if (seen?.owner === undefined) return undefined;
  return { pid: seen.owner.pid, hostname: seen.owner.hostname, time: seen.owner.time };
}
