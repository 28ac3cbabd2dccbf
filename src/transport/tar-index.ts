/**
 * Random access to the files inside an uncompressed tar, without extracting it.
 *
 * One pass with tar-stream records where each entry's data starts and how long it is; after that any file is a
 * plain ranged read of the archive (fs.createReadStream with start/end), so an N-gigabyte `docker save` output or
 * oci-archive is read once to index and then only the blobs a copy needs are read again. skopeo extracts the whole
 * archive to a temp dir instead; this costs no extra disk.
 *
 * A compressed archive (docker load accepts `docker save | gzip`) is decompressed once to a temp file first.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';
import { HoistError, isErrno } from '../errors.ts';
import { detectCompression, decompressStream, MAGIC_LENGTH } from '../layer/compression.ts';
import { readAll } from '../util/stream.ts';

export type TarEntryType = Header['type'];

export interface TarEntry {
  /** Normalized path: no leading `./` or `/`, no trailing `/`. */
  name: string;
  type: TarEntryType;
  /** Byte offset of the entry's data in the (uncompressed) archive. */
  offset: number;
  size: number;
  /** Target of a symlink or hardlink, as written in the archive. */
  linkname?: string;
}

/** `./a//b/` → `a/b`; `..` cannot climb above the archive root. */
export function normalizeTarPath(name: string): string {
  const n = path.posix.normalize(`/${name}`).slice(1);
  return n.endsWith('/') ? n.slice(0, -1) : n;
}

const MAX_LINK_HOPS = 40;

export class TarIndex {
  /** The archive as the user named it (for messages). */
  readonly archive: string;
  /** The uncompressed tar that offsets refer to: the archive itself, or a temp copy when it was compressed. */
  readonly file: string;
  /** How the archive is named in messages: `docker-archive:/tmp/x.tar`. */
  readonly where: string;
  readonly #entries: Map<string, TarEntry>;
  readonly #tempDir: string | undefined;

  private constructor(archive: string, file: string, where: string, entries: Map<string, TarEntry>, tempDir: string | undefined) {
    this.archive = archive;
    this.file = file;
    this.where = where;
    this.#entries = entries;
    this.#tempDir = tempDir;
  }

  /**
   * Indexes `archive`. Fails with one HoistError line naming `where` when the file is missing, is not a tar,
   * or is truncated.
   */
  static async open(archive: string, where: string): Promise<TarIndex> {
    const head = await readHead(archive, where);
    const compression = detectCompression(head);
    if (compression === 'bzip2' || compression === 'xz') {
      throw new HoistError('UNSUPPORTED', `${where}: the archive is ${compression}-compressed, which hoist cannot read; decompress it first (or use gzip or zstd)`);
    }
    let file = archive;
    let tempDir: string | undefined;
    if (compression !== 'none') {
      tempDir = await mkdtemp(path.join(tmpdir(), 'hoist-archive-'));
      file = path.join(tempDir, 'archive.tar');
      try {
        await pipeline(
          createReadStream(archive),
          decompressStream(compression, where),
          createWriteStream(file),
        );
      } catch (e) {
        await rm(tempDir, { recursive: true, force: true });
        if (isErrno(e, 'ENOSPC')) {
          throw new HoistError('NO_SPACE', `${where}: no space left in ${tmpdir()} to decompress the archive; point TMPDIR at a larger disk or decompress it yourself`, { cause: e });
        }
        throw new HoistError('BAD_ARCHIVE', `${where}: the ${compression}-compressed archive is corrupt or truncated (${(e as Error).message}); recreate it`, { cause: e });
      }
    }
    try {
      const entries = await indexTar(file, where);
      return new TarIndex(archive, file, where, entries, tempDir);
    } catch (e) {
      if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
      throw e;
    }
  }

  /** Every entry; a name that appears twice counts once, with its last data (as extracting would leave it). */
  entries(): TarEntry[] {
    return [...this.#entries.values()];
  }

  /** The entry at `name` with symlinks and hardlinks followed; undefined when there is none. */
  resolve(name: string): TarEntry | undefined {
    let current = normalizeTarPath(name);
    for (let hop = 0; hop <= MAX_LINK_HOPS; hop++) {
      const e = this.#entries.get(current);
      if (e === undefined) return undefined;
      if (e.type === 'symlink') {
        const target = e.linkname ?? '';
        current = target.startsWith('/') ? normalizeTarPath(target) : normalizeTarPath(path.posix.join(path.posix.dirname(e.name), target));
      } else if (e.type === 'link') {
        current = normalizeTarPath(e.linkname ?? '');
      } else {
        return e;
      }
    }
    throw new HoistError('BAD_ARCHIVE', `${this.where}: "${name}" is a link loop inside the archive; the archive is corrupt`);
  }

  /** True when `name` resolves to a regular file. */
  has(name: string): boolean {
    const e = this.resolve(name);
    return e !== undefined && isRegular(e);
  }

  /** The resolved regular file at `name`; NOT_FOUND naming the archive when missing. */
  regularFile(name: string): TarEntry {
    const e = this.resolve(name);
    if (e === undefined || !isRegular(e)) {
      throw new HoistError('NOT_FOUND', `${this.where}: "${name}" is missing from the archive; the archive is incomplete or not of this format`);
    }
    return e;
  }

  /** The data of file `name` as a stream (a ranged read of the archive). */
  openEntry(name: string): Readable {
    const e = this.regularFile(name);
    if (e.size === 0) return Readable.from([]);
    return createReadStream(this.file, { start: e.offset, end: e.offset + e.size - 1 });
  }

  /** A small file (JSON) read whole; `limit` guards against a hostile archive. */
  async readEntry(name: string, limit = 16 * 1024 * 1024): Promise<Buffer> {
    const e = this.regularFile(name);
    if (e.size > limit) {
      throw new HoistError('BAD_ARCHIVE', `${this.where}: "${name}" is ${e.size} bytes, more than the ${limit} a metadata file may have; the archive is corrupt`);
    }
    return readAll(this.openEntry(name), limit);
  }

  /** Removes the temp copy of a compressed archive. */
  async close(): Promise<void> {
    if (this.#tempDir !== undefined) await rm(this.#tempDir, { recursive: true, force: true });
  }
}

function isRegular(e: TarEntry): boolean {
  return e.type === 'file' || e.type === 'contiguous-file';
}

async function readHead(file: string, where: string): Promise<Buffer> {
  let st;
  try {
    st = await stat(file);
  } catch (e) {
    if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) {
      throw new HoistError('NOT_FOUND', `${where}: no such file; check the path`, { cause: e });
    }
    if (isErrno(e, 'EACCES')) throw new HoistError('PERMISSION', `${where}: permission denied reading the archive`, { cause: e });
    throw e;
  }
  if (st.isDirectory()) {
    throw new HoistError('BAD_ARCHIVE', `${where}: is a directory, not a tar archive; for an image layout directory use oci:`);
  }
  if (st.size === 0) throw new HoistError('BAD_ARCHIVE', `${where}: the file is empty, not a tar archive`);
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(MAGIC_LENGTH, st.size));
    await fh.read(buf, 0, buf.length, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

/** One pass over the tar: name → where its data lives. */
async function indexTar(file: string, where: string): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  const ex = tarExtract();
  let nextHeaderAt = 0;
  ex.on('entry', (header, stream, next) => {
    // `stream.offset` is where this entry's own 512-byte header starts (past any pax / GNU long-name records),
    // so its data starts one block later.
    const offset = stream.offset + 512;
    const size = header.size;
    const type = header.type;
    const name = normalizeTarPath(header.name);
    if (name !== '') {
      const e: TarEntry = { name, type, offset, size };
      if (header.linkname) e.linkname = header.linkname;
      entries.delete(name);
      entries.set(name, e);
    }
    nextHeaderAt = offset + Math.ceil(size / 512) * 512;
    // The extractor's own error (truncation) is what the pipeline reports; the entry stream repeats it.
    stream.on('error', () => {});
    stream.on('end', () => next());
    stream.resume();
  });
  try {
    await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), ex);
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/unexpected end of data/i.test(msg)) {
      throw new HoistError('BAD_ARCHIVE', `${where}: the tar archive is truncated (ends inside an entry after byte ${nextHeaderAt}); recreate it`, { cause: e });
    }
    if (/invalid tar header|unknown format|header exceeds|invalid header/i.test(msg)) {
      const what = nextHeaderAt === 0 ? 'not a tar archive' : 'the tar archive is corrupt';
      throw new HoistError('BAD_ARCHIVE', `${where}: ${what} (bad header at byte ${nextHeaderAt}); pass a file made by skopeo copy, docker save or hoist copy`, { cause: e });
    }
    throw new HoistError('BAD_ARCHIVE', `${where}: cannot read the tar archive: ${msg}`, { cause: e });
  }
  return entries;
}
