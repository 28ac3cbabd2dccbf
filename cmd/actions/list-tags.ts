import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { openSource } from '../../src/transport/index.ts';
import { repository } from '../../src/oci/reference.ts';
import { goJson } from '../../src/util/go-json.ts';
import { registryAccess, type RegistryFlags } from '../registry-flags.ts';
import { dockerArgument } from './registry-ref.ts';

/** `hoist list-tags docker://REPO`: skopeo's `{"Repository": …, "Tags": […]}`. */
export default async function listTags(_g: GlobalOptions, repoArg: string, flags: RegistryFlags): Promise<number> {
  const ref = dockerArgument('list-tags', repoArg, 'docker://HOST/REPO');
  if (ref.tag !== undefined || ref.digest !== undefined) {
    throw new HoistError('BAD_REFERENCE', `list-tags: ${repoArg} names a tag or digest; give the repository alone (docker://${repository(ref)})`, { exitCode: 2 });
  }
  const src = await openSource(`docker://${repository(ref)}`, { registry: await registryAccess(flags) });
  try {
    const tags = await src.listTags!();
    process.stdout.write(`${goJson({ Repository: repository(ref), Tags: tags }, 4)}\n`);
    return 0;
  } finally {
    await src.close();
  }
}
