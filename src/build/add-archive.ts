/**
 * `ADD archive.tar[.gz|.bz2|.xz|.zst] /dest/`: a LOCAL tar archive is extracted into the destination instead of
 * being copied, as BuildKit's file op does (solver/llbsolver/file/unpack.go):
 * - only a top-level match that is a regular file is considered, and only when it is a tar after optional
 *   gzip/bzip2/xz/zstd compression (its first tar header must read: BuildKit's `tar.NewReader(...).Next()`);
 *   file names do not matter;
 * - remote (URL) sources are never extracted (add-url.ts);
 * - the extraction itself (paths, ownership, links) is planned by copy-layer.ts from the index made here.
 *
 * How: a compressed archive is decompressed once into a temp file (gzip and zstd with node:zlib; bzip2 and xz by
 * running `bzip2 -dc` / `xz -dc`, Node has no decoder for them), then one pass with tar-stream records every
 * entry's header and where its data starts, so the layer writer can later read each file's bytes by offset, in
 * whatever order the layer needs them. Nothing is held in memory beyond the headers.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract } from 'tar-stream';
import { HoistError, isErrno } from '../errors.ts';
import { decompressStream, detectCompression, MAGIC_LENGTH, type DetectedCompression } from '../layer/compression.ts';
import type { SourceMatch } from './source.ts';

export interface ArchiveEntry {
  /** The path as written in the archive (pax/GNU long names applied); copy-layer cleans and contains it. */
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'link';
  /** st_mode & 0o7777 from the header. */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** Bytes of a file; 0 otherwise. */
  size: number;
  /** A symlink's target, or the archive path a hard link points to. */
  linkname?: string;
  /** Where a file's bytes start in `ArchiveReader.file`. */
  offset: number;
}

export interface ArchiveReader {
  /** How the archive is named in messages. */
  where: string;
  /** The uncompressed tar the offsets refer to. */
  file: string;
  /** Every entry, in archive order (later entries override earlier ones, as extraction does). */
  entries: ArchiveEntry[];
  /** The bytes of a file entry. */
  open(e: Pick<ArchiveEntry, 'offset' | 'size'>): Readable;
  /** Removes the temp copy of a compressed archive. */
  close(): Promise<void>;
}

/** A COPY source match that is a local archive to extract (made by expandArchives). */
export interface ArchiveMatch extends SourceMatch {
  archive: {
    /** The archive file on this machine. */
    path: string;
    /** Where a decompressed copy may go (created when needed); default the OS temp dir. */
    tmpDir?: string;
  };
}

export function isArchiveMatch(m: SourceMatch): m is ArchiveMatch {
  return typeof (m as Partial<ArchiveMatch>).archive === 'object';
}

/**
 * ADD's archive detection for the matches of one source word: each match that is a single regular file with
 * bytes on disk and reads as a (compressed) tar becomes an ArchiveMatch; everything else is returned as is.
 */
export async function expandArchives(matches: SourceMatch[], tmpDir?: string): Promise<SourceMatch[]> {
  const out: SourceMatch[] = [];
  for (const m of matches) {
    const e = m.entries[0];
    if (m.entries.length === 1 && e !== undefined && e.type === 'file' && e.abs !== undefined && (await isArchive(e.abs))) {
      const am: ArchiveMatch = { ...m, archive: { path: e.abs, ...(tmpDir !== undefined ? { tmpDir } : {}) } };
      out.push(am);
    } else {
      out.push(m);
    }
  }
  return out;
}

/**
 * True when `abs` is a regular file holding a tar archive, optionally gzip/bzip2/xz/zstd-compressed: its first
 * 512-byte header (after decompression) has a valid checksum, as Go's tar reader requires. A compressed file that
 * does not decompress is not an archive. Throws only when bzip2 or xz is needed and not installed (as BuildKit).
 */
export async function isArchive(abs: string): Promise<boolean> {
  try {
    const st = await stat(abs);
    if (!st.isFile()) return false;
  } catch {
    return false;
  }
  const kind = detectCompression(await readFileHead(abs, MAGIC_LENGTH));
  let head: Buffer;
  try {
    head = await readStreamHead(decompressed(kind, abs, abs), 512);
  } catch (e) {
    if (e instanceof HoistError && e.code === 'MISSING_PROGRAM') throw e;
    return false;
  }
  return validTarHeader(head);
}

/** Indexes `abs` (decompressing it to a temp file under `tmpDir` first when compressed). */
export async function openArchive(abs: string, tmpDir?: string, where = abs): Promise<ArchiveReader> {
  const kind = detectCompression(await readFileHead(abs, MAGIC_LENGTH));
  let file = abs;
  let temp: string | undefined;
  if (kind !== 'none') {
    const base = tmpDir ?? os.tmpdir();
    await mkdir(base, { recursive: true });
    temp = await mkdtemp(path.join(base, 'hoist-add-'));
    file = path.join(temp, 'archive.tar');
    try {
      await pipeline(decompressed(kind, abs, where), createWriteStream(file));
    } catch (e) {
      await rm(temp, { recursive: true, force: true });
      if (e instanceof HoistError) throw e;
      if (isErrno(e, 'ENOSPC')) throw new HoistError('NO_SPACE', `ADD ${where}: no space left in ${base} to decompress the archive; free some space`, { cause: e });
      throw new HoistError('BAD_ARCHIVE', `ADD ${where}: the ${kind}-compressed archive is corrupt or truncated (${(e as Error).message}); recreate it`, { cause: e });
    }
  }
  const tempDir = temp;
  try {
    const entries = await indexTar(file, where);
    return {
      where,
      file,
      entries,
      open: (e) => (e.size === 0 ? Readable.from([]) : createReadStream(file, { start: e.offset, end: e.offset + e.size - 1 })),
      close: async () => {
        if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
    throw e;
  }
}

async function readFileHead(abs: string, n: number): Promise<Buffer> {
  const fh = await open(abs, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The first `n` bytes of a stream (fewer if it is shorter); the stream is destroyed afterwards. */
async function readStreamHead(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  try {
    for await (const c of stream) {
      chunks.push(c as Buffer);
      got += (c as Buffer).length;
      if (got >= n) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** The uncompressed bytes of `abs`. */
function decompressed(kind: DetectedCompression, abs: string, where: string): Readable {
  if (kind === 'bzip2' || kind === 'xz') return external(kind, abs, where);
  const src = createReadStream(abs);
  const d = decompressStream(kind, where);
  src.on('error', (e) => d.destroy(e));
  // A reader that stops early (isArchive) destroys the decompressor: close the file with it.
  d.on('close', () => src.destroy());
  return src.pipe(d);
}

/** `bzip2 -dc FILE` / `xz -dc FILE` as a stream; a missing program or a failed run destroys it with one line. */
function external(prog: 'bzip2' | 'xz', abs: string, where: string): Readable {
  const out = new PassThrough();
  const child = spawn(prog, ['-dc', '--', abs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let done = false;
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 2048) stderr += d.toString();
  });
  child.stdout.pipe(out, { end: false });
  child.on('error', (e) => {
    done = true;
    out.destroy(isErrno(e, 'ENOENT')
      ? new HoistError('MISSING_PROGRAM', `ADD ${where}: the archive is ${prog}-compressed and the ${prog} program is not installed; install ${prog} or recompress the archive with gzip or zstd`)
      : new HoistError('BAD_ARCHIVE', `ADD ${where}: cannot run ${prog} (${e.message})`, { cause: e }));
  });
  child.on('close', (code, signal) => {
    if (done) return;
    done = true;
    if (code === 0) out.end();
    else if (!out.destroyed) {
      const why = stderr.trim().split('\n')[0] || (signal ? `killed by ${signal}` : `exit status ${code}`);
      out.destroy(new HoistError('BAD_ARCHIVE', `ADD ${where}: ${prog} could not decompress the archive (${why}); it is corrupt or truncated`));
    }
  });
  // A reader that stops early (isArchive reads one header) ends the child too.
  out.on('close', () => {
    if (!done) child.kill();
  });
  return out;
}

/** Go's archive/tar header check: the checksum field (octal, space/NUL padded) equals the unsigned or signed sum. */
export function validTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '');
  if (!/^[0-7]*$/.test(field)) return false;
  const want = field === '' ? 0 : parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b >= 128 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

async function indexTar(file: string, where: string): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = [];
  // allowUnknownFormat: Go's reader takes old V7 headers (no ustar magic) too.
  const ex = tarExtract({ allowUnknownFormat: true } as Parameters<typeof tarExtract>[0]);
  let failure: HoistError | undefined;
  ex.on('entry', (h, stream, next) => {
    stream.on('error', () => {});
    stream.on('end', () => next());
    stream.resume();
    if (failure) return;
    const raw = h.type as string | null;
    if (raw === 'pax-global-header' || raw === 'pax-header') return;
    const type = raw === 'contiguous-file' ? 'file' : h.type;
    if (type !== 'file' && type !== 'directory' && type !== 'symlink' && type !== 'link') {
      failure = new HoistError('UNSUPPORTED', `ADD ${where}: archive entry "${h.name}" is a ${type ?? 'special file'}, which ADD cannot extract (as BuildKit); remove it from the archive`);
      return;
    }
    const pax = (h.pax ?? {}) as Record<string, string>;
    const paxNum = (k: string): number | undefined => {
      const v = pax[k];
      return v !== undefined && /^\d+(\.\d+)?$/.test(v) ? Number(v) : undefined;
    };
    const mtimeS = paxNum('mtime');
    const e: ArchiveEntry = {
      name: h.name,
      type,
      mode: (h.mode ?? 0) & 0o7777,
      uid: paxNum('uid') ?? h.uid ?? 0,
      gid: paxNum('gid') ?? h.gid ?? 0,
      mtimeMs: mtimeS !== undefined ? mtimeS * 1000 : (h.mtime?.getTime() ?? 0),
      size: type === 'file' ? h.size ?? 0 : 0,
      // `stream.offset` is where this entry's own 512-byte header starts (after any pax / GNU long-name records).
      offset: (stream as unknown as { offset: number }).offset + 512,
    };
    if (h.linkname) e.linkname = h.linkname;
    entries.push(e);
  });
  try {
    await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), ex);
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/unexpected end of data/i.test(msg)) {
      throw new HoistError('BAD_ARCHIVE', `ADD ${where}: the tar archive is truncated; recreate it`, { cause: e });
    }
    throw new HoistError('BAD_ARCHIVE', `ADD ${where}: cannot read the tar archive (${msg}); recreate it`, { cause: e });
  }
  if (failure) throw failure;
  return entries;
}
