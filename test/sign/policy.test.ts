/**
 * containers-policy.json: strict parsing, policy file lookup, scope selection per transport, signedIdentity matching
 * (table cases ported from containers/image signature/policy_reference_match_test.go) and evaluation with
 * signatures whose keyOk does real ECDSA verification.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HoistError } from '../../src/errors.ts';
import {
  dockerNamespaces,
  enforcePolicy,
  evaluatePolicy,
  findPolicyFile,
  identityMatches,
  loadPolicy,
  parsePolicy,
  policyTarget,
  requirementsFor,
  type FoundSignature,
  type Policy,
  type PolicyTarget,
  type Requirement,
  type SignedIdentity,
} from '../../src/sign/policy.ts';
import { isValidRemapPrefix, parseNormalizedNamed, refMatchesPrefix, remapReferencePrefix } from '../../src/sign/policy-identity.ts';
import { formatReference } from '../../src/oci/reference.ts';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'hoist-policy-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

function policyError(text: string, ...want: (string | RegExp)[]): void {
  assert.throws(
    () => parsePolicy(text, '/etc/p.json'),
    (e: unknown) => {
      assert.ok(e instanceof HoistError, String(e));
      assert.equal(e.code, 'BAD_POLICY');
      assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
      assert.ok(e.message.startsWith('invalid policy in /etc/p.json: '), e.message);
      for (const w of want) {
        if (typeof w === 'string') assert.ok(e.message.includes(w), `${JSON.stringify(e.message)} should include ${JSON.stringify(w)}`);
        else assert.match(e.message, w);
      }
      return true;
    },
  );
}

const wrap = (req: unknown): string => JSON.stringify({ default: [req] });

// ------------------------------------------------------------------------------------------------- parsing

test('parses every requirement and identity type, filling the default signedIdentity', () => {
  const text = JSON.stringify({
    default: [{ type: 'reject' }],
    transports: {
      docker: {
        'example.com/open': [{ type: 'insecureAcceptAnything' }],
        'example.com/keyed': [{ type: 'sigstoreSigned', keyPath: '/k.pub' }],
        'example.com/keys': [{ type: 'sigstoreSigned', keyPaths: ['/a.pub', '/b.pub'], signedIdentity: { type: 'matchExact' } }],
        'example.com/data': [{ type: 'sigstoreSigned', keyData: 'bm9uc2Vuc2U=', signedIdentity: { type: 'matchRepository' } }],
        'example.com/datas': [{ type: 'sigstoreSigned', keyDatas: ['YQ==', 'Yg=='], signedIdentity: { type: 'exactReference', dockerReference: 'busybox:1' } }],
        'example.com/fulcio': [{
          type: 'sigstoreSigned',
          fulcio: { caPath: '/ca.pem', oidcIssuer: 'https://issuer', subjectEmail: 'a@b' },
          rekorPublicKeyPath: '/rekor.pub',
          signedIdentity: { type: 'exactRepository', dockerRepository: 'quay.io/x/y' },
        }],
        'example.com/pki': [{ type: 'sigstoreSigned', pki: { caRootsPath: '/r.pem', subjectHostname: 'h' } }],
        'mirror:5000/vendor': [{
          type: 'signedBy', keyType: 'GPGKeys', keyPath: '/gpg',
          signedIdentity: { type: 'remapIdentity', prefix: 'mirror:5000/vendor', signedPrefix: 'vendor.example.com' },
        }],
        '*.example.org': [{ type: 'signedBaseLayer', baseLayerIdentity: { type: 'matchRepoDigestOrExact' } }],
      },
      oci: { '': [{ type: 'insecureAcceptAnything' }], '/srv/layouts': [{ type: 'reject' }] },
      'containers-storage': { '[overlay@/var/lib/containers/storage]docker.io/library/busybox': [{ type: 'reject' }] },
      'docker-archive': { '': [{ type: 'reject' }] },
      registry: { anything: [{ type: 'reject' }] }, // transports containers/image does not know are not checked
    },
  });
  const p = parsePolicy(text, 'x.json');
  assert.deepEqual(p.default, [{ type: 'reject' }]);
  const d = p.transports['docker']!;
  assert.deepEqual(d['example.com/keyed'], [{ type: 'sigstoreSigned', keyPath: '/k.pub', signedIdentity: { type: 'matchRepoDigestOrExact' } }]);
  assert.deepEqual(d['example.com/keys'], [{ type: 'sigstoreSigned', keyPaths: ['/a.pub', '/b.pub'], signedIdentity: { type: 'matchExact' } }]);
  assert.deepEqual(d['example.com/data'], [{ type: 'sigstoreSigned', keyData: 'bm9uc2Vuc2U=', signedIdentity: { type: 'matchRepository' } }]);
  assert.deepEqual(d['example.com/datas']![0], {
    type: 'sigstoreSigned', keyDatas: ['YQ==', 'Yg=='], signedIdentity: { type: 'exactReference', dockerReference: 'busybox:1' },
  });
  assert.deepEqual(d['example.com/fulcio']![0], {
    type: 'sigstoreSigned',
    fulcio: { caPath: '/ca.pem', oidcIssuer: 'https://issuer', subjectEmail: 'a@b' },
    rekorPublicKeyPath: '/rekor.pub',
    signedIdentity: { type: 'exactRepository', dockerRepository: 'quay.io/x/y' },
  });
  assert.deepEqual(d['example.com/pki']![0], { type: 'sigstoreSigned', pki: { caRootsPath: '/r.pem', subjectHostname: 'h' }, signedIdentity: { type: 'matchRepoDigestOrExact' } });
  assert.deepEqual(d['mirror:5000/vendor']![0], {
    type: 'signedBy', keyType: 'GPGKeys', keyPath: '/gpg',
    signedIdentity: { type: 'remapIdentity', prefix: 'mirror:5000/vendor', signedPrefix: 'vendor.example.com' },
  });
  assert.deepEqual(d['*.example.org']![0], { type: 'signedBaseLayer', baseLayerIdentity: { type: 'matchRepoDigestOrExact' } });
  assert.deepEqual(Object.keys(p.transports['oci']!), ['', '/srv/layouts']);
  assert.deepEqual(p.transports['registry'], { anything: [{ type: 'reject' }] });
  // transports is optional
  assert.deepEqual(parsePolicy('{"default":[{"type":"insecureAcceptAnything"}]}', 'x'), { default: [{ type: 'insecureAcceptAnything' }], transports: {} });
});

test('bad JSON, duplicates and unknown keys are one-line errors with a position or JSON path', () => {
  policyError('{"default": [', 'not valid JSON at line 1 column 14', 'unexpected end of input');
  policyError('{"default": [{"type": "reject"},]}', 'line 1 column 33');
  policyError('{\n  "default": [{"type": "reject"}]\n} trailing', 'line 3 column 3');
  policyError('{"default": [{"type": "reject"}], "default": [{"type": "reject"}]}', 'duplicate key "default"');
  policyError('{"default": [{"type": "reject", "type": "reject"}]}', 'duplicate key "type"');
  policyError('[]', '$: expected a JSON object, got an array');
  policyError('{"default": [{"type": "reject"}], "defualt": []}', '$.defualt: unknown key "defualt"');
  policyError(wrap({ type: 'reject', keyPath: '/k' }), '$.default[0].keyPath: unknown key "keyPath"');
  policyError(wrap({ type: 'sigstoreSigned', keyPath: '/k', signedIdenity: { type: 'matchExact' } }), '$.default[0].signedIdenity: unknown key');
  policyError(wrap({ type: 'sigstoreSigned', keyPath: '/k', signedIdentity: { type: 'matchExact', x: 1 } }), '$.default[0].signedIdentity.x: unknown key');
  policyError(wrap({ type: 'sigstoreSigned', fulcio: { caPath: '/c', oidcIssuer: 'i', subjectEmail: 'e', URI: 'u' }, rekorPublicKeyPath: '/r' }), '$.default[0].fulcio.URI: unknown key');
});

test('missing default, empty lists and wrong types are refused', () => {
  policyError('{}', '$.default: the default policy is missing');
  policyError('{"default": null}', 'the default policy is missing');
  policyError('{"transports": {}}', 'the default policy is missing');
  policyError('{"default": []}', '$.default: the list of requirements must not be empty');
  policyError('{"default": {}}', '$.default: expected an array of requirements, got an object');
  policyError('{"default": [{"type":"reject"}], "transports": {"docker": {"x": []}}}', '$.transports.docker.x: the list of requirements must not be empty');
  policyError('{"default": [{"type":"reject"}], "transports": {"docker": []}}', '$.transports.docker: expected a JSON object');
  policyError(wrap({ type: 'sigstoreSigned', keyPath: 7 }), '$.default[0].keyPath: expected a string, got a number');
  policyError(wrap({ type: 'sigstoreSigned', keyPaths: '/k' }), '$.default[0].keyPaths: expected an array of strings');
  policyError(wrap({ type: 'sigstoreSigned', keyData: 'not base64!' }), '$.default[0].keyData: expected base64');
  policyError(wrap({}), '$.default[0].type: unknown policy requirement type ""');
  policyError(wrap({ type: 'acceptAll' }), 'unknown policy requirement type "acceptAll"');
  policyError(wrap('reject'), '$.default[0]: expected a JSON object, got a string');
});

test('key sources: exactly one, as containers/image requires', () => {
  policyError(wrap({ type: 'sigstoreSigned' }), '$.default[0]: exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki must be specified, none present');
  policyError(wrap({ type: 'sigstoreSigned', keyPath: '' }), 'none present');
  policyError(wrap({ type: 'sigstoreSigned', keyPath: '/a', keyData: 'YQ==' }), '2 present');
  policyError(wrap({ type: 'sigstoreSigned', keyPaths: [] }), '$.default[0].keyPaths: contains no entries');
  policyError(wrap({ type: 'sigstoreSigned', keyDatas: [] }), '$.default[0].keyDatas: contains no entries');
  policyError(wrap({ type: 'sigstoreSigned', keyPath: '/a', rekorPublicKeyPath: '/r', rekorPublicKeyData: 'YQ==' }), 'at most one of rekorPublicKeyPath');
  policyError(wrap({ type: 'sigstoreSigned', fulcio: { caPath: '/c', oidcIssuer: 'i', subjectEmail: 'e' } }), 'fulcio needs one of rekorPublicKeyPath');
  policyError(wrap({ type: 'sigstoreSigned', fulcio: { caPath: '/c', subjectEmail: 'e' }, rekorPublicKeyPath: '/r' }), '$.default[0].fulcio.oidcIssuer: oidcIssuer not specified');
  policyError(wrap({ type: 'sigstoreSigned', fulcio: { oidcIssuer: 'i', subjectEmail: 'e' }, rekorPublicKeyPath: '/r' }), 'one of caPath and caData');
  policyError(wrap({ type: 'sigstoreSigned', pki: { caRootsPath: '/r' } }), 'at least one of subjectEmail and subjectHostname');
  policyError(wrap({ type: 'sigstoreSigned', pki: { caRootsPath: '/r', subjectEmail: 'e' }, rekorPublicKeyPath: '/r' }), 'not supported with pki');
  policyError(wrap({ type: 'signedBy', keyPath: '/k' }), '$.default[0].keyType: invalid keyType ""');
  policyError(wrap({ type: 'signedBy', keyType: 'GPGKeys' }), 'exactly one of keyPath, keyPaths and keyData must be specified, none present');
  policyError(wrap({ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/a', keyData: 'YQ==' }), 'more than one present');
});

test('signedIdentity values are validated', () => {
  const si = (signedIdentity: unknown): string => wrap({ type: 'sigstoreSigned', keyPath: '/k', signedIdentity });
  policyError(si({ type: 'matchSomething' }), '$.default[0].signedIdentity.type: unknown signedIdentity type "matchSomething"');
  policyError(si({ type: 'exactReference', dockerReference: 'busybox' }), 'dockerReference: "busybox" contains neither a tag nor a digest');
  policyError(si({ type: 'exactReference', dockerReference: 'UPPER/x:1' }), 'is not a valid docker reference');
  policyError(si({ type: 'exactReference' }), '$.default[0].signedIdentity.dockerReference: key "dockerReference" is missing');
  policyError(si({ type: 'exactRepository', dockerRepository: 'Not Valid' }), 'is not a valid docker repository');
  policyError(si({ type: 'remapIdentity', prefix: 'example.com/', signedPrefix: 'example.com' }), '$.default[0].signedIdentity.prefix: prefix "example.com/" is not valid');
  policyError(si({ type: 'remapIdentity', prefix: 'example.com', signedPrefix: 'example.com/UP' }), 'signedIdentity.signedPrefix');
  // Like containers/image, short names pass ("busybox" looks like a host); they simply never match.
  for (const ok of ['example.com', 'example.com:5000', 'example.com/ns', 'localhost:5000/a/b', '[::1]:5000', 'busybox', 'ns/image']) {
    assert.ok(isValidRemapPrefix(ok), ok);
  }
  for (const bad of ['example.com/', 'http://example.com', '', 'example.com/UP', 'a b', 'example.com:port']) assert.ok(!isValidRemapPrefix(bad), bad);
});

test('scopes are validated per transport (ValidatePolicyConfigurationScope)', () => {
  const scoped = (transport: string, scope: string): string => JSON.stringify({ default: [{ type: 'reject' }], transports: { [transport]: { [scope]: [{ type: 'reject' }] } } });
  policyError(scoped('oci', 'relative/dir'), '$.transports.oci["relative/dir"]: scope "relative/dir" is not valid for transport "oci": must be an absolute path');
  policyError(scoped('oci-archive', '/'), 'use the transport default scope ""');
  policyError(scoped('oci', '/a/../b'), 'non-canonical path, perhaps try /b');
  policyError(scoped('oci', '/a/b/'), 'perhaps try /a/b');
  policyError(scoped('docker-archive', '/x.tar'), 'docker-archive: supports no scope except the default ""');
  policyError(scoped('containers-storage', 'docker.io/library/busybox'), 'must start with a store specification');
  policyError(scoped('containers-storage', '[overlay@relative]'), 'must be an absolute path');
  policyError(scoped('containers-storage', '[overlay@/s]busybox@nonsense'), 'neither a digest nor an image ID');
  for (const [t, s] of [['oci', '/srv/x'], ['containers-storage', '[/s]'], ['containers-storage', `[vfs@/s]busybox:1@${'a'.repeat(64)}`], ['docker', 'anything goes']]) {
    assert.doesNotThrow(() => parsePolicy(scoped(t!, s!), 'x'), `${t} ${s}`);
  }
});

// ------------------------------------------------------------------------------------------------- finding the file

test('findPolicyFile / loadPolicy: explicit, then ~/.config/containers, then /etc/containers, else none', async (t) => {
  const d = await tempDir(t);
  const home = path.join(d, 'home');
  const root = path.join(d, 'root');
  const env = { HOME: home };
  assert.equal(await findPolicyFile(undefined, env, { root }), undefined);
  assert.equal(await loadPolicy(undefined, env, { root }), undefined);

  const system = path.join(root, 'etc', 'containers', 'policy.json');
  await mkdir(path.dirname(system), { recursive: true });
  await writeFile(system, '{"default":[{"type":"reject"}]}');
  assert.equal(await findPolicyFile(undefined, env, { root }), system);

  const user = path.join(home, '.config', 'containers', 'policy.json');
  await mkdir(path.dirname(user), { recursive: true });
  await writeFile(user, '{"default":[{"type":"insecureAcceptAnything"}]}');
  assert.equal(await findPolicyFile(undefined, env, { root }), user);
  assert.deepEqual(await loadPolicy(undefined, env, { root }), { file: user, policy: { default: [{ type: 'insecureAcceptAnything' }], transports: {} } });

  assert.equal(await findPolicyFile('/given.json', env, { root }), '/given.json');
  await assert.rejects(loadPolicy(path.join(d, 'missing.json'), env), (e: unknown) => e instanceof HoistError && e.code === 'BAD_POLICY' && /cannot read policy file .*missing\.json: no such file/.test(e.message));
  await writeFile(user, '{"default":[]}');
  await assert.rejects(loadPolicy(undefined, env, { root }), (e: unknown) => e instanceof HoistError && e.message.includes(`invalid policy in ${user}: $.default`));
});

// ------------------------------------------------------------------------------------------------- scopes

test('docker namespaces: repository, parent namespaces, host[:port], then wildcard domains without the port', () => {
  assert.deepEqual(dockerNamespaces('registry.example.com:5000/ns/app'), [
    'registry.example.com:5000/ns/app', 'registry.example.com:5000/ns', 'registry.example.com:5000', '*.example.com', '*.com',
  ]);
  assert.deepEqual(dockerNamespaces('localhost:5000/app'), ['localhost:5000/app', 'localhost:5000']);
});

function req(tag: string): Requirement[] {
  // Distinct, recognizable requirement lists: a keyPath naming the scope.
  return [{ type: 'sigstoreSigned', keyPath: tag, signedIdentity: { type: 'matchRepoDigestOrExact' } }];
}

test('docker scope order: tag, repository, namespace, host, wildcards, transport default, default', async () => {
  const scopes = [
    'registry.example.com:5000/ns/app:1',
    'registry.example.com:5000/ns/app',
    'registry.example.com:5000/ns',
    'registry.example.com:5000',
    '*.example.com',
    '*.com',
    '',
  ];
  const target = await policyTarget({ transport: 'docker', ref: 'registry.example.com:5000/ns/app:1' });
  assert.equal(target.identity, 'registry.example.com:5000/ns/app:1');
  assert.equal(target.dockerReference, 'registry.example.com:5000/ns/app:1');
  assert.equal(target.name, 'docker://registry.example.com:5000/ns/app:1');
  for (let i = 0; i <= scopes.length; i++) {
    const present = scopes.slice(i);
    const policy: Policy = { default: req('default'), transports: { docker: Object.fromEntries(present.map((s) => [s, req(s)])) } };
    const sel = requirementsFor(policy, target);
    const want = present[0] ?? 'default';
    assert.deepEqual(sel.requirements, req(want), `with scopes ${JSON.stringify(present)}`);
    assert.equal(sel.scope, present[0]);
    assert.equal(sel.label, i === scopes.length ? 'default' : present[0] === '' ? 'transport "docker" default' : `scope ${JSON.stringify(present[0])}`);
  }
  // Another transport's scopes never apply.
  const other: Policy = { default: req('default'), transports: { oci: { '': req('oci') } } };
  assert.deepEqual(requirementsFor(other, target).requirements, req('default'));
});

test('docker targets: default tag, Docker Hub names, digests', async () => {
  const hub = await policyTarget({ transport: 'docker', ref: 'busybox' });
  assert.equal(hub.identity, 'docker.io/library/busybox:latest');
  assert.deepEqual(hub.namespaces, ['docker.io/library/busybox', 'docker.io/library', 'docker.io', '*.io']);
  const dig = `sha256:${'b'.repeat(64)}`;
  const byDigest = await policyTarget({ transport: 'docker', ref: `localhost:5000/app@${dig}` });
  assert.equal(byDigest.identity, `localhost:5000/app@${dig}`);
  assert.equal(byDigest.dockerReference, `localhost:5000/app@${dig}`);
  const both = await policyTarget({ transport: 'docker', ref: `localhost:5000/app:1@${dig}` });
  assert.equal(both.identity, `localhost:5000/app@${dig}`);
  assert.deepEqual(both.namespaces, ['localhost:5000/app:1', 'localhost:5000/app', 'localhost:5000']);
});

test('oci and oci-archive scopes are resolved paths, longest directory first', async (t) => {
  const d = await tempDir(t);
  const real = path.join(d, 'real', 'layouts', 'app');
  await mkdir(real, { recursive: true });
  await symlink(path.join(d, 'real'), path.join(d, 'link'));
  const target = await policyTarget({ transport: 'oci', dir: path.join(d, 'link', 'layouts', 'app'), ref: 'v1' });
  const realD = path.dirname(path.dirname(path.dirname(real))); // d with its own symlinks (e.g. /tmp) resolved
  assert.equal(target.identity, path.join(realD, 'real', 'layouts', 'app'));
  assert.equal(target.namespaces[0], target.identity);
  assert.equal(target.namespaces.at(-1), `/${target.identity.split('/')[1]}`);
  assert.equal(target.dockerReference, undefined);
  const policy: Policy = {
    default: req('default'),
    transports: { oci: { [path.join(realD, 'real')]: req('real'), [path.join(realD, 'real', 'layouts')]: req('layouts'), '': req('any') } },
  };
  assert.deepEqual(requirementsFor(policy, target).requirements, req('layouts'));
  const elsewhere = await policyTarget({ transport: 'oci', dir: d });
  assert.deepEqual(requirementsFor(policy, elsewhere).requirements, req('any'));

  // A file that does not exist yet: its resolved parent plus its name.
  const archive = await policyTarget({ transport: 'oci-archive', file: path.join(d, 'link', 'new.tar') });
  assert.equal(archive.identity, path.join(realD, 'real', 'new.tar'));
  assert.deepEqual(requirementsFor({ default: req('default'), transports: { 'oci-archive': { [path.join(realD, 'real')]: req('dir') } } }, archive).requirements, req('dir'));
});

test('docker-archive has only the "" scope; the store is containers-storage', async () => {
  const da = await policyTarget({ transport: 'docker-archive', file: 'x.tar', ref: 'busybox:1' });
  assert.deepEqual(da, { transport: 'docker-archive', name: 'docker-archive:x.tar:busybox:1', identity: '', namespaces: [], dockerReference: 'docker.io/library/busybox:1' });
  assert.equal((await policyTarget({ transport: 'docker-archive', file: 'x.tar', ref: '@1' })).dockerReference, undefined);

  const st = await policyTarget({ transport: 'store', name: 'localhost:5000/ns/app' }, { storeRoot: '/s' });
  assert.equal(st.transport, 'containers-storage');
  assert.equal(st.identity, '[hoist@/s]localhost:5000/ns/app:latest');
  assert.deepEqual(st.namespaces, ['[hoist@/s]localhost:5000/ns/app', '[hoist@/s]localhost:5000/ns', '[hoist@/s]localhost:5000', '[hoist@/s]', '[/s]']);
  assert.equal(st.dockerReference, 'localhost:5000/ns/app:latest');
  const policy: Policy = { default: req('default'), transports: { 'containers-storage': { '[/s]': req('store') } } };
  assert.deepEqual(requirementsFor(policy, st).requirements, req('store'));
  const byId = await policyTarget({ transport: 'store', name: `sha256:${'c'.repeat(64)}` }, { storeRoot: '/s', storeDriver: 'overlay' });
  assert.equal(byId.identity, `[overlay@/s]@${'c'.repeat(64)}`);
  assert.equal(byId.dockerReference, undefined);
});

// ------------------------------------------------------------------------------------------------- signedIdentity

const fullRHELRef = 'registry.access.redhat.com/rhel7/rhel:7.2.3';
const untaggedRHELRef = 'registry.access.redhat.com/rhel7/rhel';
const digestSuffix = '@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const digestSuffixOther = '@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';

type Row = [string, string, boolean];
// prmExactMatchTestTable (symmetric)
const exactTable: Row[] = [
  ['busybox:latest', 'busybox:latest', true],
  [fullRHELRef, fullRHELRef, true],
  ['busybox' + digestSuffix, 'busybox' + digestSuffix, true],
  ['library/busybox:latest', 'busybox:latest', true],
  ['docker.io/library/busybox:latest', 'busybox:latest', true],
  ['library/busybox' + digestSuffix, 'busybox' + digestSuffix, true],
  ['busybox:latest', 'busybox:notlatest', false],
  ['busybox:latest', 'notbusybox:latest', false],
  ['busybox:latest', 'hostname/library/busybox:notlatest', false],
  ['hostname/library/busybox:latest', 'busybox:notlatest', false],
  ['busybox:latest', fullRHELRef, false],
  ['busybox' + digestSuffix, 'notbusybox' + digestSuffix, false],
  ['busybox:latest', 'busybox' + digestSuffix, false],
  ['busybox' + digestSuffix, 'busybox' + digestSuffixOther, false],
  ['busybox', 'busybox:latest', false],
  ['busybox', 'busybox' + digestSuffix, false],
  ['busybox', 'busybox', false],
  ['busybox:latest' + digestSuffix, 'busybox:latest' + digestSuffix, true],
  ['busybox:latest' + digestSuffix, 'busybox:latest' + digestSuffixOther, false],
  ['busybox:latest' + digestSuffix, 'busybox:notlatest' + digestSuffix, false],
  ['busybox:latest' + digestSuffix, 'busybox' + digestSuffix, false],
  ['busybox:latest' + digestSuffix, 'busybox:latest', false],
  ['UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES', 'busybox:latest', false],
  ['', 'UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES', false],
  ['INVALID', 'INVALID', false],
];
// prmRepositoryMatchTestTable (symmetric)
const repositoryTable: Row[] = [
  ['busybox:latest', 'busybox:latest', true],
  [fullRHELRef, fullRHELRef, true],
  ['busybox' + digestSuffix, 'busybox' + digestSuffix, true],
  ['library/busybox:latest', 'busybox:latest', true],
  ['docker.io/library/busybox:latest', 'busybox:latest', true],
  ['library/busybox' + digestSuffix, 'busybox' + digestSuffix, true],
  ['busybox:latest', 'busybox:notlatest', true],
  [fullRHELRef + 'tagsuffix', fullRHELRef, true],
  ['library/busybox:latest', 'busybox:notlatest', true],
  ['busybox:latest', 'library/busybox:notlatest', true],
  ['docker.io/library/busybox:notlatest', 'busybox:latest', true],
  ['busybox:notlatest', 'docker.io/library/busybox:latest', true],
  ['busybox:latest', 'busybox' + digestSuffix, true],
  ['busybox' + digestSuffix, 'busybox' + digestSuffixOther, true],
  ['busybox', 'busybox:notlatest', true],
  [fullRHELRef, untaggedRHELRef, true],
  ['busybox', 'busybox' + digestSuffix, true],
  ['library/busybox', 'busybox', true],
  ['docker.io/library/busybox', 'busybox', true],
  ['busybox:latest', 'notbusybox:latest', false],
  ['hostname/library/busybox:latest', 'busybox:notlatest', false],
  ['busybox:latest', fullRHELRef, false],
  ['busybox' + digestSuffix, 'notbusybox' + digestSuffix, false],
  ['busybox:latest' + digestSuffix, 'busybox:latest' + digestSuffix, true],
  ['busybox:latest' + digestSuffix, 'busybox:latest' + digestSuffixOther, true],
  ['busybox:latest' + digestSuffix, 'busybox:notlatest' + digestSuffix, true],
  ['busybox:latest' + digestSuffix, 'busybox' + digestSuffix, true],
  ['busybox:latest' + digestSuffix, 'busybox:latest', true],
  ['UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES', 'busybox:latest', false],
  ['', 'UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES', false],
  ['INVALID', 'INVALID', false],
];
// matchRepoDigestOrExactTestTable (image, signature; asymmetric)
const repoDigestOrExactTable: Row[] = [
  ['busybox:latest', 'busybox:notlatest', false],
  [fullRHELRef + 'tagsuffix', fullRHELRef, false],
  ['library/busybox:latest', 'busybox:notlatest', false],
  ['busybox:latest', 'library/busybox:notlatest', false],
  ['docker.io/library/busybox:notlatest', 'busybox:latest', false],
  ['busybox:notlatest', 'docker.io/library/busybox:latest', false],
  ['busybox', 'busybox:latest', false],
  ['busybox:latest', 'busybox', false],
  ['busybox', 'busybox' + digestSuffix, false],
  ['busybox' + digestSuffix, 'busybox', false],
  [fullRHELRef, untaggedRHELRef, false],
  ['busybox', 'busybox', false],
  ['busybox:latest', 'busybox' + digestSuffix, false],
  ['busybox' + digestSuffix, 'busybox:latest', true],
  ['busybox' + digestSuffix, 'busybox' + digestSuffixOther, true],
  ['busybox:latest' + digestSuffix, 'busybox:latest', false],
  ['busybox:latest' + digestSuffix, 'busybox:notlatest', false],
  ['busybox:latest', 'busybox:latest' + digestSuffix, false],
  ['busybox:latest' + digestSuffix, 'busybox:latest' + digestSuffixOther, false],
  ['busybox:latest' + digestSuffix, 'busybox:notlatest' + digestSuffixOther, false],
];

function checkBothWays(id: SignedIdentity, rows: Row[], only?: boolean): void {
  for (const [a, b, want] of rows) {
    if (only !== undefined && want !== only) continue;
    assert.equal(identityMatches(id, a, b), want, `${id.type}: image ${a} vs signature ${b}`);
    assert.equal(identityMatches(id, b, a), want, `${id.type}: image ${b} vs signature ${a}`);
  }
}

test('matchExact and matchRepository (containers/image tables)', () => {
  checkBothWays({ type: 'matchExact' }, exactTable);
  checkBothWays({ type: 'matchRepository' }, repositoryTable);
  // Images with no docker reference (oci:) never match these, even an empty signature reference.
  for (const type of ['matchExact', 'matchRepository', 'matchRepoDigestOrExact'] as const) {
    assert.equal(identityMatches({ type }, undefined, 'busybox:latest'), false);
    assert.equal(identityMatches({ type }, undefined, ''), false);
  }
});

test('matchRepoDigestOrExact sits between exact and repository matching; it is the default', () => {
  for (const id of [{ type: 'matchRepoDigestOrExact' } as const, undefined]) {
    for (const [a, b, want] of exactTable) {
      if (!want) continue;
      assert.equal(identityMatches(id, a, b), true, `${a} vs ${b}`);
      assert.equal(identityMatches(id, b, a), true, `${b} vs ${a}`);
    }
    for (const [a, b, want] of repositoryTable) {
      if (want) continue;
      assert.equal(identityMatches(id, a, b), false, `${a} vs ${b}`);
      assert.equal(identityMatches(id, b, a), false, `${b} vs ${a}`);
    }
    for (const [image, sig, want] of repoDigestOrExactTable) assert.equal(identityMatches(id, image, sig), want, `${image} vs ${sig}`);
  }
});

test('exactReference and exactRepository ignore the image and compare with the configured value', () => {
  for (const [a, b, want] of exactTable) {
    assert.equal(identityMatches({ type: 'exactReference', dockerReference: a }, undefined, b), want, `${a} vs ${b}`);
    assert.equal(identityMatches({ type: 'exactReference', dockerReference: b }, 'unrelated:1', a), want, `${b} vs ${a}`);
  }
  for (const [a, b, want] of repositoryTable) {
    assert.equal(identityMatches({ type: 'exactRepository', dockerRepository: a }, undefined, b), want, `${a} vs ${b}`);
    assert.equal(identityMatches({ type: 'exactRepository', dockerRepository: b }, 'unrelated:1', a), want, `${b} vs ${a}`);
  }
});

test('remapIdentity: prefix matching', () => {
  const rows: Row[] = [
    ['docker.io/image', 'docker.io', true],
    ['docker.io/image', 'example.com', false],
    ['example.com:5000/image', 'example.com:5000', true],
    ['example.com:50000/image', 'example.com:5000', false],
    ['example.com:5000/image', 'example.com', false],
    ['example.com/foo', 'example.com', true],
    ['example.com/foo/bar', 'example.com', true],
    ['example.com/foo/bar:baz', 'example.com', true],
    ['example.com/foo/bar' + digestSuffix, 'example.com', true],
    ['docker.io/ns/image', 'docker.io/library', false],
    ['example.com/library', 'docker.io/library', false],
    ['docker.io/libraryy/image', 'docker.io/library', false],
    ['docker.io/library/busybox', 'docker.io/library', true],
    ['example.com/ns/image', 'example.com/ns', true],
    ['example.com/ns2/image', 'example.com/ns', false],
    ['example.com/n2/image', 'example.com/ns', false],
    ['example.com', 'example.com/library/busybox', false],
    ['example.com:5000/ns/image', 'example.com/ns', false],
    ['example.com/ns/image', 'example.com:5000/ns', false],
    ['docker.io/library/busybox', 'docker.io/library/busybox', true],
    ['example.com/library/busybox', 'docker.io/library/busybox', false],
    ['docker.io/library/busybox2', 'docker.io/library/busybox', false],
    ['example.com/ns/image', 'example.com/ns/image', true],
    ['example.com/ns/imag2', 'example.com/ns/image', false],
    ['example.com/ns/imagee', 'example.com/ns/image', false],
    ['example.com:5000/ns/image', 'example.com/ns/image', false],
    ['example.com/ns/image', 'example.com:5000/ns/image', false],
    ['example.com/ns/image:tag', 'example.com/ns/image', true],
    ['example.com/ns/image' + digestSuffix, 'example.com/ns/image', true],
    ['example.com/ns/image:tag' + digestSuffix, 'example.com/ns/image', true],
  ];
  for (const [ref, prefix, want] of rows) {
    assert.ok(isValidRemapPrefix(prefix), prefix);
    const parsed = parseNormalizedNamed(ref);
    assert.ok(parsed, ref);
    assert.equal(refMatchesPrefix(parsed, prefix), want, `${ref} vs ${prefix}`);
  }
});

test('remapIdentity: rewriting', () => {
  const rows: [string, string, string, string][] = [
    ['mirror.example', 'vendor.example', 'mirror.example/ns/image:tag', 'vendor.example/ns/image:tag'],
    ['mirror.example', 'vendor.example', 'different.com/ns/image:tag', 'different.com/ns/image:tag'],
    ['mirror.example/ns', 'vendor.example/vendor-ns', 'mirror.example/different-ns/image:tag', 'mirror.example/different-ns/image:tag'],
    ['docker.io', 'not-docker-signed.example/ns', 'busybox', 'not-docker-signed.example/ns/library/busybox'],
    ['example.com/mirror', 'example.com/vendor', 'example.com/mirror/image:tag', 'example.com/vendor/image:tag'],
    ['example.com/ns/mirror', 'example.com/ns/vendor', 'example.com/ns/mirror:tag', 'example.com/ns/vendor:tag'],
    ['mirror.example', 'vendor.example', 'prefixmirror.example/ns/image:tag', 'prefixmirror.example/ns/image:tag'],
    ['docker.io', 'not-docker-signed.example', 'busybox', 'not-docker-signed.example/library/busybox'],
    ['docker.io/library', 'not-docker-signed.example/ns', 'busybox', 'not-docker-signed.example/ns/busybox'],
    ['docker.io/library/busybox', 'not-docker-signed.example/ns/notbusybox', 'busybox', 'not-docker-signed.example/ns/notbusybox'],
    ['mirror.example', 'vendor.example', 'mirror.example/image', 'vendor.example/image'],
    ['mirror.example', 'vendor.example', 'mirror.example/image:tag', 'vendor.example/image:tag'],
    ['mirror.example', 'vendor.example', 'mirror.example/image' + digestSuffix, 'vendor.example/image' + digestSuffix],
    ['mirror.example', 'vendor.example', 'mirror.example/image:tag' + digestSuffix, 'vendor.example/image:tag' + digestSuffix],
    // Rewrites giving an invalid reference, or a short one that would imply docker.io, are refused.
    ['mirror.example/ns/image', 'vendor.example:5000', 'mirror.example/ns/image:tag', ''],
    ['mirror.example/ns/image', 'vendor.example:5000', 'mirror.example/ns/image' + digestSuffix, ''],
    ['mirror.example/ns/image', 'notlocalhost', 'mirror.example/ns/image:tag', ''],
  ];
  for (const [prefix, signedPrefix, ref, want] of rows) {
    const res = remapReferencePrefix(parseNormalizedNamed(ref)!, prefix, signedPrefix);
    assert.equal(res === undefined ? '' : formatReference(res), want, `${prefix} → ${signedPrefix} on ${ref}`);
  }
});

test('remapIdentity: matching', () => {
  const rows: [string, string, string, string, boolean][] = [
    ['does-not-match.com', 'does-not-match.rewritten', 'busybox:latest', 'busybox:latest', true],
    ['does-not-match.com', 'does-not-match.rewritten', 'busybox:latest', 'notbusybox:latest', false],
    ['mirror.example', 'public.com', 'mirror.example/busybox:1', 'public.com/busybox:1', true],
    ['mirror.example', 'public.com', 'mirror.example/busybox:1', 'public.com/busybox:not1', false],
    ['mirror.example', 'docker.io/library', 'mirror.example/busybox:latest', 'busybox:latest', true],
    ['mirror.example', 'docker.io/library', 'mirror.example/alpine:latest', 'busybox:latest', false],
    ['docker.io/library', 'original.com', 'copied:latest', 'original.com/copied:latest', true],
    ['docker.io/library', 'original.com', 'copied:latest', 'original.com/ns/copied:latest', false],
    ['busybox', 'example.com/busybox', 'busybox:latest', 'example.com/busybox:latest', false],
    ['docker.io/library/busybox', 'busybox', 'docker.io/library/busybox:latest', 'busybox:latest', false],
    ['UPPERCASE', 'example.com', 'example.com/foo:latest', 'example.com/foo:latest', true],
    ['example.com', 'UPPERCASE', 'example.com/foo:latest', 'UPPERCASE/foo:latest', false],
  ];
  for (const [prefix, signedPrefix, image, sig, want] of rows) {
    assert.equal(identityMatches({ type: 'remapIdentity', prefix, signedPrefix }, image, sig), want, `${prefix}→${signedPrefix}: ${image} vs ${sig}`);
  }
  // Without a rewrite it behaves as matchRepoDigestOrExact; with one, the same after rewriting the host.
  const noop: SignedIdentity = { type: 'remapIdentity', prefix: 'never-causes-a-rewrite.example', signedPrefix: 'never-causes-a-rewrite.example' };
  for (const [image, sig, want] of repoDigestOrExactTable) {
    assert.equal(identityMatches(noop, image, sig), want, `${image} vs ${sig}`);
    const parsed = parseNormalizedNamed(image)!;
    const mirrored = formatReference(parsed).replace(/^docker\.io/, 'eocker.io');
    assert.equal(identityMatches({ type: 'remapIdentity', prefix: 'eocker.io', signedPrefix: 'docker.io' }, mirrored, sig), want, `${mirrored} vs ${sig}`);
  }
  assert.equal(identityMatches({ type: 'remapIdentity', prefix: 'docker.io', signedPrefix: 'docker.io' }, undefined, ''), false);
});

// ------------------------------------------------------------------------------------------------- evaluation

interface KeyPair {
  priv: KeyObject;
  pem: string;
}

function keyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { priv: privateKey, pem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

const DIGEST = `sha256:${'d'.repeat(64)}`;
const OTHER_DIGEST = `sha256:${'e'.repeat(64)}`;

/** A signature over a simple-signing-like payload, whose keyOk really verifies ECDSA with the given public key. */
function signature(key: KeyPair, opts: { format?: 'simple' | 'bundle'; ref?: string; digest?: string } = {}): FoundSignature {
  const digest = opts.digest ?? DIGEST;
  const payload = Buffer.from(JSON.stringify({ critical: { identity: { 'docker-reference': opts.ref }, image: { 'docker-manifest-digest': digest } } }));
  const sig = sign('sha256', payload, key.priv);
  const found: FoundSignature = {
    format: opts.format ?? 'simple',
    manifestDigest: digest,
    keyOk: async (pem) => verify('sha256', payload, pem, sig),
  };
  if (opts.ref !== undefined) found.dockerReference = opts.ref;
  return found;
}

const image: PolicyTarget & { manifestDigest: string } = {
  transport: 'docker',
  name: 'docker://localhost:5000/app:1',
  identity: 'localhost:5000/app:1',
  namespaces: dockerNamespaces('localhost:5000/app'),
  dockerReference: 'localhost:5000/app:1',
  manifestDigest: DIGEST,
};

async function evaluate(reqs: Requirement[], sigs: FoundSignature[], target = image): Promise<string | undefined> {
  let calls = 0;
  const res = await evaluatePolicy(target, { requirements: reqs, scope: 'localhost:5000/app', label: 'scope "localhost:5000/app"' }, {
    policyFile: '/etc/containers/policy.json',
    signatures: async () => {
      calls++;
      return sigs;
    },
  });
  assert.ok(calls <= 1, 'signatures are fetched at most once');
  if (res.accepted) return undefined;
  assert.ok(!res.reason.includes('\n'), res.reason);
  return res.reason;
}

const sigstore = (keyPath: string, signedIdentity: SignedIdentity = { type: 'matchRepoDigestOrExact' }): Requirement => ({ type: 'sigstoreSigned', keyPath, signedIdentity });

test('insecureAcceptAnything accepts; reject and signedBy refuse with the rule named', async () => {
  assert.equal(await evaluate([{ type: 'insecureAcceptAnything' }], []), undefined);
  assert.equal(
    await evaluate([{ type: 'reject' }], []),
    'docker://localhost:5000/app:1 refused by policy: reject (scope "localhost:5000/app", /etc/containers/policy.json): the policy rejects every image here',
  );
  const gpg = await evaluate([{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/k.gpg', signedIdentity: { type: 'matchRepoDigestOrExact' } }], []);
  assert.equal(gpg, 'docker://localhost:5000/app:1 refused by policy: signedBy (scope "localhost:5000/app", /etc/containers/policy.json): GPG signatures are not supported by hoist');
  assert.match((await evaluate([{ type: 'signedBaseLayer', baseLayerIdentity: { type: 'matchExact' } }], []))!, /signedBaseLayer is not implemented/);
});

test('sigstoreSigned with a key file: good key, bad key, wrong identity, wrong digest, no signatures', async (t) => {
  const d = await tempDir(t);
  const good = keyPair();
  const bad = keyPair();
  const k = path.join(d, 'k.pub');
  await writeFile(k, good.pem);
  const prefix = `docker://localhost:5000/app:1 refused by policy: sigstoreSigned (scope "localhost:5000/app", /etc/containers/policy.json): `;

  assert.equal(await evaluate([sigstore(k)], [signature(good, { ref: 'localhost:5000/app:1' })]), undefined);
  assert.equal(await evaluate([sigstore(k)], [signature(bad, { ref: 'localhost:5000/app:1' })]), `${prefix}no signature matches key ${k} (1 checked)`);
  assert.equal(await evaluate([sigstore(k)], []), `${prefix}a signature was required, but the image has none (expected one made by key ${k})`);
  assert.equal(
    await evaluate([sigstore(k)], [signature(good, { ref: 'localhost:5000/app:2' })]),
    `${prefix}signature 1 (simple signing) is for "localhost:5000/app:2", which signedIdentity matchRepoDigestOrExact does not accept for localhost:5000/app:1`,
  );
  assert.equal(
    await evaluate([sigstore(k)], [signature(good, { ref: 'localhost:5000/app:1', digest: OTHER_DIGEST })]),
    `${prefix}signature 1 (simple signing) is for manifest ${OTHER_DIGEST}, not this image's ${DIGEST}`,
  );
  assert.match((await evaluate([sigstore(k)], [signature(good)]))!, /has no docker-reference identity/);
  // Other identities: matchRepository accepts another tag; exactReference accepts only its own value.
  assert.equal(await evaluate([sigstore(k, { type: 'matchRepository' })], [signature(good, { ref: 'localhost:5000/app:2' })]), undefined);
  assert.equal(await evaluate([sigstore(k, { type: 'exactReference', dockerReference: 'vendor.example/app:1' })], [signature(good, { ref: 'vendor.example/app:1' })]), undefined);

  // One good signature among bad ones is enough; several failures are all listed.
  assert.equal(await evaluate([sigstore(k)], [signature(bad, { ref: 'localhost:5000/app:1' }), signature(good, { ref: 'localhost:5000/app:1' })]), undefined);
  const two = await evaluate([sigstore(k)], [signature(bad, { ref: 'localhost:5000/app:1' }), signature(good, { ref: 'x:1' })]);
  assert.equal(two, `${prefix}none of the 2 signatures was accepted: signature 1 (simple signing) is not made by key ${k}; signature 2 (simple signing) is for "x:1", which signedIdentity matchRepoDigestOrExact does not accept for localhost:5000/app:1`);

  assert.equal(await evaluate([sigstore(path.join(d, 'missing.pub'))], [signature(good)]), `${prefix}cannot read public key ${path.join(d, 'missing.pub')}: no such file`);
});

test('bundles are bound by manifest digest only, and need the right key', async (t) => {
  const d = await tempDir(t);
  const good = keyPair();
  const k = path.join(d, 'k.pub');
  await writeFile(k, good.pem);
  assert.equal(await evaluate([sigstore(k, { type: 'matchExact' })], [signature(good, { format: 'bundle' })]), undefined);
  assert.match((await evaluate([sigstore(k)], [signature(good, { format: 'bundle', digest: OTHER_DIGEST })]))!, /signature 1 \(sigstore bundle\) is for manifest sha256:e+, not this image's/);
  assert.match((await evaluate([sigstore(k)], [signature(keyPair(), { format: 'bundle' })]))!, /no signature matches key/);
});

test('keyData, keyDatas and keyPaths: any listed key will do', async (t) => {
  const d = await tempDir(t);
  const a = keyPair();
  const b = keyPair();
  const pa = path.join(d, 'a.pub');
  const pb = path.join(d, 'b.pub');
  await writeFile(pa, a.pem);
  await writeFile(pb, b.pem);
  const id: SignedIdentity = { type: 'matchRepoDigestOrExact' };
  const sig = signature(b, { ref: 'localhost:5000/app:1' });
  assert.equal(await evaluate([{ type: 'sigstoreSigned', keyPaths: [pa, pb], signedIdentity: id }], [sig]), undefined);
  assert.equal(await evaluate([{ type: 'sigstoreSigned', keyData: Buffer.from(b.pem).toString('base64'), signedIdentity: id }], [sig]), undefined);
  assert.match((await evaluate([{ type: 'sigstoreSigned', keyData: Buffer.from(a.pem).toString('base64'), signedIdentity: id }], [sig]))!, /no signature matches the key in keyData \(1 checked\)/);
  assert.equal(await evaluate([{ type: 'sigstoreSigned', keyDatas: [a.pem, b.pem].map((p) => Buffer.from(p).toString('base64')), signedIdentity: id }], [sig]), undefined);
  assert.match((await evaluate([{ type: 'sigstoreSigned', keyPaths: [pa], signedIdentity: id }], [sig]))!, new RegExp(`no signature matches key ${pa}`));
});

test('all requirements must accept', async (t) => {
  const d = await tempDir(t);
  const a = keyPair();
  const b = keyPair();
  const pa = path.join(d, 'a.pub');
  const pb = path.join(d, 'b.pub');
  await writeFile(pa, a.pem);
  await writeFile(pb, b.pem);
  const sa = signature(a, { ref: 'localhost:5000/app:1' });
  const sb = signature(b, { ref: 'localhost:5000/app:1' });
  assert.equal(await evaluate([{ type: 'insecureAcceptAnything' }, sigstore(pa)], [sa]), undefined);
  assert.match((await evaluate([{ type: 'insecureAcceptAnything' }, sigstore(pa)], [sb]))!, /sigstoreSigned .*no signature matches key .*a\.pub/);
  assert.equal(await evaluate([sigstore(pa), sigstore(pb)], [sa, sb]), undefined);
  assert.match((await evaluate([sigstore(pa), sigstore(pb)], [sa]))!, /no signature matches key .*b\.pub/);
  assert.match((await evaluate([sigstore(pa), { type: 'reject' }], [sa]))!, /refused by policy: reject/);
  assert.match((await evaluate([{ type: 'reject' }, sigstore(pa)], [sa]))!, /refused by policy: reject/);
});

test('keyless and Rekor requirements are refused with a clear reason', async () => {
  const id: SignedIdentity = { type: 'matchRepoDigestOrExact' };
  const fulcio = await evaluate([{ type: 'sigstoreSigned', fulcio: { caPath: '/ca', oidcIssuer: 'i', subjectEmail: 'e' }, rekorPublicKeyPath: '/r', signedIdentity: id }], []);
  assert.match(fulcio!, /sigstoreSigned .*keyless \(Fulcio\) signatures are not supported offline/);
  const rekor = await evaluate([{ type: 'sigstoreSigned', keyPath: '/k', rekorPublicKeyData: 'YQ==', signedIdentity: id }], []);
  assert.match(rekor!, /keyless \/ Rekor transparency-log checks .* not supported offline/);
  const pki = await evaluate([{ type: 'sigstoreSigned', pki: { caRootsPath: '/r', subjectEmail: 'e' }, signedIdentity: id }], []);
  assert.match(pki!, /X\.509 \(pki\) signatures are not supported/);
});

test('an oci: image has no docker identity: simple signatures need exactReference/exactRepository', async (t) => {
  const d = await tempDir(t);
  const good = keyPair();
  const k = path.join(d, 'k.pub');
  await writeFile(k, good.pem);
  const oci = { ...(await policyTarget({ transport: 'oci', dir: d })), manifestDigest: DIGEST };
  const sig = signature(good, { ref: 'example.com/app:1' });
  assert.match((await evaluate([sigstore(k)], [sig], oci))!, /does not accept for an image with no docker reference \(oci:/);
  assert.equal(await evaluate([sigstore(k, { type: 'exactRepository', dockerRepository: 'example.com/app' })], [sig], oci), undefined);
  assert.equal(await evaluate([sigstore(k)], [signature(good, { format: 'bundle' })], oci), undefined);
});

test('enforcePolicy: no policy file accepts; a policy file is enforced with a HoistError', async (t) => {
  const d = await tempDir(t);
  const good = keyPair();
  const k = path.join(d, 'k.pub');
  await writeFile(k, good.pem);
  const none = async (): Promise<FoundSignature[]> => [];
  const policyFile = path.join(d, 'policy.json');
  await writeFile(policyFile, JSON.stringify({
    default: [{ type: 'reject' }],
    transports: { docker: { 'localhost:5000/app': [{ type: 'sigstoreSigned', keyPath: k }] } },
  }));
  const ref = { transport: 'docker' as const, ref: 'localhost:5000/app:1' };
  await enforcePolicy(ref, DIGEST, { policyPath: policyFile, signatures: async () => [signature(good, { ref: 'localhost:5000/app:1' })] });
  await assert.rejects(
    enforcePolicy(ref, DIGEST, { policyPath: policyFile, signatures: none }),
    (e: unknown) => e instanceof HoistError && e.code === 'POLICY_REJECTED'
      && e.message === `docker://localhost:5000/app:1 refused by policy: sigstoreSigned (scope "localhost:5000/app", ${policyFile}): a signature was required, but the image has none (expected one made by key ${k})`,
  );
  await assert.rejects(
    enforcePolicy({ transport: 'docker', ref: 'other.example/x' }, DIGEST, { policyPath: policyFile, signatures: none }),
    (e: unknown) => e instanceof HoistError && e.message.startsWith('docker://other.example/x refused by policy: reject (default, '),
  );
  // No --policy, no ~/.config/containers/policy.json, no /etc/containers/policy.json: accepted, signatures unread.
  await enforcePolicy(ref, DIGEST, {
    env: { HOME: path.join(d, 'home') },
    root: path.join(d, 'root'),
    signatures: async () => assert.fail('signatures must not be read without a policy'),
  });
});
