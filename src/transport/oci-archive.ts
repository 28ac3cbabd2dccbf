/**
 * oci-archive: — a tar of an OCI image layout (what `skopeo copy … oci-archive:F` and `podman save --format
 * oci-archive` write).
 *
 * Reading indexes the tar once and reads blobs in place (skopeo extracts the whole archive first).
 * Writing goes into a temp layout beside FILE; commit() names the image there, then tars the layout into
 * `FILE.tmp-…` and renames it over FILE, so FILE is either the old archive or the complete new one. Like skopeo,
 * the new archive holds only this image.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { HoistError, isErrno } from '../errors.ts';
import { parseDigest, verifyStream } from '../oci/digest.ts';
import type { ImageIndex, ManifestBlob, Descriptor } from '../oci/types.ts';
import { OciLayout, parseIndex } from '../store/layout.ts';
import { readAll } from '../util/stream.ts';
import { LayoutDestination, LayoutSource, layoutName, selectManifest, type LayoutReader } from './oci-layout.ts';
import { TarIndex } from './tar-index.ts';
import { checkArchiveTarget, writeTarAtomically, type TarWriteEntry } from './tar-write.ts';
import type { DestinationCapabilities, ImageDestination, ImageSource } from './types.ts';

/** Reads the layout inside an indexed tar. */
class ArchiveLayoutReader implements LayoutReader {
  readonly #idx: TarIndex;

  constructor(idx: TarIndex) {
    this.#idx = idx;
  }

  async readIndex(): Promise<ImageIndex> {
    if (!this.#idx.has('index.json')) {
      const hint = this.#idx.has('manifest.json') ? 'it is a docker save archive: read it with docker-archive:' : 'it is not an OCI layout archive';
      throw new HoistError('BAD_ARCHIVE', `${this.#idx.where}: index.json is missing; ${hint}`);
    }
    return parseIndex(await this.#idx.readEntry('index.json'), `${this.#idx.where} index.json`);
  }

  async openBlob(digest: string, size: number | undefined, where: string): Promise<Readable> {
    const { algorithm, hex } = parseDigest(digest, where);
    const entry = `blobs/${algorithm}/${hex}`;
    if (!this.#idx.has(entry)) {
      throw new HoistError('NOT_FOUND', `${where}: blob ${digest} is missing from the archive; the archive is incomplete`);
    }
    const verify = verifyStream(digest, size, where);
    const raw = this.#idx.openEntry(entry);
    raw.on('error', (e) => verify.destroy(e));
    return raw.pipe(verify);
  }

  async readBlob(digest: string, size: number | undefined, where: string): Promise<Buffer> {
    return readAll(await this.openBlob(digest, size, where));
  }
}

export async function openOciArchiveSource(file: string, ref?: string): Promise<ImageSource> {
  const name = layoutName('oci-archive', file, ref);
  const idx = await TarIndex.open(file, layoutName('oci-archive', file, undefined));
  try {
    const reader = new ArchiveLayoutReader(idx);
    const top = selectManifest(await reader.readIndex(), ref, idx.where, `oci-archive:${file}:NAME`);
    return new LayoutSource(name, reader, top, () => idx.close());
  } catch (e) {
    await idx.close();
    throw e;
  }
}

/** Files of a layout directory, as archive entries: directories first, then sorted, like skopeo's archives. */
async function layoutEntries(dir: string): Promise<TarWriteEntry[]> {
  const mtime = new Date();
  const entries: TarWriteEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const d of names) {
      if (d.name.startsWith('.')) continue; // temp files of an interrupted write
      const r = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) {
        entries.push({ header: { name: `${r}/`, type: 'directory', mode: 0o755, mtime, uid: 0, gid: 0 } });
        await walk(r);
      } else if (d.isFile()) {
        entries.push({ header: { name: r, mode: 0o644, mtime, uid: 0, gid: 0 }, file: path.join(dir, r) });
      }
    }
  };
  // Only what belongs to an image layout: the store's own bookkeeping (temp dirs, locks) stays out.
  for (const top of ['blobs', 'index.json', 'oci-layout']) {
    if (top === 'blobs') {
      entries.push({ header: { name: 'blobs/', type: 'directory', mode: 0o755, mtime, uid: 0, gid: 0 } });
      await walk('blobs');
    } else {
      entries.push({ header: { name: top, mode: 0o644, mtime, uid: 0, gid: 0 }, file: path.join(dir, top) });
    }
  }
  return entries;
}

class OciArchiveDestination implements ImageDestination {
  readonly name: string;
  readonly capabilities: DestinationCapabilities;
  readonly #file: string;
  readonly #stage: string;
  readonly #inner: LayoutDestination;

  constructor(name: string, file: string, stage: string, inner: LayoutDestination) {
    this.name = name;
    this.#file = file;
    this.#stage = stage;
    this.#inner = inner;
    this.capabilities = inner.capabilities;
  }

  hasBlob(desc: Descriptor): Promise<boolean> {
    return this.#inner.hasBlob(desc);
  }

  putBlob(desc: Descriptor, stream: Readable): Promise<void> {
    return this.#inner.putBlob(desc, stream);
  }

  hasManifest(digest: string): Promise<boolean> {
    return this.#inner.hasManifest(digest);
  }

  putManifest(m: ManifestBlob, opts: { topLevel: boolean }): Promise<void> {
    return this.#inner.putManifest(m, opts);
  }

  async commit(): Promise<void> {
    try {
      await this.#inner.commit();
      await writeTarAtomically(this.#file, await layoutEntries(this.#stage));
    } finally {
      await rm(this.#stage, { recursive: true, force: true });
    }
  }

  async abort(): Promise<void> {
    try {
      await this.#inner.abort();
    } finally {
      await rm(this.#stage, { recursive: true, force: true });
    }
  }
}

export async function openOciArchiveDestination(file: string, ref?: string): Promise<ImageDestination> {
  const name = layoutName('oci-archive', file, ref);
  await checkArchiveTarget(file, name);
  const dir = path.dirname(path.resolve(file));
  let stage: string;
  try {
    stage = await mkdtemp(path.join(dir, `.${path.basename(file)}.hoist-`));
  } catch (e) {
    if (isErrno(e, 'EACCES') || isErrno(e, 'EROFS')) throw new HoistError('PERMISSION', `${name}: cannot write in ${dir}`, { cause: e });
    throw e;
  }
  try {
    const layout = await OciLayout.open(stage, { create: true });
    const lease = await layout.lease();
    return new OciArchiveDestination(name, file, stage, new LayoutDestination(name, layout, ref !== undefined ? { ref, mode: 'skopeo' } : { unnamed: true }, lease, ['oci']));
  } catch (e) {
    await rm(stage, { recursive: true, force: true });
    throw e;
  }
}
