import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { RegistryClient, saveCredentials } from '../../src/registry/index.ts';
import { readAll } from '../../src/util/stream.ts';
import { promptHidden } from '../registry-flags.ts';
import { registryHostArgument } from './registry-host.ts';

interface LoginFlags {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  authfile?: string;
  tlsVerify?: boolean;
  certDir?: string;
}

/**
 * `hoist login HOST`: the credentials are tried against the registry first, so a typo never ends up in the auth
 * file (skopeo and podman do the same).
 */
export default async function login(_g: GlobalOptions, hostArg: string, flags: LoginFlags): Promise<number> {
  const host = registryHostArgument('login', hostArg);
  if (flags.password !== undefined && flags.passwordStdin) {
    throw new HoistError('BAD_FLAG', 'login: --password and --password-stdin are exclusive; pass one', { exitCode: 2 });
  }
  const username = flags.username ?? await ask('login', 'Username: ', '-u USER', false);
  let password = flags.password;
  if (flags.passwordStdin) {
    // docker and podman take the first line and drop its line ending.
    password = (await readAll(process.stdin, 1024 * 1024)).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  password ??= await ask('login', 'Password: ', '-p PASS or --password-stdin', true);
  if (username === '' || password === '') {
    throw new HoistError('BAD_CREDS', `login ${host}: the ${username === '' ? 'username' : 'password'} is empty`, { exitCode: 2 });
  }
  const client = new RegistryClient({ host, tlsVerify: flags.tlsVerify, certDir: flags.certDir, credentials: { username, password } });
  try {
    await client.ping();
  } finally {
    await client.close();
  }
  await saveCredentials(host, username, password, flags.authfile);
  process.stdout.write('Login Succeeded!\n');
  return 0;
}

async function ask(command: string, question: string, flag: string, hidden: boolean): Promise<string> {
  if (!process.stdin.isTTY) {
    throw new HoistError('BAD_CREDS', `${command}: stdin is not a terminal to ask on; pass ${flag}`, { exitCode: 2 });
  }
  if (hidden) return promptHidden(question);
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}
