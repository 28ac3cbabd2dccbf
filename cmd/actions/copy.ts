import { writeFile } from 'node:fs/promises';
import type { GlobalOptions } from '../main.ts';
import { openDestination, openSource } from '../../src/transport/index.ts';
import { parseImageReference } from '../../src/transport/reference.ts';
import { parsePlatform } from '../../src/oci/platform.ts';
import { copyImage } from '../../src/copy/engine.ts';
import { parseFormatFlag } from '../../src/copy/convert.ts';
import { makeProgress } from '../progress.ts';

interface CopyFlags {
  all?: boolean;
  platform: string[];
  digestfile?: string;
  quiet?: boolean;
  progress?: string;
  format?: string;
  preserveDigests?: boolean;
}

export default async function copy(g: GlobalOptions, srcArg: string, dstArg: string, flags: CopyFlags): Promise<number> {
  const srcRef = parseImageReference(srcArg);
  const dstRef = parseImageReference(dstArg);
  const platforms = flags.platform.map((p) => parsePlatform(p));
  const src = await openSource(srcRef, { storeRoot: g.root });
  try {
    const dst = await openDestination(dstRef, { storeRoot: g.root, platform: platforms[0] });
    const progress = makeProgress(flags.progress, flags.quiet);
    const result = await copyImage(src, dst, {
      platforms,
      format: flags.format ? parseFormatFlag(flags.format) : undefined,
      preserveDigests: flags.preserveDigests,
      onEvent: progress?.onEvent,
    });
    progress?.done(result);
    if (flags.digestfile) await writeFile(flags.digestfile, result.digest);
    return 0;
  } finally {
    await src.close();
  }
}
