/**
 * skopeo's registry flags, shared by copy, inspect, list-tags, delete, login: parsing of their values (Go bools,
 * Go durations, USER[:PASS]) and turning them into the RegistryAccess a transport opens with.
 * Cheap to import: nothing here loads registry code.
 */
import { HoistError } from '../src/errors.ts';
import type { RegistryAccess } from '../src/transport/types.ts';
import type { Platform } from '../src/oci/types.ts';

/**
 * Long boolean flags that skopeo users write Go-style (`--tls-verify=false`). Commander has no `=value` form for a
 * boolean, so hoist.ts rewrites them before parsing: `=true` → `--flag`, `=false` → `--no-flag` (a hidden
 * negation) or nothing when the flag is off by default.
 */
export const NEGATABLE_BOOL_FLAGS = ['tls-verify', 'src-tls-verify', 'dest-tls-verify'];
export const PLAIN_BOOL_FLAGS = [
  'all', 'remove-signatures', 'preserve-digests', 'quiet', 'raw', 'config', 'no-tags', 'password-stdin', 'debug', 'all-tags',
  'insecure-policy',
];

const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const GO_FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** Go's strconv.ParseBool, with a one-line error naming the flag. */
export function parseGoBool(flag: string, value: string): boolean {
  if (GO_TRUE.has(value)) return true;
  if (GO_FALSE.has(value)) return false;
  throw new HoistError('BAD_FLAG', `--${flag}=${value}: not a boolean; use --${flag}=true or --${flag}=false`, { exitCode: 2 });
}

/**
 * Rewrites `--flag=BOOL` in argv (after the subcommand, before `--`) into what commander parses. Other arguments
 * are untouched, so a value that merely looks like a flag inside `run`'s command line is never changed: only
 * argv of the commands in `commands` is rewritten.
 */
/**
 * `run`'s options that take a value: for run, rewriting stops at the image (the first positional), because what
 * follows is the container's command line and must reach it untouched.
 */
const RUN_VALUE_OPTIONS = new Set(['-e', '--env', '--env-file', '-v', '--volume', '--tmpfs', '-w', '--workdir', '-u', '--user',
  '--entrypoint', '--network', '--net', '--hostname', '--name', '--pull', '--platform', '--runtime', '--userns', '--creds',
  '--authfile', '--cert-dir', '--retry-times', '--retry-delay', '--root', '--policy', '--signature-policy']);

/** hoist's options before the command name that take a value (the word after them is not the command). */
const GLOBAL_VALUE_OPTIONS = new Set(['--root', '--policy']);

export function rewriteGoBoolFlags(argv: string[], commands: Set<string>): string[] {
  const out = argv.slice(0, 2);
  let inCommand = false;
  let done = false;
  let isRun = false;
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (inCommand && isRun && !done && !a.startsWith('-') && !RUN_VALUE_OPTIONS.has(argv[i - 1]!)) done = true; // the image
    if (!inCommand && !done) {
      if (commands.has(a) && !GLOBAL_VALUE_OPTIONS.has(argv[i - 1]!)) {
        inCommand = true;
        isRun = a === 'run';
      }
      else if (!a.startsWith('-') && !GLOBAL_VALUE_OPTIONS.has(argv[i - 1]!)) done = true; // another command: leave it alone
      out.push(a);
      continue;
    }
    if (!inCommand || done || a === '--') {
      if (a === '--') done = true;
      out.push(a);
      continue;
    }
    const m = /^--([a-z][a-z-]*)=(.*)$/s.exec(a);
    if (m && (NEGATABLE_BOOL_FLAGS.includes(m[1]!) || PLAIN_BOOL_FLAGS.includes(m[1]!))) {
      const name = m[1]!;
      const v = parseGoBool(name, m[2]!);
      if (v) out.push(`--${name}`);
      else if (NEGATABLE_BOOL_FLAGS.includes(name)) out.push(`--no-${name}`);
      else if (name === 'no-tags') out.push('--tags');
      // a default-off flag set to false: nothing to pass
      continue;
    }
    out.push(a);
  }
  return out;
}

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration (`2s`, `500ms`, `1m30s`, `1.5h`) → milliseconds. A bare `0` is allowed, as in Go. */
export function parseGoDuration(flag: string, s: string): number {
  const bad = () => new HoistError('BAD_FLAG', `--${flag} ${s}: not a duration; write it like 2s, 500ms or 1m30s`, { exitCode: 2 });
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let pos = 0;
  let total = 0;
  if (s.length === 0) throw bad();
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw bad();
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  return total;
}

/** A non-negative (or positive) integer flag value. */
export function parseIntFlag(flag: string, s: string, min = 0): number {
  if (!/^\d+$/.test(s) || Number(s) < min) {
    throw new HoistError('BAD_FLAG', `--${flag} ${s}: expected a whole number${min > 0 ? ` of at least ${min}` : ''}`, { exitCode: 2 });
  }
  return Number(s);
}

/** Flags common to every command that reaches a registry (skopeo's names), as commander hands them over. */
export interface RegistryFlags {
  creds?: string;
  authfile?: string;
  tlsVerify?: boolean;
  certDir?: string;
  retryTimes?: string;
  retryDelay?: string;
}

/** copy's per-side variants; the side-specific flag wins over the shared one. */
export interface CopyRegistryFlags extends RegistryFlags {
  srcCreds?: string;
  destCreds?: string;
  srcAuthfile?: string;
  destAuthfile?: string;
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  srcCertDir?: string;
  destCertDir?: string;
}

/**
 * `USER[:PASS]` as skopeo takes it. Without a password, skopeo asks on the terminal; hoist does too when stdin is
 * one, and otherwise says how to pass it (a prompt nobody can answer would hang a CI job).
 */
export async function resolveCredsFlag(flag: string, creds: string | undefined): Promise<string | undefined> {
  if (creds === undefined) return undefined;
  if (creds.startsWith(':') || creds === '') {
    throw new HoistError('BAD_CREDS', `--${flag}: expected USERNAME[:PASSWORD] (the username is empty)`, { exitCode: 2 });
  }
  if (creds.includes(':')) return creds;
  if (!process.stdin.isTTY) {
    throw new HoistError('BAD_CREDS', `--${flag} ${creds}: no password given and stdin is not a terminal to ask on; pass --${flag} ${creds}:PASSWORD`, { exitCode: 2 });
  }
  return `${creds}:${await promptHidden(`Password for ${creds}: `)}`;
}

/** Reads one line from the terminal without echoing it. */
export async function promptHidden(question: string): Promise<string> {
  const { createInterface } = await import('node:readline');
  const { Writable } = await import('node:stream');
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  try {
    return await new Promise<string>((resolve) => {
      rl.question(question, (answer) => resolve(answer));
      muted = true;
    });
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}

function retryOptions(f: RegistryFlags): Pick<RegistryAccess, 'retryTimes' | 'retryDelayMs'> {
  const out: Pick<RegistryAccess, 'retryTimes' | 'retryDelayMs'> = {};
  if (f.retryTimes !== undefined) out.retryTimes = parseIntFlag('retry-times', f.retryTimes);
  if (f.retryDelay !== undefined) out.retryDelayMs = parseGoDuration('retry-delay', f.retryDelay);
  return out;
}

function compact(a: RegistryAccess): RegistryAccess {
  // Transports key their client pools on this object: undefined members must not make equal accesses differ.
  return Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined)) as RegistryAccess;
}

/** RegistryAccess for a single-reference command (inspect, list-tags, delete). */
export async function registryAccess(f: RegistryFlags): Promise<RegistryAccess> {
  return compact({
    creds: await resolveCredsFlag('creds', f.creds),
    authfile: f.authfile,
    tlsVerify: f.tlsVerify,
    certDir: f.certDir,
    ...retryOptions(f),
  });
}

/** RegistryAccess for one side of a copy. */
export async function copyRegistryAccess(f: CopyRegistryFlags, side: 'src' | 'dest'): Promise<RegistryAccess> {
  const s = side === 'src';
  const sideCreds = s ? f.srcCreds : f.destCreds;
  return compact({
    creds: sideCreds !== undefined ? await resolveCredsFlag(`${side}-creds`, sideCreds) : await resolveCredsFlag('creds', f.creds),
    authfile: (s ? f.srcAuthfile : f.destAuthfile) ?? f.authfile,
    tlsVerify: (s ? f.srcTlsVerify : f.destTlsVerify) ?? f.tlsVerify,
    certDir: (s ? f.srcCertDir : f.destCertDir) ?? f.certDir,
    ...retryOptions(f),
  });
}

/** skopeo's global `--override-os/--override-arch/--override-variant`. */
export interface OverrideFlags {
  overrideOs?: string;
  overrideArch?: string;
  overrideVariant?: string;
}

/** The platform the overrides name (over `base`, this machine's by default), or undefined when none is given. */
export function overridePlatform(f: OverrideFlags, base: Platform): Platform | undefined {
  if (f.overrideOs === undefined && f.overrideArch === undefined && f.overrideVariant === undefined) return undefined;
  const p: Platform = { os: f.overrideOs ?? base.os, architecture: f.overrideArch ?? base.architecture };
  const variant = f.overrideVariant ?? (f.overrideArch === undefined ? base.variant : undefined);
  if (variant !== undefined) p.variant = variant;
  return p;
}
