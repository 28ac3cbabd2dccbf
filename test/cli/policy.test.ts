/**
 * containers-policy.json enforced by `hoist copy` (the source), `hoist run` (pulls) and `hoist build` (FROM pulls),
 * as processes against a real registry (distribution 2.8) with images signed by `hoist sign`:
 * insecureAcceptAnything, reject, sigstoreSigned by keyPath and keyData (signed / unsigned / signed by another key,
 * simple signatures and bundles), every signedIdentity kind both ways, transport and scope selection, --insecure-policy,
 * where the policy file is found (none = accept), bad policy files, --all-tags; run and build refuse at pull time only.
 * run and build are tested as root (this process), rootful.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoist, ok, show, type RunResult } from '../helpers/run.ts';
import { makeImage, type MadeImage } from '../helpers/make-image.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';

let tmp: string;
let root: string;
let reg: TestRegistry;
let layout: string;
let app: MadeImage;
let key: string;
let stranger: string;
/** An empty directory: HOME and HOIST_POLICY_ROOT for "no policy file anywhere". */
let empty: string;
let n = 0;

/**
 * hoist with the keys' passphrase, a HOME without a policy and the system policy path moved to an empty directory
 * (this machine has an /etc/containers/policy.json): only --policy files count unless a test says otherwise.
 */
function h(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return hoist(root, args, { env: { COSIGN_PASSWORD: 'pw', HOME: empty, HOIST_POLICY_ROOT: empty, ...env } });
}


/** Failed with exit `code` and said why in exactly one `hoist: …` line matching `re`. */
function refused(r: RunResult, re: RegExp, code = 1): void {
  assert.equal(r.code, code, show(r));
  assert.match(r.stderr, /^hoist: [^\n]+\n$/, `expected one hoist: line on stderr\n${show(r)}`);
  assert.match(r.stderr, re);
}

async function policyFile(policy: unknown): Promise<string> {
  const p = path.join(tmp, `policy-${++n}.json`);
  await writeFile(p, typeof policy === 'string' ? policy : JSON.stringify(policy));
  return p;
}

/** A sigstoreSigned requirement with the main key by path, and optionally a signedIdentity. */
function signedBy(signedIdentity?: unknown, k = key): Record<string, unknown> {
  return { type: 'sigstoreSigned', keyPath: `${k}.pub`, ...(signedIdentity ? { signedIdentity } : {}) };
}

/** `hoist copy --policy P SRC oci:NEW` → the result, and whether the destination exists afterwards. */
async function copyWith(policy: string | undefined, src: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunResult & { written: boolean }> {
  const dst = path.join(tmp, `dst-${++n}`);
  const r = await h(['copy', '-q', '--src-tls-verify=false', ...(policy ? ['--policy', policy] : []), ...extra, src, `oci:${dst}:img`], env);
  return { ...r, written: existsSync(dst) };
}

async function accepts(policy: string | undefined, src: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<void> {
  const r = await copyWith(policy, src, extra, env);
  assert.equal(r.code, 0, show(r));
  assert.ok(r.written);
}

async function refuses(policy: string | undefined, src: string, re: RegExp, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<void> {
  const r = await copyWith(policy, src, extra, env);
  refused(r, re);
  assert.equal(r.written, false, 'nothing may be written to the destination');
}

const d = (repo: string): string => `docker://${reg.host}/${repo}`;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-policy-cli-'));
  root = path.join(tmp, 'store');
  empty = path.join(tmp, 'empty');
  await mkdir(empty);
  reg = await startRegistry();
  layout = path.join(tmp, 'lay');
  app = await makeImage(layout, { layers: [{ files: { 'etc/hello': 'hi\n' } }], ref: 'app' });
  key = path.join(tmp, 'k');
  stranger = path.join(tmp, 'stranger');
  await ok(h(['generate-key', '--output-prefix', key]));
  await ok(h(['generate-key', '--output-prefix', stranger]));
  const push = (to: string) => ok(h(['copy', '-q', '--remove-signatures', '--dest-tls-verify=false', `oci:${layout}:app`, d(to)]));
  const sign = (ref: string, k: string, ...args: string[]) => ok(h(['sign', '-q', '--tls-verify=false', '--key', `${k}.private`, ...args, d(ref)]));
  // Simple signatures only where identities are tested: a bundle names no identity, so it would satisfy any.
  await push('signed:1');
  await push('signed:2'); // same manifest, so the same signatures: they name signed:1
  await sign('signed:1', key, '--format', 'simple');
  await push('unsigned:1');
  await push('strange:1');
  await sign('strange:1', stranger);
  await push('ident:1');
  await sign('ident:1', key, '--format', 'simple', '--identity', `${reg.host}/elsewhere:7`);
  await push('bundled:1');
  await sign('bundled:1', key, '--format', 'bundle');
});
after(async () => {
  await reg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

test('insecureAcceptAnything accepts and reject refuses, naming the image and the rule; nothing is written', async () => {
  await accepts(await policyFile({ default: [{ type: 'insecureAcceptAnything' }] }), d('unsigned:1'));
  const p = await policyFile({ default: [{ type: 'reject' }] });
  await refuses(p, d('unsigned:1'),
    new RegExp(`docker://${reg.host}/unsigned:1 refused by policy: reject \\(default, ${p}\\): the policy rejects every image here`));
  // A store destination: the store gets no image either.
  const r = await h(['copy', '-q', '--src-tls-verify=false', '--policy', p, d('unsigned:1'), 'local/unsigned:1']);
  refused(r, /refused by policy: reject/);
  assert.equal((await ok(h(['images', '--format', 'json']))).stdout.trim(), '[]');
});

test('skopeo\'s form: --policy and --insecure-policy before the command name; the command\'s own --policy wins', async () => {
  const reject = await policyFile({ default: [{ type: 'reject' }] });
  const accept = await policyFile({ default: [{ type: 'insecureAcceptAnything' }] });
  const dst = (): string => `oci:${path.join(tmp, `dst-${++n}`)}:img`;
  refused(await h(['--policy', reject, 'copy', '-q', '--src-tls-verify=false', d('unsigned:1'), dst()]), /refused by policy: reject/);
  await ok(h(['--policy', reject, 'copy', '-q', '--src-tls-verify=false', '--policy', accept, d('unsigned:1'), dst()]));
  await ok(h(['--insecure-policy', 'copy', '-q', '--src-tls-verify=false', d('unsigned:1'), dst()], { HOME: empty, HOIST_POLICY_ROOT: empty }));
  refused(await h(['--policy', path.join(tmp, 'no-such-policy.json'), 'copy', '-q', '--src-tls-verify=false', d('unsigned:1'), dst()]),
    /cannot read policy file .*no-such-policy\.json: no such file/);
});

for (const how of ['keyPath', 'keyData'] as const) {
  test(`sigstoreSigned with ${how}: a signed image is accepted; unsigned and signed-by-another-key ones are refused`, async () => {
    const pub = await readFile(`${key}.pub`, 'utf8');
    const req = how === 'keyPath' ? { type: 'sigstoreSigned', keyPath: `${key}.pub` } : { type: 'sigstoreSigned', keyData: Buffer.from(pub).toString('base64') };
    const p = await policyFile({ default: [req] });
    const what = how === 'keyPath' ? `key ${key}.pub` : 'the key in keyData';
    await accepts(p, d('signed:1'));
    await accepts(p, d('bundled:1')); // a sigstore bundle alone is enough
    await refuses(p, d('unsigned:1'), new RegExp(`unsigned:1 refused by policy: sigstoreSigned \\(default, ${p}\\): a signature was required, but the image has none \\(expected one made by ${what}\\)`));
    await refuses(p, d('strange:1'), new RegExp(`strange:1 refused by policy: sigstoreSigned .*: no signature matches ${what} \\(2 checked\\)`));
  });
}

test('signedIdentity: each kind accepts a matching signature and refuses another', async () => {
  const digest = app.manifest.digest;
  // matchRepoDigestOrExact (the default): the tag signed, or any signature of the repository for a digest reference.
  const def = await policyFile({ default: [signedBy()] });
  await accepts(def, d('signed:1'));
  await accepts(def, d(`signed@${digest}`));
  await refuses(def, d('signed:2'), new RegExp(`signature 1 \\(simple signing\\) is for "${reg.host}/signed:1", which signedIdentity matchRepoDigestOrExact does not accept for ${reg.host}/signed:2`));
  // matchExact: the tag only; a digest reference never matches a tagged claim.
  const exact = await policyFile({ default: [signedBy({ type: 'matchExact' })] });
  await accepts(exact, d('signed:1'));
  await refuses(exact, d(`signed@${digest}`), /signedIdentity matchExact does not accept/);
  // matchRepository: any tag of the repository.
  const repo = await policyFile({ default: [signedBy({ type: 'matchRepository' })] });
  await accepts(repo, d('signed:2'));
  await refuses(repo, d('ident:1'), new RegExp(`is for "${reg.host}/elsewhere:7", which signedIdentity matchRepository does not accept for ${reg.host}/ident:1`));
  // exactReference: the claim must be that reference, whatever the image is called.
  const ref = await policyFile({ default: [signedBy({ type: 'exactReference', dockerReference: `${reg.host}/elsewhere:7` })] });
  await accepts(ref, d('ident:1'));
  await refuses(ref, d('signed:1'), new RegExp(`is for "${reg.host}/signed:1", which signedIdentity exactReference "${reg.host}/elsewhere:7" does not accept`));
});

test('transports and scopes: the most specific scope wins over the transport default and the default', async () => {
  const p = await policyFile({
    default: [{ type: 'reject' }],
    transports: {
      docker: {
        '': [signedBy()],
        [`${reg.host}/unsigned`]: [{ type: 'insecureAcceptAnything' }],
        [`${reg.host}/strange:1`]: [signedBy(undefined, stranger)],
      },
      oci: { [layout]: [{ type: 'insecureAcceptAnything' }] },
    },
  });
  await accepts(p, d('unsigned:1')); // its repository's scope
  await accepts(p, d('signed:1')); // the docker default ""
  await accepts(p, d('strange:1')); // its exact tag's scope, with the other key
  await push2('other:1');
  await refuses(p, d('other:1'), new RegExp(`other:1 refused by policy: sigstoreSigned \\(transport "docker" default, ${p}\\)`));
  await accepts(p, `oci:${layout}:app`); // oci: scope of the layout's directory
  const other = path.join(tmp, 'lay2');
  await makeImage(other, { layers: [{ files: { x: 'x' } }], ref: 'x' });
  await refuses(p, `oci:${other}:x`, new RegExp(`oci:${other}:x refused by policy: reject \\(default, ${p}\\)`));
  // A host scope.
  const host = await policyFile({ default: [{ type: 'reject' }], transports: { docker: { [reg.host]: [{ type: 'insecureAcceptAnything' }] } } });
  await accepts(host, d('other:1'));
});

async function push2(to: string): Promise<void> {
  await ok(h(['copy', '-q', '--remove-signatures', '--dest-tls-verify=false', `oci:${layout}:app`, d(to)]));
}

test('--insecure-policy skips the policy (and a missing or broken file)', async () => {
  const p = await policyFile({ default: [{ type: 'reject' }] });
  await accepts(p, d('unsigned:1'), ['--insecure-policy']);
  await accepts(path.join(tmp, 'nosuch.json'), d('unsigned:1'), ['--insecure-policy']);
  await accepts(p, d('unsigned:1'), ['--insecure-policy=true']);
});

test('which policy file applies: none anywhere = accept; ~/.config/containers/policy.json; then /etc/containers/policy.json', async () => {
  await accepts(undefined, d('unsigned:1'));
  const home = path.join(tmp, 'home');
  await mkdir(path.join(home, '.config', 'containers'), { recursive: true });
  const user = path.join(home, '.config', 'containers', 'policy.json');
  await writeFile(user, JSON.stringify({ default: [{ type: 'reject' }] }));
  await refuses(undefined, d('unsigned:1'), new RegExp(`refused by policy: reject \\(default, ${user}\\)`), [], { HOME: home });
  // --policy wins over the user's file.
  await accepts(await policyFile({ default: [{ type: 'insecureAcceptAnything' }] }), d('unsigned:1'), [], { HOME: home });
  const sysRoot = path.join(tmp, 'sysroot');
  await mkdir(path.join(sysRoot, 'etc', 'containers'), { recursive: true });
  const sys = path.join(sysRoot, 'etc', 'containers', 'policy.json');
  await writeFile(sys, JSON.stringify({ default: [{ type: 'reject' }] }));
  await refuses(undefined, d('unsigned:1'), new RegExp(`refused by policy: reject \\(default, ${sys}\\)`), [], { HOIST_POLICY_ROOT: sysRoot });
});

test('a bad policy file is one clear line, and nothing is copied', async () => {
  const notJson = await policyFile('{"default": [');
  await refuses(notJson, d('signed:1'), new RegExp(`invalid policy in ${notJson}: not valid JSON at line 1`));
  const unknown = await policyFile({ default: [{ type: 'signedByMagic' }] });
  await refuses(unknown, d('signed:1'), /invalid policy in .*: \$\.default\[0\]\.type: unknown policy requirement type "signedByMagic"/);
  const noDefault = await policyFile({ transports: {} });
  await refuses(noDefault, d('signed:1'), /the default policy is missing/);
  const missing = path.join(tmp, 'nosuch.json');
  await refuses(missing, d('signed:1'), new RegExp(`cannot read policy file ${missing}: no such file; pass an existing file to --policy`));
});

test('--all-tags: every tag is checked before any is copied; one refused tag copies none', async () => {
  await push2('multi:a');
  await ok(h(['sign', '-q', '--tls-verify=false', '--key', `${key}.private`, d('multi:a')]));
  await ok(h(['copy', '-q', '--remove-signatures', '--dest-tls-verify=false', `oci:${tmp}/lay2:x`, d('multi:b')]));
  const p = await policyFile({ default: [signedBy({ type: 'matchRepository' })] });
  const copyAll = (dest: string, extra: string[] = []) =>
    h(['copy', '-q', '--all-tags', '--src-tls-verify=false', '--dest-tls-verify=false', '--policy', p, ...extra, d('multi'), d(dest)]);
  refused(await copyAll('multi-copy'), new RegExp(`docker://${reg.host}/multi:b refused by policy: sigstoreSigned`));
  const none = await h(['list-tags', '--tls-verify=false', d('multi-copy')]);
  assert.notEqual(none.code, 0, `the destination repository must not exist:\n${show(none)}`);
  await ok(copyAll('multi-copy', ['--insecure-policy']));
  const tags = JSON.parse((await ok(h(['list-tags', '--tls-verify=false', d('multi-copy')]))).stdout) as { Tags: string[] };
  assert.deepEqual(tags.Tags.filter((t) => !t.startsWith('sha256-')).sort(), ['a', 'b']);
});

const rootfulSkip = process.getuid?.() !== 0 ? 'run and build are tested as root'
  : spawnSync('runc', ['--version'], { stdio: 'ignore' }).status !== 0 ? 'runc is not installed' : false;

describe('run and build pulls (as root, rootful)', { skip: rootfulSkip }, () => {
  let policy: string;
  before(async () => {
    const bb = path.join(tmp, 'bb');
    await makeBusyboxImage(bb, 'busybox');
    for (const t of ['bb-signed:1', 'bb-unsigned:1']) {
      await ok(h(['copy', '-q', '--remove-signatures', '--dest-tls-verify=false', `oci:${bb}:busybox`, d(t)]));
    }
    await ok(h(['sign', '-q', '--tls-verify=false', '--key', `${key}.private`, d('bb-signed:1')]));
    policy = await policyFile({ default: [{ type: 'insecureAcceptAnything' }], transports: { docker: { [reg.host]: [signedBy()] } } });
  });

  test('run --pull always refuses an unsigned image before storing it, and runs a signed one', async () => {
    const store = path.join(tmp, 'run-store');
    const runIt = (image: string, extra: string[] = []) =>
      hoist(store, ['run', '--rm', '--pull', 'always', '--tls-verify=false', '--policy', policy, ...extra, `${reg.host}/${image}`, 'echo', 'ran'],
        { env: { HOME: empty, HOIST_POLICY_ROOT: empty } });
    const r = await runIt('bb-unsigned:1');
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, new RegExp(`^Trying to pull ${reg.host}/bb-unsigned:1\\.\\.\\.\\nhoist: docker://${reg.host}/bb-unsigned:1 refused by policy: sigstoreSigned \\(scope "${reg.host}", ${policy}\\): a signature was required, but the image has none`));
    assert.equal((await ok(hoist(store, ['images', '--format', 'json']))).stdout.trim(), '[]');
    const good = await ok(runIt('bb-signed:1'));
    assert.equal(good.stdout, 'ran\n');
    // Pull time only, as podman: the stored image runs under a policy that would refuse it now.
    const reject = await policyFile({ default: [{ type: 'reject' }] });
    const again = await ok(hoist(store, ['run', '--rm', '--policy', reject, `${reg.host}/bb-signed:1`, 'echo', 'again'], { env: { HOME: empty, HOIST_POLICY_ROOT: empty } }));
    assert.equal(again.stdout, 'again\n');
    const pulled = await hoist(store, ['run', '--rm', '--pull', 'always', '--tls-verify=false', '--policy', reject, `${reg.host}/bb-signed:1`, 'true'], { env: { HOME: empty, HOIST_POLICY_ROOT: empty } });
    assert.equal(pulled.code, 125, show(pulled));
    assert.match(pulled.stderr, /refused by policy: reject/);
  });

  test('build: FROM an unsigned image is refused at the pull, a signed one is accepted', async () => {
    const store = path.join(tmp, 'build-store');
    const build = async (from: string, extra: string[] = []) => {
      const ctx = path.join(tmp, `ctx-${++n}`);
      await mkdir(ctx);
      await writeFile(path.join(ctx, 'Dockerfile'), `FROM ${reg.host}/${from}\nCMD ["echo", "hi"]\n`);
      return hoist(store, ['build', '-q', '--tls-verify=false', '--policy', policy, ...extra, '-t', 'built', ctx], { env: { HOME: empty, HOIST_POLICY_ROOT: empty } });
    };
    const r = await build('bb-unsigned:1');
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, new RegExp(`hoist: docker://${reg.host}/bb-unsigned:1 refused by policy: sigstoreSigned \\(scope "${reg.host}", ${policy}\\): a signature was required, but the image has none`));
    assert.equal((await ok(hoist(store, ['images', '--format', 'json']))).stdout.trim(), '[]');
    const good = await build('bb-signed:1');
    assert.equal(good.code, 0, show(good));
    const names = (JSON.parse((await ok(hoist(store, ['images', '--format', 'json']))).stdout) as { Names: string[] }[]).flatMap((i) => i.Names);
    assert.ok(names.includes('localhost/built:latest') || names.some((x) => x.endsWith('/built:latest')), names.join(' '));
    // --insecure-policy lets the unsigned one through.
    assert.equal((await build('bb-unsigned:1', ['--insecure-policy'])).code, 0);
  });
});
