/**
 * Credentials through the CLI against a real htpasswd registry: login checks before it saves, the auth file it
 * writes works for hoist (--authfile alone) and for skopeo, --creds per side, logout forgets.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoist, ok, run } from '../helpers/run.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';

let tmp: string;
let root: string;
let reg: TestRegistry;
let open: TestRegistry;
let imageDigest: string;
/** No auth file from the user's home may leak into these runs. */
let env: NodeJS.ProcessEnv;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-regauth-'));
  root = path.join(tmp, 'store');
  env = { HOME: tmp, XDG_RUNTIME_DIR: path.join(tmp, 'run'), XDG_CONFIG_HOME: path.join(tmp, 'config'), DOCKER_CONFIG: path.join(tmp, 'docker'), REGISTRY_AUTH_FILE: '' };
  [reg, open] = await Promise.all([startRegistry({ auth: 'htpasswd' }), startRegistry()]);
  imageDigest = (await makeBusyboxImage(path.join(tmp, 'bb'), 'latest')).digest;
});
after(async () => {
  await Promise.all([reg?.stop(), open?.stop()]);
  await rm(tmp, { recursive: true, force: true });
});

const exists = (f: string) => access(f).then(() => true, () => false);
const sha256 = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

test('login with a wrong password fails with one line and writes nothing', async () => {
  const authfile = path.join(tmp, 'wrong.json');
  const alice = reg.users[0]!;
  const r = await hoist(root, ['login', '--tls-verify=false', '--authfile', authfile, '-u', alice.username, '-p', 'not-it', reg.host], { env });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^hoist: [^\n]*(401|rejected)[^\n]*\n$/);
  assert.equal(await exists(authfile), false);
});

test('login, then copy and inspect with only --authfile; skopeo reads the same auth file', async () => {
  const authfile = path.join(tmp, 'auth.json');
  const alice = reg.users[0]!;
  const r = await ok(hoist(root, ['login', '--tls-verify=false', '--authfile', authfile, '-u', alice.username, '--password-stdin', reg.host], { env, input: `${alice.password}\n` }));
  assert.match(r.stdout, /Login Succeeded/);
  const saved = JSON.parse(await readFile(authfile, 'utf8')) as { auths: Record<string, { auth: string }> };
  assert.equal(Buffer.from(saved.auths[reg.host]!.auth, 'base64').toString(), `${alice.username}:${alice.password}`);

  // Without credentials the registry refuses: the auth file is what makes the next copy work.
  const anon = await hoist(root, ['copy', '-q', `oci:${tmp}/bb:latest`, `docker://${reg.host}/private:1`], { env });
  assert.notEqual(anon.code, 0);
  assert.match(anon.stderr, /^hoist: [^\n]*401[^\n]*\n$/);

  await ok(hoist(root, ['copy', '-q', '--dest-authfile', authfile, `oci:${tmp}/bb:latest`, `docker://${reg.host}/private:1`], { env }));
  const raw = await ok(run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--authfile', authfile, `docker://${reg.host}/private:1`]));
  assert.equal(sha256(raw.stdout), imageDigest);
  const theirs = JSON.parse((await ok(run('skopeo', ['inspect', '--tls-verify=false', '--authfile', authfile, `docker://${reg.host}/private:1`]))).stdout) as { Digest: string };
  const mine = JSON.parse((await ok(hoist(root, ['inspect', '--authfile', authfile, `docker://${reg.host}/private:1`], { env }))).stdout) as { Digest: string };
  assert.equal(mine.Digest, theirs.Digest);

  // Authenticated source, anonymous destination: each side gets its own access.
  await ok(hoist(root, ['copy', '-q', '--src-authfile', authfile, '--dest-tls-verify=false', `docker://${reg.host}/private:1`, `docker://${open.host}/public:1`], { env }));
  assert.equal(sha256((await ok(run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${open.host}/public:1`]))).stdout), imageDigest);

  await ok(hoist(root, ['logout', '--authfile', authfile, reg.host], { env }));
  const after = JSON.parse(await readFile(authfile, 'utf8')) as { auths: Record<string, unknown> };
  assert.equal(after.auths[reg.host], undefined);
  const denied = await hoist(root, ['inspect', '--authfile', authfile, `docker://${reg.host}/private:1`], { env });
  assert.notEqual(denied.code, 0);
  const twice = await hoist(root, ['logout', '--authfile', authfile, reg.host], { env });
  assert.notEqual(twice.code, 0);
  assert.match(twice.stderr, /^hoist: logout: not logged into [^\n]*\n$/);

  // --all empties auths and keeps the rest of the file (docker's credHelpers, say).
  await ok(hoist(root, ['login', '--authfile', authfile, '-u', alice.username, '-p', alice.password, reg.host], { env }));
  const withHelpers = JSON.parse(await readFile(authfile, 'utf8')) as Record<string, unknown>;
  await writeFile(authfile, JSON.stringify({ ...withHelpers, credHelpers: { 'example.com': 'pass' } }));
  await ok(hoist(root, ['logout', '--all', '--authfile', authfile], { env }));
  assert.deepEqual(JSON.parse(await readFile(authfile, 'utf8')), { auths: {}, credHelpers: { 'example.com': 'pass' } });
});

test('--creds and --src-creds reach the registry; a wrong one fails with one line', async () => {
  const bob = reg.users[1]!;
  await ok(hoist(root, ['copy', '-q', '--dest-creds', `${bob.username}:${bob.password}`, `oci:${tmp}/bb:latest`, `docker://${reg.host}/bob:1`], { env }));
  const tags = await ok(hoist(root, ['list-tags', '--creds', `${bob.username}:${bob.password}`, `docker://${reg.host}/bob`], { env }));
  assert.deepEqual(JSON.parse(tags.stdout), { Repository: `${reg.host}/bob`, Tags: ['1'] });
  await ok(hoist(root, ['copy', '-q', '--creds', `${bob.username}:${bob.password}`, '--dest-creds', 'nobody:x', '--dest-tls-verify=false',
    `docker://${reg.host}/bob:1`, `docker://${open.host}/from-bob:1`], { env }));
  const bad = await hoist(root, ['inspect', '--creds', `${bob.username}:wrong`, `docker://${reg.host}/bob:1`], { env });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^hoist: [^\n]*credentials rejected[^\n]*\n$/);
  const noPass = await hoist(root, ['inspect', '--creds', bob.username, `docker://${reg.host}/bob:1`], { env });
  assert.notEqual(noPass.code, 0);
  assert.match(noPass.stderr, /^hoist: --creds bob: no password given[^\n]*\n$/);
});
