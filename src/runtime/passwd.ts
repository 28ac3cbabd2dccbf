/**
 * `--user` / image `User` resolution exactly as docker does it: runc's libcontainer/user.GetExecUser reading
 * the image's /etc/passwd and /etc/group, then moby's getUser, which puts the primary gid first in the
 * supplementary list (the CVE-2022-36109 fix, so a process cannot drop its primary group via setgroups).
 *
 * Accepted forms: "", "name", "uid", "name:group", "uid:gid", "name:gid", "uid:group". Numeric parts are
 * always ids, never looked up as names. A uid or gid with no entry is fine; a name with no entry is an error.
 * Supplementary groups come from /etc/group only when the user matched a passwd entry and no group was given.
 */
import { HoistError } from '../errors.ts';
import { dirRoot, type RootFiles } from './root-files.ts';

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** What goes into the OCI spec's process.user.additionalGids: the primary gid, then /etc/group memberships. */
  additionalGids: number[];
  /** The home directory from passwd, '/' without one (runc's default). */
  home: string;
  /** The passwd name when the user matched an entry. */
  name?: string;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

const MAX_ID = 2 ** 31 - 1; // runc's limit, for 32-bit compatibility

/** Go's strconv.Atoi: optional sign, ASCII digits, must fit in int64. undefined when it would fail. */
function goAtoi(s: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = BigInt(s);
  if (n > 2n ** 63n - 1n || n < -(2n ** 63n)) return undefined;
  return Number(n);
}

/** Fields that fail to parse as numbers count as 0, as in runc (some files misbehave). */
function num(s: string | undefined): number {
  return goAtoi(s ?? '') ?? 0;
}

function lines(text: string | undefined): string[] {
  if (text === undefined) return [];
  // Comment lines are skipped (runc would read "#…" as a user named "#…" with uid 0).
  return text.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
}

export function parsePasswd(text: string | undefined): PasswdEntry[] {
  return lines(text).map((l) => {
    const f = l.trim().split(':');
    return { name: f[0] ?? '', uid: num(f[2]), gid: num(f[3]), home: f[5] ?? '' };
  });
}

export function parseGroup(text: string | undefined): GroupEntry[] {
  return lines(text).map((l) => {
    const f = l.replace(/\r$/, '').split(':');
    const list = f[3] ?? '';
    return { name: f[0] ?? '', gid: num(f[2]), members: list === '' ? [] : list.split(',') };
  });
}

function notFound(what: 'user' | 'group', name: string): HoistError {
  const file = what === 'user' ? 'passwd' : 'group';
  return new HoistError('USER_NOT_FOUND', `unable to find ${what} ${name}: no matching entries in ${file} file`,
    { exitCode: 125 });
}

function checkRange(id: number, spec: string): number {
  if (id < 0 || id > MAX_ID) {
    throw new HoistError('BAD_USER', `--user ${spec}: uids and gids must be in range 0-${MAX_ID}`, { exitCode: 125 });
  }
  return id;
}

/** Resolve `user` (docker's --user / image User) against the rootfs's /etc/passwd and /etc/group. */
export function resolveUser(rootfs: string | RootFiles, user: string | undefined): ResolvedUser {
  const root = typeof rootfs === 'string' ? dirRoot(rootfs) : rootfs;
  const spec = user ?? '';
  const [userArg = '', groupArg = ''] = spec.split(':');
  const uidArg = goAtoi(userArg);
  const gidArg = goAtoi(groupArg);

  const passwd = parsePasswd(root.readText('/etc/passwd'));
  const match = passwd.find((u) => userArg === '' ? u.uid === 0 : uidArg !== undefined ? u.uid === uidArg : u.name === userArg);

  let uid = 0;
  let gid = 0;
  let home = '/';
  if (match !== undefined) {
    ({ uid, gid } = match);
    if (match.home !== '') home = match.home;
  } else if (userArg !== '') {
    if (uidArg === undefined) throw notFound('user', userArg);
    uid = checkRange(uidArg, spec);
  }

  const sgids: number[] = [];
  const matchedName = match?.name ?? '';
  if (groupArg !== '' || matchedName !== '') {
    const groups = parseGroup(root.readText('/etc/group'));
    if (groupArg !== '') {
      const g = groups.find((e) => gidArg !== undefined ? e.gid === gidArg : e.name === groupArg);
      if (g !== undefined) gid = g.gid;
      else if (gidArg === undefined) throw notFound('group', groupArg);
      else gid = checkRange(gidArg, spec);
    } else {
      // Implicit form only: the groups that list the user by name.
      for (const g of groups) if (g.members.includes(matchedName)) sgids.push(g.gid);
    }
  }

  const out: ResolvedUser = { uid, gid, additionalGids: [gid, ...sgids], home };
  if (match !== undefined) out.name = match.name;
  return out;
}
