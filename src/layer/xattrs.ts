/**
 * Extended attributes in layer tars: pax records `SCHILY.xattr.NAME=<raw bytes>` (GNU tar, Go's archive/tar, hence
 * docker, containerd, buildah) and bsdtar's `LIBARCHIVE.xattr.<url-encoded name>=<base64>`.
 *
 * Values are raw bytes (security.capability is binary), but tar-stream decodes every pax value as UTF-8 and
 * encodes them from JS strings, which would corrupt any byte >= 0x80 that is not valid UTF-8. So:
 * - reading: `keepRawPaxXattrs` hooks one extract instance's pax decoding (a private method of tar-stream 3;
 *   without it, values fall back to the UTF-8 strings) and `tarXattrs` prefers those raw bytes;
 * - writing: `paxHeaderBlocks` builds the pax extended header ourselves, byte-exact.
 */
import { constants as osConstants } from 'node:os';

const SCHILY = 'SCHILY.xattr.';
const LIBARCHIVE = 'LIBARCHIVE.xattr.';
/** Where the raw values ride on a decoded pax object (not enumerable, so nothing else sees it). */
const RAW_XATTRS = Symbol('hoist.rawPaxXattrs');

/** overlayfs keeps its own state (opaque, redirect, origin, metacopy…) in these: never carried in or out of a layer. */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith('user.overlay.') || name.startsWith('trusted.overlay.');
}

/** errno number → name; the first name wins where two share a number (ENOTSUP over EOPNOTSUPP, EAGAIN over EWOULDBLOCK). */
const ERRNO_NAMES = new Map<number, string>();
for (const [k, v] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(v)) ERRNO_NAMES.set(v, k);

/** The errno name of a failed @napi-rs/xattr call (its errors say "Operation not permitted (os error 1)"). */
export function xattrErrno(e: unknown): string {
  const msg = (e as Error)?.message ?? String(e);
  const m = /\(os error (\d+)\)/.exec(msg);
  if (m) return ERRNO_NAMES.get(Number(m[1])) ?? `errno ${m[1]}`;
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && code !== 'GenericFailure' ? code : msg;
}

/** The pax records of one extended header, values as bytes. Stops quietly at a malformed record, like tar-stream. */
export function parsePaxRecords(buf: Uint8Array): Array<[string, Buffer]> {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Array<[string, Buffer]> = [];
  let off = 0;
  while (off < b.length) {
    const sp = b.indexOf(0x20, off);
    if (sp < 0) break;
    const len = Number(b.toString('latin1', off, sp));
    if (!Number.isSafeInteger(len) || len <= sp - off + 1 || off + len > b.length) break;
    const rec = b.subarray(sp + 1, off + len - 1); // without the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq < 0) break;
    out.push([rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1))]);
    off += len;
  }
  return out;
}

function isXattrKey(key: string): boolean {
  return key.startsWith(SCHILY) || key.startsWith(LIBARCHIVE);
}

/**
 * Makes `extract` (a tar-stream extract) keep the raw bytes of xattr pax values next to its decoded pax object.
 * Relies on tar-stream 3's `_decodeLongHeader(buf)`; if that is gone, nothing is hooked and values stay the
 * UTF-8 strings (test/layer/diff-xattrs.test.ts checks a binary value round trip, so an upgrade that breaks this shows).
 */
export function keepRawPaxXattrs(extract: object): void {
  const x = extract as { _decodeLongHeader?: unknown; _header?: { type?: string } | null; _pax?: object | null };
  const orig = x._decodeLongHeader;
  if (typeof orig !== 'function') return;
  x._decodeLongHeader = function (this: typeof x, buf: Uint8Array): void {
    orig.call(this, buf);
    if (this._header?.type !== 'pax-header' || !this._pax) return;
    const raw = new Map<string, Buffer>();
    for (const [k, v] of parsePaxRecords(buf)) if (isXattrKey(k)) raw.set(k, v);
    if (raw.size > 0) Object.defineProperty(this._pax, RAW_XATTRS, { value: raw });
  };
}

/** name → value of the xattrs an entry's pax records carry (SCHILY wins over LIBARCHIVE for the same name). */
export function tarXattrs(pax: Record<string, string> | null | undefined): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (!pax) return out;
  const raw = (pax as { [RAW_XATTRS]?: Map<string, Buffer> })[RAW_XATTRS];
  const value = (key: string): Buffer => raw?.get(key) ?? Buffer.from(pax[key] ?? '', 'utf8');
  for (const key of Object.keys(pax)) {
    if (key.startsWith(LIBARCHIVE)) {
      let name: string;
      try {
        name = decodeURIComponent(key.slice(LIBARCHIVE.length));
      } catch {
        continue;
      }
      if (name !== '' && !out.has(name)) out.set(name, Buffer.from(value(key).toString('latin1'), 'base64'));
    }
  }
  for (const key of Object.keys(pax)) {
    if (key.startsWith(SCHILY) && key.length > SCHILY.length) out.set(key.slice(SCHILY.length), value(key));
  }
  return out;
}

/** One pax record `<len> <key>=<value>\n`, where len counts its own digits too. */
export function paxRecord(key: string, value: Uint8Array | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), typeof value === 'string' ? Buffer.from(value, 'utf8') : value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (len !== body.length + String(len).length) len = body.length + String(len).length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

/**
 * A pax extended header ('x') carrying `records`: its 512-byte ustar header, then the records padded to 512.
 * The header's fields mirror tar-stream's own pax headers (name `PaxHeader`, the entry's mode, owner and time).
 */
export function paxHeaderBlocks(records: readonly Buffer[], meta: { mode: number; uid: number; gid: number; mtimeS: number }): Buffer {
  const body = Buffer.concat(records);
  const h = Buffer.alloc(512);
  h.write('PaxHeader', 0, 'latin1');
  h.write(octal(meta.mode & 0o7777, 7), 100, 'latin1');
  h.write(octal(meta.uid, 7), 108, 'latin1');
  h.write(octal(meta.gid, 7), 116, 'latin1');
  h.write(octal(body.length, 11), 124, 'latin1');
  h.write(octal(meta.mtimeS, 11), 136, 'latin1');
  h.write('x', 156, 'latin1');
  h.write('ustar\u000000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
  const pad = (512 - (body.length % 512)) % 512;
  return Buffer.concat([h, body, Buffer.alloc(pad)]);
}

/** `width - 1` octal digits and a NUL; values too large for the field are clamped to all sevens (as tar-stream does). */
function octal(n: number, width: number): string {
  const s = Math.max(0, Math.floor(n)).toString(8);
  return `${s.length < width ? s.padStart(width - 1, '0') : '7'.repeat(width - 1)}\u0000`;
}

/**
 * Whether tar-stream can write `name` in a plain ustar header (its own rule: ASCII, and splittable at a `/` into a
 * prefix of at most 155 bytes and a name of at most 100); otherwise the name must go in a pax `path` record.
 */
export function fitsUstar(name: string): boolean {
  if (Buffer.byteLength(name) !== name.length) return false;
  let n = name;
  let prefix = '';
  while (n.length > 100) {
    const i = n.indexOf('/');
    if (i === -1) return false;
    prefix += prefix ? `/${n.slice(0, i)}` : n.slice(0, i);
    n = n.slice(i + 1);
  }
  return prefix.length <= 155;
}

/** A stand-in ustar name for readers that ignore pax (every current reader honours the pax `path`). */
export function ustarStandIn(name: string): string {
  const dir = name.endsWith('/');
  const ascii = (dir ? name.slice(0, -1) : name).replace(/[^\x20-\x7e]/g, '_');
  const tail = ascii.slice(-(dir ? 99 : 100)).replace(/^\/+/, '');
  return dir ? `${tail}/` : tail;
}
