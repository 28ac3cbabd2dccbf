/**
 * `hoist sign --key KEY REF`: signs an image where it is (registry, oci: layout, local store) without pulling it.
 * Prints the signed manifest digest(s) on stdout; progress on stderr.
 */
import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import type { GlobalOptions } from '../main.ts';
import { HoistError, isErrno } from '../../src/errors.ts';
import { parseImageReference } from '../../src/transport/reference.ts';
import { registryAccess, type RegistryFlags } from '../registry-flags.ts';

interface SignFlags extends RegistryFlags {
  key?: string;
  passphraseFile?: string;
  identity?: string;
  format: string;
  recursive?: boolean;
  quiet?: boolean;
  fulcioUrl?: string;
  rekorUrl?: string;
  oidcIssuer?: string;
}

export const KEYLESS_MESSAGE = 'keyless signing needs the Fulcio, Rekor and OIDC network services, which hoist does not use; sign with a key pair instead (hoist generate-key makes one)';

/** Reads a key file with a one-line error naming the flag. */
export async function readKeyFile(flag: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const why = isErrno(e, 'ENOENT') ? 'no such file' : isErrno(e, 'EACCES') ? 'permission denied' : (e as Error).message;
    throw new HoistError('BAD_KEY', `--${flag} ${file}: cannot read the key (${why})`, { exitCode: 2, cause: e });
  }
}

/** The private key `file`, decrypted with the passphrase from --passphrase-file, COSIGN_PASSWORD or a prompt. */
export async function loadPrivateKey(flag: string, file: string, passphraseFile: string | undefined): Promise<KeyObject> {
  const pem = await readKeyFile(flag, file);
  const { getPassphrase } = await import('../../src/sign/passphrase.ts');
  const { readPrivateKey } = await import('../../src/sign/keys.ts');
  const passphrase = await getPassphrase({ ...(passphraseFile !== undefined ? { file: passphraseFile } : {}), what: `the private key ${file}` });
  return readPrivateKey(pem, passphrase, file);
}

export default async function sign(g: GlobalOptions, refArg: string, flags: SignFlags): Promise<number> {
  for (const [flag, v] of [['fulcio-url', flags.fulcioUrl], ['rekor-url', flags.rekorUrl], ['oidc-issuer', flags.oidcIssuer]] as const) {
    if (v !== undefined) throw new HoistError('NOT_SUPPORTED', `--${flag}: ${KEYLESS_MESSAGE}`, { exitCode: 2 });
  }
  if (flags.key === undefined) throw new HoistError('BAD_FLAG', 'hoist sign needs --key PRIVATE_KEY (hoist generate-key makes a key pair)', { exitCode: 2 });
  const { parseSignFormat, signingIdentity, openSignTarget, signImage } = await import('../../src/sign/sign-image.ts');
  const ref = parseImageReference(refArg);
  const formats = parseSignFormat('format', flags.format);
  const identity = formats.simple ? signingIdentity(ref, 'identity', flags.identity) : undefined;
  const privateKey = await loadPrivateKey('key', flags.key, flags.passphraseFile);
  const target = await openSignTarget(ref, { storeRoot: g.root, registry: await registryAccess(flags) });
  try {
    const digests = await signImage(target, {
      privateKey,
      formats,
      recursive: flags.recursive === true,
      ...(identity !== undefined ? { identity } : {}),
      ...(flags.quiet ? {} : { onInfo: (line: string) => process.stderr.write(`${line}\n`) }),
    });
    process.stdout.write(digests.map((d) => `${d}\n`).join(''));
    return 0;
  } finally {
    await target.source.close();
  }
}
