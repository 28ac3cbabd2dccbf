/**
 * Images built by buildah (an independent writer) for tests: real `RUN` steps give layers with whiteouts, opaque
 * directories, hardlinks and ownership exactly as the container tools write them, which hand-made tars can only
 * imitate. No network: bases are `FROM scratch` or `FROM oci:DIR:TAG` (buildah 1.28 reads an OCI layout as a
 * base directly), and RUN steps get `--network none`.
 *
 * buildah runs ROOTFUL (tests run as root) in a private storage under a temp dir (`--root`, `--runroot`), with
 * `--runtime runc` (crun does not start on these machines) and a private signature policy, so the host's
 * containers storage and configuration are neither read nor touched.
 *
 * Storage driver: overlay, not vfs. vfs commits a layer by diffing whole trees, so a directory removed and made
 * again comes out as one `.wh.NAME` per old entry; only overlay records it as an opaque directory
 * (`DIR/.wh..wh..opq`), which is the case these fixtures exist for.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';
import { run } from './run.ts';

export const BUILDAH = '/usr/bin/buildah';

/** Why buildah fixtures cannot be built here, for node:test's `skip` option; false when they can. */
export function buildahSkipReason(): string | false {
  if (!existsSync(BUILDAH)) return 'buildah is not installed (apt-get install buildah)';
  if (process.getuid?.() !== 0) return 'buildah fixtures are built rootful: run the tests as root';
  if (spawnSync('runc', ['--version'], { stdio: 'ignore' }).status !== 0) return 'runc is not installed (apt-get install runc)';
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed (the fixtures\' base image)';
  return false;
}

export interface BuildahOptions {
  /** Default overlay (see the top of this file). */
  storageDriver?: 'overlay' | 'vfs';
  /** Extra `buildah bud` arguments (`--build-arg`, `--target`, …). */
  budArgs?: string[];
}

/** Mount points at or below `dir` (buildah's overlay driver mounts under its --root while it works). */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\(\d{3})/g, (_s, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/**
 * Builds `dockerfile` with `contextFiles` (relative path → content) as the build context, and writes the result as
 * an OCI image layout at `outOciDir` under `tag` (the layout is created, or the tag added to an existing one).
 * Throws with buildah's output when a step fails. A `FROM oci:PATH:TAG` base needs an all-lowercase PATH: buildah
 * names the base image after it ("repository name must be lowercase" otherwise).
 */
export async function buildahImage(
  dockerfile: string,
  contextFiles: Record<string, string | Buffer>,
  outOciDir: string,
  tag = 'latest',
  opts: BuildahOptions = {},
): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'hoist-buildah-'));
  try {
    const ctx = path.join(work, 'context');
    await mkdir(ctx);
    for (const [rel, content] of Object.entries(contextFiles)) {
      const p = path.resolve(ctx, rel);
      if (!p.startsWith(`${ctx}/`)) throw new Error(`context file ${rel} is outside the context`);
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, content);
    }
    // Outside the context, so a context file named Dockerfile stays the test's own.
    const df = path.join(work, 'Dockerfile');
    await writeFile(df, dockerfile);
    const policy = path.join(work, 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const tmp = path.join(work, 'tmp');
    await mkdir(tmp);

    const global = ['--root', path.join(work, 'root'), '--runroot', path.join(work, 'runroot'), '--storage-driver', opts.storageDriver ?? 'overlay'];
    // buildah stages blobs in $TMPDIR (default /var/tmp): keep them in the work dir too.
    const env = { ...process.env, TMPDIR: tmp, BUILDAH_ISOLATION: 'oci' };
    const image = 'localhost/hoist-test-fixture:latest';
    const buildah = async (args: string[]): Promise<void> => {
      const r = await run(BUILDAH, [...global, ...args], { env });
      if (r.code !== 0) throw new Error(`buildah ${args[0]} failed (exit ${r.code}):\n${r.stderr.trim()}\n${r.stdout.trim()}`);
    };
    try {
      await buildah(['bud', '--runtime', 'runc', '--network', 'none', '--layers', '--format', 'oci', '--signature-policy', policy,
        ...(opts.budArgs ?? []), '-f', df, '-t', image, ctx]);
      await mkdir(path.dirname(path.resolve(outOciDir)), { recursive: true });
      await buildah(['push', '--signature-policy', policy, '--quiet', image, `oci:${path.resolve(outOciDir)}:${tag}`]);
    } finally {
      // Rootful overlay storage may leave its mounts behind on a failed step: rm -rf must never walk into one.
      for (const m of (await mountsUnder(work)).reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    }
  } finally {
    const left = await mountsUnder(work);
    if (left.length === 0) await rm(work, { recursive: true, force: true });
    else process.stderr.write(`buildahImage: leaving ${work}: still mounted: ${left.join(', ')}\n`);
  }
}

/** What the whiteout fixture's final filesystem holds (absolute paths inside the container). */
export const WHITEOUT_EXPECT = {
  /** Regular files and their content. */
  files: {
    '/keep': 'keep\n',
    '/keep-hard': 'keep\n',
    '/d/new': 'new\n',
    '/private': 'secret\n',
    '/etc/added': 'added by COPY\n',
  } as Record<string, string>,
  /** /keep-hard is a hardlink of /keep (same inode). */
  hardlinks: { '/keep-hard': '/keep' } as Record<string, string>,
  symlinks: { '/keep-sym': '/keep' } as Record<string, string>,
  /** Deleted in a later layer than the one that made them (/bin/wc: deleted from the base image's layer). */
  absent: ['/gone', '/d/a', '/d/sub', '/bin/wc'],
  /** Mode (permission bits) and owner as seen inside the container. */
  owners: { '/private': { uid: 1000, gid: 1000, mode: 0o700 } } as Record<string, { uid: number; gid: number; mode: number }>,
  /** Only entry of /d after the opaque re-creation. */
  dEntries: ['new'],
};

/** Layer-level facts the whiteout fixture's tars hold (paths as in the tar, no leading slash). */
export const WHITEOUT_LAYERS = {
  /** Index in the manifest's layers (0 = the busybox base) → entries that must be in that layer. */
  mustHold: {
    1: ['d/a', 'd/sub/b', 'keep', 'keep-hard', 'keep-sym', 'gone', 'private'],
    2: ['.wh.gone', 'd/.wh..wh..opq', 'd/new', 'bin/.wh.wc'],
    3: ['etc/added'],
  } as Record<number, string[]>,
  layerCount: 4,
};

/**
 * An image whose layers delete and hide things across layers, written to the OCI layout `outDir` under `tag`:
 *   0  busybox (testdata/make-busybox.ts)
 *   1  RUN: /d/a, /d/sub/b, /keep, /gone; /keep-hard a hardlink of /keep; /keep-sym → /keep;
 *          /private mode 0700 owned by 1000:1000
 *   2  RUN: rm /gone (→ .wh.gone), rm -rf /d + mkdir /d + /d/new (→ d/.wh..wh..opq), rm /bin/wc (a base-layer file)
 *   3  COPY added /etc/added (a file from the build context)
 * WHITEOUT_EXPECT describes the resulting filesystem; WHITEOUT_LAYERS what the layer tars hold.
 */
export async function buildahWhiteoutImage(outDir: string, tag = 'latest'): Promise<void> {
  // All lowercase: buildah names a FROM oci: base after its path, and image names must be lowercase.
  const base = path.join('/tmp', `hoist-buildah-base-${randomBytes(8).toString('hex')}`);
  await mkdir(base, { mode: 0o700 });
  try {
    await makeBusyboxImage(base, 'latest');
    const dockerfile = [
      `FROM oci:${base}:latest`,
      'RUN mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && echo keep > /keep && echo gone > /gone'
        + ' && ln /keep /keep-hard && ln -s /keep /keep-sym'
        + ' && echo secret > /private && chmod 0700 /private && chown 1000:1000 /private',
      'RUN rm /gone && rm -rf /d && mkdir /d && echo new > /d/new && rm /bin/wc',
      'COPY added /etc/added',
      '',
    ].join('\n');
    await buildahImage(dockerfile, { added: 'added by COPY\n' }, outDir, tag);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}
