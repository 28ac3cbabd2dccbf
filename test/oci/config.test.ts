import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/oci/config.ts';
import { parseManifest, configDescriptorOf } from '../../src/oci/manifest.ts';
import { HoistError } from '../../src/errors.ts';

const W = 'oci:/tmp/l:t config sha256:abc';
const dg = (c: string) => `sha256:${c.repeat(64)}`;
const bytes = (v: unknown) => Buffer.from(JSON.stringify(v));

function config(): any {
  return {
    created: '2024-01-01T00:00:00Z',
    author: 'me',
    architecture: 'arm64',
    os: 'linux',
    variant: 'v8',
    config: {
      User: '1000:1000',
      Env: ['PATH=/usr/bin:/bin', 'A=b'],
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['echo hi'],
      WorkingDir: '/app',
      Labels: { 'org.opencontainers.image.title': 't' },
      ExposedPorts: { '80/tcp': {} },
      Volumes: { '/data': {} },
      StopSignal: 'SIGTERM',
      ArgsEscaped: true,
      Healthcheck: { Test: ['CMD', 'true'], Interval: 30_000_000_000, Retries: 3 },
      Shell: ['/bin/sh', '-c'],
    },
    rootfs: { type: 'layers', diff_ids: [dg('1'), dg('2')] },
    history: [{ created: '2024-01-01T00:00:00Z', created_by: 'ADD x', comment: 'c' }, { created_by: 'ENV A=b', empty_layer: true }, { created_by: 'RUN y' }],
    docker_version: '24.0.7',
    container_config: { Hostname: 'abc' },
  };
}

function rejects(doc: unknown, fragment: string): void {
  const input = Buffer.isBuffer(doc) ? doc : bytes(doc);
  assert.throws(() => parseConfig(input, W), (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.equal(e.code, 'BAD_CONFIG', e.message);
    assert.ok(e.message.startsWith(`${W}: `), e.message);
    assert.ok(e.message.includes(fragment), `expected "${fragment}" in: ${e.message}`);
    return true;
  });
}

function mutated(change: (c: any) => void): any {
  const c = config();
  change(c);
  return c;
}

test('parses a full config and keeps unknown Docker keys', () => {
  const c = parseConfig(bytes(config()), W);
  assert.equal(c.architecture, 'arm64');
  assert.deepEqual(c.rootfs.diff_ids, [dg('1'), dg('2')]);
  assert.deepEqual(c.config?.Env, ['PATH=/usr/bin:/bin', 'A=b']);
  assert.equal(c['docker_version'], '24.0.7');
  assert.deepEqual(c['container_config'], { Hostname: 'abc' });
});

test("Go's nulls for empty slices and maps are accepted", () => {
  const c = parseConfig(bytes(mutated((c) => {
    c.config.Labels = null; c.config.Volumes = null; c.config.Env = null; c.config.ExposedPorts = null;
    c.config.Entrypoint = null; c.config.OnBuild = null; c.config.Cmd = null; c.history = null;
    c.rootfs.diff_ids = null;
  })), W);
  assert.equal(c.config?.Labels, undefined);
  assert.equal(c.config?.Env, undefined);
  assert.equal(c.config?.Entrypoint, null);
  assert.equal(c.history, undefined);
  assert.deepEqual(c.rootfs.diff_ids, []);
  assert.equal(parseConfig(bytes(mutated((c) => { c.config = null; })), W).config, undefined);
  // Docker omits diff_ids for an image without layers.
  assert.deepEqual(parseConfig(bytes(mutated((c) => { delete c.rootfs.diff_ids; })), W).rootfs.diff_ids, []);
  // The config a simple-signing signature manifest carries.
  const sig = parseConfig(bytes({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [dg('9')] } }), W);
  assert.equal(sig.os, '');
});

test('every field is validated and named by its path', () => {
  const cases: Array<[(c: any) => void, string]> = [
    [(c) => delete c.architecture, 'architecture: is required but missing'],
    [(c) => { c.architecture = 64; }, 'architecture: must be a string, got number 64'],
    [(c) => delete c.os, 'os: is required but missing'],
    [(c) => { c.os = ['linux']; }, 'os: must be a string, got an array'],
    [(c) => { c.variant = 8; }, 'variant: must be a string'],
    [(c) => { c.created = 0; }, 'created: must be a string'],
    [(c) => { c.author = {}; }, 'author: must be a string'],
    [(c) => { c['os.version'] = 1; }, 'os.version: must be a string'],
    [(c) => { c['os.features'] = [1]; }, 'os.features[0]: must be a string'],
    [(c) => delete c.rootfs, 'rootfs: is required but missing'],
    [(c) => { c.rootfs = 'layers'; }, 'rootfs: must be an object'],
    [(c) => delete c.rootfs.type, 'rootfs.type: is required but missing'],
    [(c) => { c.rootfs.type = 'layered'; }, 'rootfs.type: must be "layers", got "layered"'],
    [(c) => { c.rootfs.diff_ids = dg('1'); }, 'rootfs.diff_ids: must be an array'],
    [(c) => { c.rootfs.diff_ids[1] = 'sha256:zz'; }, 'rootfs.diff_ids[1]: "sha256:zz" is malformed'],
    [(c) => { c.rootfs.diff_ids[0] = 5; }, 'rootfs.diff_ids[0]: must be a string, got number 5'],
    [(c) => { c.config = []; }, 'config: must be an object, got an array'],
    [(c) => { c.config.Env = 'A=b'; }, 'config.Env: must be an array, got "A=b"'],
    [(c) => { c.config.Env[1] = 3; }, 'config.Env[1]: must be a string, got number 3'],
    [(c) => { c.config.User = 0; }, 'config.User: must be a string'],
    [(c) => { c.config.Entrypoint = '/bin/sh'; }, 'config.Entrypoint: must be an array'],
    [(c) => { c.config.Cmd = [1]; }, 'config.Cmd[0]: must be a string'],
    [(c) => { c.config.OnBuild = [null]; }, 'config.OnBuild[0]: must be a string, got null'],
    [(c) => { c.config.Shell = 'sh'; }, 'config.Shell: must be an array'],
    [(c) => { c.config.WorkingDir = 1; }, 'config.WorkingDir: must be a string'],
    [(c) => { c.config.StopSignal = 15; }, 'config.StopSignal: must be a string'],
    [(c) => { c.config.ArgsEscaped = 'true'; }, 'config.ArgsEscaped: must be true or false, got "true"'],
    [(c) => { c.config.Labels = { 'com.example.v': 2 }; }, 'config.Labels["com.example.v"]: must be a string, got number 2'],
    [(c) => { c.config.ExposedPorts = { '80/tcp': true }; }, 'config.ExposedPorts["80/tcp"]: must be an object, got boolean true'],
    [(c) => { c.config.Volumes = ['/data']; }, 'config.Volumes: must be an object, got an array'],
    [(c) => { c.config.Healthcheck = 'x'; }, 'config.Healthcheck: must be an object'],
    [(c) => { c.config.Healthcheck.Test = 'true'; }, 'config.Healthcheck.Test: must be an array'],
    [(c) => { c.config.Healthcheck.Interval = '30s'; }, 'config.Healthcheck.Interval: must be an integer, got "30s"'],
    [(c) => { c.history = {}; }, 'history: must be an array'],
    [(c) => { c.history[2] = 'RUN y'; }, 'history[2]: must be an object'],
    [(c) => { c.history[1].empty_layer = 'yes'; }, 'history[1].empty_layer: must be true or false'],
    [(c) => { c.history[0].created_by = ['ADD']; }, 'history[0].created_by: must be a string'],
  ];
  for (const [change, fragment] of cases) rejects(mutated(change), fragment);
});

test('bad JSON', () => {
  rejects(Buffer.from('{"architecture": "amd64"'), 'image config is not valid JSON (');
  rejects(Buffer.from('"x"'), 'image config must be a JSON object, got "x"');
});

test('reads the config umoci writes', { skip: !existsSync('/usr/bin/umoci') && 'umoci not installed' }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'hoist-'));
  try {
    const layout = path.join(dir, 'layout');
    execFileSync('umoci', ['init', '--layout', layout]);
    execFileSync('umoci', ['new', '--image', `${layout}:t`]);
    execFileSync('umoci', ['config', '--image', `${layout}:t`, '--config.env', 'A=1', '--config.label', 'k=v', '--config.exposedports', '80/tcp']);
    const blob = (d: string) => readFile(path.join(layout, 'blobs', 'sha256', d.slice('sha256:'.length)));
    const idx = parseManifest(await readFile(path.join(layout, 'index.json')), 'index.json');
    assert.equal(idx.kind, 'index');
    const top = idx.index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === 't')!;
    const m = parseManifest(await blob(top.digest), 'manifest', top.mediaType);
    const c = parseConfig(await blob(configDescriptorOf(m).digest), 'umoci config');
    assert.ok(c.config?.Env?.includes('A=1'));
    assert.equal(c.config?.Labels?.['k'], 'v');
    assert.deepEqual(c.rootfs, { type: 'layers', diff_ids: [] });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
