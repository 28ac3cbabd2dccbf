import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  configDescriptorOf, manifestDescriptor, manifestReferences, parseManifest, type ParsedManifest,
} from '../../src/oci/manifest.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import {
  DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_CONFIG, OCI_INDEX,
  OCI_LAYER_GZIP, OCI_MANIFEST,
} from '../../src/oci/mediatype.ts';
import { HoistError } from '../../src/errors.ts';

const W = 'oci:/tmp/l:t manifest';
const dg = (c: string) => `sha256:${c.repeat(64)}`;
const bytes = (v: unknown) => Buffer.from(JSON.stringify(v));

function image(): any {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: dg('c'), size: 100 },
    layers: [
      { mediaType: OCI_LAYER_GZIP, digest: dg('1'), size: 10 },
      { mediaType: OCI_LAYER_GZIP, digest: dg('2'), size: 20, urls: ['https://example.com/l'], annotations: { 'org.example.x': 'y' } },
      { mediaType: OCI_LAYER_GZIP, digest: dg('3'), size: 0 },
    ],
    annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
  };
}

function index(): any {
  return {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: OCI_MANIFEST, digest: dg('a'), size: 500, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: OCI_MANIFEST, digest: dg('b'), size: 501, platform: { os: 'linux', architecture: 'arm64', variant: 'v8', 'os.features': [] } },
    ],
  };
}

/** Expects parseManifest to fail with `code` and a message containing each fragment, prefixed by `where`. */
function rejects(doc: unknown, code: string, fragments: string[], declared?: string): void {
  const input = Buffer.isBuffer(doc) ? doc : bytes(doc);
  assert.throws(() => parseManifest(input, W, declared), (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.equal(e.code, code, e.message);
    assert.ok(e.message.startsWith(`${W}: `), e.message);
    for (const f of fragments) assert.ok(e.message.includes(f), `expected "${f}" in: ${e.message}`);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

function mutated<T>(make: () => T, change: (d: any) => void): T {
  const d = make();
  change(d);
  return d;
}

test('parses a valid OCI image manifest and index', () => {
  const p = parseManifest(bytes(image()), W);
  assert.equal(p.kind, 'image');
  assert.equal(p.mediaType, OCI_MANIFEST);
  assert.deepEqual(manifestReferences(p).map((d) => d.digest), [dg('c'), dg('1'), dg('2'), dg('3')]);
  assert.equal(configDescriptorOf(p).digest, dg('c'));

  const i = parseManifest(bytes(index()), W);
  assert.equal(i.kind, 'index');
  assert.deepEqual(manifestReferences(i).map((d) => d.digest), [dg('a'), dg('b')]);
  assert.throws(() => configDescriptorOf(i, W), (e: unknown) => e instanceof HoistError && e.code === 'NOT_AN_IMAGE' && e.message.startsWith(W));
});

test('unknown fields are allowed; subject is validated but not a reference', () => {
  const d = mutated(image, (m) => {
    m.futureField = { anything: [1, 2] };
    m.layers[0].futureDescriptorField = 5;
    m.subject = { mediaType: OCI_MANIFEST, digest: dg('5'), size: 7 };
    m.artifactType = 'application/vnd.example+json';
  });
  const p = parseManifest(bytes(d), W);
  assert.equal(manifestReferences(p).length, 4);
  assert.ok(!manifestReferences(p).some((r) => r.digest === dg('5')));
});

test('media type: document first, then declared, then shape', () => {
  const noType = mutated(image, (m) => delete m.mediaType);
  assert.equal(parseManifest(bytes(noType), W).mediaType, OCI_MANIFEST);
  assert.equal(parseManifest(bytes(noType), W, DOCKER_MANIFEST).mediaType, DOCKER_MANIFEST);
  assert.equal(parseManifest(bytes(noType), W, 'application/json').mediaType, OCI_MANIFEST);
  assert.equal(parseManifest(bytes(noType), W, `${DOCKER_MANIFEST}; charset=utf-8`).mediaType, DOCKER_MANIFEST);
  assert.equal(parseManifest(bytes(image()), W, 'application/json').mediaType, OCI_MANIFEST);
  assert.equal(parseManifest(bytes(image()), W, OCI_MANIFEST).mediaType, OCI_MANIFEST);

  const noTypeIndex = mutated(index, (m) => delete m.mediaType);
  const pi = parseManifest(bytes(noTypeIndex), W);
  assert.equal(pi.kind, 'index');
  assert.equal(pi.mediaType, OCI_INDEX);
  assert.equal(parseManifest(bytes(noTypeIndex), W, DOCKER_MANIFEST_LIST).mediaType, DOCKER_MANIFEST_LIST);

  const docker = mutated(image, (m) => { m.mediaType = DOCKER_MANIFEST; m.config.mediaType = DOCKER_CONFIG; });
  assert.equal(parseManifest(bytes(docker), W).mediaType, DOCKER_MANIFEST);
});

test('document and declared types that disagree are an error', () => {
  rejects(image(), 'MEDIA_TYPE_MISMATCH', [`"${OCI_MANIFEST}"`, `"${DOCKER_MANIFEST}"`], DOCKER_MANIFEST);
  rejects(index(), 'MEDIA_TYPE_MISMATCH', [OCI_INDEX, OCI_MANIFEST], OCI_MANIFEST);
});

test('a shape that says nothing is an error', () => {
  rejects({ schemaVersion: 2 }, 'BAD_MANIFEST', ['mediaType: missing']);
  rejects({ schemaVersion: 2, config: image().config }, 'BAD_MANIFEST', ['mediaType: missing']);
});

test('a declared image type with an index shape fails on the missing field', () => {
  rejects(mutated(index, (m) => delete m.mediaType), 'BAD_MANIFEST', ['config: is required'], DOCKER_MANIFEST);
  rejects(mutated(image, (m) => delete m.mediaType), 'BAD_MANIFEST', ['manifests: is required'], OCI_INDEX);
});

test('schema 1 is rejected with advice', () => {
  const advice = 'Docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current docker or podman';
  rejects({ schemaVersion: 1, name: 'library/busybox', tag: 'latest', fsLayers: [], history: [] }, 'SCHEMA1', [advice]);
  rejects({ schemaVersion: 1, name: 'x', fsLayers: [] }, 'SCHEMA1', [advice], 'application/json');
  rejects({ schemaVersion: 2, mediaType: DOCKER_SCHEMA1 }, 'SCHEMA1', [advice]);
  rejects({ name: 'x', fsLayers: [], signatures: [] }, 'SCHEMA1', [advice], DOCKER_SCHEMA1_SIGNED);
  assert.throws(() => parseManifest(bytes({ schemaVersion: 1 }), W), { message: `${W}: ${advice}` });
});

test('unsupported media types are named', () => {
  rejects(mutated(image, (m) => { m.mediaType = 'application/vnd.oci.artifact.manifest.v1+json'; }),
    'UNSUPPORTED_MEDIA_TYPE', ['"application/vnd.oci.artifact.manifest.v1+json"']);
  rejects(mutated(image, (m) => delete m.mediaType), 'UNSUPPORTED_MEDIA_TYPE', ['"text/html"'], 'text/html');
});

test('bad JSON and non-objects', () => {
  rejects(Buffer.from('{"schemaVersion": 2,'), 'BAD_MANIFEST', ['manifest is not valid JSON (']);
  rejects(Buffer.from([0x7b, 0xff, 0x7d]), 'BAD_MANIFEST', ['manifest is not valid JSON (']);
  rejects(Buffer.from('[]'), 'BAD_MANIFEST', ['must be a JSON object, got an array']);
  rejects(Buffer.from('null'), 'BAD_MANIFEST', ['must be a JSON object, got null']);
});

test('every field is validated and named by its path', () => {
  // [change to a valid image manifest, fragments of the message]
  const imageCases: Array<[(m: any) => void, string[]]> = [
    [(m) => { m.mediaType = 5; }, ['mediaType: must be a string, got number 5']],
    [(m) => { m.schemaVersion = 3; }, ['schemaVersion: must be 2, got 3']],
    [(m) => { m.schemaVersion = '2'; }, ['schemaVersion: must be 2, got "2"']],
    [(m) => delete m.schemaVersion, ['schemaVersion: must be 2, got nothing']],
    [(m) => delete m.config, ['config: is required but missing']],
    [(m) => { m.config = 'sha256:x'; }, ['config: must be an object, got "sha256:x"']],
    [(m) => delete m.config.digest, ['config.digest: is required but missing']],
    [(m) => { m.config.digest = 7; }, ['config.digest: must be a string, got number 7']],
    [(m) => delete m.layers, ['layers: is required but missing']],
    [(m) => { m.layers = {}; }, ['layers: must be an array, got an object']],
    [(m) => { m.layers[2] = null; }, ['layers[2]: must be an object, got null']],
    [(m) => { m.layers[2].digest = 'sha256:zz'; }, ['layers[2].digest: "sha256:zz" is malformed']],
    [(m) => { m.layers[0].digest = 'md5:d41d8cd98f00b204e9800998ecf8427e'; }, ['layers[0].digest: unsupported digest algorithm "md5"']],
    [(m) => { m.layers[0].digest = 'nodigest'; }, ['layers[0].digest: "nodigest" is not a digest']],
    [(m) => { m.layers[1].digest = dg('A'); }, ['layers[1].digest:', 'is malformed']],
    [(m) => delete m.layers[0].mediaType, ['layers[0].mediaType: is required but missing']],
    [(m) => { m.layers[0].mediaType = null; }, ['layers[0].mediaType: must be a string, got null']],
    [(m) => { m.layers[0].mediaType = ''; }, ['layers[0].mediaType: must not be empty']],
    [(m) => delete m.layers[1].size, ['layers[1].size: is required but missing']],
    [(m) => { m.layers[1].size = -1; }, ['layers[1].size: must be a non-negative integer, got number -1']],
    [(m) => { m.layers[1].size = 1.5; }, ['layers[1].size: must be a non-negative integer, got number 1.5']],
    [(m) => { m.layers[1].size = '12'; }, ['layers[1].size: must be a non-negative integer, got "12"']],
    [(m) => { m.layers[1].size = 2 ** 53; }, ['layers[1].size: must be a non-negative integer']],
    [(m) => { m.layers[1].urls = 'https://x'; }, ['layers[1].urls: must be an array, got "https://x"']],
    [(m) => { m.layers[1].urls = ['https://x', 3]; }, ['layers[1].urls[1]: must be a string, got number 3']],
    [(m) => { m.layers[1].annotations = ['x']; }, ['layers[1].annotations: must be an object, got an array']],
    [(m) => { m.layers[1].annotations = { 'org.example.x': 1 }; }, ['layers[1].annotations["org.example.x"]: must be a string, got number 1']],
    [(m) => { m.layers[1].artifactType = false; }, ['layers[1].artifactType: must be a string, got boolean false']],
    [(m) => { m.layers[0].platform = { os: 'linux' }; }, ['layers[0].platform.architecture: is required but missing']],
    [(m) => { m.annotations = { a: 1 }; }, ['annotations.a: must be a string, got number 1']],
    [(m) => { m.annotations = 'x'; }, ['annotations: must be an object']],
    [(m) => { m.artifactType = []; }, ['artifactType: must be a string, got an array']],
    [(m) => { m.subject = { mediaType: OCI_MANIFEST, digest: dg('5') }; }, ['subject.size: is required but missing']],
    [(m) => { m.subject = { mediaType: OCI_MANIFEST, digest: 'sha256:1', size: 3 }; }, ['subject.digest: "sha256:1" is malformed']],
  ];
  for (const [change, fragments] of imageCases) rejects(mutated(image, change), 'BAD_MANIFEST', fragments);

  const indexCases: Array<[(m: any) => void, string[]]> = [
    [(m) => delete m.manifests, ['manifests: is required but missing']],
    [(m) => { m.manifests = null; }, ['manifests: must be an array, got null']],
    [(m) => { m.manifests[1].digest = 'sha256:zz'; }, ['manifests[1].digest: "sha256:zz" is malformed']],
    [(m) => { m.manifests[1].size = -5; }, ['manifests[1].size: must be a non-negative integer']],
    [(m) => { m.manifests[0].platform = 'linux/amd64'; }, ['manifests[0].platform: must be an object, got "linux/amd64"']],
    [(m) => delete m.manifests[1].platform.os, ['manifests[1].platform.os: is required but missing']],
    [(m) => { m.manifests[1].platform.os = 1; }, ['manifests[1].platform.os: must be a string, got number 1']],
    [(m) => delete m.manifests[1].platform.architecture, ['manifests[1].platform.architecture: is required but missing']],
    [(m) => { m.manifests[1].platform.architecture = null; }, ['manifests[1].platform.architecture: must be a string, got null']],
    [(m) => { m.manifests[1].platform.variant = 8; }, ['manifests[1].platform.variant: must be a string']],
    [(m) => { m.manifests[1].platform['os.version'] = 10; }, ['manifests[1].platform["os.version"]: must be a string']],
    [(m) => { m.manifests[1].platform['os.features'] = 'sse4'; }, ['manifests[1].platform["os.features"]: must be an array']],
    [(m) => { m.manifests[1].platform.features = [1]; }, ['manifests[1].platform.features[0]: must be a string']],
    [(m) => { m.subject = 'x'; }, ['subject: must be an object']],
    [(m) => { m.annotations = { k: null }; }, ['annotations.k: must be a string, got null']],
  ];
  for (const [change, fragments] of indexCases) rejects(mutated(index, change), 'BAD_MANIFEST', fragments);
});

test('embedded data is checked against its descriptor', () => {
  const content = Buffer.from('{}');
  const ok = mutated(image, (m) => { m.config = { mediaType: OCI_CONFIG, digest: digestBytes(content), size: 2, data: content.toString('base64') }; });
  assert.equal(parseManifest(bytes(ok), W).kind, 'image');
  rejects(mutated(image, (m) => { m.config.data = Buffer.from('{"x":1}').toString('base64'); m.config.size = 7; }),
    'DIGEST_MISMATCH', ['config.data: content does not match its digest']);
  rejects(mutated(image, (m) => { m.config = { ...m.config, digest: digestBytes(content), size: 3, data: content.toString('base64') }; }),
    'SIZE_MISMATCH', ['config.data: expected 3 bytes, got 2']);
  rejects(mutated(image, (m) => { m.config.data = 'not base64!'; }), 'BAD_MANIFEST', ['config.data: is not valid base64']);
});

test('manifestDescriptor describes the stored bytes', () => {
  const b = bytes(image());
  assert.deepEqual(manifestDescriptor({ bytes: b, mediaType: OCI_MANIFEST, digest: digestBytes(b) }),
    { mediaType: OCI_MANIFEST, digest: digestBytes(b), size: b.length });
});

const tools = existsSync('/usr/bin/umoci') && existsSync('/usr/bin/skopeo');

test('reads what umoci and skopeo write (no mediaType fields; Docker schema 2)', { skip: !tools && 'umoci/skopeo not installed' }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'hoist-'));
  try {
    const layout = path.join(dir, 'layout');
    execFileSync('umoci', ['init', '--layout', layout]);
    execFileSync('umoci', ['new', '--image', `${layout}:t`]);
    await writeFile(path.join(dir, 'f'), 'hello\n');
    execFileSync('umoci', ['insert', '--rootless', '--image', `${layout}:t`, path.join(dir, 'f'), '/f']);

    const blob = (d: string) => readFile(path.join(layout, 'blobs', 'sha256', d.slice('sha256:'.length)));
    const idx = parseManifest(await readFile(path.join(layout, 'index.json')), 'index.json');
    assert.equal(idx.kind, 'index');
    const top = manifestReferences(idx)[0]!;
    const m: ParsedManifest = parseManifest(await blob(top.digest), 'umoci manifest', top.mediaType);
    assert.equal(m.kind, 'image');
    assert.equal(m.mediaType, OCI_MANIFEST);
    assert.equal(manifestReferences(m).length, 2);

    execFileSync('skopeo', ['copy', '-q', '--format', 'v2s2', `oci:${layout}:t`, `dir:${path.join(dir, 'd')}`]);
    const docker = parseManifest(await readFile(path.join(dir, 'd', 'manifest.json')), 'skopeo dir manifest');
    assert.equal(docker.mediaType, DOCKER_MANIFEST);
    assert.equal(configDescriptorOf(docker).mediaType, DOCKER_CONFIG);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
