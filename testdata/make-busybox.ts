#!/usr/bin/env node
/**
 * Makes a small busybox image without any network, from Debian's busybox-static (/bin/busybox):
 * one layer (busybox + applet symlinks + /etc/passwd, /etc/group), written as an OCI image layout.
 *
 *   node testdata/make-busybox.ts DIR [REF]            # default REF: latest
 *   node testdata/make-busybox.ts --index DIR [REF]    # a two-platform index
 *
 * Deterministic: fixed mtimes (SOURCE_DATE_EPOCH, default 0), sorted entries, gzip without a timestamp,
 * so the same busybox binary always gives the same manifest digest.
 */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { OciLayout } from '../src/store/layout.ts';
import { digestBytes } from '../src/oci/digest.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST } from '../src/oci/mediatype.ts';
import type { Platform } from '../src/oci/types.ts';
import { hostPlatform } from '../src/oci/platform.ts';
import { readAll } from '../src/util/stream.ts';

const APPLETS = ['sh', 'ls', 'cat', 'echo', 'id', 'true', 'false', 'env', 'pwd', 'mkdir', 'rm', 'cp', 'mv', 'touch',
  'sleep', 'test', 'grep', 'sed', 'head', 'tail', 'wc', 'chmod', 'chown', 'ln', 'stat', 'find', 'tar', 'printf', 'hostname', 'whoami'];

export interface MadeImage {
  digest: string;
  size: number;
  mediaType: string;
}

/**
 * A two-platform index (linux/amd64 and linux/arm64/v8) for copy tests. Both entries carry this machine's busybox
 * binary (nothing here can make a real arm64 one); only their configs differ. Enough for copying and platform choice.
 */
export async function makeBusyboxIndex(dir: string, ref = 'latest', busyboxPath = '/bin/busybox'): Promise<MadeImage & { children: MadeImage[] }> {
  const platforms = [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }];
  const children: MadeImage[] = [];
  for (const p of platforms) {
    children.push(await makeBusyboxImage(dir, null, busyboxPath, p));
  }
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: children.map((c, i) => ({ mediaType: c.mediaType, digest: c.digest, size: c.size, platform: platforms[i] })),
  }));
  const layout = await OciLayout.open(dir, { create: true });
  const digest = await layout.putBlobBytes(index);
  await layout.setRef(ref, { mediaType: OCI_INDEX, digest, size: index.length });
  return { digest, size: index.length, mediaType: OCI_INDEX, children };
}

/** One busybox image; tagged `ref` in the layout unless ref is null (then only its blobs are written). */
export async function makeBusyboxImage(
  dir: string,
  ref: string | null = 'latest',
  busyboxPath = '/bin/busybox',
  platform: Platform = hostPlatform(),
): Promise<MadeImage> {
  const epoch = Number(process.env['SOURCE_DATE_EPOCH'] ?? 0);
  const mtime = new Date(epoch * 1000);
  const busybox = await readFile(busyboxPath);

  const pack = tarPack();
  const dirEntry = (name: string, mode = 0o755) => pack.entry({ name, type: 'directory', mode, mtime, uid: 0, gid: 0 });
  dirEntry('bin/');
  pack.entry({ name: 'bin/busybox', mode: 0o755, mtime, uid: 0, gid: 0 }, busybox);
  for (const a of [...APPLETS].sort()) pack.entry({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox', mode: 0o777, mtime, uid: 0, gid: 0 });
  dirEntry('etc/');
  pack.entry({ name: 'etc/group', mode: 0o644, mtime, uid: 0, gid: 0 }, 'root:x:0:\nnobody:x:65534:\n');
  pack.entry({ name: 'etc/passwd', mode: 0o644, mtime, uid: 0, gid: 0 }, 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  dirEntry('root/', 0o700);
  dirEntry('tmp/', 0o1777);
  pack.finalize();
  const tar = await readAll(pack as unknown as Readable, 64 * 1024 * 1024);
  const gz = gzipSync(tar, { level: 9 });

  const config = Buffer.from(JSON.stringify({
    created: mtime.toISOString().replace('.000Z', 'Z'),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [digestBytes(tar)] },
    history: [{ created: mtime.toISOString().replace('.000Z', 'Z'), created_by: 'testdata/make-busybox.ts (busybox-static)' }],
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: digestBytes(config), size: config.length },
    layers: [{ mediaType: OCI_LAYER_GZIP, digest: digestBytes(gz), size: gz.length }],
  }));

  const layout = await OciLayout.open(dir, { create: true });
  await layout.putBlobBytes(gz);
  await layout.putBlobBytes(config);
  const digest = await layout.putBlobBytes(manifest);
  if (ref !== null) await layout.setRef(ref, { mediaType: OCI_MANIFEST, digest, size: manifest.length });
  return { digest, size: manifest.length, mediaType: OCI_MANIFEST };
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const asIndex = args[0] === '--index';
  const [dir, ref] = asIndex ? args.slice(1) : args;
  if (!dir) {
    process.stderr.write('usage: node testdata/make-busybox.ts [--index] DIR [REF]\n');
    process.exit(2);
  }
  const { digest } = asIndex ? await makeBusyboxIndex(dir, ref) : await makeBusyboxImage(dir, ref);
  process.stdout.write(`${digest}\n`);
}
