/**
 * An OCI image layout on disk (image-spec "image-layout": `oci-layout`, `index.json`, `blobs/<alg>/<hex>`), safe for
 * several processes at once. It is both hoist's local store and the `oci:DIR` transport.
 *
 * Invariants:
 * - A file under blobs/ always holds exactly the bytes its name promises: blobs are streamed into `.tmp/` inside the
 *   layout (same filesystem, so the final rename is atomic), hashed on the way, fsynced, and only then renamed.
 * - index.json is only ever replaced whole (temp file, fsync, rename) under the index lock, so readers need no lock
 *   and never see a partial file, and concurrent read-modify-writes do not lose each other's entries.
 * - Reads are verified too: openBlob/readBlob fail on a blob whose bytes do not match its name.
 *
 * Beside the spec's files the layout holds `.tmp/` (temp files), `.leases/` (see lease.ts) and `index.json.lock`.
 * skopeo and umoci ignore files they do not know.
 *
 * Garbage collection (prune.ts) may run while others write. A writer takes a lease first and does its existence checks
 * and puts through it (`lease.hasBlob`, `lease.putBlob`, or the optional `lease` argument here), which refreshes the
 * blob's mtime; prune.ts explains why that is enough.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HoistError, isErrno } from '../errors.ts';
import { digestBytes, parseDigest, verifyBytes, verifyStream } from '../oci/digest.ts';
import { checkArray, fieldPath, parseJsonObject, type JsonContext } from '../oci/json-check.ts';
import { checkDescriptor } from '../oci/manifest.ts';
import { OCI_INDEX } from '../oci/mediatype.ts';
import type { Descriptor, ImageIndex } from '../oci/types.ts';
import { withLock } from './lock.ts';
import { Lease } from './lease.ts';

export const LAYOUT_FILE = 'oci-layout';
export const INDEX_FILE = 'index.json';
export const LAYOUT_VERSION = '1.0.0';
/** The annotation that names an index.json entry (what `oci:DIR:NAME` refers to). */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

const TMP_DIR = '.tmp';
const LEASES_DIR = '.leases';
const LOCK_FILE = 'index.json.lock';
/** readBlob is for manifests and configs; anything bigger is a mistake to hold in memory. */
const READ_BLOB_LIMIT = 64 * 1024 * 1024;

export class OciLayout {
  /** Absolute path of the layout directory. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Opens a layout. With `create`, makes the directory, `oci-layout` and an empty `index.json` when missing (safe when
   * several processes do it at once). Either way an existing layout is checked: HoistError NOT_FOUND / BAD_LAYOUT.
   */
  static async open(dir: string, opts: { create: boolean }): Promise<OciLayout> {
    const layout = new OciLayout(path.resolve(dir));
    if (opts.create) await layout.#create();
    await layout.#check();
    return layout;
  }

  get tmpDir(): string { return path.join(this.dir, TMP_DIR); }
  get leasesDir(): string { return path.join(this.dir, LEASES_DIR); }
  get indexPath(): string { return path.join(this.dir, INDEX_FILE); }
  get lockPath(): string { return path.join(this.dir, LOCK_FILE); }

  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.dir, 'blobs', algorithm, hex);
  }

  /** A unique name in `.tmp/` (same filesystem as blobs/, so renames out of it are atomic). */
  tempPath(kind: string): string {
    return path.join(this.tmpDir, `${kind}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /**
   * True when the blob is stored. Through a lease (`lease.hasBlob(d)` or passing it here) an existing blob is also
   * touched, so a concurrent prune keeps it: use that form whenever the answer leads to skipping a write.
   */
  async hasBlob(digest: string, lease?: Lease): Promise<boolean> {
    const p = this.blobPath(digest);
    if (lease === undefined) {
      try {
        return (await stat(p)).isFile();
      } catch (e) {
        if (isErrno(e, 'ENOENT')) return false;
        throw e;
      }
    }
    return touch(p, lease.touchTimeMs());
  }

  /**
   * Stores a blob from a stream: verified against `expected` while written to `.tmp/`, fsynced, renamed into
   * blobs/, directory fsynced. Nothing unverified is ever visible under blobs/. On failure the temp file is removed and
   * the error (DigestMismatchError, SizeMismatchError, the source's error) propagates. A blob already stored is
   * touched (so prune keeps it) and the stream is destroyed unread.
   */
  async putBlob(stream: Readable, expected: { digest: string; size?: number }, where?: string, lease?: Lease): Promise<void> {
    const { digest, size } = expected;
    let final: string;
    try {
      final = this.blobPath(digest);
    } catch (e) {
      discard(stream);
      throw e;
    }
    if (await touch(final, lease?.touchTimeMs() ?? Date.now())) {
      // A stored file of the wrong length cannot be the blob (its name is a digest): replace it with verified bytes.
      const have = await stat(final).then((s) => s.size, () => undefined);
      if (size === undefined || have === undefined || have === size) {
        discard(stream);
        return;
      }
    }
    await mkdir(this.tmpDir, { recursive: true });
    const tmp = this.tempPath('blob');
    const label = where ?? `blob ${digest} for ${this.dir}`;
    const fh = await open(tmp, 'wx', 0o644);
    let written = false;
    try {
      await pipeline(stream, verifyStream(digest, size, label), async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) await writeAll(fh, chunk);
      });
      await fh.sync();
      written = true;
    } finally {
      await fh.close().catch(() => {});
      if (!written) await rm(tmp, { force: true });
    }
    try {
      await mkdir(path.dirname(final), { recursive: true });
      await rename(tmp, final);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    await fsyncDir(path.dirname(final));
  }

  /**
   * Moves a complete temp file into blobs/ as `digest`, for a blob whose digest is known only once written (a layer
   * compressed on the fly). The caller wrote `tmp` under tempPath(), hashed every byte on the way and fsynced it,
   * so it vouches for the name. A blob already stored with that size is touched (through `lease`, so prune keeps it)
   * and `tmp` is dropped. `tmp` never outlives the call.
   */
  async adoptTempBlob(tmp: string, digest: string, lease?: Lease): Promise<void> {
    try {
      const final = this.blobPath(digest);
      if (await touch(final, lease?.touchTimeMs() ?? Date.now())) {
        const [have, mine] = await Promise.all([stat(final), stat(tmp)]);
        if (have.size === mine.size) return;
      }
      await mkdir(path.dirname(final), { recursive: true });
      await rename(tmp, final);
      await fsyncDir(path.dirname(final));
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Stores bytes already in memory (manifests, configs); returns their digest (computed when not given, else checked). */
  async putBlobBytes(bytes: Uint8Array, digest?: string, lease?: Lease): Promise<string> {
    const d = digest ?? digestBytes(bytes);
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    verifyBytes(buf, d, `blob ${d} for ${this.dir}`);
    await this.putBlob(Readable.from([buf], { objectMode: false }), { digest: d, size: buf.length }, undefined, lease);
    return d;
  }

  /**
   * A blob as a stream that is verified while read: it errors at the end (DigestMismatchError / SizeMismatchError)
   * when the file does not hold what its name promises. A missing blob: HoistError NOT_FOUND.
   */
  async openBlob(digest: string, size?: number, where?: string): Promise<Readable> {
    const fh = await this.#openExisting(digest, where);
    const verify = verifyStream(digest, size, where ?? `blob ${digest} in ${this.dir}`);
    // pipeline, not pipe: an error on either side, or the consumer destroying the stream early, closes the file.
    pipeline(fh.createReadStream(), verify).catch(() => { /* surfaced to the consumer as an error on `verify` */ });
    return verify;
  }

  /** A small blob (manifest, config) read whole and verified. */
  async readBlob(digest: string, size?: number, where?: string): Promise<Buffer> {
    const label = where ?? `blob ${digest} in ${this.dir}`;
    const fh = await this.#openExisting(digest, where);
    try {
      const st = await fh.stat();
      if (st.size > READ_BLOB_LIMIT) {
        throw new HoistError('TOO_LARGE', `${label}: ${st.size} bytes is too large for a manifest or config (limit ${READ_BLOB_LIMIT}); the layout is damaged or the descriptor points at a layer`);
      }
      const bytes = await fh.readFile();
      verifyBytes(bytes, digest, label, size);
      return bytes;
    } finally {
      await fh.close();
    }
  }

  async #openExisting(digest: string, where: string | undefined) {
    const p = this.blobPath(digest);
    try {
      return await open(p, 'r');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) {
        throw new HoistError('NOT_FOUND',
          `${where ? `${where}: ` : ''}blob ${digest} is not in the layout ${this.dir}; the layout is incomplete: copy the image into it again`, { cause: e });
      }
      throw e;
    }
  }

  /** index.json, parsed and checked. No lock needed: it is only ever replaced whole. */
  async readIndex(): Promise<ImageIndex> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.indexPath);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) {
        throw new HoistError('BAD_LAYOUT', `${this.dir}: index.json is missing, so this is not a complete OCI layout; copy the image into it again`, { cause: e });
      }
      throw e;
    }
    return parseIndex(bytes, this.indexPath);
  }

  /** Read-modify-write of index.json under the cross-process index lock; the new file replaces the old atomically. */
  async updateIndex(fn: (idx: ImageIndex) => ImageIndex | Promise<ImageIndex>): Promise<void> {
    await this.withIndexLock(async () => {
      const next = await fn(await this.readIndex());
      await this.#writeIndex(next);
    });
  }

  /** Runs `fn` holding the lock that updateIndex takes (prune uses it to freeze index.json while it collects). */
  withIndexLock<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(this.lockPath, fn);
  }

  async #writeIndex(idx: ImageIndex): Promise<void> {
    if (!Array.isArray(idx.manifests)) throw new Error('updateIndex: the new index has no manifests array');
    const { schemaVersion: _v, mediaType, manifests, ...rest } = idx;
    const out = { schemaVersion: 2, mediaType: mediaType ?? OCI_INDEX, manifests, ...rest };
    await writeFileAtomic(this, this.indexPath, Buffer.from(JSON.stringify(out)));
  }

  /**
   * Names `desc` (a manifest or index already stored) as `name`, replacing any entry with that name in place.
   * Other annotations on desc are kept. The manifest must be stored: checked under the lock, so a concurrent prune
   * (which holds the same lock) cannot remove it between the check and the write.
   */
  async setRef(name: string, desc: Descriptor): Promise<void> {
    checkName(name);
    const entry = withRefName(desc, name);
    await this.updateIndex(async (idx) => {
      await this.#requireManifest(desc.digest, `cannot name ${desc.digest} "${name}"`);
      const i = idx.manifests.findIndex((d) => refName(d) === name);
      const manifests = [...idx.manifests];
      if (i >= 0) manifests[i] = entry;
      else manifests.push(entry);
      return { ...idx, manifests };
    });
  }

  /** Removes the entry named `name`; false when there was none. */
  async removeRef(name: string): Promise<boolean> {
    let removed = false;
    await this.updateIndex((idx) => {
      const manifests = idx.manifests.filter((d) => refName(d) !== name);
      removed = manifests.length !== idx.manifests.length;
      return { ...idx, manifests };
    });
    return removed;
  }

  /** The index entry named `name` (annotations included). */
  async resolveRef(name: string): Promise<Descriptor | undefined> {
    return (await this.readIndex()).manifests.find((d) => refName(d) === name);
  }

  async listRefs(): Promise<{ name: string; descriptor: Descriptor }[]> {
    const out: { name: string; descriptor: Descriptor }[] = [];
    for (const d of (await this.readIndex()).manifests) {
      const name = refName(d);
      if (name !== undefined) out.push({ name, descriptor: d });
    }
    return out;
  }

  /** Lists `desc` without a name (what skopeo writes for `oci:DIR` with no ref); no-op if already listed unnamed. */
  async addUnnamed(desc: Descriptor): Promise<void> {
    const entry = withoutRefName(desc);
    await this.updateIndex(async (idx) => {
      await this.#requireManifest(desc.digest, `cannot list ${desc.digest} in index.json`);
      if (idx.manifests.some((d) => d.digest === desc.digest && refName(d) === undefined)) return idx;
      return { ...idx, manifests: [...idx.manifests, entry] };
    });
  }

  /** The first index.json entry with this digest, named or not. */
  async findByDigest(digest: string): Promise<Descriptor | undefined> {
    return (await this.readIndex()).manifests.find((d) => d.digest === digest);
  }

  /** Starts a write session that protects what it stores or relies on from a concurrent prune (see lease.ts). */
  lease(): Promise<Lease> {
    return Lease.create(this);
  }

  async #requireManifest(digest: string, what: string): Promise<void> {
    if (!await this.hasBlob(digest)) {
      throw new HoistError('NOT_FOUND', `${this.dir}: ${what}: the manifest blob is not stored; store the manifest before naming it`);
    }
  }

  async #create(): Promise<void> {
    await mkdir(path.join(this.dir, 'blobs', 'sha256'), { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    await createIfMissing(this, path.join(this.dir, LAYOUT_FILE), JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
    await createIfMissing(this, this.indexPath, JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }));
  }

  async #check(): Promise<void> {
    try {
      const st = await stat(this.dir);
      if (!st.isDirectory()) {
        throw new HoistError('BAD_LAYOUT', `${this.dir}: is a file, not an OCI layout directory; pass the directory (oci:DIR) or use oci-archive: for a tar file`);
      }
    } catch (e) {
      if (isErrno(e, 'ENOENT')) {
        throw new HoistError('NOT_FOUND', `${this.dir}: no such directory; check the path (an OCI layout is a directory with oci-layout, index.json and blobs/)`, { cause: e });
      }
      throw e;
    }
    const layoutFile = path.join(this.dir, LAYOUT_FILE);
    let raw: string;
    try {
      raw = await readFile(layoutFile, 'utf8');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) {
        throw new HoistError('BAD_LAYOUT', `${this.dir}: not an OCI image layout (no oci-layout file); point at a directory written by skopeo, umoci or hoist copy`, { cause: e });
      }
      throw e;
    }
    let version: unknown;
    try {
      version = (JSON.parse(raw) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch (e) {
      throw new HoistError('BAD_LAYOUT', `${layoutFile}: not valid JSON (${(e as Error).message}); the layout is damaged: copy the image into a new directory`, { cause: e });
    }
    if (version !== LAYOUT_VERSION) {
      throw new HoistError('BAD_LAYOUT', `${layoutFile}: imageLayoutVersion ${JSON.stringify(version ?? null)} is not supported; hoist reads layouts of version ${LAYOUT_VERSION}`);
    }
    await this.readIndex();
  }
}

/** The name an index.json entry carries, if any. */
export function refName(d: Descriptor): string | undefined {
  return d.annotations?.[REF_NAME_ANNOTATION];
}

function withRefName(desc: Descriptor, name: string): Descriptor {
  return { ...desc, annotations: { ...desc.annotations, [REF_NAME_ANNOTATION]: name } };
}

/** `desc` without the ref-name annotation (and without an annotations object left empty). */
export function withoutRefName(desc: Descriptor): Descriptor {
  if (desc.annotations?.[REF_NAME_ANNOTATION] === undefined) return desc;
  const { [REF_NAME_ANNOTATION]: _name, ...others } = desc.annotations;
  const { annotations: _a, ...rest } = desc;
  return Object.keys(others).length ? { ...rest, annotations: others } : rest;
}

function checkName(name: string): void {
  if (typeof name !== 'string' || name === '') throw new HoistError('BAD_REFERENCE', 'an image name must not be empty', { exitCode: 2 });
}

/** Parses index.json bytes: JSON object, schemaVersion 2, manifests an array of descriptors. */
export function parseIndex(bytes: Uint8Array, where: string): ImageIndex {
  const ctx: JsonContext = { where, what: 'index.json', code: 'BAD_LAYOUT' };
  const doc = parseJsonObject(bytes, ctx);
  if (doc['schemaVersion'] !== 2) {
    throw new HoistError('BAD_LAYOUT', `${where}: schemaVersion must be 2, got ${JSON.stringify(doc['schemaVersion'] ?? null)}; the layout is damaged or not an OCI layout`);
  }
  const manifests = checkArray(ctx, doc['manifests'] ?? missingManifests(where), 'manifests');
  manifests.forEach((d, i) => checkDescriptor(ctx, d, fieldPath('manifests', i)));
  return doc as unknown as ImageIndex;
}

function missingManifests(where: string): never {
  throw new HoistError('BAD_LAYOUT', `${where}: "manifests" is missing; the layout is damaged or not an OCI layout`);
}

/** Sets atime/mtime of an existing file; false when it does not exist. */
async function touch(file: string, ms: number): Promise<boolean> {
  try {
    // Seconds as a float keep sub-millisecond parts; callers pass a time already rounded up where it matters.
    await utimes(file, ms / 1000, ms / 1000);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw e;
  }
}

/** Stops a stream we will not read, without an unhandled 'error' later. */
function discard(stream: Readable): void {
  stream.on('error', () => {});
  stream.destroy();
}

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

/** fsync on a directory makes a rename into it durable. Some filesystems refuse it; durability is then theirs. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (e) {
    if (!isErrno(e, 'EINVAL') && !isErrno(e, 'EPERM') && !isErrno(e, 'EISDIR') && !isErrno(e, 'EBADF')) throw e;
  } finally {
    await fh?.close();
  }
}

async function writeTemp(layout: OciLayout, kind: string, data: Buffer): Promise<string> {
  await mkdir(layout.tmpDir, { recursive: true });
  const tmp = layout.tempPath(kind);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  return tmp;
}

/** Replaces `file` with `data` atomically: temp file in the layout, fsync, rename, fsync the directory. */
async function writeFileAtomic(layout: OciLayout, file: string, data: Buffer): Promise<void> {
  const tmp = await writeTemp(layout, path.basename(file), data);
  try {
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Creates `file` with `content` unless it exists, atomically: a hard link of a complete temp file either appears
 * whole or fails with EEXIST, so two processes creating the layout at once never see or overwrite a partial file
 * (a rename would clobber an index.json another process already updated). Filesystems without hard links fall back
 * to O_EXCL create.
 */
async function createIfMissing(layout: OciLayout, file: string, content: string): Promise<void> {
  if (await stat(file).then(() => true, () => false)) return;
  const tmp = await writeTemp(layout, `init-${path.basename(file)}`, Buffer.from(content));
  try {
    await link(tmp, file);
    await fsyncDir(path.dirname(file));
  } catch (e) {
    if (isErrno(e, 'EEXIST')) return;
    if (!isErrno(e, 'EPERM') && !isErrno(e, 'ENOTSUP') && !isErrno(e, 'EOPNOTSUPP') && !isErrno(e, 'ENOSYS')) throw e;
    try {
      const fh = await open(file, 'wx', 0o644);
      try { await fh.writeFile(content); await fh.sync(); } finally { await fh.close(); }
    } catch (e2) {
      if (!isErrno(e2, 'EEXIST')) throw e2;
    }
  } finally {
    await unlink(tmp).catch(() => {});
  }
}
