/**
 * `hoist verify --key PUB REF`: lists every signature of the image (simple signing and sigstore bundles), one line
 * each, valid or with the reason it is not; exits 0 only when at least one is valid.
 */
import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { formatImageReference, parseImageReference } from '../../src/transport/reference.ts';
import { openSource } from '../../src/transport/index.ts';
import { registryAccess, type RegistryFlags } from '../registry-flags.ts';
import { readKeyFile } from './sign.ts';

interface VerifyFlags extends RegistryFlags {
  key?: string;
  identity?: string;
  format: string;
}

export default async function verify(g: GlobalOptions, refArg: string, flags: VerifyFlags): Promise<number> {
  if (flags.key === undefined) throw new HoistError('BAD_FLAG', 'hoist verify needs --key PUBLIC_KEY (the .pub file of the signer\'s key pair)', { exitCode: 2 });
  if (flags.format !== 'text' && flags.format !== 'json') {
    throw new HoistError('BAD_FLAG', `--format ${flags.format}: expected text or json`, { exitCode: 2 });
  }
  const { imageIdentity, normalizeIdentity } = await import('../../src/sign/sign-image.ts');
  const { verifyImage } = await import('../../src/sign/verify-image.ts');
  const { readPublicKey } = await import('../../src/sign/keys.ts');
  const ref = parseImageReference(refArg);
  const name = formatImageReference(ref);
  let rule: import('../../src/sign/verify-image.ts').IdentityRule;
  if (flags.identity !== undefined) {
    rule = { type: 'exact', identity: normalizeIdentity('identity', flags.identity) };
  } else {
    const imageReference = imageIdentity(ref);
    if (imageReference === undefined) {
      throw new HoistError('BAD_FLAG', `${name} names no registry repository and tag to check signatures against; pass --identity HOST/REPO:TAG (the identity the signature must claim)`, { exitCode: 2 });
    }
    rule = { type: 'matchRepoDigestOrExact', imageReference };
  }
  const publicKey = readPublicKey(await readKeyFile('key', flags.key), flags.key);
  const src = await openSource(ref, { storeRoot: g.root, registry: await registryAccess(flags) });
  let report;
  try {
    report = await verifyImage(src, { publicKey, identity: rule });
  } finally {
    await src.close();
  }
  const { checks } = report;
  if (flags.format === 'json') {
    process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
  } else {
    process.stdout.write(checks.map((c) => `${c.format.padEnd(6)}  ${c.digest}  ${c.identity}  ${c.valid ? 'valid' : `invalid: ${c.reason}`}\n`).join(''));
  }
  if (checks.some((c) => c.valid)) return 0;
  if (checks.length === 0) {
    throw new HoistError('NO_SIGNATURE', `${name}: no signatures found for ${report.digest} (neither a .sig attachment nor a sigstore bundle referrer)`);
  }
  throw new HoistError('NO_VALID_SIGNATURE', `${name}: none of the ${checks.length} signature${checks.length === 1 ? '' : 's'} of ${report.digest} is valid for key ${flags.key}`);
}
