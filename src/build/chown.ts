/**
 * `COPY --chown` / `ADD --chown` values, resolved the way BuildKit does (client/llb WithUser + the file op's
 * readUser): the value splits at the first ':' into a user and an optional group; each part is an id when it is
 * `root` or a decimal int32, else a name looked up in the destination image's /etc/passwd or /etc/group.
 * - `uid` alone → gid = uid (BuildKit does not look numeric users up, even when passwd has a primary group);
 * - `name` alone → that passwd entry's uid and primary gid;
 * - `user:group` → the group part replaces the gid.
 * One deliberate difference: BuildKit silently uses 0 for a name it cannot find; hoist fails instead (a file
 * owned by root where a user was asked for is a quiet security bug).
 */
import { HoistError } from '../errors.ts';
import { parseGroup, parsePasswd } from '../runtime/passwd.ts';

export interface ChownFiles {
  /** The text of the image's /etc/passwd, if it has one. */
  passwd?: string;
  /** The text of the image's /etc/group, if it has one. */
  group?: string;
}

const MAX_ID = 2 ** 31 - 1;

/** BuildKit's parseUID: `root` is 0; otherwise strconv.ParseInt(s, 10, 32). undefined when it is a name. */
function parseId(s: string, spec: string): number | undefined {
  if (s === 'root') return 0;
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  if (n < -(2 ** 31) || n > MAX_ID) return undefined; // out of int32: ParseInt fails, so BuildKit treats it as a name
  if (n < 0) throw new HoistError('BAD_CHOWN', `--chown=${spec}: ids must be between 0 and ${MAX_ID}`);
  return n;
}

/** Resolves a --chown value against the image's passwd and group files. Errors are one-line HoistErrors. */
export function resolveChown(spec: string, files: ChownFiles): { uid: number; gid: number } {
  if (spec === '') throw new HoistError('BAD_CHOWN', '--chown needs a value: user, user:group, uid or uid:gid');
  const colon = spec.indexOf(':');
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);

  let uid = 0;
  let gid = 0;
  // An empty user (`:group`) finds no passwd entry in BuildKit and stays 0.
  if (userPart !== '') {
    const id = parseId(userPart, spec);
    if (id !== undefined) {
      uid = id;
      gid = id;
    } else {
      const u = parsePasswd(files.passwd).find((e) => e.name === userPart);
      if (u === undefined) {
        const where = files.passwd === undefined ? 'the image has no /etc/passwd' : `no user "${userPart}" in the image's /etc/passwd`;
        throw new HoistError('USER_NOT_FOUND', `--chown=${spec}: ${where}; use a numeric uid:gid or create the user in an earlier step`);
      }
      uid = u.uid;
      gid = u.gid;
    }
  }
  // An empty group (`user:`) finds no group entry in BuildKit: the user's gid stays.
  if (groupPart !== undefined && groupPart !== '') {
    const id = parseId(groupPart, spec);
    if (id !== undefined) {
      gid = id;
    } else {
      const g = parseGroup(files.group).find((e) => e.name === groupPart);
      if (g === undefined) {
        const where = files.group === undefined ? 'the image has no /etc/group' : `no group "${groupPart}" in the image's /etc/group`;
        throw new HoistError('GROUP_NOT_FOUND', `--chown=${spec}: ${where}; use a numeric gid or create the group in an earlier step`);
      }
      gid = g.gid;
    }
  }
  return { uid, gid };
}
