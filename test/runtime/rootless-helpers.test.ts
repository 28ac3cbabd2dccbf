/**
 * The rootless test helpers do what the runtime tests assume: commands really run as the unprivileged user, in a
 * clean environment, with stdin passed through; temp dirs belong to the user and go away even when a user
 * namespace left files owned by subordinate ids in them (as root, and as the user itself).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ciUser, hoistAs, hostIds, isRoot, REPO_ROOT, rootlessSkipReason, runAs, subordinateIds, userTempDir } from '../helpers/rootless.ts';

const skip = rootlessSkipReason();
const user = ciUser();

/** Makes DIR/ns/f owned by container uid 1000 and DIR/ns mode 0 (so neither root-less rm nor a walk can get in). */
async function leaveSubuidFiles(dir: string): Promise<void> {
  const r = await runAs(user!, 'unshare', ['--user', '--map-root-user', '--map-auto', '--', 'sh', '-c',
    'mkdir ns && echo x > ns/f && chown 1000:1000 ns/f && chown 1000:1000 ns && chmod 0 ns'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
}

test('runAs runs as the user, in a clean environment, with stdin passed', { skip }, async () => {
  const r = await runAs(user!, 'sh', ['-c', 'id -u; echo "HOME=$HOME"; echo "XDG=${XDG_RUNTIME_DIR-unset}"; echo "CI=${HOIST_CI_USER-unset}"; cat'], {
    input: 'from stdin\n',
  });
  assert.equal(r.code, 0, r.stderr);
  const [uid, home, xdg, ci, stdin] = r.stdout.trim().split('\n');
  assert.equal(Number(uid), hostIds(user!).uid);
  assert.notEqual(Number(uid), 0);
  assert.equal(xdg, 'XDG=unset');
  assert.equal(ci, 'CI=unset', 'root\'s environment leaked into the user\'s');
  assert.equal(stdin, 'from stdin');
  const homeDir = home!.slice('HOME='.length);
  assert.equal((await stat(homeDir)).uid, hostIds(user!).uid, 'HOME is not owned by the user');
});

test('hoistAs runs the checkout\'s hoist on this Node as the user with HOIST_ROOT set', { skip }, async () => {
  const tmp = await userTempDir(user!, 'hoist-helpers-');
  try {
    const r = await hoistAs(user!, path.join(tmp.dir, 'root'), ['images']);
    assert.equal(r.code, 0, r.stderr);
    // An empty store prints nothing or a header; the store dir was made by the user's process.
    assert.equal((await stat(path.join(tmp.dir, 'root'))).uid, hostIds(user!).uid);
  } finally {
    await tmp.cleanup();
  }
});

test('a user namespace maps container uid 1000 to the user\'s subordinate range', { skip }, async () => {
  const tmp = await userTempDir(user!, 'hoist-helpers-');
  try {
    assert.equal((await stat(tmp.dir)).uid, hostIds(user!).uid);
    await leaveSubuidFiles(tmp.dir);
    const sub = subordinateIds(user!)!;
    assert.equal((await stat(path.join(tmp.dir, 'ns'))).uid, sub.uid.start + 999);
  } finally {
    await tmp.cleanup();
  }
  assert.equal(existsSync(tmp.dir), false, 'cleanup left the dir behind');
});

test('as the user itself, userTempDir cleanup removes files owned by subordinate ids', { skip: skip || (!isRoot() && 'covered by the test above when not root') }, async () => {
  // The same helper module, run by the user: the non-root branch (rm inside `unshare --map-auto`).
  const helpers = pathToFileURL(path.join(REPO_ROOT, 'test', 'helpers', 'rootless.ts')).href;
  const script = `
    import { userTempDir, runAs, ciUser } from ${JSON.stringify(helpers)};
    import { existsSync } from 'node:fs';
    const t = await userTempDir(ciUser(), 'hoist-helpers-self-');
    const r = await runAs(ciUser(), 'unshare', ['--user', '--map-root-user', '--map-auto', '--', 'sh', '-c',
      'mkdir ns && echo x > ns/f && chown 1000:1000 ns/f ns && chmod 0 ns'], { cwd: t.dir });
    if (r.code !== 0) throw new Error(r.stderr);
    await t.cleanup();
    console.log(existsSync(t.dir) ? 'left' : 'removed');
  `;
  const r = await runAs(user!, process.execPath, ['--input-type=module', '-e', script]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'removed');
});
