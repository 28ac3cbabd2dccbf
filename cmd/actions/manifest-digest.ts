import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { GlobalOptions } from '../main.ts';
import { HoistError, isErrno } from '../../src/errors.ts';

/** `hoist manifest-digest FILE`: the digest a registry gives these exact bytes. */
export default async function manifestDigest(_g: GlobalOptions, file: string): Promise<number> {
  const hash = createHash('sha256');
  try {
    await pipeline(createReadStream(file), hash);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) throw new HoistError('NOT_FOUND', `manifest-digest: ${file}: no such file`);
    if (isErrno(e, 'EISDIR')) throw new HoistError('BAD_INPUT', `manifest-digest: ${file} is a directory; give a manifest file`);
    throw new HoistError('IO', `manifest-digest: ${file}: cannot read (${(e as Error).message})`, { cause: e });
  }
  process.stdout.write(`sha256:${hash.digest('hex')}\n`);
  return 0;
}
