/**
 * Helpers for the layer tests: real tar streams (tar-stream and GNU tar), a description of a directory tree that
 * two unpackers can be compared on, a sandbox with a sentinel directory outside the target, and a minimal OCI
 * layout writer for raw layer tars (test/helpers/make-image.ts builds its layers from file maps, with parent
 * directory entries and fixed modes; hostile and whiteout layers need entry-by-entry control).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { extract as tarExtract, pack as tarPack, type Header } from 'tar-stream';

export type EntrySpec = Partial<Omit<Header, 'pax'>> & { name: string; pax?: Record<string, string> };
export type TarEntry = [EntrySpec, (string | Buffer)?];

/** An uncompressed tar made by tar-stream, entries in the given order. Default mtime 2001-09-09, mode 0644/0755. */
export async function tarOf(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const [h, body] of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (e?: Error | null): void => (e ? reject(e) : resolve());
      const header = { mtime: new Date(1e12), ...h };
      if (body !== undefined) pack.entry(header, body, cb);
      else if ((h.type ?? 'file') === 'file') pack.entry(header, Buffer.alloc(0), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export function streamOf(buf: Buffer): Readable {
  return Readable.from([buf]);
}

/** Runs a command and collects its stdout as bytes (tar output is binary). */
export function runBytes(cmd: string, args: readonly string[], opts: { cwd?: string } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${Buffer.concat(err).toString()}`));
    });
  });
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export interface Sandbox {
  base: string;
  /** Where layers are unpacked. */
  target: string;
  /** A sibling of the target holding `keep`: hostile layers aim at it. */
  outside: string;
}

/** rm -rf that also works as a non-root user on trees holding 0555/0000 directories. */
export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    const openUp = async (p: string): Promise<void> => {
      const st = await lstat(p);
      if (!st.isDirectory()) return;
      await chmod(p, 0o700);
      for (const name of await readdir(p)) await openUp(path.join(p, name));
    };
    await openUp(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

export async function sandbox(t: { after(fn: () => Promise<void>): void }): Promise<Sandbox> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'hoist-'));
  t.after(() => removeTree(base));
  const outside = path.join(base, 'outside');
  const target = path.join(base, 'rootfs');
  await mkdir(outside);
  await mkdir(target);
  await writeFile(path.join(outside, 'keep'), 'keep\n');
  return { base, target, outside };
}

/** Everything outside the target is exactly as sandbox() made it. */
export async function assertOutsideUntouched(sb: Sandbox): Promise<void> {
  const problems: string[] = [];
  const top = (await readdir(sb.base)).sort();
  if (top.join(',') !== 'outside,rootfs') problems.push(`sandbox holds ${top.join(',')}`);
  const inside = (await readdir(sb.outside)).sort();
  if (inside.join(',') !== 'keep') problems.push(`outside holds ${inside.join(',')}`);
  const keep = path.join(sb.outside, 'keep');
  const st = await lstat(keep);
  if (!st.isFile() || st.nlink !== 1) problems.push(`outside/keep is not a lone regular file (nlink ${st.nlink})`);
  else if ((await readFile(keep, 'utf8')) !== 'keep\n') problems.push('outside/keep changed');
  if (problems.length > 0) throw new Error(`written outside the target: ${problems.join('; ')}`);
}

export interface Described {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: string;
  uid?: number;
  gid?: number;
  mtime?: number;
  /** sha256 of the content, first 12 hex digits, for files. */
  sha?: string;
  link?: string;
  /** For regular files with more than one link inside the tree: the first path (sorted) sharing the inode. */
  hardlinkOf?: string;
}

/**
 * rel path → what a reader of the rootfs would see. `''` is the root. Mtimes in whole seconds.
 * Options drop what one side cannot be expected to match (owners under --rootless, times of implicit dirs).
 */
export async function describeTree(root: string, opts: { owners?: boolean; mtimes?: boolean | ((rel: string, st: Stats) => boolean) } = {}): Promise<Record<string, Described>> {
  const out: Record<string, Described> = {};
  const inodes = new Map<number, string>();
  const wantMtime = (rel: string, st: Stats): boolean => (typeof opts.mtimes === 'function' ? opts.mtimes(rel, st) : opts.mtimes ?? true);
  async function visit(rel: string): Promise<void> {
    const abs = rel === '' ? root : path.join(root, rel);
    const st = await lstat(abs);
    const d: Described = {
      type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
      mode: (st.mode & 0o7777).toString(8).padStart(4, '0'),
    };
    if (opts.owners ?? true) {
      d.uid = st.uid;
      d.gid = st.gid;
    }
    if (wantMtime(rel, st)) d.mtime = Math.floor(st.mtimeMs / 1000);
    if (st.isFile()) {
      d.sha = createHash('sha256').update(await readFile(abs)).digest('hex').slice(0, 12);
      if (st.nlink > 1) {
        const first = inodes.get(st.ino);
        if (first === undefined) inodes.set(st.ino, rel);
        else d.hardlinkOf = first;
      }
    }
    if (st.isSymbolicLink()) {
      d.link = await readlink(abs);
      delete (d as { mode?: string }).mode; // symlink modes are always 0777 on Linux, and meaningless
    }
    out[rel] = d;
    if (st.isDirectory()) {
      for (const name of (await readdir(abs)).sort()) await visit(rel === '' ? name : `${rel}/${name}`);
    }
  }
  await visit('');
  return out;
}

export interface ListedEntry {
  name: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
  sha?: string;
}

/** Every entry of a tar as tar-stream reads it (contents hashed), in order. */
export async function listTar(tar: Buffer): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  const extract = tarExtract();
  const done = (async () => {
    for await (const entry of extract) {
      const h = entry.header as Header & { pax?: Record<string, string> | null };
      const hash = createHash('sha256');
      for await (const c of entry) hash.update(c as Buffer);
      const e: ListedEntry = {
        name: h.name,
        type: h.type,
        mode: (h.mode & 0o7777).toString(8).padStart(4, '0'),
        uid: h.uid,
        gid: h.gid,
        size: h.size,
        mtime: Math.floor(h.mtime.getTime() / 1000),
      };
      if (h.linkname) e.linkname = h.linkname;
      if (h.type === 'character-device' || h.type === 'block-device') {
        e.devmajor = h.devmajor;
        e.devminor = h.devminor;
      }
      if (h.pax) {
        const { path: _p, linkpath: _l, ...rest } = h.pax;
        if (Object.keys(rest).length > 0) e.pax = rest;
      }
      if (h.type === 'file' && h.size > 0) e.sha = hash.digest('hex').slice(0, 12);
      out.push(e);
    }
  })();
  streamOf(tar).pipe(extract);
  await done;
  return out;
}

/** A minimal OCI layout at `dir` with one image (ref `ref`) whose layers are the given uncompressed tars. */
export async function writeLayout(dir: string, layers: readonly Buffer[], ref = 'test'): Promise<void> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(path.join(blobs, hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  const layerDescs = [];
  for (const l of layers) layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...await put(l) });
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {},
    rootfs: { type: 'layers', diff_ids: layerDescs.map((l) => l.digest) },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...await put(config) },
    layers: layerDescs,
  }));
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...await put(manifest), annotations: { 'org.opencontainers.image.ref.name': ref } }],
  }));
}
