/**
 * docker-archive: against skopeo as the independent reader and writer.
 * - Archives skopeo writes (and hand-made `docker save` style ones, gzipped layers included) are read with the
 *   manifest digest `skopeo inspect --raw` gives, the same config bytes, and layers that are the diffIDs.
 * - What hoist writes is entry-for-entry what skopeo writes for the same image (legacy layer IDs included), and
 *   skopeo reads it back with the same digest and config.
 * - Broken input fails with one line naming the archive.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, readFile, writeFile, truncate, stat, readdir, mkdir, copyFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { openDockerArchiveDestination, openDockerArchiveSource } from '../../src/transport/docker-archive.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { OCI_INDEX } from '../../src/oci/mediatype.ts';
import { HoistError } from '../../src/errors.ts';
import { readAll } from '../../src/util/stream.ts';
import type { ImageDestination, ImageSource } from '../../src/transport/types.ts';
import { makeImage, type MadeImage } from '../helpers/make-image.ts';

const exec = promisify(execFile);
let tmp: string;
let layout: string;
let img: MadeImage;

async function skopeo(...args: string[]): Promise<Buffer> {
  const r = await exec('skopeo', args, { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return r.stdout;
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-dockerarchive-'));
  layout = path.join(tmp, 'layout');
  img = await makeImage(layout, {
    layers: [
      { files: { 'bin/busybox': await readFile('/bin/busybox'), 'bin/sh': { symlink: 'busybox' } } },
      { files: { 'etc/motd': 'hello <&> world\n' } },
    ],
    config: { Cmd: ['sh'], Labels: { 'a&b': '<x>', 'accent': 'é' } },
    // Pretty-printed, with a \u escape and a number spelled 1.50: the legacy layer IDs hash Go's compaction of
    // the raw config text, so these must survive exactly as skopeo keeps them.
    formatConfig: (c) => JSON.stringify({ ...c, container_config: { Hostname: 'h', Weight: '@NUM@' } }, null, 3)
      .replace(/"@NUM@"/g, '1.50').replace('é', '\\u00e9'),
    ref: 'v1',
  });
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

async function allBlobsOf(src: ImageSource): Promise<{ digest: string; manifest: { config: { digest: string }; layers: { digest: string; size: number; mediaType: string }[] }; blobs: Map<string, Buffer> }> {
  const m = await src.getManifest();
  const manifest = JSON.parse(m.bytes.toString()) as { config: { digest: string; size: number; mediaType: string }; layers: { digest: string; size: number; mediaType: string }[] };
  const blobs = new Map<string, Buffer>();
  for (const d of [manifest.config, ...manifest.layers]) blobs.set(d.digest, await readAll(await src.getBlob(d), 1 << 30));
  return { digest: m.digest, manifest, blobs };
}

test('reads what skopeo writes with the same manifest digest, config and layers', async () => {
  const arch = path.join(tmp, 'sk.tar');
  await skopeo('copy', '-q', `oci:${layout}:v1`, `docker-archive:${arch}:busybox:latest`);
  const raw = await skopeo('inspect', '--raw', `docker-archive:${arch}`);
  for (const ref of [undefined, 'busybox:latest', 'docker.io/library/busybox', '@0']) {
    const src = await openDockerArchiveSource(arch, ref);
    try {
      const got = await allBlobsOf(src);
      assert.equal(got.digest, digestBytes(raw), `digest with ref ${ref}`);
      assert.deepEqual((await src.getManifest()).bytes, raw, 'byte-identical synthesized manifest');
      assert.deepEqual(got.blobs.get(img.config.digest), img.configBytes);
      assert.deepEqual(got.manifest.layers.map((l) => l.digest), img.layers.map((l) => l.diffId));
      img.layers.forEach((l) => assert.deepEqual(got.blobs.get(l.diffId), l.tar));
      assert.deepEqual(await src.listTags!(), ['docker.io/library/busybox:latest']);
      await assert.rejects(src.getManifest(`sha256:${'0'.repeat(64)}`), /no manifest/);
    } finally {
      await src.close();
    }
  }
  // A gzipped archive (docker load accepts `docker save | gzip`) reads the same.
  const gz = path.join(tmp, 'sk.tar.gz');
  await writeFile(gz, gzipSync(await readFile(arch)));
  const src = await openDockerArchiveSource(gz);
  assert.equal((await src.getManifest()).digest, digestBytes(raw));
  await src.close();
});

type Style = 'legacy' | 'legacy-gzip' | 'symlinked' | 'oci-blobs';

/**
 * A `docker save`-style archive made by hand with two images, in the layouts Docker has used: `<id>/layer.tar`
 * (optionally gzipped, as some tools write), `<id>/layer.tar` symlinked to `<hex>.tar`, and Docker 25's
 * `blobs/sha256/<hex>` with an OCI index.json beside manifest.json.
 */
async function handMadeArchive(style: Style): Promise<string> {
  const root = path.join(tmp, `${style}-tree`);
  await mkdir(root, { recursive: true });
  const items = [];
  for (const [i, tag] of ['one:1', 'quay.io/two/img:2'].entries()) {
    const lay = path.join(tmp, `${style}-layout-${i}`);
    const made = await makeImage(lay, { layers: [{ files: { [`file${i}`]: `content ${i}\n` }, compression: 'none' }, { files: { shared: 'same in both\n' }, compression: 'none' }], epoch: i });
    const layerPaths: string[] = [];
    for (const [j, l] of made.layers.entries()) {
      const hex = l.diffId.slice(7);
      if (style === 'oci-blobs') {
        await mkdir(path.join(root, 'blobs', 'sha256'), { recursive: true });
        await writeFile(path.join(root, 'blobs', 'sha256', hex), l.tar);
        layerPaths.push(`blobs/sha256/${hex}`);
        continue;
      }
      const dir = path.join(root, `${i}-${j}`);
      await mkdir(dir, { recursive: true });
      if (style === 'symlinked') {
        await writeFile(path.join(root, `${hex}.tar`), l.tar);
        await symlink(`../${hex}.tar`, path.join(dir, 'layer.tar'));
      } else {
        await writeFile(path.join(dir, 'layer.tar'), style === 'legacy-gzip' ? gzipSync(l.tar) : l.tar);
      }
      layerPaths.push(`${i}-${j}/layer.tar`);
    }
    let configName = `${made.config.digest.slice(7)}.json`;
    if (style === 'oci-blobs') configName = `blobs/sha256/${made.config.digest.slice(7)}`;
    await writeFile(path.join(root, configName), made.configBytes);
    items.push({ Config: configName, RepoTags: [tag], Layers: layerPaths });
  }
  await writeFile(path.join(root, 'manifest.json'), JSON.stringify(items));
  if (style === 'oci-blobs') {
    await writeFile(path.join(root, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(path.join(root, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
  }
  const out = path.join(tmp, `${style}.tar`);
  await exec('tar', ['-cf', out, '-C', root, '.']);
  return out;
}

test('hand-made archives: several images, every layer path style, gzipped layers — same digests as skopeo', async () => {
  for (const style of ['legacy', 'legacy-gzip', 'symlinked', 'oci-blobs'] as const) {
    const arch = await handMadeArchive(style);
    for (const ref of ['one:1', '@1', 'quay.io/two/img:2']) {
      const raw = await skopeo('inspect', '--raw', `docker-archive:${arch}:${ref}`);
      const src = await openDockerArchiveSource(arch, ref);
      try {
        const got = await allBlobsOf(src);
        if (style === 'symlinked') {
          // skopeo 1.9.3 takes the size of the symlink entry itself (0), so its manifest cannot be copied; hoist
          // follows the link and reports the real size. Everything else agrees.
          const theirs = JSON.parse(raw.toString()) as typeof got.manifest;
          assert.deepEqual(theirs.layers.map((l) => l.size), [0, 0]);
          assert.deepEqual(got.manifest.layers.map((l) => l.digest), theirs.layers.map((l) => l.digest));
          assert.deepEqual(got.manifest.layers.map((l) => l.size), got.manifest.layers.map((l) => got.blobs.get(l.digest)!.length));
          assert.deepEqual(got.manifest.config, theirs.config);
        } else {
          assert.equal(got.digest, digestBytes(raw), `${style} ${ref}`);
        }
        for (const l of got.manifest.layers) assert.equal(digestBytes(got.blobs.get(l.digest)!), l.digest, 'layer served uncompressed');
      } finally {
        await src.close();
      }
    }
    await assert.rejects(openDockerArchiveSource(arch), (e: unknown) =>
      e instanceof HoistError && /holds 2 images; pick one .*@0 \(one:1\), @1 \(quay\.io\/two\/img:2\)/.test(e.message));
    await assert.rejects(openDockerArchiveSource(arch, 'three:3'), (e: unknown) =>
      e instanceof HoistError && e.code === 'NOT_FOUND' && /no image tagged "three:3" in the archive/.test(e.message));
    await assert.rejects(openDockerArchiveSource(arch, '@2'), /no image @2; the archive holds 2/);
  }
});

/** Drives a destination the way the copy engine does, from the made layout's files. */
async function push(dst: ImageDestination, made: MadeImage, dir: string): Promise<void> {
  for (const d of [made.config, ...made.layers]) {
    assert.equal(await dst.hasBlob(d), false);
    await dst.putBlob(d, createReadStream(path.join(dir, 'blobs', 'sha256', d.digest.slice(7))));
    assert.equal(await dst.hasBlob(d), true);
  }
  await dst.putManifest({ bytes: made.manifestBytes, mediaType: made.manifest.mediaType, digest: made.manifest.digest }, { topLevel: true });
}

interface Entry { name: string; type: string; linkname: string | null; mode: number; data: Buffer }

async function entries(file: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const ex = tarExtract();
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => { chunks.push(c as Buffer); });
    stream.on('end', () => {
      out.push({ name: h.name, type: h.type, linkname: h.linkname || null, mode: h.mode, data: Buffer.concat(chunks) });
      next();
    });
  });
  const done = new Promise<void>((resolve, reject) => { ex.on('finish', () => resolve()); ex.on('error', reject); });
  ex.end(await readFile(file));
  await done;
  return out;
}

test('writes what skopeo writes, and skopeo reads it back', async () => {
  const configText = img.configBytes.toString();
  assert.ok(configText.includes('\n') && configText.includes('\\u00e9') && configText.includes('1.50'), 'the config is in the awkward form');
  for (const ref of ['busybox:latest', undefined]) {
    const mine = path.join(tmp, `mine-${ref ? 'tagged' : 'untagged'}.tar`);
    const theirs = path.join(tmp, `theirs-${ref ? 'tagged' : 'untagged'}.tar`);
    await skopeo('copy', '-q', `oci:${layout}:v1`, `docker-archive:${theirs}${ref ? `:${ref}` : ''}`);
    const dst = await openDockerArchiveDestination(mine, ref);
    assert.deepEqual(dst.capabilities, { indexes: false, wantsUncompressedLayers: true });
    await push(dst, img, layout);
    await assert.rejects(stat(mine), /ENOENT/, 'nothing visible before commit');
    await dst.commit();

    const a = await entries(mine);
    const b = await entries(theirs);
    const summary = (es: Entry[]) => es.map((e) => ({ name: e.name, type: e.type, linkname: e.linkname, digest: digestBytes(e.data) }));
    assert.deepEqual(summary(a), summary(b), 'same entries, same order, same content');
    for (const e of a) if (e.type === 'file') assert.equal(e.mode, 0o444);

    assert.deepEqual(await skopeo('inspect', '--raw', `docker-archive:${mine}`), await skopeo('inspect', '--raw', `docker-archive:${theirs}`));
    assert.deepEqual(await skopeo('inspect', '--config', '--raw', `docker-archive:${mine}`), img.configBytes);
    // and the staging directory is gone
    assert.deepEqual((await readdir(tmp)).filter((n) => n.includes('.hoist-')), []);
  }
});

test('an existing archive is replaced atomically; abort leaves it and nothing else', async () => {
  const file = path.join(tmp, 'replace.tar');
  await writeFile(file, 'old content');
  const dst = await openDockerArchiveDestination(file, 'x:1');
  await push(dst, img, layout);
  await dst.abort();
  assert.equal(await readFile(file, 'utf8'), 'old content');
  assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('.replace.tar')), []);

  const dst2 = await openDockerArchiveDestination(file, 'x:1');
  await push(dst2, img, layout);
  await dst2.commit();
  const src = await openDockerArchiveSource(file, 'x:1');
  assert.deepEqual(await src.listTags!(), ['docker.io/library/x:1']);
  await src.close();
});

test('destination checks: diffIDs, digests, indexes, @N', async () => {
  // A config whose diff_ids do not match the layers: refused at commit, nothing written.
  const badDir = path.join(tmp, 'bad-diffids');
  const other = await makeImage(path.join(tmp, 'other-layout'), { layers: [{ files: { x: 'y' } }] });
  const made = await makeImage(badDir, { layers: [{ files: { a: 'b' } }] });
  await copyFile(path.join(tmp, 'other-layout', 'blobs', 'sha256', other.layers[0]!.digest.slice(7)), path.join(badDir, 'blobs', 'sha256', other.layers[0]!.digest.slice(7)));
  const swapped = JSON.parse(made.manifestBytes.toString()) as { layers: unknown[] };
  swapped.layers = [{ mediaType: other.layers[0]!.mediaType, digest: other.layers[0]!.digest, size: other.layers[0]!.size }];
  const swappedBytes = Buffer.from(JSON.stringify(swapped));
  const out = path.join(tmp, 'bad.tar');
  const dst = await openDockerArchiveDestination(out);
  await dst.putBlob(made.config, createReadStream(path.join(badDir, 'blobs', 'sha256', made.config.digest.slice(7))));
  await dst.putBlob(other.layers[0]!, createReadStream(path.join(badDir, 'blobs', 'sha256', other.layers[0]!.digest.slice(7))));
  await dst.putManifest({ bytes: swappedBytes, mediaType: made.manifest.mediaType, digest: digestBytes(swappedBytes) }, { topLevel: true });
  await assert.rejects(dst.commit(), (e: unknown) => e instanceof HoistError && e.code === 'DIGEST_MISMATCH' && /rootfs\.diff_ids\[0\]/.test(e.message));
  await dst.abort();
  await assert.rejects(stat(out), /ENOENT/);

  // A blob whose bytes do not match its digest.
  const dst2 = await openDockerArchiveDestination(out);
  const layer = img.layers[0]!;
  await assert.rejects(dst2.putBlob({ ...layer, digest: img.layers[1]!.digest }, createReadStream(path.join(layout, 'blobs', 'sha256', layer.digest.slice(7)))),
    (e: unknown) => e instanceof HoistError && /does not match its digest|expected \d+ bytes/.test(e.message));
  // An index.
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [img.manifest] }));
  await assert.rejects(dst2.putManifest({ bytes: index, mediaType: OCI_INDEX, digest: digestBytes(index) }, { topLevel: true }), /single images, not an index/);
  await dst2.abort();
  assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('.bad.tar')), [], 'no staging left');

  await assert.rejects(openDockerArchiveDestination(out, '@0'), /@N picks an image when reading/);
  await assert.rejects(openDockerArchiveDestination(path.join(tmp, 'no-such-dir', 'x.tar')), /directory .*no-such-dir does not exist/);
});

async function failsOpening(file: string, ref: string | undefined, re: RegExp): Promise<void> {
  await assert.rejects(openDockerArchiveSource(file, ref), (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.ok(!e.message.includes('\n'));
    assert.ok(e.message.includes(path.basename(file)), `names the file: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

test('bad input: missing file, not a tar, truncated, no manifest.json, broken manifest.json, missing layer', async () => {
  await failsOpening(path.join(tmp, 'nope.tar'), undefined, /no such file/);
  const text = path.join(tmp, 'text.tar');
  await writeFile(text, 'hello\n'.repeat(200));
  await failsOpening(text, undefined, /not a tar archive/);

  const good = path.join(tmp, 'good.tar');
  await skopeo('copy', '-q', `oci:${layout}:v1`, `docker-archive:${good}`);
  const cut = path.join(tmp, 'cut.tar');
  await writeFile(cut, await readFile(good));
  await truncate(cut, Math.floor((await stat(cut)).size / 2));
  await failsOpening(cut, undefined, /truncated/);

  const ociArch = path.join(tmp, 'oci.tar');
  await skopeo('copy', '-q', `oci:${layout}:v1`, `oci-archive:${ociArch}`);
  await failsOpening(ociArch, undefined, /manifest\.json is missing; it holds an OCI layout: read it with oci-archive:/);

  const tree = path.join(tmp, 'broken-tree');
  await mkdir(tree, { recursive: true });
  await writeFile(path.join(tree, 'manifest.json'), '{"not":"a list"}');
  const broken = path.join(tmp, 'broken.tar');
  await exec('tar', ['-cf', broken, '-C', tree, 'manifest.json']);
  await failsOpening(broken, undefined, /manifest\.json is not a list of images/);

  await writeFile(path.join(tree, 'manifest.json'), JSON.stringify([{ Config: `${img.config.digest.slice(7)}.json`, RepoTags: null, Layers: ['a/layer.tar', 'b/layer.tar'] }]));
  await writeFile(path.join(tree, `${img.config.digest.slice(7)}.json`), img.configBytes);
  await exec('tar', ['-cf', broken, '-C', tree, '.']);
  await failsOpening(broken, undefined, /layer a\/layer\.tar listed in manifest\.json is missing/);
});
