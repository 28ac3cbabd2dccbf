/**
 * `hoist run` on images made by others and on hostile ones, as the rootless CI user: buildah-built images (whiteouts,
 * opaque directories, USER/WORKDIR/ENV/ENTRYPOINT from a Dockerfile) give the same tree as umoci's unpack of the same
 * image; layer tars with escaping names are refused or kept inside; images pulled from a real registry; and a user
 * without subordinate ids. The same checks rootful (this process, as root) at the end.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildahImage, buildahSkipReason, buildahWhiteoutImage, WHITEOUT_EXPECT } from '../helpers/buildah-image.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import {
  assertCheckoutReadable, ciUser, hoistAs, hostIds, mkdirFor, rootlessSkipReason, userTempDir, type UserTempDir, rootfulSkipReason, noSubUser,
} from '../helpers/rootless.ts';
import { busyboxDerived, LIST_TREE, normalizeTree, rawLayerTar } from '../helpers/run-images.ts';
import { hoist as hoistAsMe, run, oneLine, show, type RunResult } from '../helpers/run.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';

const user = ciUser();
const skip = rootlessSkipReason();
const buildahSkip = skip || buildahSkipReason() || (existsSync('/usr/bin/umoci') ? false : 'umoci is not installed (apt-get install umoci)');
const registrySkip = skip || (existsSync('/usr/bin/docker-registry') ? false : 'docker-registry is not installed');
const rootfulSkip = rootfulSkipReason();

const { user: nosub, skip: nosubSkip } = noSubUser();

let tmp: UserTempDir;
let root: string;
let layout: string;
const uniq = randomBytes(6).toString('hex');
/** Built in before() when buildah can run. */
let whiteoutLayout: string | undefined;
let dockerfileLayout: string | undefined;

const hoist = (args: string[]): Promise<RunResult> => hoistAs(user!, root, args);
async function ok(p: Promise<RunResult>): Promise<RunResult> {
  const r = await p;
  assert.equal(r.code, 0, show(r));
  return r;
}

/** Host paths the hostile layers aim at; none may exist after the runs. */
const outsideTargets = {
  dotdot: `/tmp/hoist-escape-dotdot-${uniq}`,
  abs: `/tmp/hoist-escape-abs-${uniq}`,
};

before(async () => {
  if (skip) return;
  tmp = await userTempDir(user!, 'hoist-run-img-');
  root = path.join(tmp.dir, 'store');
  layout = path.join(tmp.dir, 'images');
  // The hostile layers, each on top of busybox.
  const outside = path.join(tmp.dir, 'outside');
  await mkdirFor(user!, outside);
  const deep = '../'.repeat(12);
  const hostile: Record<string, Parameters<typeof rawLayerTar>[0]> = {
    dotdot: [{ name: `${deep}${outsideTargets.dotdot.slice(1)}`, content: 'escaped\n' }],
    dotdotlocal: [{ name: '../escape-local', content: 'escaped\n' }],
    hardlink: [{ name: 'hl', type: 'link', linkname: `${deep}etc/passwd` }],
    abs: [{ name: `${outsideTargets.abs}/file`, content: 'abs\n' }],
    // An absolute link to a directory the user can write to, then a file below the link.
    symparent: [{ name: 'link', type: 'symlink', linkname: outside }, { name: 'link/pwned', content: 'pwned\n' }],
    relparent: [{ name: 'rel', type: 'symlink', linkname: `${deep}${outside.slice(1)}` }, { name: 'rel/pwned2', content: 'pwned2\n' }],
  };
  for (const [name, entries] of Object.entries(hostile)) await busyboxDerived(layout, name, [await rawLayerTar(entries)]);
  await ok(hoist(['copy', '-q', `oci:${layout}:busybox`, 'busybox']));
  for (const name of Object.keys(hostile)) await ok(hoist(['copy', '-q', `oci:${layout}:${name}`, `hostile/${name}`]));

  if (!buildahSkip) {
    // Built as root; made readable for the user's `hoist copy`.
    whiteoutLayout = path.join(tmp.dir, 'wh');
    dockerfileLayout = path.join(tmp.dir, 'df');
    const dockerfile = [
      `FROM oci:${layout}:busybox`,
      'RUN echo "svc:x:1500:1500:svc:/srv/home:/bin/sh" >> /etc/passwd && echo "svc:x:1500:" >> /etc/group'
        + ' && echo "grp2:x:2500:svc" >> /etc/group && mkdir -p /srv/app && chown 1500:1500 /srv/app',
      'ENV GREETING=hello',
      'WORKDIR /srv/app',
      'USER svc',
      'ENTRYPOINT ["/bin/sh", "-c"]',
      'CMD ["echo \\"$GREETING from $(id -u):$(id -g) groups $(id -G) in $(pwd) home $HOME\\""]',
      '',
    ].join('\n');
    await Promise.all([buildahWhiteoutImage(whiteoutLayout, 'wh'), buildahImage(dockerfile, {}, dockerfileLayout, 'df')]);
    for (const d of [whiteoutLayout, dockerfileLayout]) await run('chmod', ['-R', 'o+rX', d]);
    await ok(hoist(['copy', '-q', `oci:${whiteoutLayout}:wh`, 'wh']));
    await ok(hoist(['copy', '-q', `oci:${dockerfileLayout}:df`, 'df']));
  }
});

after(async () => {
  if (tmp) await tmp.cleanup();
  for (const p of Object.values(outsideTargets)) await rm(p, { recursive: true, force: true });
});

describe('images built by buildah', { skip: buildahSkip, concurrency: true }, () => {
  test('whiteouts and opaque directories across layers: the same tree as umoci unpack', async () => {
    const r = await ok(hoist(['run', '--rm', 'wh', 'sh', '-c', LIST_TREE]));
    // Mountpoints of the runtime's own files (buildah leaves an empty /etc/hostname in the image, too).
    const mountpoints = ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf'];
    const ours = normalizeTree(r.stdout, mountpoints);

    const bundle = await mkdtemp(path.join(os.tmpdir(), 'hoist-umoci-'));
    try {
      const u = await run('umoci', ['unpack', '--image', `${whiteoutLayout}:wh`, path.join(bundle, 'b')]);
      assert.equal(u.code, 0, show(u));
      // The same busybox, chrooted into umoci's rootfs (as root: umoci kept the image's owners).
      const c = await run('chroot', [path.join(bundle, 'b', 'rootfs'), '/bin/busybox', 'sh', '-c', LIST_TREE]);
      assert.equal(c.code, 0, show(c));
      const theirs = normalizeTree(c.stdout, mountpoints);
      assert.ok(theirs.length > 30, `umoci's tree is suspiciously small:\n${theirs.join('\n')}`);
      assert.deepEqual(ours, theirs);
    } finally {
      await rm(bundle, { recursive: true, force: true });
    }
    // And what the fixture promises, so both can't be wrong the same way.
    for (const p of WHITEOUT_EXPECT.absent) assert.ok(!ours.some((l) => l.startsWith(`${p}|`)), `${p} should be gone`);
    assert.ok(ours.includes('/private|regular file|700|1000|1000|7|1|/private'), ours.join('\n'));
    assert.deepEqual(ours.filter((l) => l.startsWith('/d/')).map((l) => l.split('|')[0]), WHITEOUT_EXPECT.dEntries.map((e) => `/d/${e}`));
  });
  test('file contents, hardlinks and symlinks of the whiteout image', async () => {
    const files = Object.keys(WHITEOUT_EXPECT.files);
    const r = await ok(hoist(['run', '--rm', 'wh', 'sh', '-c',
      `for f in ${files.join(' ')}; do printf '%s=' "$f"; cat "$f"; done; stat -c %i /keep /keep-hard; cat /keep-sym`]));
    const out = r.stdout.split('\n');
    for (const [i, f] of files.entries()) assert.equal(out[i], `${f}=${WHITEOUT_EXPECT.files[f]!.trimEnd()}`);
    assert.equal(out[files.length], out[files.length + 1], '/keep-hard is not a hardlink of /keep');
    assert.equal(out[files.length + 2], 'keep');
  });
  test('a Dockerfile\'s USER, WORKDIR, ENV, ENTRYPOINT and CMD', async () => {
    const r = await ok(hoist(['run', '--rm', 'df']));
    assert.equal(r.stdout, 'hello from 1500:1500 groups 1500 2500 in /srv/app home /srv/home\n');
    const args = await ok(hoist(['run', '--rm', 'df', 'echo "$GREETING again"']));
    assert.equal(args.stdout, 'hello again\n');
  });
});

describe('layers with escaping names', { skip, concurrency: true }, () => {
  for (const name of ['dotdot', 'dotdotlocal', 'hardlink']) {
    test(`${name}: refused with exit 125 and one line`, async () => {
      const r = await hoist(['run', '--rm', `hostile/${name}`, 'true']);
      oneLine(r, 125, /escapes the target; refusing/);
    });
  }
  test('an absolute name is taken from the root of the image (like tar and containerd), never the host\'s', async () => {
    const r = await ok(hoist(['run', '--rm', 'hostile/abs', 'cat', `${outsideTargets.abs}/file`]));
    assert.equal(r.stdout, 'abs\n');
  });
  test('a parent that is a symlink to the outside is followed inside the image\'s root', async () => {
    const outside = path.join(tmp.dir, 'outside');
    const a = await ok(hoist(['run', '--rm', 'hostile/symparent', 'cat', `${outside}/pwned`]));
    assert.equal(a.stdout, 'pwned\n');
    const b = await ok(hoist(['run', '--rm', 'hostile/relparent', 'cat', `${outside}/pwned2`]));
    assert.equal(b.stdout, 'pwned2\n');
  });
  after(async () => {
    if (skip) return;
    // Nothing outside was touched: not the targets, not the user's writable directory, not next to the snapshots.
    for (const p of Object.values(outsideTargets)) assert.equal(existsSync(p), false, `${p} was written`);
    assert.deepEqual(await readdir(path.join(tmp.dir, 'outside')), []);
    const snapshots = path.join(root, 'snapshots');
    const names = await readdir(snapshots);
    assert.deepEqual(names.filter((n) => n.startsWith('.tmp-') || n.startsWith('escape')), [], `left in ${snapshots}`);
    assert.equal(existsSync(path.join(root, 'escape-local')), false);
    assert.deepEqual(await readdir(path.join(root, 'containers')), []);
  });
});

describe('pulling from a registry', { skip: registrySkip }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
    const pushStore = await mkdtemp(path.join(os.tmpdir(), 'hoist-run-push-'));
    try {
      await ok(hoistAsMe(pushStore, ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:busybox`, `docker://${reg.host}/lib/bb:1`]));
    } finally {
      await rm(pushStore, { recursive: true, force: true });
    }
  });
  after(async () => {
    await reg?.stop();
  });
  test('--pull missing (the default) pulls the image, then runs it; it stays in the store', async () => {
    const r = await ok(hoist(['run', '--rm', '--no-tls-verify', `${reg.host}/lib/bb:1`, 'echo', 'pulled']));
    assert.equal(r.stdout, 'pulled\n');
    assert.match(r.stderr, new RegExp(`Trying to pull ${reg.host}/lib/bb:1`));
    const images = await ok(hoist(['images']));
    assert.match(images.stdout, new RegExp(`${reg.host}/lib/bb +1 `));
    const again = await ok(hoist(['run', '--rm', '--pull', 'never', `${reg.host}/lib/bb:1`, 'echo', 'local']));
    assert.equal(again.stdout, 'local\n');
  });
  test('a name the registry does not have: 125 and one hoist: line', async () => {
    const r = await hoist(['run', '--rm', '--no-tls-verify', `${reg.host}/lib/nosuch:1`, 'true']);
    assert.equal(r.code, 125, show(r));
    const hoistLines = r.stderr.split('\n').filter((l) => l.startsWith('hoist: '));
    assert.equal(hoistLines.length, 1, r.stderr);
    assert.match(hoistLines[0]!, /nosuch:1: fetching manifest: not found/);
    assert.match(r.stderr, /hoist: [^\n]+\n$/, 'the error is the last line');
  });
  test('--tls-verify=false, as podman users write it', async () => {
    const r = await ok(hoist(['run', '--rm', '--tls-verify=false', `${reg.host}/lib/bb:1`, 'true']));
    assert.equal(r.code, 0);
  });
});

describe('a user without subordinate ids', { skip: nosubSkip }, () => {
  test('runs with a single-id user namespace and one warning line saying how to add a range', async () => {
    assertCheckoutReadable(nosub!);
    const own = await userTempDir(nosub!, 'hoist-run-nosub-');
    try {
      const store = path.join(own.dir, 'store');
      // Its own copy of busybox: the CI user's temp dir is private to that user.
      const bb = path.join(own.dir, 'bb');
      await makeBusyboxImage(bb, 'busybox');
      await ok(hoistAs(nosub!, store, ['copy', '-q', `oci:${bb}:busybox`, 'busybox']));
      const r = await hoistAs(nosub!, store, ['run', '--rm', 'busybox', 'sh', '-c', 'id -u; cat /proc/self/uid_map']);
      assert.equal(r.code, 0, show(r));
      const [id, ...map] = r.stdout.trim().split('\n');
      assert.equal(id, '0');
      assert.deepEqual(map.map((l) => l.trim().split(/\s+/).map(Number)), [[0, hostIds(nosub!).uid, 1]]);
      assert.match(r.stderr, /^hoist: warning: [^\n]*no range in \/etc\/subuid[^\n]*usermod --add-subuids \d+-\d+ --add-subgids \d+-\d+ /);
      assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr);
      const info = JSON.parse((await ok(hoistAs(nosub!, store, ['info', '--format', 'json']))).stdout) as {
        userns: string; idMappings: { uid: unknown; gid: unknown }; warnings: string[];
      };
      assert.equal(info.userns, 'single');
      assert.deepEqual(info.idMappings, { uid: null, gid: null });
      assert.match(info.warnings.join('\n'), /usermod --add-subuids/);
      assert.deepEqual(await readdir(path.join(store, 'containers')), []);
    } finally {
      await own.cleanup();
    }
  });
});

describe('rootful (this process is root)', { skip: rootfulSkip }, () => {
  let rootStore: string;
  before(async () => {
    rootStore = await mkdtemp(path.join(os.tmpdir(), 'hoist-run-rootful-'));
    const bb = path.join(rootStore, 'bb');
    await makeBusyboxImage(bb, 'busybox');
    await ok(hoistAsMe(path.join(rootStore, 'store'), ['copy', '-q', `oci:${bb}:busybox`, 'busybox']));
    if (whiteoutLayout) await ok(hoistAsMe(path.join(rootStore, 'store'), ['copy', '-q', `oci:${whiteoutLayout}:wh`, 'wh']));
    rootStore = path.join(rootStore, 'store');
  });
  after(async () => {
    if (rootStore) await rm(path.dirname(rootStore), { recursive: true, force: true });
  });
  test('no user namespace: root is the host\'s root; a volume file belongs to root; exit codes propagate', async () => {
    const vol = await mkdtemp(path.join(os.tmpdir(), 'hoist-run-rootful-vol-'));
    try {
      await chmod(vol, 0o700);
      const r = await ok(hoistAsMe(rootStore, ['run', '--rm', '-v', `${vol}:/data`, 'busybox', 'sh', '-c', 'id -u; cat /proc/self/uid_map; echo x > /data/f']));
      const [id, map] = r.stdout.trim().split('\n');
      assert.equal(id, '0');
      assert.deepEqual(map!.trim().split(/\s+/).map(Number), [0, 0, 4294967295]);
      const st = await stat(path.join(vol, 'f'));
      assert.equal(st.uid, 0);
      const e = await hoistAsMe(rootStore, ['run', '--rm', 'busybox', 'sh', '-c', 'exit 42']);
      assert.equal(e.code, 42, show(e));
      oneLine(await hoistAsMe(rootStore, ['run', '--rm', 'busybox', 'nosuchcmd']), 127, /nosuchcmd: executable file not found/);
    } finally {
      await rm(vol, { recursive: true, force: true });
    }
  });
  test('the whiteout image gives umoci\'s tree rootful too', { skip: buildahSkip }, async () => {
    const r = await ok(hoistAsMe(rootStore, ['run', '--rm', 'wh', 'sh', '-c', LIST_TREE]));
    const mountpoints = ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf'];
    const ours = normalizeTree(r.stdout, mountpoints);
    const rootless = normalizeTree((await ok(hoist(['run', '--rm', 'wh', 'sh', '-c', LIST_TREE]))).stdout, mountpoints);
    // The rootless test compares rootless with umoci; rootful must give the same.
    assert.deepEqual(ours, rootless);
  });
  test('ps -a and rm of an exited container; --rm leaves nothing', async () => {
    const r = await hoistAsMe(rootStore, ['run', '--name', 'rootful1', 'busybox', 'sh', '-c', 'touch /x; exit 5']);
    assert.equal(r.code, 5, show(r));
    assert.match((await ok(hoistAsMe(rootStore, ['ps', '-a']))).stdout, /Exited \(5\).* rootful1\n/);
    await ok(hoistAsMe(rootStore, ['rm', 'rootful1']));
    assert.deepEqual(await readdir(path.join(rootStore, 'containers')), []);
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(rootStore));
    assert.deepEqual(mounts, []);
  });
  test('hoist info: rootful, plain overlay', async () => {
    const info = JSON.parse((await ok(hoistAsMe(rootStore, ['info', '--format', 'json']))).stdout) as { userns: string; rootfs: string; user: { root: boolean } };
    assert.equal(info.user.root, true);
    assert.equal(info.userns, 'host');
    assert.equal(info.rootfs, 'overlay');
  });
});
