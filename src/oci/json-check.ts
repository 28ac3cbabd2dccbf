/**
 * Field-by-field checks for JSON documents (manifests, configs), with errors that name the file and the field path
 * (`oci:/tmp/l: layers[2].size: must be a non-negative integer, got -1`), so a user can find the bad byte.
 */
import { HoistError } from '../errors.ts';
import { parseDigest } from './digest.ts';

/** Which document is being checked (`where`), what it is (`what`: "manifest"), and the error code to raise. */
export interface JsonContext {
  where: string;
  what: string;
  code: string;
}

export type JsonObject = Record<string, unknown>;

/** `a` + `b` → `a.b`; keys with dots (`os.version`) are bracketed so the path stays readable. */
export function fieldPath(prefix: string, key: string | number): string {
  if (typeof key === 'number') return `${prefix}[${key}]`;
  if (prefix === '') return key;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${prefix}.${key}` : `${prefix}[${JSON.stringify(key)}]`;
}

/** A short human description of a JSON value for "got …" in messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  return `${typeof v} ${String(v)}`;
}

export function fail(ctx: JsonContext, path: string, problem: string): never {
  throw new HoistError(ctx.code, `${ctx.where}: ${path}: ${problem}`);
}

/** Decodes UTF-8 JSON that must be an object at the top. */
export function parseJsonObject(bytes: Uint8Array, ctx: JsonContext): JsonObject {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new HoistError(ctx.code, `${ctx.where}: ${ctx.what} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isObject(doc)) throw new HoistError(ctx.code, `${ctx.where}: ${ctx.what} must be a JSON object, got ${describe(doc)}`);
  return doc;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function checkObject(ctx: JsonContext, v: unknown, path: string): JsonObject {
  if (!isObject(v)) fail(ctx, path, `must be an object, got ${describe(v)}`);
  return v;
}

export function checkString(ctx: JsonContext, v: unknown, path: string): string {
  if (typeof v !== 'string') fail(ctx, path, `must be a string, got ${describe(v)}`);
  return v;
}

export function checkBoolean(ctx: JsonContext, v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') fail(ctx, path, `must be true or false, got ${describe(v)}`);
  return v;
}

export function checkArray(ctx: JsonContext, v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) fail(ctx, path, `must be an array, got ${describe(v)}`);
  return v;
}

export function checkStringArray(ctx: JsonContext, v: unknown, path: string): string[] {
  const a = checkArray(ctx, v, path);
  a.forEach((s, i) => checkString(ctx, s, fieldPath(path, i)));
  return a as string[];
}

export function checkStringMap(ctx: JsonContext, v: unknown, path: string): Record<string, string> {
  const o = checkObject(ctx, v, path);
  for (const [k, s] of Object.entries(o)) checkString(ctx, s, fieldPath(path, k));
  return o as Record<string, string>;
}

export function checkNonNegativeInteger(ctx: JsonContext, v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(ctx, path, `must be a non-negative integer, got ${describe(v)}`);
  return v;
}

export function checkInteger(ctx: JsonContext, v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(ctx, path, `must be an integer, got ${describe(v)}`);
  return v;
}

/** A digest string (`sha256:<64 hex>`); the message is parseDigest's, prefixed by where and the path. */
export function checkDigest(ctx: JsonContext, v: unknown, path: string): string {
  const s = checkString(ctx, v, path);
  try {
    parseDigest(s, `${ctx.where}: ${path}`);
  } catch (e) {
    throw new HoistError(ctx.code, (e as Error).message, { cause: e });
  }
  return s;
}

/** Runs `check` on `o[key]` when the key is present (and, with `allowNull`, not null). */
export function optional<T>(ctx: JsonContext, o: JsonObject, key: string, prefix: string,
  check: (ctx: JsonContext, v: unknown, path: string) => T, allowNull = false): void {
  const v = o[key];
  if (v === undefined || (allowNull && v === null)) return;
  check(ctx, v, fieldPath(prefix, key));
}

/** Runs `check` on `o[key]`, which must be present. */
export function required<T>(ctx: JsonContext, o: JsonObject, key: string, prefix: string,
  check: (ctx: JsonContext, v: unknown, path: string) => T): T {
  const path = fieldPath(prefix, key);
  const v = o[key];
  if (v === undefined) fail(ctx, path, 'is required but missing');
  return check(ctx, v, path);
}
