/**
 * The copy benchmark's images, made locally without network and streamed to disk (hundreds of MiB never sit in
 * memory): an OCI layout holding
 *   - `img`:   one linux/amd64 image of 10 gzip layers: 8 × 32 MiB of random bytes (incompressible, so the copy
 *              moves real volume), one layer of 5000 small files (many tar entries, small blob), one tiny layer;
 *   - `multi`: a two-platform index whose amd64 entry is `img` and whose arm64 entry shares the first 9 layers and
 *              has its own last layer and config, the usual shape of a multi-arch image.
 * Random content means fresh digests on every run, so no cache anywhere can already know these blobs.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import { Digester, digestBytes } from '../src/oci/digest.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST } from '../src/oci/mediatype.ts';
import type { Descriptor, Platform } from '../src/oci/types.ts';

const MiB = 1024 * 1024;
const EPOCH = new Date(0);

interface Layer {
  desc: Descriptor;
  diffId: string;
}

export interface CopyFixture {
  /** The OCI layout directory. */
  dir: string;
  /** Ref name of the single-platform image in the layout. */
  imageRef: string;
  /** Ref name of the two-platform index in the layout. */
  indexRef: string;
  imageDigest: string;
  indexDigest: string;
  layerCount: number;
  /** Compressed bytes of the single image (layers + config). */
  imageBytes: number;
}

/** Feeds every chunk to a Digester on the way through. */
function tap(d: Digester): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      d.update(chunk);
      cb(null, chunk);
    },
  });
}

/** Streams a tar built by `fill` through gzip into blobs/sha256, digesting both the tar and the gzip. */
async function writeLayer(dir: string, fill: (pack: Pack) => Promise<void>): Promise<Layer> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  const tmp = path.join(blobs, `.tmp-${randomBytes(8).toString('hex')}`);
  const tarD = new Digester();
  const gzD = new Digester();
  const pack = tarPack();
  // Level 1: random data does not shrink at any level, and level 6 would only make fixture setup slower.
  const written = pipeline(pack, tap(tarD), createGzip({ level: 1 }), tap(gzD), createWriteStream(tmp));
  await Promise.all([written, fill(pack).then(() => pack.finalize())]);
  const digest = gzD.digest();
  await rename(tmp, path.join(blobs, digest.slice('sha256:'.length)));
  return { desc: { mediaType: OCI_LAYER_GZIP, digest, size: gzD.size }, diffId: tarD.digest() };
}

function header(name: string, extra: { type?: 'directory'; mode?: number; size?: number } = {}): Partial<Header> & { name: string } {
  return { name, mtime: EPOCH, uid: 0, gid: 0, mode: 0o644, ...extra };
}

async function addEntry(pack: Pack, h: Partial<Header> & { name: string }, body?: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    if (body === undefined) pack.entry(h, cb);
    else pack.entry(h, body, cb);
  });
}

async function randomLayer(dir: string, index: number, bytes: number): Promise<Layer> {
  return writeLayer(dir, async (pack) => {
    await addEntry(pack, header('data/', { type: 'directory', mode: 0o755 }));
    const entry = pack.entry(header(`data/random-${index}.bin`, { size: bytes }));
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let left = bytes; left > 0; left -= MiB) yield randomBytes(Math.min(MiB, left));
    }
    await pipeline(Readable.from(chunks()), entry);
  });
}

async function smallFilesLayer(dir: string, count: number): Promise<Layer> {
  const salt = randomBytes(8).toString('hex');
  return writeLayer(dir, async (pack) => {
    await addEntry(pack, header('usr/', { type: 'directory', mode: 0o755 }));
    await addEntry(pack, header('usr/share/', { type: 'directory', mode: 0o755 }));
    const perDir = 100;
    for (let i = 0; i < count; i++) {
      const d = `usr/share/pkg-${String(Math.floor(i / perDir)).padStart(3, '0')}/`;
      if (i % perDir === 0) await addEntry(pack, header(d, { type: 'directory', mode: 0o755 }));
      // 100 B – 4 KiB of text, like the docs and scripts that make up real many-file layers.
      const body = Buffer.from(`${salt} file ${i}\n`.repeat(1 + ((i * 7919) % 150)));
      await addEntry(pack, header(`${d}file-${String(i).padStart(5, '0')}.txt`), body);
    }
  });
}

async function tinyLayer(dir: string, what: string): Promise<Layer> {
  return writeLayer(dir, async (pack) => {
    await addEntry(pack, header('etc/', { type: 'directory', mode: 0o755 }));
    await addEntry(pack, header('etc/hoist-bench', {}), Buffer.from(`${what} ${randomBytes(8).toString('hex')}\n`));
  });
}

async function putJson(dir: string, mediaType: string, value: unknown): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = digestBytes(bytes);
  await writeFile(path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes);
  return { mediaType, digest, size: bytes.length };
}

async function writeImage(dir: string, layers: Layer[], platform: Platform): Promise<Descriptor> {
  const config = await putJson(dir, OCI_CONFIG, {
    created: EPOCH.toISOString(),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created: EPOCH.toISOString(), created_by: 'hoist bench fixture' })),
  });
  const manifest = await putJson(dir, OCI_MANIFEST, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: layers.map((l) => l.desc),
  });
  return { ...manifest, platform };
}

export async function makeCopyFixture(dir: string, opts: { randomLayers?: number; randomLayerMiB?: number; smallFiles?: number } = {}): Promise<CopyFixture> {
  const randomLayers = opts.randomLayers ?? 8;
  const layerBytes = (opts.randomLayerMiB ?? 32) * MiB;
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');

  const shared: Layer[] = [];
  for (let i = 0; i < randomLayers; i++) shared.push(await randomLayer(dir, i, layerBytes));
  shared.push(await smallFilesLayer(dir, opts.smallFiles ?? 5000));
  const amd64Last = await tinyLayer(dir, 'amd64');
  const arm64Last = await tinyLayer(dir, 'arm64');

  const amd64 = await writeImage(dir, [...shared, amd64Last], { os: 'linux', architecture: 'amd64' });
  const arm64 = await writeImage(dir, [...shared, arm64Last], { os: 'linux', architecture: 'arm64', variant: 'v8' });
  const index = await putJson(dir, OCI_INDEX, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [amd64, arm64] });

  const imageRef = 'img';
  const indexRef = 'multi';
  const { platform: _p, ...imageDesc } = amd64;
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { ...imageDesc, annotations: { 'org.opencontainers.image.ref.name': imageRef } },
      { ...index, annotations: { 'org.opencontainers.image.ref.name': indexRef } },
    ],
  }));
  const layersAll = [...shared, amd64Last];
  return {
    dir,
    imageRef,
    indexRef,
    imageDigest: amd64.digest,
    indexDigest: index.digest,
    layerCount: layersAll.length,
    imageBytes: layersAll.reduce((n, l) => n + l.desc.size, 0),
  };
}
