/**
 * Where registry credentials come from, the way podman/skopeo (containers-auth.json) and docker find them, and
 * `login`/`logout` edits of auth.json. No CLI here: callers pass --creds / --authfile values in.
 *
 * Lookup order: --creds; then the auth file the user named (--authfile, else $REGISTRY_AUTH_FILE) alone — as
 * containers/image does — else $XDG_RUNTIME_DIR/containers/auth.json, $XDG_CONFIG_HOME/containers/auth.json
 * (~/.config), and docker's $DOCKER_CONFIG/config.json (~/.docker). In each file: credHelpers[host], credsStore,
 * then `auths` (base64 `auth` or `identitytoken`; keys may be `host`, `https://host/…`, `host/namespace`).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { HoistError, isErrno } from '../errors.ts';
import type { Credentials } from './auth.ts';
import { DOCKER_HUB, normalizeRegistryHost } from './host.ts';

export interface CredentialOptions {
  /** `--creds USER:PASS` */
  creds?: string;
  /** `--authfile PATH` */
  authfile?: string;
  /** Repository, so `host/namespace` keys in auth files can match most specifically. */
  repo?: string;
  /** Environment to read (default process.env); HOME in it is the home directory. */
  env?: NodeJS.ProcessEnv;
}

interface AuthEntry {
  auth?: string;
  identitytoken?: string;
  [k: string]: unknown;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [k: string]: unknown;
}

/** The legacy key docker itself uses for Docker Hub (and sends to credential helpers). */
const DOCKER_HUB_LEGACY_KEY = 'https://index.docker.io/v1/';

function homeOf(env: NodeJS.ProcessEnv): string {
  return env.HOME || os.homedir();
}

/** `--creds user:pass` → credentials (the password may contain ':'). */
export function parseCredsFlag(creds: string): Credentials {
  const i = creds.indexOf(':');
  if (i <= 0) throw new HoistError('BAD_CREDS', `--creds: expected USERNAME:PASSWORD (got ${i === 0 ? 'an empty username' : 'no ":"'})`, { exitCode: 2 });
  return { username: creds.slice(0, i), password: creds.slice(i + 1) };
}

/** The auth files to read, in order. A user-named file is read alone. */
export function authFilePaths(authfile: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (authfile) return [authfile];
  if (env.REGISTRY_AUTH_FILE) return [env.REGISTRY_AUTH_FILE];
  const home = homeOf(env);
  const out: string[] = [];
  if (env.XDG_RUNTIME_DIR) out.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  out.push(path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'containers', 'auth.json'));
  out.push(path.join(env.DOCKER_CONFIG || path.join(home, '.docker'), 'config.json'));
  return out;
}

/** Where login writes: the user-named file, else the first containers auth.json location. */
export function defaultAuthFileForWrite(authfile: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (authfile) return authfile;
  if (env.REGISTRY_AUTH_FILE) return env.REGISTRY_AUTH_FILE;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json');
  return path.join(env.XDG_CONFIG_HOME || path.join(homeOf(env), '.config'), 'containers', 'auth.json');
}

/**
 * An auth.json key in the form lookups compare: `https://index.docker.io/v1/` → `docker.io`,
 * `https://quay.io` → `quay.io`, `quay.io/ns/repo` stays (a namespaced key).
 */
export function normalizeAuthKey(key: string): string {
  let k = key.trim();
  const schemeLess = k.replace(/^https?:\/\//i, '');
  if (schemeLess !== k) k = schemeLess.split('/')[0]!; // a URL key names a host; its path is a legacy API path
  const slash = k.indexOf('/');
  const host = slash < 0 ? k : k.slice(0, slash);
  return normalizeRegistryHost(host) + (slash < 0 ? '' : k.slice(slash).replace(/\/+$/, ''));
}

async function readAuthFile(file: string): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) return undefined;
    throw new HoistError('AUTH_FILE', `${file}: cannot read auth file (${(e as Error).message})`, { cause: e });
  }
  if (text.trim() === '') return {};
  try {
    const j = JSON.parse(text) as unknown;
    if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new Error('not an object');
    return j as AuthFile;
  } catch {
    throw new HoistError('AUTH_FILE', `${file}: not a valid auth file (expected JSON like {"auths": {…}}); fix or remove it`);
  }
}

function decodeEntry(e: AuthEntry | undefined, file: string, key: string): Credentials | undefined {
  if (!e || typeof e !== 'object') return undefined;
  if (typeof e.identitytoken === 'string' && e.identitytoken !== '') return { identityToken: e.identitytoken };
  if (typeof e.auth !== 'string' || e.auth === '') return undefined;
  const plain = Buffer.from(e.auth, 'base64').toString('utf8');
  const i = plain.indexOf(':');
  if (i <= 0) throw new HoistError('AUTH_FILE', `${file}: the "auth" of "${key}" is not base64 of USERNAME:PASSWORD; log in again`);
  return { username: plain.slice(0, i), password: plain.slice(i + 1) };
}

/** `host/a/b/c` candidates, most specific first: host/a/b/c, host/a/b, host/a, host. */
function lookupKeys(host: string, repo: string | undefined): string[] {
  const keys: string[] = [];
  if (repo) {
    const parts = repo.split('/');
    for (let n = parts.length; n > 0; n--) keys.push(`${host}/${parts.slice(0, n).join('/')}`);
  }
  keys.push(host);
  return keys;
}

/**
 * Runs `docker-credential-NAME get` with the server on stdin. Undefined when the helper has nothing for it.
 * `required`: a helper named for this very host must work; a catch-all credsStore may be absent.
 */
export async function credentialHelperGet(helper: string, server: string, env: NodeJS.ProcessEnv, required: boolean): Promise<Credentials | undefined> {
  const bin = `docker-credential-${helper}`;
  const out = await new Promise<{ code: number | string | null; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(bin, ['get'], { env, timeout: 60_000, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? ((err as NodeJS.ErrnoException).code ?? 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    child.stdin?.on('error', () => {});
    child.stdin?.end(server);
  });
  if (out.code === 'ENOENT') {
    if (!required) return undefined;
    throw new HoistError('CRED_HELPER', `credential helper ${bin} (named for ${server} in the auth file) is not installed or not in PATH`);
  }
  if (out.code !== 0) {
    // The helpers' documented "nothing stored" answer.
    if (/credentials not found/i.test(out.stdout + out.stderr)) return undefined;
    if (!required) return undefined;
    // The helper's own words may describe the store, never the secret: it failed before printing one.
    const said = (out.stdout.trim() || out.stderr.trim()).split('\n')[0]?.slice(0, 200) ?? '';
    throw new HoistError('CRED_HELPER', `credential helper ${bin} failed for ${server}${said ? ` (${said})` : ''}`);
  }
  let j: { Username?: unknown; Secret?: unknown };
  try {
    j = JSON.parse(out.stdout) as typeof j;
  } catch {
    throw new HoistError('CRED_HELPER', `credential helper ${bin} printed something that is not JSON for ${server}`);
  }
  if (typeof j.Secret !== 'string' || j.Secret === '') return undefined;
  if (j.Username === '<token>') return { identityToken: j.Secret };
  if (typeof j.Username !== 'string' || j.Username === '') return undefined;
  return { username: j.Username, password: j.Secret };
}

/** Credentials for `host`, or undefined for anonymous access. */
export async function resolveCredentials(host: string, opts: CredentialOptions = {}): Promise<Credentials | undefined> {
  if (opts.creds !== undefined) return parseCredsFlag(opts.creds);
  const env = opts.env ?? process.env;
  const reg = normalizeRegistryHost(host);
  const helperServer = reg === DOCKER_HUB ? DOCKER_HUB_LEGACY_KEY : reg;
  for (const file of authFilePaths(opts.authfile, env)) {
    const f = await readAuthFile(file);
    if (!f) {
      if (file === opts.authfile) throw new HoistError('AUTH_FILE', `--authfile ${file}: no such file; run hoist login --authfile ${file} ${host} first`);
      continue;
    }
    const helpers = f.credHelpers ?? {};
    const helper = Object.entries(helpers).find(([k]) => normalizeAuthKey(k) === reg)?.[1];
    if (typeof helper === 'string' && helper !== '') {
      const c = await credentialHelperGet(helper, helperServer, env, true);
      if (c) return c;
      continue;
    }
    if (typeof f.credsStore === 'string' && f.credsStore !== '') {
      const c = await credentialHelperGet(f.credsStore, helperServer, env, false);
      if (c) return c;
    }
    const auths = f.auths ?? {};
    const byKey = new Map<string, [string, AuthEntry]>();
    for (const [k, v] of Object.entries(auths)) {
      const nk = normalizeAuthKey(k);
      // An exact key wins over a legacy URL form of the same host.
      if (!byKey.has(nk) || k === nk) byKey.set(nk, [k, v]);
    }
    for (const key of lookupKeys(reg, opts.repo)) {
      const hit = byKey.get(key);
      const c = hit ? decodeEntry(hit[1], file, hit[0]) : undefined;
      if (c) return c;
    }
  }
  return undefined;
}

/** Writes JSON next to the target and renames it over, so readers never see half a file; mode 0600. */
async function writeAuthFileAtomic(file: string, data: AuthFile): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(data, null, '\t')}\n`);
    await fh.chmod(0o600); // in case the umask or an odd filesystem widened it
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new HoistError('AUTH_FILE', `${file}: cannot write auth file (${(e as Error).message})`, { cause: e });
  }
}

/** Keys of `auths` that name `host` itself (not a namespace under it). */
function keysForHost(auths: Record<string, AuthEntry>, host: string): string[] {
  const reg = normalizeRegistryHost(host);
  return Object.keys(auths).filter((k) => normalizeAuthKey(k) === reg);
}

/** Stores USER:PASS for `host` (login). Returns the file written. Other entries and keys are kept. */
export async function saveCredentials(host: string, username: string, password: string, authfile?: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (username === '' || username.includes(':')) {
    throw new HoistError('BAD_CREDS', `login ${host}: the username must be non-empty and contain no ":"`, { exitCode: 2 });
  }
  const file = defaultAuthFileForWrite(authfile, env);
  const data = (await readAuthFile(file)) ?? {};
  const auths = (data.auths && typeof data.auths === 'object' ? data.auths : {}) as Record<string, AuthEntry>;
  for (const k of keysForHost(auths, host)) delete auths[k];
  auths[normalizeRegistryHost(host)] = { auth: Buffer.from(`${username}:${password}`, 'utf8').toString('base64') };
  data.auths = auths;
  await writeAuthFileAtomic(file, data);
  return file;
}

/** Forgets `host` (logout). False when there was nothing stored for it. */
export async function removeCredentials(host: string, authfile?: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const file = defaultAuthFileForWrite(authfile, env);
  const data = await readAuthFile(file);
  if (!data?.auths) return false;
  const keys = keysForHost(data.auths, host);
  if (keys.length === 0) return false;
  for (const k of keys) delete data.auths[k];
  await writeAuthFileAtomic(file, data);
  return true;
}
