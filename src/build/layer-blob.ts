/**
 * A layer tar into the store in one streaming pass: the tar is hashed (diffID) and its entries counted as it goes
 * by, compressed, and the compressed bytes hashed and written to the layout's `.tmp/`, then renamed into blobs/
 * under the digest just computed. Nothing is held in memory but a chunk at a time.
 *
 * Deterministic: the same tar always gives the same blob. gzip from zlib has no timestamp or name in its header and
 * its output does not depend on how the input is cut into chunks (checked in the tests). zstd's does in one case: a
 * frame whose first and only input call also ends it gets the content size in its header, so the compressor is
 * always ended on an empty call, after every data chunk has been taken in.
 */
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { PassThrough, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HoistError } from '../errors.ts';
import { compressStream } from '../layer/compression.ts';
import { parsePaxRecords } from '../layer/xattrs.ts';
import { Digester } from '../oci/digest.ts';
import { DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_LAYER_ZSTD, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../oci/mediatype.ts';
import type { Descriptor } from '../oci/types.ts';
import type { Lease } from '../store/lease.ts';
import type { OciLayout } from '../store/layout.ts';

export interface StoredLayer {
  /** mediaType OCI tar+gzip / tar+zstd (Docker's tar.gzip / tar.zstd with format 'docker'), digest and size of the blob. */
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffID: string;
  /** Tar entries seen (pax and GNU long-name headers are part of the entry they precede): 0 = an empty layer. */
  entries: number;
  uncompressedSize: number;
}

export interface StoreLayerOptions {
  /** 'none': the tar as it is (a layer only this build reads back: no compressor, one hash). */
  compression?: 'gzip' | 'zstd' | 'none';
  /** gzip 0–9 (default 6), zstd 1–22 (default 3). */
  level?: number;
  format?: 'oci' | 'docker';
  /** Protects the new blob (or the existing one it turns out to be) from a concurrent prune until the caller tags it. */
  lease?: Lease;
}

export async function storeLayer(layout: OciLayout, tar: Readable, opts: StoreLayerOptions = {}): Promise<StoredLayer> {
  const compression = opts.compression ?? 'gzip';
  const plain = compression === 'none';
  let z: Transform;
  try {
    if (compression !== 'none') checkLevel(compression, opts.level);
    z = compression === 'none' ? new PassThrough() : compressStream(compression, opts.level);
  } catch (e) {
    tar.destroy();
    throw e;
  }
  const docker = opts.format === 'docker';
  const mediaType = plain ? (docker ? DOCKER_LAYER : OCI_LAYER)
    : compression === 'zstd' ? (docker ? DOCKER_LAYER_ZSTD : OCI_LAYER_ZSTD) : (docker ? DOCKER_LAYER_GZIP : OCI_LAYER_GZIP);

  const diff = new Digester();
  const counter = new TarHeaderWalker();
  const blob = new Digester();
  await mkdir(layout.tmpDir, { recursive: true });
  const tmp = layout.tempPath('layer');
  let fh: FileHandle;
  try {
    fh = await open(tmp, 'wx', 0o644);
  } catch (e) {
    tar.destroy();
    throw e;
  }
  let written = false;
  try {
    const feeding = feed(tar, z, (chunk) => {
      counter.update(chunk);
      diff.update(chunk);
    }, () => counter.end());
    const draining = pipeline(z, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        if (!plain) blob.update(chunk); // uncompressed, the blob is the tar: its digest is the diffID
        await writeAll(fh, chunk);
      }
    });
    // Both settle either way: a failed feed destroys z with its error, which fails the drain with it too; a failed
    // write fails the drain first and the feed only with a secondary error. So the drain's error is the one to tell.
    const [f, d] = await Promise.allSettled([feeding, draining]);
    if (d.status === 'rejected') throw d.reason;
    if (f.status === 'rejected') throw f.reason;
    await fh.sync();
    written = true;
  } finally {
    await fh.close().catch(() => {});
    if (!written) await rm(tmp, { force: true });
  }
  const diffID = diff.digest();
  const digest = plain ? diffID : blob.digest();
  await layout.adoptTempBlob(tmp, digest, opts.lease);
  return {
    descriptor: { mediaType, digest, size: plain ? diff.size : blob.size },
    diffID,
    entries: counter.entries,
    uncompressedSize: diff.size,
  };
}

/**
 * Writes `src` into the compressor with backpressure, and ends it only once every chunk written has been taken in
 * (the last write's callback), so the end never comes with data (see the module comment).
 */
async function feed(src: Readable, z: Transform, onChunk: (b: Buffer) => void, onEnd: () => void): Promise<void> {
  try {
    let last: Promise<void> = Promise.resolve();
    // Small chunks (a tar writer's 512-byte headers, a small file's bytes) are gathered before they go to the
    // compressor: zlib runs every write as its own thread-pool job, one after the other, and thousands of tiny
    // jobs leave both threads mostly waiting on each other (seconds for a layer of many small files).
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      last = new Promise<void>((resolve, reject) => {
        z.write(chunk, (e) => (e ? reject(e) : resolve()));
      });
      last.catch(() => {}); // awaited below or superseded; a failure also destroys z
      if (z.writableNeedDrain) await waitDrain(z);
    };
    for await (const c of src) {
      const chunk = Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
      if (chunk.length === 0) continue;
      // The output side failed (disk full): stop reading the source now rather than at its end.
      if (z.destroyed) throw z.errored ?? new Error('compressor closed');
      onChunk(chunk);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= FEED_CHUNK) await flush();
    }
    await flush();
    onEnd();
    await last;
    z.end();
  } catch (e) {
    src.destroy();
    z.destroy(e as Error);
    throw e;
  }
}

function waitDrain(z: Transform): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      z.off('drain', done);
      z.off('close', closed);
      resolve();
    };
    const closed = (): void => {
      z.off('drain', done);
      reject(z.errored ?? new Error('compressor closed'));
    };
    z.on('drain', done);
    z.on('close', closed);
  });
}

function checkLevel(compression: 'gzip' | 'zstd', level: number | undefined): void {
  if (level === undefined) return;
  const [lo, hi] = compression === 'gzip' ? [0, 9] : [1, 22];
  if (!Number.isInteger(level) || level < lo || level > hi) {
    throw new HoistError('BAD_FLAG', `compression level ${level} is out of range for ${compression}; use ${lo}-${hi}`, { exitCode: 2 });
  }
}

async function writeAll(fh: FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

/** What feed() gathers before a write to the compressor. */
const FEED_CHUNK = 256 * 1024;

const BLOCK = 512;
/** Go's archive/tar limit on a pax or GNU long-name header body. */
const MAX_SPECIAL = 1 << 20;
/** Typeflags that describe the next entry rather than being one: pax (x, g) and GNU long name/link (L, K). */
const META_TYPES = new Set(['x', 'g', 'L', 'K']);
/** Typeflags that never carry data whatever their size field says (Go's isHeaderOnlyType). */
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

/**
 * Counts the entries of a tar as its bytes go by, without parsing more than the headers: a 512-byte header, then
 * `size` bytes rounded up to 512, and so on until a zero block. A pax header's `size` record overrides the next
 * header's size (how files over 8 GiB are written). Checksums are verified: a tar producer bug must not count junk.
 * Exported for tests.
 */
export class TarHeaderWalker {
  entries = 0;
  readonly #header = Buffer.alloc(BLOCK);
  #have = 0;
  /** Bytes of body and padding still to pass over. */
  #skip = 0;
  /** The body of a pax header being collected (only its `size` record matters here). */
  #pax: Buffer[] | undefined;
  #paxLeft = 0;
  #nextSize: number | undefined;
  #offset = 0;
  #ended = false;

  update(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && !this.#ended) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        if (this.#pax !== undefined && this.#paxLeft > 0) {
          const m = Math.min(n, this.#paxLeft);
          this.#pax.push(chunk.subarray(i, i + m));
          this.#paxLeft -= m;
        }
        this.#skip -= n;
        i += n;
        this.#offset += n;
        if (this.#pax !== undefined && this.#paxLeft === 0) this.#paxDone();
        continue;
      }
      const n = Math.min(BLOCK - this.#have, chunk.length - i);
      chunk.copy(this.#header, this.#have, i, i + n);
      this.#have += n;
      i += n;
      if (this.#have === BLOCK) {
        this.#have = 0;
        this.#onHeader();
        this.#offset += BLOCK;
      }
    }
  }

  /** The tar ended: fails when it stopped inside an entry. */
  end(): void {
    if (this.#ended) return;
    if (this.#have !== 0 || this.#skip !== 0) {
      throw new HoistError('BAD_LAYER', `layer tar is truncated at byte ${this.#offset + this.#have}; the layer writer stopped early`);
    }
  }

  #onHeader(): void {
    const h = this.#header;
    if (h.every((b) => b === 0)) {
      // End of archive (Go's reader also stops at the first zero block): the rest is padding.
      this.#ended = true;
      return;
    }
    if (!checksumOk(h)) {
      throw new HoistError('BAD_LAYER', `layer tar has a bad header checksum at byte ${this.#offset}; the layer writer produced a corrupt tar`);
    }
    const type = String.fromCharCode(h[156]!);
    let size = numeric(h, 124, 12);
    if (META_TYPES.has(type)) {
      if (size > MAX_SPECIAL) {
        throw new HoistError('BAD_LAYER', `layer tar has a ${size}-byte extended header at byte ${this.#offset}; over the 1 MiB limit`);
      }
      if (type === 'x') {
        this.#pax = [];
        this.#paxLeft = size;
        if (size === 0) this.#paxDone();
      }
    } else {
      this.entries++;
      if (this.#nextSize !== undefined) size = this.#nextSize;
      this.#nextSize = undefined;
      if (HEADER_ONLY.has(type)) size = 0;
    }
    this.#skip = Math.ceil(size / BLOCK) * BLOCK;
  }

  #paxDone(): void {
    const body = Buffer.concat(this.#pax ?? []);
    this.#pax = undefined;
    for (const [k, v] of parsePaxRecords(body)) {
      if (k !== 'size') continue;
      const s = v.toString('latin1');
      if (/^\d+$/.test(s) && Number.isSafeInteger(Number(s))) this.#nextSize = Number(s);
    }
  }
}

/** A numeric header field: octal text, or base-256 when the top bit of the first byte is set (GNU/star). */
function numeric(h: Buffer, off: number, len: number): number {
  if ((h[off]! & 0x80) !== 0) {
    let n = h[off]! & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + h[off + i]!;
    return n;
  }
  const digits = /^[ \0]*([0-7]*)/.exec(h.toString('latin1', off, off + len))![1]!;
  return digits === '' ? 0 : parseInt(digits, 8);
}

/** The header checksum: the byte sum with the checksum field read as spaces (unsigned, or signed as old tars did). */
function checksumOk(h: Buffer): boolean {
  const stored = numeric(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += b;
    signed += b >= 0x80 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}
