/**
 * `hoist build --squash`, as buildah bud's: the layers the build added become ONE layer on top of the base image's
 * layers, which stay as they are (buildah's --squash, not --squash-all).
 *
 * The added layers are merged in userspace from their tars, bottom-up, with the per-layer index of layer-tree.ts
 * (read once per layer, cached by diffID) and the OCI rules unpack.ts applies: a later entry replaces an earlier
 * one at the same path; a whiteout removes the path and everything below it; an opaque marker empties its
 * directory; a non-directory replacing a directory drops what was below it. Only what came from the added layers is
 * dropped that way; what it hides in the BASE layers is kept as a rule for the squashed layer: a path that ends
 * with nothing there becomes a whiteout, a directory becomes opaque — each only when the base has something to hide
 * (looked up in a LayerTree of the base), so files made and deleted within the build leave no trace. A hard link
 * whose target is in the added layers becomes a copy of the target's bytes (the layer holds no hard links, as
 * copy-layer.ts's), one to a base file a copy of the base file's.
 *
 * The tar is written by copy-layer.ts's writer: every path once, parents first, children in byte order of the
 * names they are written under, numeric ids and whole-second mtimes: the same added layers always give the same
 * bytes. File contents are first extracted into a private temp directory (one streamed read per added layer), then
 * streamed into the tar; nothing is held whole in memory.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { HoistError } from '../errors.ts';
import { isOverlayXattr } from '../layer/xattrs.ts';
import type { HistoryEntry, ImageConfig } from '../oci/types.ts';
import type { Lease } from '../store/lease.ts';
import type { OciLayout } from '../store/layout.ts';
import { writePlan, type PlannedNode } from './copy-layer.ts';
import { storeLayer } from './layer-blob.ts';
import { LayerTree, loadIndex, walkTar, type IndexEntry } from './layer-tree.ts';
import type { BuiltLayer } from './state.ts';

export interface SquashOptions {
  layout: OciLayout;
  /** The base image's layers (kept), bottom first. */
  base: BuiltLayer[];
  /** The layers the build added (squashed), bottom first. */
  added: BuiltLayer[];
  /** A private directory for extracted contents and the base's tree; the caller removes it. */
  tmpDir: string;
  /** layer-tree.ts's per-layer index cache (`<diffID hex>.json`). */
  indexCacheDir?: string;
  compression: 'gzip' | 'zstd';
  lease?: Lease;
}

/** Where a file's bytes are: entry `n` (tar ordinal) of added layer `layer`. */
interface ContentRef {
  layer: number;
  n: number;
  z: number;
}

/** One path of the merged added layers. */
interface MergeNode {
  /** What the added layers leave at this path; undefined: nothing of theirs (only a parent, or deleted). */
  e?: IndexEntry;
  /** A file's bytes in the added layers (absent for a hard link to a base file: `e.t` stays 'h'). */
  src?: ContentRef;
  /** The added layers hid whatever the base has at this path and below (whiteout, opaque, non-directory over it). */
  hidden: boolean;
  /** The added layer that last set this node. */
  layer: number;
  children: Map<string, MergeNode>;
}

const WHITEOUT_PREFIX = '.wh.';
const EMPTY = Buffer.alloc(0);

/**
 * The squashed layer of `added` over `base`, stored in the layout; undefined when the added layers change nothing
 * (all they wrote was deleted again, and nothing of the base).
 */
export async function squashLayers(o: SquashOptions): Promise<BuiltLayer | undefined> {
  const indexes = [];
  for (const l of o.added) indexes.push(await loadIndex(o.layout, descriptor(l), l.diffID, o.indexCacheDir));
  const root = newNode(0);
  indexes.forEach((ix, i) => {
    for (const e of ix.entries) apply(root, e, i);
  });

  // Contents: every file the merged tree keeps, one streamed read per added layer.
  const dir = path.join(o.tmpDir, 'contents');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const wanted = new Map<number, Map<number, number>>();
  const collect = (n: MergeNode): void => {
    if (n.src !== undefined && n.src.z > 0) {
      let m = wanted.get(n.src.layer);
      if (m === undefined) wanted.set(n.src.layer, m = new Map());
      m.set(n.src.n, n.src.z);
    }
    for (const c of n.children.values()) collect(c);
  };
  collect(root);
  for (const [layer, want] of wanted) await extract(o.layout, o.added[layer]!, want, path.join(dir, String(layer)));

  let baseTree: Promise<LayerTree> | undefined;
  const base = (): Promise<LayerTree> => baseTree ??= LayerTree.open(o.layout, o.base.map(descriptor), o.base.map((l) => l.diffID), {
    tmpDir: path.join(o.tmpDir, 'base'), ...(o.indexCacheDir !== undefined ? { indexCacheDir: o.indexCacheDir } : {}), name: 'the base image',
  });
  const entries: Array<{ path: string; node: PlannedNode }> = [];
  await plan(root, '', base, dir, entries);
  if (entries.length === 0) return undefined;

  const pack = tarPack();
  pack.on('error', () => {}); // the reader gets the error through the stream
  writePlan(entries, pack, undefined).then(() => pack.finalize(), (e: unknown) => pack.destroy(e instanceof Error ? e : new Error(String(e))));
  const stored = await storeLayer(o.layout, Readable.from(pack, { objectMode: false }), { compression: o.compression, ...(o.lease ? { lease: o.lease } : {}) });
  return { digest: stored.descriptor.digest, size: stored.descriptor.size, mediaType: stored.descriptor.mediaType, diffID: stored.diffID };
}

/**
 * The config of the squashed image: the base's diff_ids and history entries as they were, the build's own history
 * entries kept but marked empty, then one entry for the squashed layer (buildah records one entry per commit).
 */
export function squashedConfig(config: ImageConfig, base: { layers: number; history: number }, layer: BuiltLayer | undefined, squashed: number, created: string): ImageConfig {
  const c = structuredClone(config);
  c.rootfs = { ...c.rootfs, diff_ids: [...c.rootfs.diff_ids.slice(0, base.layers), ...(layer ? [layer.diffID] : [])] };
  const history: HistoryEntry[] = (c.history ?? []).map((h, i) => (i < base.history ? h : { ...h, empty_layer: true }));
  if (layer) history.push({ created, created_by: `hoist build --squash (${squashed} layers)`, comment: 'squashed' });
  c.history = history;
  return c;
}

function descriptor(l: BuiltLayer): { mediaType: string; digest: string; size: number } {
  return { mediaType: l.mediaType, digest: l.digest, size: l.size };
}

function newNode(layer: number): MergeNode {
  return { hidden: false, layer, children: new Map() };
}

function partsOf(p: string): string[] {
  return p === '' ? [] : p.split('/');
}

/** The node at `parts`, made (empty) where missing. */
function ensure(root: MergeNode, parts: string[], layer: number): MergeNode {
  let n = root;
  for (const c of parts) {
    let child = n.children.get(c);
    if (child === undefined) n.children.set(c, child = newNode(layer));
    n = child;
  }
  return n;
}

function lookup(root: MergeNode, parts: string[]): MergeNode | undefined {
  let n: MergeNode | undefined = root;
  for (const c of parts) {
    n = n.children.get(c);
    if (n === undefined) return undefined;
  }
  return n;
}

/** Drops what layers below `layer` left in `n` and below it; true when something is left. */
function prune(n: MergeNode, layer: number, self: boolean): boolean {
  if (self && n.layer < layer) {
    delete n.e;
    delete n.src;
    n.hidden = false;
  }
  for (const [name, c] of n.children) if (!prune(c, layer, true)) n.children.delete(name);
  return n.e !== undefined || n.hidden || n.children.size > 0;
}

/** One index entry of added layer `i`, applied over the layers below it (never over its own entries). */
function apply(root: MergeNode, e: IndexEntry, i: number): void {
  const parts = partsOf(e.p);
  const n = ensure(root, parts, i);
  switch (e.t) {
    case 'w':
      prune(n, i, true);
      n.hidden = true;
      n.layer = i;
      return;
    case 'o':
      prune(n, i, false);
      n.hidden = true;
      n.layer = i;
      return;
    case 'd':
      // A directory over a lower non-directory: what that one hid stays hidden (n.hidden is kept).
      if (n.e !== undefined && n.e.t !== 'd' && n.layer < i) delete n.src;
      n.e = e;
      n.layer = i;
      return;
    case 'h': {
      const target = lookup(root, partsOf(e.l ?? ''));
      prune(n, i, false);
      n.hidden = true;
      n.layer = i;
      if (target?.e !== undefined && target.e.t === 'f') {
        n.e = { ...target.e, p: e.p };
        if (target.src !== undefined) n.src = target.src;
        else delete n.src;
      } else if (target?.e !== undefined) {
        throw new HoistError('BAD_LAYER', `squash: layer entry "${e.p}": hard link target "${e.l ?? ''}" is not a file; the layer is damaged`);
      } else {
        n.e = e; // a link to a base file: copied from the base when written
        delete n.src;
      }
      return;
    }
    default:
      prune(n, i, false);
      n.hidden = true;
      n.layer = i;
      n.e = e;
      if (e.t === 'f') n.src = { layer: i, n: e.n ?? -1, z: e.z ?? 0 };
      else delete n.src;
  }
}

/** The name a child is written under: its own, or `.wh.NAME` when it is only a whiteout. */
function writtenName(name: string, n: MergeNode): string {
  return n.e === undefined && n.hidden ? `${WHITEOUT_PREFIX}${name}` : name;
}

/** The tar's entries for `n` (at `rel`) and below, in write order. */
async function plan(n: MergeNode, rel: string, base: () => Promise<LayerTree>, dir: string, out: Array<{ path: string; node: PlannedNode }>): Promise<void> {
  const kids = [...n.children].map(([name, c]) => ({ name, c, key: Buffer.from(writtenName(name, c)) }));
  kids.sort((a, b) => Buffer.compare(a.key, b.key));
  for (const { name, c } of kids) {
    const p = rel === '' ? name : `${rel}/${name}`;
    if (c.e === undefined) {
      if (c.hidden) {
        // Deleted: a whiteout only when the base has something there to hide.
        if (await (await base()).stat(p) !== undefined) {
          out.push({ path: rel === '' ? `${WHITEOUT_PREFIX}${name}` : `${rel}/${WHITEOUT_PREFIX}${name}`, node: whiteout() });
        }
        continue;
      }
      // Only a parent of what the added layers wrote: no entry of its own, as in those layers.
      await plan(c, p, base, dir, out);
      continue;
    }
    const node = await planned(c, p, base, dir);
    if (node.type === 'directory' && c.hidden && (await (await base()).stat(p))?.type === 'directory') node.opaque = true;
    out.push({ path: p, node });
    if (node.type === 'directory') await plan(c, p, base, dir, out);
  }
}

async function planned(n: MergeNode, p: string, base: () => Promise<LayerTree>, dir: string): Promise<PlannedNode> {
  const e = n.e!;
  if (e.t === 'h') {
    // A hard link to a base file: a copy of it.
    const [m] = await (await base()).match(`/${e.l ?? ''}`);
    const t = m?.entries[0];
    if (t === undefined || t.type !== 'file' || t.abs === undefined) {
      throw new HoistError('BAD_LAYER', `squash: /${p} is a hard link to /${e.l ?? ''}, which is not a file in the base image; the layer is damaged`);
    }
    return {
      type: 'file', mode: t.mode & 0o7777, uid: t.uid, gid: t.gid, mtimeMs: t.mtimeMs, size: t.size,
      ...(t.xattrs !== undefined ? { xattrs: t.xattrs } : {}), data: { kind: 'file', abs: t.abs },
    };
  }
  const type = e.t === 'd' ? 'directory' : e.t === 's' ? 'symlink' : 'file';
  const node: PlannedNode = {
    type, mode: (e.m ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644)) & 0o7777,
    uid: e.u ?? 0, gid: e.g ?? 0, mtimeMs: e.mt ?? 0, size: 0,
  };
  if (type === 'symlink') node.linkname = e.l ?? '';
  if (e.x !== undefined) {
    const x: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(e.x)) if (!isOverlayXattr(k)) x[k] = Buffer.from(v, 'base64');
    if (Object.keys(x).length > 0) node.xattrs = x;
  }
  if (type === 'file') {
    const src = n.src!;
    node.size = src.z;
    node.data = src.z === 0 ? { kind: 'buffer', buf: EMPTY } : { kind: 'file', abs: contentPath(dir, src) };
  }
  return node;
}

function whiteout(): PlannedNode {
  return { type: 'file', mode: 0, uid: 0, gid: 0, mtimeMs: 0, size: 0, data: { kind: 'buffer', buf: EMPTY } };
}

function contentPath(dir: string, ref: ContentRef): string {
  return path.join(dir, String(ref.layer), String(ref.n));
}

/** One streamed read of an added layer, writing the wanted entries (tar ordinal → size) to `into/<ordinal>`. */
async function extract(layout: OciLayout, l: BuiltLayer, want: Map<number, number>, into: string): Promise<void> {
  await mkdir(into, { recursive: true, mode: 0o700 });
  const where = `layer ${l.digest}`;
  let left = want.size;
  const blob = await layout.openBlob(l.digest, l.size, where);
  await walkTar(blob, where, async (h, body, n) => {
    const size = want.get(n);
    if (size === undefined) return false;
    // Synchronous writes, as layer-tree.ts: small files dominate and a promise round trip per write costs more.
    const fd = openSync(path.join(into, String(n)), 'w', 0o600);
    let got = 0;
    try {
      for await (const chunk of body) {
        const b = chunk as Buffer;
        got += b.length;
        for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
      }
    } finally {
      closeSync(fd);
    }
    if (got !== size) {
      throw new HoistError('BAD_LAYER', `${where}: layer entry "${h.name}" holds ${got} bytes where its index says ${size}; the layer index cache is stale: remove it and build again`);
    }
    return --left === 0;
  });
}
