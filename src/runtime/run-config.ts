/**
 * What a container runs with, from the image config and `hoist run`'s flags, by docker's rules:
 *   - docker CLI: `--env-file` lines first, then `-e` (a bare `-e K` takes K from the host, or stays bare);
 *   - moby's merge(): `--entrypoint` replaces the image Entrypoint and drops the image Cmd ("" clears it);
 *     command args replace Cmd; user env first, then image env whose key the user did not set; User and
 *     WorkingDir fall back to the image's;
 *   - moby's CreateDaemonEnvironment(): PATH (default), HOSTNAME, TERM=xterm with a tty, then the container env
 *     replaces by key or appends; a bare `K` (no `=`) unsets K.
 * runc then sets the variables one by one, so a key given twice ends up once, at its first place, with its
 * last value: the list returned here is that final environment.
 */
import { posix } from 'node:path';
import { HoistError } from '../errors.ts';
import type { ContainerConfig } from '../oci/types.ts';

/** docker's (and runc spec's) PATH when the image sets none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The part of an image config `config` that matters to running it. */
export type ImageConfigPart = Pick<ContainerConfig, 'Entrypoint' | 'Cmd' | 'Env' | 'WorkingDir' | 'User'>;

export interface RunRequest {
  /** --entrypoint: one string, not split (docker). '' clears the image's Entrypoint (and its Cmd). */
  entrypoint?: string;
  /** The arguments after IMAGE; replace the image Cmd when non-empty. */
  command?: string[];
  /** -e values as typed, in order: `K=V`, or `K` to take K from the host env (unset there: unsets K). */
  env?: string[];
  /** --env-file entries, already read with parseEnvFile (all files, in flag order). */
  envFiles?: string[];
  /** -w / --workdir; must be absolute. */
  workdir?: string;
  /** -u / --user; '' or undefined: the image's User. */
  user?: string;
  /** -t: adds TERM=xterm unless set. */
  tty?: boolean;
  /** The container's hostname, exported as HOSTNAME (left out when undefined). */
  hostname?: string;
}

export interface RunConfig {
  /** argv: Entrypoint + Cmd; never empty. */
  args: string[];
  /** The process environment, `K=V` entries with unique keys. HOME is not included: see withHome. */
  env: string[];
  /** Absolute, normalized working directory in the container. */
  cwd: string;
  /** The user spec to resolve with resolveUser (undefined: root). */
  user: string | undefined;
}

const keyOf = (e: string): string => {
  const i = e.indexOf('=');
  return i < 0 ? e : e.slice(0, i);
};

/** docker CLI's ValidateEnv for one `-e` value. */
function cliEnv(v: string, hostEnv: NodeJS.ProcessEnv): string {
  const k = keyOf(v);
  if (k === '') {
    throw new HoistError('BAD_ENV', `-e ${v}: invalid environment variable (no name before '='); write -e NAME=VALUE`,
      { exitCode: 125 });
  }
  if (v.includes('=')) return v;
  const host = hostEnv[k];
  return host === undefined ? v : `${k}=${host}`;
}

export function runConfig(image: ImageConfigPart | undefined, req: RunRequest, hostEnv: NodeJS.ProcessEnv): RunConfig {
  // Command: the merge() rules, then the ["" ] entrypoint reset, then "no command specified".
  const command = req.command ?? [];
  let entrypoint: string[];
  let cmd: string[];
  if (req.entrypoint !== undefined) {
    entrypoint = req.entrypoint === '' ? [] : [req.entrypoint];
    cmd = command;
  } else {
    entrypoint = image?.Entrypoint ?? [];
    cmd = command.length > 0 ? command : image?.Cmd ?? [];
  }
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new HoistError('NO_COMMAND',
      'no command specified: the image has no Entrypoint or Cmd; give a command after the image name',
      { exitCode: 125 });
  }

  // Environment.
  const userEnv = [...(req.envFiles ?? []), ...(req.env ?? []).map((v) => cliEnv(v, hostEnv))];
  const userKeys = new Set(userEnv.map(keyOf));
  const containerEnv = [...userEnv, ...(image?.Env ?? []).filter((e) => !userKeys.has(keyOf(e)))];
  const defaults = [`PATH=${DEFAULT_PATH}`];
  if (req.hostname !== undefined) defaults.push(`HOSTNAME=${req.hostname}`);
  if (req.tty === true) defaults.push('TERM=xterm');
  // ReplaceOrAppendEnvValues: only the defaults' slots are replaced (or blanked by a bare K); the rest appends.
  const slots = [...defaults];
  const slotOf = new Map(defaults.map((e, i) => [keyOf(e), i]));
  for (const e of containerEnv) {
    const i = slotOf.get(keyOf(e));
    if (!e.includes('=')) {
      if (i !== undefined) slots[i] = '';
    } else if (i !== undefined) {
      slots[i] = e;
    } else {
      slots.push(e);
    }
  }
  // runc's setenv of each entry: a repeated key keeps its first place and takes its last value.
  const env = new Map<string, string>();
  for (const e of slots) if (e !== '') env.set(keyOf(e), e);

  // Working directory.
  const wd = req.workdir !== undefined && req.workdir !== '' ? req.workdir : image?.WorkingDir ?? '';
  if (wd !== '' && !wd.startsWith('/')) {
    const from = req.workdir !== undefined && req.workdir !== '' ? `-w ${wd}` : `the image's WorkingDir "${wd}"`;
    throw new HoistError('BAD_WORKDIR', `${from}: the working directory must be an absolute path; pass -w /path`,
      { exitCode: 125 });
  }
  const cwd = wd === '' ? '/' : posix.normalize(wd).replace(/(.)\/+$/, '$1');

  const user = req.user !== undefined && req.user !== '' ? req.user : image?.User !== undefined && image.User !== '' ? image.User : undefined;
  return { args, env: [...env.values()], cwd, user };
}

/** Append HOME=home unless the environment already has HOME (docker/runc take it from passwd this way). */
export function withHome(env: string[], home: string): string[] {
  return env.some((e) => keyOf(e) === 'HOME') ? [...env] : [...env, `HOME=${home}`];
}

// Go's unicode.IsSpace set (JS's \s differs: it has U+FEFF and lacks U+0085).
const LEADING_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/**
 * Parse an --env-file as docker does: one `K=V` per line taken literally (no quotes, no escapes, trailing
 * spaces kept), leading whitespace dropped, blank lines and `#` lines skipped, a bare `K` takes the host's
 * value (left out when the host has none). `where` names the file in errors. Bytes are checked to be UTF-8.
 */
export function parseEnvFile(text: string | Uint8Array, where: string, hostEnv: NodeJS.ProcessEnv): string[] {
  let s: string;
  if (typeof text === 'string') {
    s = text;
  } else {
    try {
      s = new TextDecoder('utf-8', { fatal: true }).decode(text);
    } catch (e) {
      throw new HoistError('BAD_ENV_FILE', `--env-file ${where}: not valid UTF-8; save the file as UTF-8`,
        { exitCode: 125, cause: e });
    }
  }
  if (s.startsWith('\ufeff')) s = s.slice(1);
  const out: string[] = [];
  const lines = s.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').replace(LEADING_SPACE, ''); // bufio.ScanLines drops one trailing \r
    if (line === '' || line.startsWith('#')) return;
    const k = keyOf(line);
    if (k === '') {
      throw new HoistError('BAD_ENV_FILE', `--env-file ${where}: line ${i + 1}: no variable name in '${line}'; write NAME=VALUE`,
        { exitCode: 125 });
    }
    if (/[ \t]/.test(k)) {
      throw new HoistError('BAD_ENV_FILE',
        `--env-file ${where}: line ${i + 1}: variable '${k}' contains whitespaces; write NAME=VALUE with no spaces around '='`,
        { exitCode: 125 });
    }
    if (line.includes('=')) out.push(line);
    else if (hostEnv[k] !== undefined) out.push(`${k}=${hostEnv[k]}`);
  });
  return out;
}
