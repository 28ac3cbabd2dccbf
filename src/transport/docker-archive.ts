/**
 * docker-archive: the `docker save` / `docker load` format.
 *
 * Reading: `manifest.json` lists images as `{Config, RepoTags, Layers}` (layer paths like `<id>/layer.tar`,
 * `<hex>.tar` or, from newer Docker, `blobs/sha256/<hex>`). There is no registry manifest in the archive, so one is
 * synthesized exactly as containers/image does (docker/internal/tarfile/src.go): a Docker v2s2 manifest whose layers
 * are the *uncompressed* tars, digest = diffID, size = uncompressed size, media type the v2s2 layer type, marshalled
 * like Go's json.Marshal. Same bytes, so `skopeo inspect` and `hoist inspect` report the same Digest.
 *
 * Writing (one image): blobs are decompressed as they arrive and staged beside the target; commit() writes what
 * skopeo writes (layers as `<diffID hex>.tar`, config as `<hex>.json`, the legacy per-layer directories,
 * `manifest.json`, `repositories`) into a temp file and renames it over FILE.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HoistError, isErrno } from '../errors.ts';
import { autoDecompress, decompressStream, detectCompression, MAGIC_LENGTH } from '../layer/compression.ts';
import { parseConfig } from '../oci/config.ts';
import { Digester, digestBytes, verifyStream } from '../oci/digest.ts';
import { parseManifest } from '../oci/manifest.ts';
import { DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_LAYER_GZIP } from '../oci/mediatype.ts';
import { parseDockerReference, repository, type DockerReference } from '../oci/reference.ts';
import type { Descriptor, ImageManifest, ManifestBlob } from '../oci/types.ts';
import { legacyLayers } from './docker-legacy.ts';
import { normalizeTarPath, TarIndex } from './tar-index.ts';
import { checkArchiveTarget, writeTarAtomically, type TarWriteEntry } from './tar-write.ts';
import type { DestinationCapabilities, ImageDestination, ImageSource } from './types.ts';
import { goJson } from '../util/go-json.ts';

/** One image in manifest.json. */
interface ManifestItem {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

function archiveName(file: string, ref: string | undefined): string {
  return `docker-archive:${file}${ref !== undefined ? `:${ref}` : ''}`;
}

/** `busybox` → `docker.io/library/busybox:latest`, the form RepoTags are compared and written in. */
function normalizedTag(ref: string): DockerReference & { tag: string } {
  const r = parseDockerReference(ref, { defaultTag: true });
  if (r.tag === undefined || r.digest !== undefined) {
    throw new HoistError('BAD_REFERENCE', `invalid image reference "${ref}": a docker-archive names images by name:tag, not by digest`, { exitCode: 2 });
  }
  return r as DockerReference & { tag: string };
}

function tagString(r: DockerReference & { tag: string }): string {
  return `${repository(r)}:${r.tag}`;
}

function parseManifestJson(bytes: Buffer, where: string): ManifestItem[] {
  const badJson = (why: string): HoistError =>
    new HoistError('BAD_ARCHIVE', `${where}: manifest.json ${why}; the archive is corrupt or not made by docker save`);
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw badJson(`is not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(doc)) throw badJson('is not a list of images');
  return doc.map((item: unknown, i): ManifestItem => {
    if (typeof item !== 'object' || item === null) throw badJson(`entry ${i} is not an object`);
    const o = item as Record<string, unknown>;
    if (typeof o['Config'] !== 'string' || o['Config'] === '') throw badJson(`entry ${i} has no Config`);
    const layers = o['Layers'] ?? [];
    if (!Array.isArray(layers) || !layers.every((l) => typeof l === 'string')) throw badJson(`entry ${i}: Layers is not a list of paths`);
    const tags = o['RepoTags'] ?? [];
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) throw badJson(`entry ${i}: RepoTags is not a list of names`);
    return { Config: o['Config'], RepoTags: tags as string[], Layers: layers as string[] };
  });
}

/** containers/image's ChooseManifestItem: by tag (normalized), by @N, or the only image. */
function chooseItem(items: ManifestItem[], ref: string | undefined, where: string): ManifestItem {
  const listing = (): string => items.map((it, i) => `@${i}${it.RepoTags.length ? ` (${it.RepoTags.join(', ')})` : ''}`).join(', ');
  if (ref === undefined) {
    if (items.length === 1) return items[0]!;
    if (items.length === 0) throw new HoistError('NOT_FOUND', `${where}: manifest.json lists no images`);
    throw new HoistError('AMBIGUOUS', `${where}: the archive holds ${items.length} images; pick one as docker-archive:FILE:NAME:TAG or docker-archive:FILE:@N (has ${listing()})`);
  }
  if (ref.startsWith('@')) {
    const n = Number(ref.slice(1));
    const item = items[n];
    if (item === undefined) throw new HoistError('NOT_FOUND', `${where}: no image @${n}; the archive holds ${items.length} (${listing()})`);
    return item;
  }
  const want = tagString(normalizedTag(ref));
  for (const it of items) {
    for (const t of it.RepoTags) {
      let have: string | undefined;
      try {
        have = tagString(normalizedTag(t));
      } catch {
        continue; // containers/image skips RepoTags it cannot parse
      }
      if (have === want) return it;
    }
  }
  throw new HoistError('NOT_FOUND', `${where}: no image tagged "${ref}" in the archive (has ${listing()})`);
}

interface KnownLayer {
  path: string;
  /** Uncompressed size (what the synthesized manifest lists). */
  size: number;
  compressed: boolean;
}

async function readHead(idx: TarIndex, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of idx.openEntry(name)) {
    chunks.push(c as Buffer);
    n += (c as Buffer).length;
    if (n >= MAGIC_LENGTH) break;
  }
  return Buffer.concat(chunks).subarray(0, MAGIC_LENGTH);
}

/** Bytes after decompression (containers/image reports layers uncompressed even when the archive stores them gzipped). */
async function uncompressedSize(idx: TarIndex, name: string, where: string): Promise<number> {
  let n = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      n += chunk.length;
      cb();
    },
  });
  const head = await readHead(idx, name);
  await pipeline(idx.openEntry(name), decompressStream(detectCompression(head), where), counter);
  return n;
}

class DockerArchiveSource implements ImageSource {
  readonly name: string;
  readonly #idx: TarIndex;
  readonly #item: ManifestItem;
  readonly #config: Buffer;
  readonly #configDigest: string;
  readonly #layers: Map<string, KnownLayer>;
  readonly #manifest: ManifestBlob;

  constructor(name: string, idx: TarIndex, item: ManifestItem, config: Buffer, layers: Map<string, KnownLayer>, manifest: ManifestBlob) {
    this.name = name;
    this.#idx = idx;
    this.#item = item;
    this.#config = config;
    this.#configDigest = digestBytes(config);
    this.#layers = layers;
    this.#manifest = manifest;
  }

  async getManifest(digest?: string): Promise<ManifestBlob> {
    if (digest !== undefined && digest !== this.#manifest.digest) {
      throw new HoistError('NOT_FOUND', `${this.name}: no manifest ${digest}; a docker-archive image has only its own manifest ${this.#manifest.digest}`);
    }
    return this.#manifest;
  }

  async getBlob(desc: Descriptor): Promise<Readable> {
    if (desc.digest === this.#configDigest) {
      return Readable.from([this.#config]).pipe(verifyStream(desc.digest, desc.size, `${this.name} config`));
    }
    const layer = this.#layers.get(desc.digest);
    if (layer === undefined) {
      throw new HoistError('NOT_FOUND', `${this.name}: no blob ${desc.digest} in this image (layers are named by their uncompressed digest)`);
    }
    const where = `${this.name} layer ${desc.digest}`;
    const verify = verifyStream(desc.digest, desc.size, where);
    const raw = this.#idx.openEntry(layer.path);
    // pipeline() wires errors from every stage into the last one, which is what the caller reads.
    void pipeline(raw, autoDecompress(where), verify).catch(() => {});
    return verify;
  }

  async listTags(): Promise<string[]> {
    return [...this.#item.RepoTags];
  }

  async close(): Promise<void> {
    await this.#idx.close();
  }
}

export async function openDockerArchiveSource(file: string, ref?: string): Promise<ImageSource> {
  const name = archiveName(file, ref);
  const idx = await TarIndex.open(file, name);
  try {
    if (!idx.has('manifest.json')) {
      const hint = idx.has('index.json') ? 'it holds an OCI layout: read it with oci-archive:' : 'it is not a docker save archive';
      throw new HoistError('BAD_ARCHIVE', `${name}: manifest.json is missing; ${hint}`);
    }
    const items = parseManifestJson(await idx.readEntry('manifest.json'), name);
    const item = chooseItem(items, ref, name);
    const config = await idx.readEntry(item.Config);
    const parsed = parseConfig(config, `${name} config ${item.Config}`);
    const diffIds = parsed.rootfs.diff_ids;
    if (diffIds.length !== item.Layers.length) {
      throw new HoistError('BAD_ARCHIVE', `${name}: inconsistent layer count: ${item.Layers.length} in manifest.json, ${diffIds.length} in the config; the archive is corrupt`);
    }
    const layers = new Map<string, KnownLayer>();
    const paths = new Set<string>();
    for (const [i, diffId] of diffIds.entries()) {
      // The same layer twice in one image is legal (docker save links the copies); one entry serves both.
      if (layers.has(diffId)) continue;
      const p = normalizeTarPath(item.Layers[i]!);
      if (paths.has(p)) throw new HoistError('BAD_ARCHIVE', `${name}: layer file ${p} is used for two different layers; the archive is corrupt`);
      paths.add(p);
      const entry = idx.resolve(p);
      if (entry === undefined || (entry.type !== 'file' && entry.type !== 'contiguous-file')) {
        throw new HoistError('BAD_ARCHIVE', `${name}: layer ${p} listed in manifest.json is missing from the archive; the archive is incomplete`);
      }
      const compressed = detectCompression(await readHead(idx, p)) !== 'none';
      const size = compressed ? await uncompressedSize(idx, p, `${name} layer ${p}`) : entry.size;
      layers.set(diffId, { path: p, size, compressed });
    }
    // Key order and compact form of Go's json.Marshal(manifest.Schema2): byte-identical to containers/image.
    const manifest = {
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST,
      config: { mediaType: DOCKER_CONFIG, size: config.length, digest: digestBytes(config) },
      layers: diffIds.map((d) => ({ mediaType: DOCKER_LAYER_GZIP, size: layers.get(d)!.size, digest: d })),
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    return new DockerArchiveSource(name, idx, item, config, layers, { bytes, mediaType: DOCKER_MANIFEST, digest: digestBytes(bytes) });
  } catch (e) {
    await idx.close();
    throw e;
  }
}

interface StagedBlob {
  /** Digest of the bytes as staged (after decompression). */
  digest: string;
  size: number;
  file: string;
}

class DockerArchiveDestination implements ImageDestination {
  readonly name: string;
  readonly capabilities: DestinationCapabilities = { indexes: false, wantsUncompressedLayers: true };
  readonly #file: string;
  readonly #stage: string;
  readonly #tags: (DockerReference & { tag: string })[];
  /** Blob digest as received → what was staged. */
  readonly #staged = new Map<string, StagedBlob>();
  #manifest: ImageManifest | undefined;

  constructor(name: string, file: string, stage: string, tags: (DockerReference & { tag: string })[]) {
    this.name = name;
    this.#file = file;
    this.#stage = stage;
    this.#tags = tags;
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.#staged.has(desc.digest);
  }

  async putBlob(desc: Descriptor, stream: Readable): Promise<void> {
    const where = `${this.name} blob ${desc.digest}`;
    const tmp = path.join(this.#stage, `in-${randomBytes(6).toString('hex')}`);
    const d = new Digester();
    const hash = new Transform({
      transform(chunk: Buffer, _e, cb) {
        d.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(stream, verifyStream(desc.digest, desc.size, where), autoDecompress(where), hash, createWriteStream(tmp));
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    const digest = d.digest();
    const file = path.join(this.#stage, digest.replace(':', '-'));
    await rename(tmp, file);
    this.#staged.set(desc.digest, { digest, size: d.size, file });
  }

  async putManifest(m: ManifestBlob, opts: { topLevel: boolean }): Promise<void> {
    const parsed = parseManifest(m.bytes, `${this.name} manifest ${m.digest}`, m.mediaType);
    if (parsed.kind === 'index') {
      throw new HoistError('NOT_SUPPORTED', `${this.name}: a docker-archive holds single images, not an index (${m.digest}); pick one platform with --platform`);
    }
    if (opts.topLevel) this.#manifest = parsed.manifest;
  }

  #blob(d: Descriptor): StagedBlob {
    const s = this.#staged.get(d.digest);
    if (s === undefined) throw new HoistError('INTERNAL', `${this.name}: blob ${d.digest} was never stored before its manifest`);
    return s;
  }

  async commit(): Promise<void> {
    const m = this.#manifest;
    if (m === undefined) throw new HoistError('INTERNAL', `${this.name}: nothing to commit: no image manifest was written`);
    const configBlob = this.#blob(m.config);
    const configBytes = await readFile(configBlob.file);
    const config = parseConfig(configBytes, `${this.name} config ${m.config.digest}`);
    const want = config.rootfs.diff_ids;
    if (want.length !== m.layers.length) {
      throw new HoistError('BAD_IMAGE', `${this.name}: the manifest has ${m.layers.length} layers but the config lists ${want.length} diff_ids; the source image is inconsistent`);
    }
    const diffIds = m.layers.map((l, i) => {
      const s = this.#blob(l);
      if (s.digest !== want[i]) {
        throw new HoistError('DIGEST_MISMATCH', `${this.name}: layer ${i} (${l.digest}) uncompresses to ${s.digest} but the config's rootfs.diff_ids[${i}] is ${want[i]}; the source image is corrupt`);
      }
      return s.digest;
    });
    const hex = (d: string): string => d.slice(d.indexOf(':') + 1);
    const epoch = new Date(0);
    const file = (name: string): TarWriteEntry['header'] => ({ name, mode: 0o444, mtime: epoch, uid: 0, gid: 0, uname: '', gname: '' });

    const entries: TarWriteEntry[] = [];
    const written = new Set<string>();
    m.layers.forEach((l, i) => {
      const name = `${hex(diffIds[i]!)}.tar`;
      if (written.has(name)) return;
      written.add(name);
      entries.push({ header: file(name), file: this.#blob(l).file });
    });
    const configName = `${hex(m.config.digest)}.json`;
    entries.push({ header: file(configName), data: configBytes });
    const legacy = legacyLayers(diffIds, configBytes.toString('utf8'));
    for (const l of legacy) {
      if (written.has(l.id)) continue;
      written.add(l.id);
      entries.push({ header: { ...file(`${l.id}/layer.tar`), type: 'symlink', linkname: `../${l.diffHex}.tar`, mode: 0o777 } });
      entries.push({ header: file(`${l.id}/VERSION`), data: Buffer.from('1.0') });
      entries.push({ header: file(`${l.id}/json`), data: Buffer.from(l.json) });
    }
    const repoTags: string[] = [];
    for (const t of this.#tags) if (!repoTags.includes(tagString(t))) repoTags.push(tagString(t));
    const manifestJson = [{ Config: configName, RepoTags: repoTags, Layers: diffIds.map((d) => `${hex(d)}.tar`) }];
    entries.push({ header: file('manifest.json'), data: Buffer.from(goJson(manifestJson)) });
    const repositories: Record<string, Record<string, string>> = {};
    const top = legacy[legacy.length - 1];
    if (top !== undefined) {
      for (const t of this.#tags) (repositories[repository(t)] ??= {})[t.tag] = top.id;
    }
    entries.push({ header: file('repositories'), data: Buffer.from(goJson(sortKeys(repositories))) });

    await writeTarAtomically(this.#file, entries);
    await rm(this.#stage, { recursive: true, force: true });
  }

  async abort(): Promise<void> {
    await rm(this.#stage, { recursive: true, force: true });
  }
}

/** Go marshals maps with sorted keys. */
function sortKeys(o: Record<string, Record<string, string>>): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const k of Object.keys(o).sort()) {
    const inner: Record<string, string> = {};
    for (const t of Object.keys(o[k]!).sort()) inner[t] = o[k]![t]!;
    out[k] = inner;
  }
  return out;
}

export async function openDockerArchiveDestination(file: string, ref?: string): Promise<ImageDestination> {
  const name = archiveName(file, ref);
  if (ref !== undefined && ref.startsWith('@')) {
    throw new HoistError('BAD_REFERENCE', `${name}: @N picks an image when reading an archive; to write one, name it as docker-archive:FILE:NAME:TAG or omit the name`, { exitCode: 2 });
  }
  const tags = ref !== undefined ? [normalizedTag(ref)] : [];
  await checkArchiveTarget(file, name);
  let stage: string;
  try {
    stage = await mkdtemp(path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.hoist-`));
  } catch (e) {
    if (isErrno(e, 'EACCES') || isErrno(e, 'EROFS')) {
      throw new HoistError('PERMISSION', `${name}: cannot write in ${path.dirname(path.resolve(file))}`, { cause: e });
    }
    throw e;
  }
  return new DockerArchiveDestination(name, file, stage, tags);
}
