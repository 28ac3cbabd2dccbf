/**
 * Write leases: a writer announces itself to prune before it checks or stores anything, so that prune keeps every
 * blob the writer may still tag. See prune.ts for the argument; in short:
 *
 *   const lease = await layout.lease();          // .leases/<pid>-<random>, created first
 *   try {
 *     if (!await lease.hasBlob(d)) await lease.putBlob(stream, { digest: d, size });   // both touch / write the blob
 *     await layout.setRef(name, manifestDesc);
 *   } finally {
 *     await lease.release();
 *   }
 *
 * The lease's own mtime (taken from the filesystem's clock, like every blob mtime prune compares) is its start. A lease
 * whose pid is no longer running on this host does not count, and prune removes it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { isErrno } from '../errors.ts';
import type { OciLayout } from './layout.ts';
import { pidAlive } from './lock.ts';

/** A lease file still empty after this long was abandoned between create and write. */
const UNREADABLE_LEASE_STALE_MS = 60 * 60 * 1000;

export class Lease {
  readonly layout: OciLayout;
  /** The lease file. */
  readonly path: string;
  /** The lease file's mtime right after it was written: the start of the lease on the filesystem's clock. */
  readonly createdMs: number;
  #released = false;

  private constructor(layout: OciLayout, file: string, createdMs: number) {
    this.layout = layout;
    this.path = file;
    this.createdMs = createdMs;
  }

  static async create(layout: OciLayout): Promise<Lease> {
    await mkdir(layout.leasesDir, { recursive: true });
    const file = path.join(layout.leasesDir, `${process.pid}-${randomBytes(6).toString('hex')}`);
    const fh = await open(file, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify({ pid: process.pid, hostname: hostname(), created: new Date().toISOString() }) + '\n');
    } finally {
      await fh.close();
    }
    return new Lease(layout, file, (await stat(file)).mtimeMs);
  }

  /**
   * The mtime to give a blob this lease relies on: never earlier than the lease's own start, whatever the difference
   * between this process's clock and the filesystem's (the +1 ms absorbs millisecond rounding and float seconds).
   */
  touchTimeMs(): number {
    return Math.max(Date.now(), Math.ceil(this.createdMs) + 1);
  }

  /** True when stored; an existing blob is touched so a concurrent prune keeps it. */
  hasBlob(digest: string): Promise<boolean> {
    return this.layout.hasBlob(digest, this);
  }

  putBlob(stream: Readable, expected: { digest: string; size?: number }, where?: string): Promise<void> {
    return this.layout.putBlob(stream, expected, where, this);
  }

  putBlobBytes(bytes: Uint8Array, digest?: string): Promise<string> {
    return this.layout.putBlobBytes(bytes, digest, this);
  }

  /** Ends the lease (idempotent). Call it after the last ref is set, on success and on failure. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await unlink(this.path).catch((e: unknown) => { if (!isErrno(e, 'ENOENT')) throw e; });
  }
}

export interface LeaseInfo {
  file: string;
  pid: number | undefined;
  hostname: string | undefined;
  mtimeMs: number;
  /**
   * False only when known dead: its pid on this host no longer runs, or it has been unreadable (a crash between
   * create and write) for an hour. A lease from another host counts as live: its pid means nothing here.
   */
  live: boolean;
}

/** Every lease file in the layout, judged live or dead. */
export async function readLeases(layout: OciLayout): Promise<LeaseInfo[]> {
  let names: string[];
  try {
    names = await readdir(layout.leasesDir);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return [];
    throw e;
  }
  const out: LeaseInfo[] = [];
  for (const name of names) {
    const file = path.join(layout.leasesDir, name);
    let mtimeMs: number;
    let raw: string;
    try {
      mtimeMs = (await stat(file)).mtimeMs;
      raw = await readFile(file, 'utf8');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) continue; // released while we looked
      throw e;
    }
    let pid: number | undefined;
    let host: string | undefined;
    try {
      const o = JSON.parse(raw) as { pid?: unknown; hostname?: unknown };
      if (typeof o.pid === 'number') pid = o.pid;
      if (typeof o.hostname === 'string') host = o.hostname;
    } catch {
      // being written right now: live
    }
    const live = pid === undefined
      ? Date.now() - mtimeMs < UNREADABLE_LEASE_STALE_MS
      : host !== hostname() || pidAlive(pid);
    out.push({ file, pid, hostname: host, mtimeMs, live });
  }
  return out;
}
