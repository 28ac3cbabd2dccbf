import type { GlobalOptions } from '../main.ts';
import { Store } from '../../src/store/store.ts';
import { formatBytes } from '../progress.ts';

interface ImagesFlags {
  format: string;
  digests?: boolean;
}

export default async function images(g: GlobalOptions, flags: ImagesFlags): Promise<number> {
  const store = await Store.open(g.root);
  const list = await store.images();
  if (flags.format === 'json') {
    const out = list.map((i) => ({
      Id: i.digest.replace(/^sha256:/, ''),
      Digest: i.digest,
      Names: i.names,
      MediaType: i.mediaType,
      Size: i.size,
      Created: i.created ?? null,
    }));
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    return 0;
  }
  const rows: string[][] = [['REPOSITORY', 'TAG', ...(flags.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE']];
  for (const i of list) {
    const names = i.names.length ? i.names : ['<none>:<none>'];
    for (const n of names) {
      const { repo, tag } = splitName(n);
      rows.push([repo, tag, ...(flags.digests ? [i.digest] : []), i.digest.replace(/^sha256:/, '').slice(0, 12), i.created ?? '', formatBytes(i.size)]);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) process.stdout.write(r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd() + '\n');
  return 0;
}

function splitName(n: string): { repo: string; tag: string } {
  const at = n.indexOf('@');
  if (at >= 0) return { repo: n.slice(0, at), tag: '<none>' };
  const colon = n.lastIndexOf(':');
  if (colon > n.lastIndexOf('/')) return { repo: n.slice(0, colon), tag: n.slice(colon + 1) };
  return { repo: n, tag: '<none>' };
}
