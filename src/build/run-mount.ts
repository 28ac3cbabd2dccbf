/**
 * `RUN --mount=…` as BuildKit reads it (frontend/dockerfile/instructions/commands_runmount.go): a CSV list of
 * key=value fields; type bind (default), cache, tmpfs, secret (ssh is refused: no agent forwarding here).
 */
import { HoistError } from '../errors.ts';

export type RunMount =
  | { type: 'bind'; target: string; source: string; from?: string; readwrite: boolean }
  | { type: 'cache'; target: string; id: string; sharing: 'shared' | 'private' | 'locked'; readonly: boolean; from?: string; source?: string; mode?: number; uid?: number; gid?: number }
  | { type: 'tmpfs'; target: string; size?: number }
  | { type: 'secret'; id: string; target: string; required: boolean; env?: string; mode: number; uid: number; gid: number };

/** Splits `a=b,"c=d,e",f` like Go's encoding/csv (one record). */
function csvFields(s: string, where: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"' && cur === '') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (quoted) throw new HoistError('BAD_MOUNT', `${where}: unterminated quote in --mount=${s}`);
  out.push(cur);
  return out;
}

function bool(v: string | undefined, key: string, where: string): boolean {
  if (v === undefined || v === '' || v === 'true') return true;
  if (v === 'false') return false;
  throw new HoistError('BAD_MOUNT', `${where}: --mount ${key}=${v}: expected true or false`);
}

function int(v: string | undefined, key: string, where: string, base = 10): number | undefined {
  if (v === undefined) return undefined;
  const n = Number.parseInt(v, base);
  if (!Number.isFinite(n) || n < 0 || !/^[0-9a-fA-F]+$/.test(v)) throw new HoistError('BAD_MOUNT', `${where}: --mount ${key}=${v}: expected a number`);
  return n;
}

/** Parses one --mount value (already expanded). `where` is FILE:LINE:COL for messages. */
export function parseRunMount(value: string, where: string): RunMount {
  const kv = new Map<string, string | undefined>();
  for (const f of csvFields(value, where)) {
    if (f === '') continue;
    const eq = f.indexOf('=');
    const key = (eq < 0 ? f : f.slice(0, eq)).toLowerCase();
    kv.set(key, eq < 0 ? undefined : f.slice(eq + 1));
  }
  const type = kv.get('type') ?? 'bind';
  const target = kv.get('target') ?? kv.get('dst') ?? kv.get('destination');
  const source = kv.get('source') ?? kv.get('src');
  const from = kv.get('from');
  const known: Record<string, string[]> = {
    bind: ['type', 'target', 'dst', 'destination', 'source', 'src', 'from', 'rw', 'readwrite', 'ro', 'readonly'],
    cache: ['type', 'target', 'dst', 'destination', 'source', 'src', 'from', 'id', 'sharing', 'ro', 'readonly', 'mode', 'uid', 'gid'],
    tmpfs: ['type', 'target', 'dst', 'destination', 'size'],
    secret: ['type', 'id', 'target', 'dst', 'destination', 'required', 'env', 'mode', 'uid', 'gid'],
  };
  if (type === 'ssh') throw new HoistError('UNSUPPORTED', `${where}: RUN --mount=type=ssh is not supported by hoist (no SSH agent forwarding); use a secret mount`);
  const allowed = known[type];
  if (!allowed) throw new HoistError('BAD_MOUNT', `${where}: --mount type=${type}: unknown type; use bind, cache, tmpfs or secret`);
  for (const k of kv.keys()) {
    if (!allowed.includes(k)) throw new HoistError('BAD_MOUNT', `${where}: --mount option "${k}" is not valid for type=${type}; valid: ${allowed.filter((a) => a !== 'type').join(', ')}`);
  }
  if (type === 'secret') {
    const id = kv.get('id') ?? (target ? target.split('/').pop()! : undefined);
    if (!id) throw new HoistError('BAD_MOUNT', `${where}: --mount type=secret needs id=ID (and --secret id=ID,src=FILE on the command line)`);
    const envName = kv.get('env');
    return {
      type, id, target: target ?? (envName !== undefined ? '' : `/run/secrets/${id}`), required: kv.has('required') ? bool(kv.get('required'), 'required', where) : false,
      ...(envName !== undefined ? { env: envName } : {}),
      mode: int(kv.get('mode'), 'mode', where, 8) ?? 0o400, uid: int(kv.get('uid'), 'uid', where) ?? 0, gid: int(kv.get('gid'), 'gid', where) ?? 0,
    };
  }
  if (!target) throw new HoistError('BAD_MOUNT', `${where}: --mount type=${type} needs target=PATH`);
  if (type === 'tmpfs') {
    const size = kv.get('size');
    return { type, target, ...(size !== undefined ? { size: int(size, 'size', where)! } : {}) };
  }
  const readonly = kv.has('ro') ? bool(kv.get('ro'), 'ro', where) : kv.has('readonly') ? bool(kv.get('readonly'), 'readonly', where) : false;
  if (type === 'bind') {
    const rw = kv.has('rw') ? bool(kv.get('rw'), 'rw', where) : kv.has('readwrite') ? bool(kv.get('readwrite'), 'readwrite', where) : false;
    return { type, target, source: source ?? '/', ...(from !== undefined ? { from } : {}), readwrite: rw };
  }
  const sharing = kv.get('sharing') ?? 'shared';
  if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') {
    throw new HoistError('BAD_MOUNT', `${where}: --mount sharing=${sharing}: expected shared, private or locked`);
  }
  const mode = int(kv.get('mode'), 'mode', where, 8);
  const uid = int(kv.get('uid'), 'uid', where);
  const gid = int(kv.get('gid'), 'gid', where);
  return {
    type: 'cache', target, id: kv.get('id') ?? target, sharing, readonly,
    ...(from !== undefined ? { from } : {}), ...(source !== undefined ? { source } : {}),
    ...(mode !== undefined ? { mode } : {}), ...(uid !== undefined ? { uid } : {}), ...(gid !== undefined ? { gid } : {}),
  };
}
