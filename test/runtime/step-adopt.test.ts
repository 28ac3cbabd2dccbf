/**
 * A build step's upper dir adopted as the new layer's snapshot (src/runtime/step.ts keepUpper/adopt): it holds what
 * the layer holds — the step's files, whiteouts as overlay's 0:0 devices — and none of the mountpoints runc made;
 * nothing is left in the store's containers directory, whether the step succeeded, failed or was not adopted.
 * And snapshotWriter: a layer tar unpacked into its snapshot while it is written.
 * As the unprivileged CI user (user namespace + overlay with userxattr) and as root. Real runc.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runAs, type UserTempDir } from '../helpers/rootless.ts';
import { busyboxStepStore, stepSetups } from '../helpers/step-store.ts';

const SCRIPT = fileURLToPath(new URL('./scripts/step-adopt.ts', import.meta.url));
const WRITER = fileURLToPath(new URL('./scripts/snapshot-writer.ts', import.meta.url));

interface AdoptOut { exit: number; diffID: string | null; adopted: boolean; entries: string[]; content: string | null; left: string[] }

for (const s of stepSetups()) {
  describe(`build step upper dir adopted as a snapshot (${s.who})`, { skip: s.skip }, () => {
    const user = s.user ?? 'root';
    let tmp: UserTempDir;
    let root: string;
    let secret: string;

    before(async () => {
      ({ tmp, root, secret } = await busyboxStepStore(s, 'hoist-adopt-'));
    });
    after(async () => {
      await tmp?.cleanup();
    });

    async function step(script: string, env: Record<string, string> = {}): Promise<AdoptOut> {
      const r = await runAs(user, process.execPath, [SCRIPT, root, 'busybox', script], { env: { SECRET_SRC: secret, ...env } });
      assert.equal(r.code, 0, `step script failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as AdoptOut;
    }

    test('a successful step: the snapshot has its files and whiteouts, no runc mountpoints; the step dir is gone', async () => {
      const out = await step('cat "$SECRET_FILE" > /dev/null && mkdir -p /data && echo hello > /data/hello.txt && rm /bin/wc');
      assert.equal(out.exit, 0);
      assert.equal(out.adopted, true);
      assert.deepEqual(out.entries, ['bin d', 'bin/wc c', 'data d', 'data/hello.txt f']);
      assert.equal(out.content, 'hello\n');
      assert.deepEqual(out.left, []);
    });

    test('a failed step adopts nothing and leaves nothing', async () => {
      const out = await step('echo x > /f; exit 3');
      assert.equal(out.exit, 3);
      assert.equal(out.adopted, false);
      assert.deepEqual(out.left, []);
    });

    test('snapshotWriter: a layer tar written in pieces becomes the snapshot named by its digest, whiteouts and opaque marker as overlay wants', async () => {
      const r = await runAs(user, process.execPath, [WRITER, root]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { diffID: string; expected: string; entries: string[]; opaque: boolean; left: string[]; tmp: string[] };
      assert.equal(out.diffID, out.expected);
      assert.deepEqual(out.entries, ['app d', 'app/gone c', 'app/hello.txt f', 'opq d']);
      assert.equal(out.opaque, true);
      assert.deepEqual(out.left, []);
      assert.deepEqual(out.tmp, []);
    });

    test('a step not adopted (no layer) is removed, subordinate-owned files too', async () => {
      const out = await step('mkdir /owned && echo x > /owned/f && chown -R 5:5 /owned', { ADOPT: 'none' });
      assert.equal(out.exit, 0);
      assert.equal(out.adopted, false);
      assert.deepEqual(out.left, []);
    });
  });
}
