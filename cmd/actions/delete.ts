import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { formatReference, repository } from '../../src/oci/reference.ts';
import { registryClient } from '../../src/transport/docker.ts';
import { registryAccess, type RegistryFlags } from '../registry-flags.ts';
import { dockerArgument } from './registry-ref.ts';

/**
 * `hoist delete docker://REF`: registries delete manifests by digest only, so a tag is resolved first. As with
 * skopeo, this removes the manifest (and so every tag pointing at it), not just the tag.
 */
export default async function del(_g: GlobalOptions, refArg: string, flags: RegistryFlags): Promise<number> {
  const ref = dockerArgument('delete', refArg, 'docker://HOST/REPO:TAG or docker://HOST/REPO@DIGEST');
  const client = await registryClient(ref.domain, await registryAccess(flags), repository(ref));
  const reference = ref.digest ?? ref.tag ?? 'latest';
  let digest = ref.digest;
  if (digest === undefined) {
    const head = await client.headManifest(ref.path, reference);
    if (!head) {
      throw new HoistError('NOT_FOUND', `docker://${formatReference({ ...ref, tag: reference })}: manifest unknown; check the tag (hoist list-tags docker://${repository(ref)})`);
    }
    digest = head.digest;
  }
  await client.deleteManifest(ref.path, digest);
  return 0;
}
