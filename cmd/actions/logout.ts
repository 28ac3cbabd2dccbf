import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { GlobalOptions } from '../main.ts';
import { HoistError, isErrno } from '../../src/errors.ts';
import { removeCredentials } from '../../src/registry/index.ts';
import { defaultAuthFileForWrite } from '../../src/registry/credentials.ts';
import { registryHostArgument } from './registry-host.ts';

interface LogoutFlags {
  all?: boolean;
  authfile?: string;
}

export default async function logout(_g: GlobalOptions, hostArg: string | undefined, flags: LogoutFlags): Promise<number> {
  if (flags.all) {
    if (hostArg !== undefined) throw new HoistError('BAD_FLAG', 'logout: give a host or --all, not both', { exitCode: 2 });
    await forgetAll(defaultAuthFileForWrite(flags.authfile));
    process.stdout.write('Removed login credentials for all registries\n');
    return 0;
  }
  if (hostArg === undefined) throw new HoistError('BAD_FLAG', 'logout: give the registry host, or --all', { exitCode: 2 });
  const host = registryHostArgument('logout', hostArg);
  if (!(await removeCredentials(host, flags.authfile))) {
    throw new HoistError('NOT_FOUND', `logout: not logged into ${host} (in ${defaultAuthFileForWrite(flags.authfile)})`);
  }
  process.stdout.write(`Removed login credentials for ${host}\n`);
  return 0;
}

/** Empties `auths` and keeps everything else in the file (credHelpers, docker's own keys), written atomically. */
async function forgetAll(file: string): Promise<void> {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw new HoistError('AUTH_FILE', `${file}: cannot read auth file (${(e as Error).message}); fix or remove it`, { cause: e });
  }
  if (typeof data !== 'object' || data === null) data = {};
  data['auths'] = {};
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(data, null, '\t')}\n`, { mode: 0o600 });
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new HoistError('AUTH_FILE', `${file}: cannot write auth file (${(e as Error).message})`, { cause: e });
  }
}
