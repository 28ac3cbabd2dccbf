/**
 * Layer compression: detection by magic bytes, and streaming (de)compressors.
 * Media types can lie (docker-archive layers are often gzip named `.tar`, some registries serve zstd as gzip),
 * so readers that need the tar underneath sniff the first bytes instead of trusting the type.
 */
import { Duplex, PassThrough, type Transform } from 'node:stream';
import { constants, createGunzip, createGzip, createZstdCompress, createZstdDecompress } from 'node:zlib';
import { HoistError } from '../errors.ts';

export type DetectedCompression = 'gzip' | 'zstd' | 'bzip2' | 'xz' | 'none';

const MAGIC: ReadonlyArray<[DetectedCompression, readonly number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['bzip2', [0x42, 0x5a, 0x68]], // "BZh"
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
];

/** Bytes needed to tell every supported format apart. */
export const MAGIC_LENGTH = 6;

/** The compression of a stream, judged by its first bytes (at least MAGIC_LENGTH of them unless the stream is shorter). */
export function detectCompression(firstBytes: Uint8Array): DetectedCompression {
  for (const [kind, magic] of MAGIC) {
    if (firstBytes.length >= magic.length && magic.every((b, i) => firstBytes[i] === b)) return kind;
  }
  return 'none';
}

function unsupported(kind: DetectedCompression, where: string | undefined, doing: string): HoistError {
  return new HoistError('UNSUPPORTED_COMPRESSION',
    `${where ? `${where}: ` : ''}${kind} ${doing} is not supported; recompress the layer with gzip or zstd`);
}

/** A decompressor for `kind` ('none' passes bytes through). bzip2 and xz throw UNSUPPORTED_COMPRESSION. */
export function decompressStream(kind: DetectedCompression, where?: string): Transform {
  switch (kind) {
    case 'gzip': return createGunzip();
    case 'zstd': return createZstdDecompress();
    case 'none': return new PassThrough();
    default: throw unsupported(kind, where, 'decompression');
  }
}

/** A compressor for `kind` ('none' passes bytes through). `level`: gzip 0–9 (default 6), zstd 1–22 (default 3). */
export function compressStream(kind: DetectedCompression, level?: number): Transform {
  switch (kind) {
    case 'gzip': return createGzip(level === undefined ? {} : { level });
    case 'zstd': return createZstdCompress(level === undefined ? {} : { params: { [constants.ZSTD_c_compressionLevel]: level } });
    case 'none': return new PassThrough();
    default: throw unsupported(kind, undefined, 'compression');
  }
}

/**
 * A stream that takes possibly compressed bytes and gives the uncompressed ones: it holds back the first few
 * bytes to detect the format, then feeds everything through the matching decompressor (or straight through).
 * Decoder errors (truncated or corrupt data) surface as HoistError BAD_COMPRESSION naming `where`.
 */
export function autoDecompress(where = 'layer'): Duplex {
  return new AutoDecompress(where);
}

class AutoDecompress extends Duplex {
  readonly #where: string;
  #head: Buffer[] = [];
  #headLength = 0;
  #inner: Transform | undefined;
  /** The detected format, once known. */
  compression: DetectedCompression | undefined;

  constructor(where: string) {
    super();
    this.#where = where;
  }

  #start(): Transform {
    const head = Buffer.concat(this.#head);
    this.#head = [];
    const kind = detectCompression(head);
    this.compression = kind;
    const inner = decompressStream(kind, this.#where);
    inner.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (e: Error) => {
      this.destroy(e instanceof HoistError ? e : new HoistError('BAD_COMPRESSION',
        `${this.#where}: ${kind} data is corrupt or truncated (${e.message}); the source is damaged or was cut short`, { cause: e }));
    });
    this.#inner = inner;
    if (head.length > 0) inner.write(head);
    return inner;
  }

  #write(inner: Transform, chunk: Buffer, cb: (e?: Error | null) => void): void {
    if (inner.write(chunk)) cb();
    else inner.once('drain', () => cb());
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.#inner !== undefined) {
      this.#write(this.#inner, chunk, cb);
      return;
    }
    this.#head.push(chunk);
    this.#headLength += chunk.length;
    if (this.#headLength < MAGIC_LENGTH) {
      cb();
      return;
    }
    try {
      const inner = this.#start();
      if (inner.writableNeedDrain) inner.once('drain', () => cb());
      else cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _final(cb: (e?: Error | null) => void): void {
    try {
      const inner = this.#inner ?? this.#start();
      inner.end(() => cb());
    } catch (e) {
      cb(e as Error);
    }
  }

  override _read(): void {
    this.#inner?.resume();
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.#inner?.destroy();
    cb(err);
  }
}
