/**
 * Setup shared by the build-step tests (test/runtime/step*.test.ts): the two ways a step runs — rootless as the CI
 * user and rootful as root, each with real runc — and a store holding the repo's busybox, plus a secret file to bind.
 */
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';
import { findExecutable } from '../../src/runtime/host.ts';
import { ciUser, hoistAs, isRoot, rootlessSkipReason, runAs, userTempDir, type UserTempDir } from './rootless.ts';

export interface StepSetup {
  who: 'rootless' | 'rootful';
  /** The user the step runs as; undefined: root. */
  user: string | undefined;
  skip: string | false;
}

export function stepSetups(): StepSetup[] {
  const noRunc = findExecutable('runc') ? false : 'runc is not installed';
  return [
    { who: 'rootless', user: ciUser(), skip: noRunc || rootlessSkipReason() },
    { who: 'rootful', user: undefined, skip: noRunc || (isRoot() ? false : 'needs root') },
  ];
}

export interface StepStore {
  tmp: UserTempDir;
  /** The store, with busybox in it. */
  root: string;
  /** A readable file holding `top-secret\n`, to bind as a secret. */
  secret: string;
}

/** A temp dir owned by `user` (root for the rootful setup) with a store holding busybox and a secret file. */
export async function busyboxStepStore(s: StepSetup, prefix: string): Promise<StepStore> {
  const user = s.user ?? 'root';
  const tmp = await userTempDir(user, prefix);
  const root = path.join(tmp.dir, 'store');
  const oci = path.join(tmp.dir, 'bb');
  await makeBusyboxImage(oci, 'latest');
  if (s.user) await runAs('root', 'chown', ['-R', s.user, oci]);
  const r = await hoistAs(user, root, ['copy', `oci:${oci}:latest`, 'busybox']);
  assert.equal(r.code, 0, r.stderr);
  const secret = path.join(tmp.dir, 'secret');
  await writeFile(secret, 'top-secret\n');
  await chmod(secret, 0o644);
  return { tmp, root, secret };
}
