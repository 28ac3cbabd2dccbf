/**
 * Unpacking when an image is stored (as podman's pull does): after `hoist copy … NAME` into the local store, the
 * snapshots of the image's layers exist, made in the user namespace a run uses (owners are the container's, whiteouts
 * are overlay's), and the first run unpacks nothing. `--no-unpack` and HOIST_NO_UNPACK leave it to the first run; a
 * user without subordinate ids still copies (single-id namespace); a store where unpacking fails still gets the image,
 * with one warning line. Also `run --pull` and a build's FROM pull, and rootful (this process as root). And what
 * keeps a first run as quick as a repeated one: a --rm container's overlay is `volatile`, as podman mounts it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostPlatform } from '../../src/oci/platform.ts';
import { OCI_INDEX, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import { OciLayout } from '../../src/store/layout.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import {
  assertCheckoutReadable, ciUser, hoistAs, hostIds, mkdirFor, rootlessSkipReason, subordinateIds, userTempDir, type UserTempDir, rootfulSkipReason, noSubUser,
} from '../helpers/rootless.ts';
import { busyboxDerived, hoistInBackground, rawLayerTar, type DerivedImage } from '../helpers/run-images.ts';
import { hoist as hoistAsMe, show, type RunResult } from '../helpers/run.ts';

const user = ciUser();
const skip = rootlessSkipReason();
const registrySkip = skip || (existsSync('/usr/bin/docker-registry') ? false : 'docker-registry is not installed');
const rootfulSkip = rootfulSkipReason();
const { user: nosub, skip: nosubSkip } = noSubUser();

let tmp: UserTempDir;
let layout: string;
/** busybox + a layer with a file of container uid 1000 + a layer deleting a file of the one before (a whiteout). */
let img: DerivedImage;
let stores = 0;

async function ok(p: Promise<RunResult>): Promise<RunResult> {
  const r = await p;
  assert.equal(r.code, 0, show(r));
  return r;
}
/** A new empty store directory of the CI user. */
async function newStore(): Promise<string> {
  const dir = path.join(tmp.dir, `store-${stores++}`);
  await mkdirFor(user!, dir);
  return dir;
}

/** The image's layer diffIDs, bottom first, read from the OCI layout it was made in. */
async function diffIDs(layoutDir: string, manifestDigest: string): Promise<string[]> {
  const oci = await OciLayout.open(layoutDir, { create: false });
  const m = JSON.parse((await oci.readBlob(manifestDigest)).toString('utf8')) as { config: { digest: string } };
  const c = JSON.parse((await oci.readBlob(m.config.digest)).toString('utf8')) as { rootfs: { diff_ids: string[] } };
  return c.rootfs.diff_ids;
}

const snapshotDir = (store: string, diffID: string): string => path.join(store, 'snapshots', diffID.replace(/^sha256:/, ''));

/** What unpacking did not leave behind: no temp dirs in snapshots/, nothing in containers/. */
async function assertClean(store: string): Promise<void> {
  const snaps = await readdir(path.join(store, 'snapshots')).catch(() => []);
  assert.deepEqual(snaps.filter((n) => n.startsWith('.')), [], 'temp dirs left in snapshots/');
  assert.deepEqual(await readdir(path.join(store, 'containers')).catch(() => []), [], 'left in containers/');
}

before(async () => {
  if (skip) return;
  tmp = await userTempDir(user!, 'hoist-run-unpack-');
  layout = path.join(tmp.dir, 'images');
  img = await busyboxDerived(layout, 'owned', [
    await rawLayerTar([
      { name: 'srv/', type: 'directory', uid: 1000, gid: 1000 },
      { name: 'srv/owned', content: 'x\n', uid: 1000, gid: 1000 },
      { name: 'srv/gone', content: 'y\n' },
    ]),
    await rawLayerTar([{ name: 'srv/.wh.gone', content: '' }]),
  ]);
  // Readable by the users the tests run hoist as (the layout was written by root).
  spawnSync('chmod', ['-R', 'a+rX', tmp.dir]);
});

after(async () => {
  if (tmp) await tmp.cleanup();
});

describe('hoist copy into the local store, rootless', { skip }, () => {
  test('unpacks every layer as the container sees it, and the first run unpacks nothing', async () => {
    const store = await newStore();
    const sub = subordinateIds(user!)!;
    const { uid, gid } = hostIds(user!);
    const r = await ok(hoistAs(user!, store, ['copy', '--progress', 'plain', img.ref, 'owned']));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /\nUnpacking 3 layer\(s\)…\n$/);
    assert.doesNotMatch(r.stderr, /warning/);

    const ids = await diffIDs(layout, img.digest);
    assert.equal(ids.length, 3);
    for (const d of ids) {
      const st = await stat(path.join(snapshotDir(store, d), 'fs'));
      assert.ok(st.isDirectory(), `no snapshot for ${d}`);
      assert.equal(st.uid, uid, `snapshot of ${d}: owned by container root, the user`);
    }
    // Container uid 1000 is the user's subordinate id 999; the deletion is an overlay whiteout (0:0 char device).
    const owned = await stat(path.join(snapshotDir(store, ids[1]!), 'fs', 'srv', 'owned'));
    assert.equal(owned.uid, sub.uid.start + 999);
    assert.equal(owned.gid, sub.gid.start + 999);
    const wh = await stat(path.join(snapshotDir(store, ids[2]!), 'fs', 'srv', 'gone'));
    assert.ok(wh.isCharacterDevice(), 'the whiteout is a character device');
    assert.equal(wh.rdev, 0);
    assert.equal(wh.uid, uid);
    assert.equal(wh.gid, gid);
    await assertClean(store);

    const before = await Promise.all(ids.map((d) => stat(snapshotDir(store, d))));
    const run = await ok(hoistAs(user!, store, ['--debug', 'run', '--rm', 'owned', 'sh', '-c', 'stat -c %u /srv/owned; test ! -e /srv/gone && echo gone']));
    assert.equal(run.stdout, '1000\ngone\n');
    assert.match(run.stderr, /snapshots ready/, 'the debug lines this test relies on are there');
    assert.doesNotMatch(run.stderr, /unpacking sha256:/, 'the run unpacked a layer again');
    assert.match(run.stderr, /no helper needed/, 'an unpacked image runs without the namespace helper (fast-run.ts)');
    const afterRun = await Promise.all(ids.map((d) => stat(snapshotDir(store, d))));
    assert.deepEqual(afterRun.map((s) => [s.ino, s.mtimeMs]), before.map((s) => [s.ino, s.mtimeMs]));

    // The same layers under another name: nothing to unpack, no helper, no line.
    const again = await ok(hoistAs(user!, store, ['copy', '--progress', 'plain', img.ref, 'owned2']));
    assert.doesNotMatch(again.stderr, /Unpacking/);
  });

  test('--no-unpack and HOIST_NO_UNPACK leave every layer to the first run', async () => {
    const ids = await diffIDs(layout, img.digest);
    for (const how of ['flag', 'env'] as const) {
      const store = await newStore();
      const r = await ok(hoistAs(user!, store, ['copy', ...(how === 'flag' ? ['--no-unpack'] : []), '--progress', 'plain', img.ref, 'owned'],
        how === 'env' ? { env: { HOIST_NO_UNPACK: '1' } } : {}));
      assert.doesNotMatch(r.stderr, /Unpacking/);
      assert.deepEqual(await readdir(path.join(store, 'snapshots')).catch(() => []), [], how);
      const run = await ok(hoistAs(user!, store, ['--debug', 'run', '--rm', 'owned', 'true']));
      assert.equal(run.stderr.match(/unpacking sha256:/g)?.length, ids.length, `the first run unpacks (${how})\n${run.stderr}`);
    }
  });

  test('-q prints nothing; an index unpacks the platform hoist run picks, --platform another', async () => {
    // Two platforms with different top layers: this machine's and one hoist never runs here.
    const other = { os: 'linux', architecture: hostPlatform().architecture === 's390x' ? 'ppc64le' : 's390x' };
    const mine = await busyboxDerived(layout, 'p-mine', [await rawLayerTar([{ name: 'mine', content: 'm\n' }])]);
    const theirs = await busyboxDerived(layout, 'p-theirs', [await rawLayerTar([{ name: 'theirs', content: 't\n' }])]);
    const oci = await OciLayout.open(layout, { create: false });
    const entry = async (d: DerivedImage, platform: object): Promise<object> => ({
      mediaType: OCI_MANIFEST, digest: d.digest, size: (await oci.readBlob(d.digest)).length, platform,
    });
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: OCI_INDEX, manifests: [await entry(theirs, other), await entry(mine, hostPlatform())],
    }));
    await oci.setRef('multi', { mediaType: OCI_INDEX, digest: await oci.putBlobBytes(index), size: index.length });
    spawnSync('chmod', ['-R', 'a+rX', layout]);
    const top = async (d: DerivedImage): Promise<string> => (await diffIDs(layout, d.digest)).at(-1)!;

    const store = await newStore();
    const r = await ok(hoistAs(user!, store, ['copy', '-q', `oci:${layout}:multi`, 'multi']));
    assert.equal(r.stderr, '');
    assert.ok(existsSync(path.join(snapshotDir(store, await top(mine)), 'fs', 'mine')), 'this platform\'s layer is unpacked');
    assert.equal(existsSync(snapshotDir(store, await top(theirs))), false, 'the other platform\'s layer is not');

    const store2 = await newStore();
    await ok(hoistAs(user!, store2, ['copy', '-q', '--platform', `${other.os}/${other.architecture}`, `oci:${layout}:multi`, 'multi']));
    assert.ok(existsSync(path.join(snapshotDir(store2, await top(theirs)), 'fs', 'theirs')), 'the --platform layer is unpacked');
    assert.equal(existsSync(snapshotDir(store2, await top(mine))), false);
  });

  test('a --rm container\'s overlay is volatile (its unmount syncs nothing), as podman\'s; a kept container\'s is not', async () => {
    const store = await newStore();
    await ok(hoistAs(user!, store, ['copy', '-q', img.ref, 'owned']));
    const rootMount = ['sh', '-c', 'grep " / / " /proc/self/mountinfo'];
    const rm = await ok(hoistAs(user!, store, ['run', '--rm', 'owned', ...rootMount]));
    assert.match(rm.stdout, / overlay overlay [^\n]*\bvolatile\b/, rm.stdout);
    const kept = await ok(hoistAs(user!, store, ['run', '--name', 'kept', 'owned', ...rootMount]));
    assert.match(kept.stdout, / overlay overlay /);
    assert.doesNotMatch(kept.stdout, /volatile/);
    await ok(hoistAs(user!, store, ['rm', 'kept']));
  });

  test('a store path with quotes, spaces and a newline: the fast path\'s shell script quotes every word', async () => {
    const store = path.join(tmp.dir, `it's a "store" $HOME\n\`x\``);
    await mkdirFor(user!, store);
    await ok(hoistAs(user!, store, ['copy', '-q', img.ref, 'owned']));
    const r = await ok(hoistAs(user!, store, ['--debug', 'run', '--rm', 'owned', 'sh', '-c', 'stat -c %u /srv/owned']));
    assert.equal(r.stdout, '1000\n');
    assert.match(r.stderr, /no helper needed/, 'the fast path ran it');
    await assertClean(store);
  });

  test('a run that fails before its container starts leaves no namespace shell waiting behind it', async () => {
    const store = await newStore();
    await ok(hoistAs(user!, store, ['copy', '-q', img.ref, 'owned']));
    // The namespace is started before the image is read (waiting-namespace.ts); each of these fails after that.
    for (const args of [['--pull', 'never', 'nosuchimage:1'], ['owned', 'nosuchcommand'], ['-u', 'nosuchuser', 'owned', 'true']]) {
      const r = await hoistAs(user!, store, ['run', '--rm', ...args]);
      assert.notEqual(r.code, 0, show(r));
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, `one line: ${show(r)}`);
    }
    const waiting = spawnSync('pgrep', ['-u', user!, '-f', 'read -r l <&3'], { encoding: 'utf8' });
    assert.equal(waiting.stdout, '', 'a waiting namespace shell outlived its hoist');
    await assertClean(store);
  });

  test('when unpacking fails the copy still succeeds, with one warning line; the image is stored', async () => {
    const store = await newStore();
    // A snapshots directory the user can't write to (root's: not mapped in the user's namespace).
    await mkdir(path.join(store, 'snapshots'), { mode: 0o755 });
    await chown(path.join(store, 'snapshots'), 0, 0);
    const r = await hoistAs(user!, store, ['copy', '-q', img.ref, 'owned']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^hoist: warning: could not unpack the layers of docker\.io\/library\/owned:latest now \([^\n]*permission denied[^\n]*\); the first hoist run will unpack them\n$/, show(r));
    assert.match((await ok(hoistAs(user!, store, ['images']))).stdout, /docker\.io\/library\/owned +latest /);
    assert.deepEqual(await readdir(path.join(store, 'snapshots')), []);
    await assertClean(store);
  });

  test('an image file the user cannot read from outside (a 0700 directory of container uid 1000): the helper runs it', async () => {
    const store = await newStore();
    const priv = await busyboxDerived(layout, 'private', [await rawLayerTar([
      { name: 'opt/', type: 'directory' },
      { name: 'opt/private/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
      { name: 'opt/private/run.sh', content: '#!/bin/sh\necho private ran as $(id -u)\n', mode: 0o755, uid: 1000, gid: 1000 },
    ])], { User: '1000:1000' });
    await ok(hoistAs(user!, store, ['copy', '-q', priv.ref, 'private']));
    const r = await ok(hoistAs(user!, store, ['--debug', 'run', '--rm', 'private', '/opt/private/run.sh']));
    assert.equal(r.stdout, 'private ran as 1000\n');
    assert.match(r.stderr, /fast path not taken: .*EACCES/, 'the outer process could look inside the private directory');
    assert.doesNotMatch(r.stderr, /no helper needed/);
    // The same image's public files still go the fast way.
    const pub = await ok(hoistAs(user!, store, ['--debug', 'run', '--rm', '-u', '0', 'private', 'true']));
    assert.match(pub.stderr, /no helper needed/);
    await assertClean(store);
  });

  test('prune removes the unpacked layers no image uses, but none while a container runs', async () => {
    const store = await newStore();
    await ok(hoistAs(user!, store, ['copy', '-q', img.ref, 'owned']));
    const ids = await diffIDs(layout, img.digest);
    const hexNames = async (): Promise<string[]> => (await readdir(path.join(store, 'snapshots'))).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
    const all = ids.map((d) => d.replace(/^sha256:/, '')).sort();
    assert.deepEqual(await hexNames(), all);

    const kept = await ok(hoistAs(user!, store, ['prune']));
    assert.match(kept.stderr, /; 0 unpacked layer\(s\) removed\n$/, 'an image in the store keeps its layers');
    assert.deepEqual(await hexNames(), all);

    const bg = hoistInBackground(user!, store, tmp.dir, ['run', '--rm', 'owned', 'sh', '-c', 'echo ready; exec sleep 4714']);
    try {
      await bg.waitForStdout(/ready/);
      await ok(hoistAs(user!, store, ['rmi', 'owned']));
      const busy = await ok(hoistAs(user!, store, ['prune']));
      assert.match(busy.stderr, /unpacked layers left as they are \(a container is running\)\n$/);
      assert.deepEqual(await hexNames(), all, 'a running container\'s layers were removed');
    } finally {
      await bg.stop();
    }
    // Files of container uid 1000 (a subordinate id) among them: removed from inside the namespace.
    const pruned = await ok(hoistAs(user!, store, ['prune']));
    assert.match(pruned.stderr, new RegExp(`; ${all.length} unpacked layer\\(s\\) removed\\n$`), show(pruned));
    assert.deepEqual(await readdir(path.join(store, 'snapshots')), [], 'snapshots or the trash left behind');
    await assertClean(store);
  });
});

describe('a user without subordinate ids', { skip: nosubSkip }, () => {
  test('copies and unpacks in a single-id namespace, with no warning; the run then unpacks nothing', async () => {
    assertCheckoutReadable(nosub!);
    const own = await userTempDir(nosub!, 'hoist-unpack-nosub-');
    try {
      const store = path.join(own.dir, 'store');
      const bb = path.join(own.dir, 'bb');
      const made = await makeBusyboxImage(bb, 'busybox');
      spawnSync('chown', ['-R', nosub!, bb]);
      const r = await ok(hoistAs(nosub!, store, ['copy', '--progress', 'plain', `oci:${bb}:busybox`, 'busybox']));
      assert.match(r.stderr, /\nUnpacking 1 layer\(s\)…\n$/);
      assert.doesNotMatch(r.stderr, /warning/);
      const [d] = await diffIDs(bb, made.digest);
      assert.equal((await stat(path.join(snapshotDir(store, d!), 'fs', 'bin', 'busybox'))).uid, hostIds(nosub!).uid);
      const run = await ok(hoistAs(nosub!, store, ['--debug', 'run', '--rm', 'busybox', 'true']));
      assert.match(run.stderr, /snapshots ready/);
      assert.doesNotMatch(run.stderr, /unpacking sha256:/);
      await assertClean(store);
    } finally {
      await own.cleanup();
    }
  });
});

describe('pulled from a registry', { skip: registrySkip }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
    const pushStore = await mkdtemp(path.join(os.tmpdir(), 'hoist-unpack-push-'));
    try {
      await ok(hoistAsMe(pushStore, ['copy', '-q', '--dest-tls-verify=false', img.ref, `docker://${reg.host}/lib/owned:1`]));
    } finally {
      await rm(pushStore, { recursive: true, force: true });
    }
  });
  after(async () => {
    await reg?.stop();
  });

  test('run --pull unpacks as part of the pull', async () => {
    const store = await newStore();
    const r = await ok(hoistAs(user!, store, ['run', '--rm', '--tls-verify=false', `${reg.host}/lib/owned:1`, 'cat', '/srv/owned']));
    assert.equal(r.stdout, 'x\n');
    assert.match(r.stderr, /Trying to pull [^\n]*\n[^]*Unpacking 3 layer\(s\)…\n/);
    for (const d of await diffIDs(layout, img.digest)) assert.ok(existsSync(path.join(snapshotDir(store, d), 'fs')), d);
    await assertClean(store);
  });

  test('a build\'s FROM pull unpacks the base image', async () => {
    const store = await newStore();
    const ctx = path.join(tmp.dir, 'ctx');
    await mkdirFor(user!, ctx);
    await writeFile(path.join(ctx, 'Dockerfile'), `FROM ${reg.host}/lib/owned:1\nLABEL unpack=test\n`);
    spawnSync('chmod', ['a+r', path.join(ctx, 'Dockerfile')]);
    await ok(hoistAs(user!, store, ['build', '-q', '--tls-verify=false', '-t', 'built', ctx]));
    for (const d of await diffIDs(layout, img.digest)) assert.ok(existsSync(path.join(snapshotDir(store, d), 'fs')), d);
  });
});

describe('rootful (this process is root)', { skip: rootfulSkip || skip }, () => {
  test('copy unpacks with the image\'s own owners; the run unpacks nothing', async () => {
    const store = await mkdtemp(path.join(os.tmpdir(), 'hoist-unpack-rootful-'));
    try {
      const r = await ok(hoistAsMe(store, ['copy', '--progress', 'plain', img.ref, 'owned']));
      assert.match(r.stderr, /\nUnpacking 3 layer\(s\)…\n$/);
      const ids = await diffIDs(layout, img.digest);
      const owned = await stat(path.join(snapshotDir(store, ids[1]!), 'fs', 'srv', 'owned'));
      assert.deepEqual([owned.uid, owned.gid], [1000, 1000]);
      const wh = await stat(path.join(snapshotDir(store, ids[2]!), 'fs', 'srv', 'gone'));
      assert.ok(wh.isCharacterDevice());
      const run = await ok(hoistAsMe(store, ['--debug', 'run', '--rm', 'owned', 'stat', '-c', '%u', '/srv/owned']));
      assert.equal(run.stdout, '1000\n');
      assert.match(run.stderr, /snapshots ready/);
      assert.doesNotMatch(run.stderr, /unpacking sha256:/);
      await assertClean(store);
    } finally {
      await rm(store, { recursive: true, force: true });
    }
  });
});
