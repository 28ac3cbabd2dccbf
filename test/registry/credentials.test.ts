/**
 * Credential lookup and login/logout edits on real files, a real credential-helper program, and skopeo as the
 * independent reader and writer of auth.json (against a real htpasswd registry).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { authFilePaths, normalizeAuthKey, removeCredentials, resolveCredentials, saveCredentials } from '../../src/registry/credentials.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { pushSmallImage } from './scenario.ts';

const run = promisify(execFile);
const b64 = (s: string) => Buffer.from(s).toString('base64');

let tmp: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'hoist-'));
  const home = path.join(tmp, 'home');
  await mkdir(home);
  const bin = path.join(tmp, 'bin');
  await mkdir(bin);
  // A credential helper speaking docker's protocol: server on stdin, JSON on stdout.
  await writeFile(
    path.join(bin, 'docker-credential-hoisttest'),
    `#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  helper.example:5000) echo '{"ServerURL":"helper.example:5000","Username":"helperuser","Secret":"helper-secret"}' ;;
  tokenhelper.example) echo '{"ServerURL":"tokenhelper.example","Username":"<token>","Secret":"refresh-xyz"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hub-secret"}' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`,
  );
  await chmod(path.join(bin, 'docker-credential-hoisttest'), 0o755);
  env = { HOME: home, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, XDG_RUNTIME_DIR: path.join(tmp, 'run') };
});

after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function writeJson(file: string, data: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(data));
}

describe('lookup', { timeout: 30_000 }, () => {
  test('--creds wins and keeps colons in the password', async () => {
    assert.deepEqual(await resolveCredentials('any.example', { creds: 'u:p:a:ss', env }), { username: 'u', password: 'p:a:ss' });
    await assert.rejects(resolveCredentials('any.example', { creds: 'nopass', env }), (e: unknown) => (e as { code?: string }).code === 'BAD_CREDS');
  });

  test('containers and docker files, in order, with legacy and namespaced keys', async () => {
    const home = env.HOME!;
    await writeJson(path.join(env.XDG_RUNTIME_DIR!, 'containers', 'auth.json'), {
      auths: { 'first.example': { auth: b64('run:one') }, 'both.example': { auth: b64('run:wins') } },
    });
    await writeJson(path.join(home, '.config', 'containers', 'auth.json'), {
      auths: { 'both.example': { auth: b64('config:loses') }, 'second.example': { auth: b64('config:two') }, 'ns.example/team': { auth: b64('team:t') }, 'ns.example': { auth: b64('all:a') } },
    });
    await writeJson(path.join(home, '.docker', 'config.json'), {
      auths: { 'https://index.docker.io/v1/': { auth: b64('hub:h') }, 'https://oauth.example': { identitytoken: 'idt-123', auth: b64('<token>:') } },
    });
    assert.deepEqual(await resolveCredentials('first.example', { env }), { username: 'run', password: 'one' });
    assert.deepEqual(await resolveCredentials('both.example', { env }), { username: 'run', password: 'wins' });
    assert.deepEqual(await resolveCredentials('second.example', { env }), { username: 'config', password: 'two' });
    assert.deepEqual(await resolveCredentials('docker.io', { env }), { username: 'hub', password: 'h' });
    assert.deepEqual(await resolveCredentials('index.docker.io', { env }), { username: 'hub', password: 'h' });
    assert.deepEqual(await resolveCredentials('oauth.example', { env }), { identityToken: 'idt-123' });
    assert.deepEqual(await resolveCredentials('ns.example', { env, repo: 'team/app' }), { username: 'team', password: 't' });
    assert.deepEqual(await resolveCredentials('ns.example', { env, repo: 'other/app' }), { username: 'all', password: 'a' });
    assert.equal(await resolveCredentials('unknown.example', { env }), undefined);
  });

  test('--authfile and $REGISTRY_AUTH_FILE are read alone', async () => {
    const f = path.join(tmp, 'only.json');
    await writeJson(f, { auths: { 'only.example': { auth: b64('o:o') } } });
    assert.deepEqual(await resolveCredentials('only.example', { env, authfile: f }), { username: 'o', password: 'o' });
    assert.equal(await resolveCredentials('first.example', { env, authfile: f }), undefined);
    assert.deepEqual(authFilePaths(undefined, { ...env, REGISTRY_AUTH_FILE: f }), [f]);
    assert.equal(await resolveCredentials('first.example', { env: { ...env, REGISTRY_AUTH_FILE: f } }), undefined);
    await assert.rejects(resolveCredentials('x', { env, authfile: path.join(tmp, 'missing.json') }), (e: unknown) => (e as { code?: string }).code === 'AUTH_FILE');
    const bad = path.join(tmp, 'bad.json');
    await writeFile(bad, '{not json');
    await assert.rejects(resolveCredentials('x', { env, authfile: bad }), (e: unknown) => (e as { code?: string }).code === 'AUTH_FILE');
  });

  test('credHelpers and credsStore run docker-credential-NAME get', async () => {
    const f = path.join(tmp, 'helpers.json');
    await writeJson(f, {
      credHelpers: { 'helper.example:5000': 'hoisttest', 'tokenhelper.example': 'hoisttest', 'missing.example': 'hoisttest' },
      auths: { 'missing.example': { auth: b64('file:f') } },
    });
    assert.deepEqual(await resolveCredentials('helper.example:5000', { env, authfile: f }), { username: 'helperuser', password: 'helper-secret' });
    assert.deepEqual(await resolveCredentials('tokenhelper.example', { env, authfile: f }), { identityToken: 'refresh-xyz' });
    // A helper named for the host is authoritative for that file, even when it has nothing.
    assert.equal(await resolveCredentials('missing.example', { env, authfile: f }), undefined);

    const store = path.join(tmp, 'store.json');
    await writeJson(store, { credsStore: 'hoisttest', auths: { 'plain.example': { auth: b64('p:p') } } });
    assert.deepEqual(await resolveCredentials('docker.io', { env, authfile: store }), { username: 'hubuser', password: 'hub-secret' });
    assert.deepEqual(await resolveCredentials('plain.example', { env, authfile: store }), { username: 'p', password: 'p' });
    const absent = path.join(tmp, 'absent-store.json');
    await writeJson(absent, { credsStore: 'not-installed-anywhere', auths: { 'plain.example': { auth: b64('p:p') } } });
    assert.deepEqual(await resolveCredentials('plain.example', { env, authfile: absent }), { username: 'p', password: 'p' });
    const named = path.join(tmp, 'named-missing.json');
    await writeJson(named, { credHelpers: { 'x.example': 'not-installed-anywhere' } });
    await assert.rejects(resolveCredentials('x.example', { env, authfile: named }), (e: unknown) => (e as { code?: string }).code === 'CRED_HELPER');
  });

  test('auth keys normalise like containers/image', () => {
    assert.equal(normalizeAuthKey('https://index.docker.io/v1/'), 'docker.io');
    assert.equal(normalizeAuthKey('http://quay.io/v2/'), 'quay.io');
    assert.equal(normalizeAuthKey('quay.io/ns/repo/'), 'quay.io/ns/repo');
    assert.equal(normalizeAuthKey('registry-1.docker.io'), 'docker.io');
  });
});

describe('login and logout edits', { timeout: 30_000 }, () => {
  test('save writes 0600 atomically, keeps other entries, replaces aliases; remove forgets', async () => {
    const f = path.join(tmp, 'edit', 'auth.json');
    await writeJson(f, { auths: { 'keep.example': { auth: b64('k:k') }, 'https://index.docker.io/v1/': { auth: b64('old:old') } }, credHelpers: { 'h.example': 'x' } });
    assert.equal(await saveCredentials('docker.io', 'new', 'pa:ss', f, env), f);
    assert.equal((await stat(f)).mode & 0o777, 0o600);
    const j = JSON.parse(await readFile(f, 'utf8')) as { auths: Record<string, { auth: string }>; credHelpers: object };
    assert.deepEqual(Object.keys(j.auths).sort(), ['docker.io', 'keep.example']);
    assert.deepEqual(j.credHelpers, { 'h.example': 'x' });
    assert.deepEqual(await resolveCredentials('docker.io', { env, authfile: f }), { username: 'new', password: 'pa:ss' });

    assert.equal(await removeCredentials('docker.io', f, env), true);
    assert.equal(await removeCredentials('docker.io', f, env), false);
    assert.equal(await resolveCredentials('docker.io', { env, authfile: f }), undefined);
    assert.deepEqual(await resolveCredentials('keep.example', { env, authfile: f }), { username: 'k', password: 'k' });
  });

  test('login without --authfile writes $XDG_RUNTIME_DIR/containers/auth.json', async () => {
    const file = await saveCredentials('default.example', 'd', 'd', undefined, env);
    assert.equal(file, path.join(env.XDG_RUNTIME_DIR!, 'containers', 'auth.json'));
    assert.deepEqual(await resolveCredentials('default.example', { env }), { username: 'd', password: 'd' });
  });
});

describe('interop with skopeo', { timeout: 30_000 }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'htpasswd' });
    const c = new RegistryClient({ host: reg.host, credentials: reg.users[0] });
    await pushSmallImage(c, 'interop/app', 'v1');
    await c.close();
  });
  after(async () => {
    await reg?.stop();
  });

  test('skopeo reads the file we write', async () => {
    const f = path.join(tmp, 'ours.json');
    await saveCredentials(reg.host, reg.users[0]!.username, reg.users[0]!.password, f, env);
    const { stdout } = await run('skopeo', ['list-tags', '--authfile', f, '--tls-verify=false', `docker://${reg.host}/interop/app`], { env: { ...process.env, HOME: env.HOME } });
    assert.deepEqual((JSON.parse(stdout) as { Tags: string[] }).Tags, ['v1']);
  });

  test('we read the file skopeo login writes', async () => {
    const f = path.join(tmp, 'skopeo.json');
    const user = reg.users[1]!;
    await new Promise<void>((resolve, reject) => {
      const child = execFile('skopeo', ['login', '--authfile', f, '--tls-verify=false', '--username', user.username, '--password-stdin', reg.host], { env: { ...process.env, HOME: env.HOME } }, (err) => (err ? reject(err) : resolve()));
      child.stdin!.end(user.password);
    });
    const creds = await resolveCredentials(reg.host, { env, authfile: f });
    assert.deepEqual(creds, user);
    const c = new RegistryClient({ host: reg.host, credentials: creds });
    try {
      assert.deepEqual(await c.listTags('interop/app'), ['v1']);
    } finally {
      await c.close();
    }
  });
});
