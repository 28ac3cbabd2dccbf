/**
 * Build steps through the runtime (src/runtime/step.ts): the change layer of a RUN, as the unprivileged CI user
 * (user namespace + overlay with userxattr) and as root (rootful overlay). Real runc, real tar parsing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runAs, type UserTempDir } from '../helpers/rootless.ts';
import { busyboxStepStore, stepSetups } from '../helpers/step-store.ts';

const SCRIPT = fileURLToPath(new URL('./scripts/step.ts', import.meta.url));

interface Entry { name: string; type: string; size: number; uid: number; mode: number }
interface StepOut { exit: number; entries: Entry[] }

for (const s of stepSetups()) {
  describe(`build step (${s.who})`, { skip: s.skip }, () => {
    const user = s.user ?? 'root';
    let tmp: UserTempDir;
    let root: string;
    let secret: string;

    before(async () => {
      ({ tmp, root, secret } = await busyboxStepStore(s, 'hoist-step-'));
    });
    after(async () => {
      await tmp?.cleanup();
    });

    async function step(script: string): Promise<StepOut> {
      const r = await runAs(user, process.execPath, [SCRIPT, root, 'busybox', script], { env: { SECRET_SRC: secret } });
      assert.equal(r.code, 0, `step script failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as StepOut;
    }

    test('RUN true gives an empty layer: the mountpoints runc makes (/proc, /dev, /etc/hosts, a secret\'s /run/secrets) are left out', async () => {
      const out = await step('true');
      assert.equal(out.exit, 0);
      assert.deepEqual(out.entries, []);
    });

    test('new files, deletions as .wh.NAME, a re-created directory as opaque; owners as the container set them', async () => {
      const out = await step('cat "$SECRET_FILE" > /dev/null && rm /bin/wc && mkdir -p /new && echo hi > /new/f && chown 5:5 /new/f && rm -rf /root && mkdir /root && echo x > /root/only');
      assert.equal(out.exit, 0);
      assert.deepEqual(out.entries.map((e) => e.name), [
        'bin/', 'bin/.wh.wc', 'new/', 'new/f', 'root/', 'root/.wh..wh..opq', 'root/only',
      ]);
      assert.equal(out.entries.find((e) => e.name === 'new/f')!.uid, 5);
      assert.equal(out.entries.find((e) => e.name === 'new/f')!.size, 3);
    });

    test('the secret is readable in the step and never reaches the layer; a write under /run is kept; the exit code comes back', async () => {
      const out = await step('grep -q top-secret "$SECRET_FILE" && echo a > /run/keep && exit 3');
      assert.equal(out.exit, 3);
      assert.deepEqual(out.entries.map((e) => e.name), ['run/', 'run/keep']);
    });

    test('a command that is not there: 127 and an empty change', async () => {
      const out = await step('exec /nonexistent');
      assert.equal(out.exit, 127);
      assert.deepEqual(out.entries, []);
    });
  });
}
