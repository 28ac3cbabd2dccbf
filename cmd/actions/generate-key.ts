/**
 * `hoist generate-key --output-prefix NAME` (skopeo's generate-sigstore-key): an ECDSA P-256 key pair in
 * NAME.private (encrypted, as cosign and skopeo read it) and NAME.pub. Never overwrites a file.
 */
import { lstat, rm, writeFile } from 'node:fs/promises';
import type { GlobalOptions } from '../main.ts';
import { HoistError, isErrno } from '../../src/errors.ts';

interface GenerateKeyFlags {
  outputPrefix?: string;
  passphraseFile?: string;
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw e;
  }
}

export default async function generateKey(_g: GlobalOptions, flags: GenerateKeyFlags): Promise<number> {
  if (flags.outputPrefix === undefined || flags.outputPrefix === '') {
    throw new HoistError('BAD_FLAG', 'hoist generate-key needs --output-prefix NAME (the key pair is written to NAME.private and NAME.pub)', { exitCode: 2 });
  }
  const privateFile = `${flags.outputPrefix}.private`;
  const publicFile = `${flags.outputPrefix}.pub`;
  for (const f of [privateFile, publicFile]) {
    if (await exists(f)) throw new HoistError('EXISTS', `${f} already exists; refusing to overwrite it (pick another --output-prefix or remove the file)`);
  }
  const { getPassphrase } = await import('../../src/sign/passphrase.ts');
  const { generateKeyPair } = await import('../../src/sign/keys.ts');
  const passphrase = await getPassphrase({ ...(flags.passphraseFile !== undefined ? { file: flags.passphraseFile } : {}), what: 'the new private key', confirm: true });
  const pair = generateKeyPair(passphrase);
  // 'wx': a file that appeared since the check is not overwritten either.
  await writeFile(privateFile, pair.privateKeyPem, { flag: 'wx', mode: 0o600 });
  try {
    await writeFile(publicFile, pair.publicKeyPem, { flag: 'wx', mode: 0o644 });
  } catch (e) {
    await rm(privateFile, { force: true });
    if (isErrno(e, 'EEXIST')) throw new HoistError('EXISTS', `${publicFile} already exists; refusing to overwrite it`);
    throw e;
  }
  process.stdout.write(`Key written to ${JSON.stringify(privateFile)} and ${JSON.stringify(publicFile)}\n`);
  return 0;
}
