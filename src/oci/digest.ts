/**
 * Content digests (OCI image-spec "Digests"): `algorithm:hex`, sha256 and sha512.
 * Verification is streaming: bytes are hashed as they pass, never buffered whole.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { HoistError } from '../errors.ts';

export type Algorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  algorithm: Algorithm;
  hex: string;
}

/** Parses and validates `sha256:<64 hex>` / `sha512:<128 hex>`. `what` names the field for the error. */
export function parseDigest(digest: string, what = 'digest'): ParsedDigest {
  const i = digest.indexOf(':');
  const alg = digest.slice(0, i);
  const hex = digest.slice(i + 1);
  if (i <= 0) {
    throw new HoistError('BAD_DIGEST', `${what}: "${digest}" is not a digest; expected sha256:<64 hex digits>`);
  }
  if (alg !== 'sha256' && alg !== 'sha512') {
    throw new HoistError('BAD_DIGEST', `${what}: unsupported digest algorithm "${alg}" in "${digest}"; hoist supports sha256 and sha512`);
  }
  if (hex.length !== HEX_LENGTH[alg] || !/^[0-9a-f]+$/.test(hex)) {
    throw new HoistError('BAD_DIGEST', `${what}: "${digest}" is malformed; ${alg} needs ${HEX_LENGTH[alg]} lowercase hex digits`);
  }
  return { algorithm: alg, hex };
}

export function isDigest(s: string): boolean {
  return /^sha256:[0-9a-f]{64}$/.test(s) || /^sha512:[0-9a-f]{128}$/.test(s);
}

export function digestBytes(data: Uint8Array | string, algorithm: Algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Incremental hasher for building a digest while bytes flow elsewhere. */
export class Digester {
  readonly algorithm: Algorithm;
  #hash: Hash;
  #size = 0;

  constructor(algorithm: Algorithm = 'sha256') {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
  }

  get size(): number {
    return this.#size;
  }

  digest(): string {
    return `${this.algorithm}:${this.#hash.digest('hex')}`;
  }
}

export class DigestMismatchError extends HoistError {
  readonly expected: string;
  readonly actual: string;
  constructor(where: string, expected: string, actual: string) {
    super('DIGEST_MISMATCH', `${where}: content does not match its digest (expected ${expected}, got ${actual}); the source is corrupt or was tampered with`);
    this.expected = expected;
    this.actual = actual;
  }
}

export class SizeMismatchError extends HoistError {
  constructor(where: string, expected: number, actual: number) {
    super('SIZE_MISMATCH', `${where}: expected ${expected} bytes, got ${actual}${actual < expected ? ' (truncated)' : ''}; the source is corrupt or was cut short`);
  }
}

/**
 * A pass-through stream that hashes what flows through and fails at the end (before 'finish'/'end')
 * if the digest or, when given, the size differs. Also fails early as soon as more than `size` bytes arrive.
 * `where` names the blob for the error message.
 */
export function verifyStream(expected: string, size: number | undefined, where: string): Transform {
  const { algorithm } = parseDigest(expected);
  const d = new Digester(algorithm);
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      d.update(chunk);
      if (size !== undefined && size >= 0 && d.size > size) {
        cb(new SizeMismatchError(where, size, d.size));
        return;
      }
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (size !== undefined && size >= 0 && d.size !== size) {
        cb(new SizeMismatchError(where, size, d.size));
        return;
      }
      const actual = d.digest();
      if (actual !== expected) {
        cb(new DigestMismatchError(where, expected, actual));
        return;
      }
      cb();
    },
  });
}

/** Checks bytes already in memory (manifests, configs). */
export function verifyBytes(data: Uint8Array, expected: string, where: string, size?: number): void {
  if (size !== undefined && data.length !== size) throw new SizeMismatchError(where, size, data.length);
  const actual = digestBytes(data, parseDigest(expected).algorithm);
  if (actual !== expected) throw new DigestMismatchError(where, expected, actual);
}

/** `sha256:abc…` → `sha256-abc…` (the tag form used by signature and referrers fallbacks). */
export function digestToTag(digest: string): string {
  return digest.replace(':', '-');
}
